"""One batch of a replay in one transaction, and the error that pins a failure to its event.

Shared by the in-process replay (:func:`rebuild.build.replay`) and the partition workers
(:mod:`rebuild.partitioned`).
"""

from __future__ import annotations

from sqlalchemy import Engine

from eventlog.db import write_tx
from eventlog.errors import CheckFailed
from eventlog.store import LoggedEvent
from projections.base import Changes, Projection
from projections.runner import TRANSIENT
from projections.store import Tables, apply_batch
from rebuild.fresh import Written, apply_fresh


class RebuildFailed(CheckFailed):
    """The fold or the write failed on one event: nothing was swapped in (exit code 1)."""

    def __init__(self, projection: Projection, position: int, exc: BaseException | str) -> None:
        self.position = position
        self.version = projection.version
        self.error = (describe(exc) if isinstance(exc, BaseException) else exc)[:2000]
        super().__init__(
            f"rebuild of {projection.name}.v{projection.version} failed at position "
            f"{position}: {self.error}"
        )


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``."""
    detail = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {detail[0] if detail else ''}"


def apply_events(
    engine: Engine,
    projection: Projection,
    tables: Tables,
    events: list[LoggedEvent],
    written: Written | None = None,
) -> Changes:
    """One batch in one transaction; a builder error is pinned to its event and raised.

    ``written``: the tables are fresh (:mod:`rebuild.fresh`) and this is what was written
    into them so far; it is updated once the batch has committed.
    """
    try:
        with write_tx(engine) as conn:
            if written is None:
                return apply_batch(conn, projection, tables, events)
            changes = apply_fresh(conn, projection, tables, events, written)
        written.remember(changes)  # committed
        return changes
    except TRANSIENT:
        raise
    except Exception as exc:
        if len(events) > 1:  # find the failing event; the tables are scratch, so apply freely
            for event in events:
                apply_events(engine, projection, tables, [event], written)
        raise RebuildFailed(projection, events[0].position, exc) from exc
