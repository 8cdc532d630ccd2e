"""``bo project``: run the projection runner; ``catch_up`` for ``bo ingest`` and retries."""

from __future__ import annotations

import os
import signal
import threading
from typing import Annotated, Any

import typer
from loguru import logger

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
    stop = threading.Event()
    if not once:  # the follower; a one-off catch-up runs at the caller's priority
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        lower_priority(c.settings.project_nice)
    runner = Runner(c.engine, c.settings)
    freeze_startup()
    retried = runner.retry_failed() if retry_failed else []
    if not once:
        runner.run_forever(stop)
    summary = runner.run_once(force_checksums=once)
    summary["retried"] = retried
    emit(summary, as_json, _line)
    return EXIT_CHECK if summary["failed"] else EXIT_OK


def lower_priority(nice: int) -> None:
    """Run at CPU niceness ``nice`` at least (``BO_PROJECT_NICE``; 0 leaves it alone).

    On a host shared with ``bo consume``, a backlog then goes into the log first and the
    projections apply it with the CPU left over: with the CPUs saturated, the backlog
    reaches the serving tables at about the same time either way (the same work on the
    same CPUs), but the consumer's offsets, bound by the broker's retention, are durable
    sooner. Without contention niceness changes nothing. ``bo serve``'s in-process
    projector is a thread of the API and is not lowered.
    """
    if nice <= 0:
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:  # a platform without it: run at the priority given
        logger.warning("could not lower the projector's CPU priority: {}", exc)


def _line(d: dict[str, Any]) -> str:
    lines = [f"log head {d['head']}; applied {d['applied']} events"]
    for p in d["projections"]:
        text = f"  {p['projection']}.v{p['version']}: {p['state']} at {p['position']}"
        if p["last_error"]:
            text += f" (error at {p['error_position']}: {p['last_error']})"
        lines.append(text)
    return "\n".join(lines)
