"""The ``bo`` command: migrate, ingest, log/audit verify, dead letters, and the rest.

Every reporting command takes ``--json`` and then prints exactly one JSON object.
Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error (one line).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Annotated

import typer

from bo import cli_api, cli_demo, cli_kafka, cli_projections
from bo.output import EXIT_CHECK, EXIT_OK, Reporter, emit, run_app
from bo.wiring import Container, bootstrap
from eventlog.deadletters import (
    list_dead_letters,
    retry_dead_letters,
    show_dead_letter,
)
from eventlog.errors import BoError, ChainBroken, ConfigError, UsageError
from eventlog.gcpause import freeze_startup
from eventlog.ingest import check_files, default_workers, ingest_stream, read_lines
from eventlog.migrate import upgrade
from eventlog.store import AppendResult
from eventlog.verify import verify_log

MAX_INGEST_WORKERS = 64  # as `bo consume --workers`

app = typer.Typer(
    name="bo",
    help="Back-office serving layer: event log, projections, admin API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log_app = typer.Typer(help="The event log.", no_args_is_help=True)
dead_app = typer.Typer(
    help="Dead letters: input that could not be understood.", no_args_is_help=True
)
app.add_typer(log_app, name="log")
app.add_typer(dead_app, name="dead-letters")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def container() -> Container:
    """Settings and engine for a command; a URL that cannot even be parsed is a config error."""
    c = bootstrap()
    try:
        _ = c.engine  # builds the engine (no connection yet): parses BO_DATABASE_URL
    except ConfigError as exc:  # make_engine: not a URL (its password left out)
        raise ConfigError(f"BO_DATABASE_URL: {exc}") from exc
    return c


@app.command()
def migrate(as_json: JsonOpt = False) -> int:
    """Create or upgrade the database schema (Alembic) to head."""
    c = container()
    c.require_database(migrated=False)
    revision = upgrade(c.engine)
    emit(
        {"revision": revision, "database": c.engine.url.render_as_string(hide_password=True)},
        as_json,
        lambda d: f"migrated {d['database']} to revision {d['revision']}",
    )
    return EXIT_OK


@app.command()
def ingest(
    files: Annotated[
        list[str], typer.Argument(help="JSONL files of Debezium events, or - for stdin.")
    ],
    as_json: JsonOpt = False,
    no_project: Annotated[
        bool, typer.Option("--no-project", help="Do not catch the projections up.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(help="Processes preparing events; 0 = by input size and CPUs."),
    ] = 0,
) -> int:
    """Append change events from JSONL files (or stdin) to the log."""
    if not 0 <= workers <= MAX_INGEST_WORKERS:
        raise UsageError(
            f"--workers must be 0 (automatic) to {MAX_INGEST_WORKERS}: one process per CPU "
            "is the most that helps"
        )
    check_files(files)
    c = container()
    c.require_database()
    freeze_startup()  # before the prepare workers fork: see eventlog.gcpause
    total = AppendResult()
    started = time.monotonic()
    for name in files:
        total.add(_ingest_one(c, name, workers))
    summary: dict[str, object] = dict(total.summary())
    summary["head"] = c.log.head()
    if not no_project:
        summary["projections"] = cli_projections.catch_up(c)
    summary["seconds"] = round(time.monotonic() - started, 3)
    emit(summary, as_json, _ingest_line)
    return EXIT_OK


def _ingest_one(c: Container, name: str, workers: int) -> AppendResult:
    size = Path(name).stat().st_size if name != "-" else None
    processes = workers or default_workers(size)
    reporter = Reporter(f"ingest {name}", size, enabled=True)
    seen = [0]

    def on_batch(_done: AppendResult, read: int) -> None:
        reporter.advance(read - seen[0])
        seen[0] = read

    try:
        with reporter.running():
            if name == "-":
                if sys.stdin is None:  # started with stdin closed (`<&-`)
                    raise UsageError("stdin is closed: nothing to read for `-`")
                lines = read_lines(sys.stdin.buffer, "-")
                return ingest_stream(c.log, lines, "-", workers=processes, on_batch=on_batch)
            with open(name, "rb") as stream:
                lines = read_lines(stream, name)
                return ingest_stream(c.log, lines, name, workers=processes, on_batch=on_batch)
    except BrokenProcessPool as exc:
        raise BoError(
            f"ingest {name}: a worker process died (out of memory?); batches already "
            "committed stay, run the same ingest again (duplicates are skipped)"
        ) from exc


def _ingest_line(d: dict[str, object]) -> str:
    return (
        f"appended {d['appended']}, duplicate {d['duplicate']}, dead_letter {d['dead_letter']}, "
        f"tombstone {d['tombstone']}; log head {d['head']} ({d['seconds']} s)"
    )


@log_app.command("verify")
def log_verify(as_json: JsonOpt = False) -> int:
    """Recompute the log's hash chain; exit 1 naming the first bad position."""
    c = container()
    c.require_database()
    try:
        report = verify_log(c.engine)
    except ChainBroken as exc:
        emit(
            {"ok": False, "position": exc.position, "reason": exc.reason},
            as_json,
            lambda d: f"FAILED at position {d['position']}: {d['reason']}",
        )
        return EXIT_CHECK
    emit(
        {"ok": True, "events": report.events, "head": report.head, "head_hash": report.head_hash},
        as_json,
        lambda d: f"ok: {d['events']} events, head {d['head']}, hash {d['head_hash']}",
    )
    return EXIT_OK


@dead_app.command("list")
def dead_list(
    as_json: JsonOpt = False,
    status: Annotated[str, typer.Option(help="open, resolved or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
) -> int:
    """List dead letters (open ones by default)."""
    if status not in ("open", "resolved", "all"):
        raise UsageError("--status must be open, resolved or all")
    c = container()
    c.require_database()
    items = list_dead_letters(c.engine, status=None if status == "all" else status, limit=limit)
    emit({"count": len(items), "items": items}, as_json, _dead_table)
    return EXIT_OK


def _dead_table(d: dict[str, object]) -> str:
    items = d["items"]
    assert isinstance(items, list)
    if not items:
        return "no dead letters"
    lines = [f"{'id':>6}  {'status':8}  {'received_at':27}  source  reason"]
    for it in items:
        where = (
            f"{it['source_topic']}[{it['source_partition']}]@{it['source_offset']}"
            if it["source_topic"]
            else f"{it['source_file']}:{it['source_line']}"
        )
        lines.append(
            f"{it['id']:>6}  {it['status']:8}  {it['received_at']:27}  {where}  {it['reason']}"
        )
    return "\n".join(lines)


@dead_app.command("show")
def dead_show(
    letter_id: Annotated[int, typer.Argument(help="Dead letter id.")], as_json: JsonOpt = False
) -> int:
    """Show one dead letter with its (redacted) raw bytes."""
    c = container()
    c.require_database()
    emit(show_dead_letter(c.engine, letter_id), as_json)
    return EXIT_OK


@dead_app.command("retry")
def dead_retry(
    letter_id: Annotated[int | None, typer.Argument(help="Dead letter id.")] = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Retry every open dead letter.")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Re-parse dead letters (after a fix) and append what now parses."""
    if (letter_id is None) == (not retry_all):
        raise UsageError("give a dead letter id or --all (not both)")
    c = container()
    c.require_database()
    result = retry_dead_letters(c.engine, None if retry_all else [int(letter_id or 0)])
    summary: dict[str, object] = dict(result.summary())
    if result.appended:
        summary["projections"] = cli_projections.catch_up(c)
    emit(summary, as_json)
    return EXIT_OK


cli_projections.register(app)
cli_api.register(app)
cli_kafka.register(app)
cli_demo.register(app)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
