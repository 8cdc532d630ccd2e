"""``bo project``: run the projection runner; ``catch_up`` for ``bo ingest`` and retries."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any

import typer

from bo.output import EXIT_CHECK, EXIT_OK, emit
from bo.wiring import Container
from eventlog.gcpause import freeze_startup
from projections.runner import Runner


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("project")(project)


def catch_up(c: Container) -> dict[str, Any]:
    """Catch every active projection version up to the log head; a JSON-able summary."""
    return Runner(c.engine, c.settings).run_once()


def project(
    once: Annotated[
        bool, typer.Option("--once", help="Catch up to the log head, then exit.")
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Put failed versions back to work first."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> int:
    """Apply the log to the projections (forever, or ``--once``); exit 1 if one has failed."""
    from bo.cli import container  # the one wiring entry point (imported late: no cycle)

    c = container()
    c.require_database()
    runner = Runner(c.engine, c.settings)
    freeze_startup()
    retried = runner.retry_failed() if retry_failed else []
    if not once:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        runner.run_forever(stop)
    summary = runner.run_once(force_checksums=once)
    summary["retried"] = retried
    emit(summary, as_json, _line)
    return EXIT_CHECK if summary["failed"] else EXIT_OK


def _line(d: dict[str, Any]) -> str:
    lines = [f"log head {d['head']}; applied {d['applied']} events"]
    for p in d["projections"]:
        text = f"  {p['projection']}.v{p['version']}: {p['state']} at {p['position']}"
        if p["last_error"]:
            text += f" (error at {p['error_position']}: {p['last_error']})"
        lines.append(text)
    return "\n".join(lines)
