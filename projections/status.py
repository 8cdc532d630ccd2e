"""Projection status for ``rebuild status``, ``/admin/projections`` and ``/readyz``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from eventlog.db import read_tx
from eventlog.errors import BoError
from eventlog.settings import Settings
from eventlog.store import head_position
from projections import registry
from projections.store import RETIRED, all_checkpoints, serving_versions


def expected_fingerprint(name: str, version: int, settings: Settings | None) -> str | None:
    """The fingerprint the code and config give now (``None``: version no longer in code)."""
    try:
        return registry.make(name, version, settings).fingerprint()
    except BoError:
        return None


def status(engine: Engine, settings: Settings | None) -> list[dict[str, Any]]:
    """One entry per (projection, version) checkpoint.

    ``serving``: the stable view selects this version (also while ``failed``). ``stale``:
    the stored fingerprint differs from the code/config one — the version keeps serving
    until rebuilt. ``lag`` = log head - position.
    """
    with read_tx(engine) as conn:
        head = head_position(conn)
        found = all_checkpoints(conn)
        serving = serving_versions(conn)
    out: list[dict[str, Any]] = []
    for cp in found:
        expected = expected_fingerprint(cp.projection, cp.version, settings)
        out.append(
            {
                "projection": cp.projection,
                "version": cp.version,
                "state": cp.state,
                "serving": serving.get(cp.projection) == cp.version,
                "stale": cp.state != RETIRED and cp.fingerprint != expected,
                "fingerprint": cp.fingerprint,
                "expected_fingerprint": expected,
                "position": cp.position,
                "log_head": head,
                "lag": max(0, head - cp.position),
                "rows": cp.rows,
                "checksum": cp.checksum,
                "last_error": cp.last_error,
                "error_position": cp.error_position,
                "updated_at": cp.updated_at,
            }
        )
    return out
