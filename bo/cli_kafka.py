"""`bo consume` and `bo backfill` (registered by :mod:`bo.cli`)."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Annotated, Any

import typer

from bo.output import EXIT_OK, Reporter, emit
from bo.wiring import bootstrap
from eventlog.backfill import backfill, parse_tables
from eventlog.db import make_engine
from eventlog.errors import UsageError
from eventlog.gcpause import freeze_startup
from eventlog.kafka import ConsumerConfig, SyncConsumer, check_kafka_settings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def register(app: typer.Typer) -> None:
    """Add ``consume`` and ``backfill`` to ``app``."""
    app.command("consume")(consume)
    app.command("backfill")(backfill_command)


def consume(
    as_json: JsonOpt = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Most records per database transaction.")
    ] = 5000,
    batch_ms: Annotated[
        int, typer.Option(min=0, max=60_000, help="Longest wait to fill a batch (ms).")
    ] = 50,
    linger_ms: Annotated[
        int,
        typer.Option(
            min=0,
            max=60_000,
            help="Wait this long (ms) for company before committing a batch read to the end.",
        ),
    ] = 10,
    check_crcs: Annotated[
        bool,
        typer.Option(
            "--check-crcs/--no-check-crcs",
            help="Verify record-batch CRC32C (slow in pure Python unless crc32c is installed).",
        ),
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            max=64,
            help="Processes that prepare a backlog (0: one per CPU, at most 4; 1: inline).",
        ),
    ] = 0,
) -> int:
    """Consume Debezium topics (BO_KAFKA_TOPICS) into the log until SIGTERM or Ctrl-C."""
    c = bootstrap()
    check_kafka_settings(c.settings)
    c.require_database()
    # no ping per checkout (a round trip per batch): a failed append is retried anyway
    engine = make_engine(c.settings.database_url, pre_ping=False)
    stop = threading.Event()
    previous = _on_signals(stop)
    freeze_startup()
    started = time.monotonic()
    try:
        consumer = SyncConsumer(
            c.settings,
            engine,
            stop,
            ConsumerConfig(
                batch_size=batch_size,
                batch_ms=batch_ms,
                linger_ms=linger_ms,
                check_crcs=check_crcs,
                prepare_workers=workers or None,
            ),
        )
        stats = consumer.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.dispose()
        c.close()
    summary: dict[str, Any] = dict(stats.summary())
    summary["member"] = consumer.member
    summary["seconds"] = round(time.monotonic() - started, 3)
    emit(summary, as_json, _consume_line)
    return EXIT_OK


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM/SIGINT finish the current batch, commit it and exit 0."""

    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)
    return previous


def _consume_line(d: dict[str, Any]) -> str:
    return (
        f"consumed {d['records']} records in {d['batches']} batches: appended {d['appended']}, "
        f"duplicate {d['duplicate']}, dead_letter {d['dead_letter']}, "
        f"tombstone {d['tombstone']} ({d['seconds']} s)"
    )


def backfill_command(
    oltp_dsn: Annotated[
        str,
        typer.Option(
            "--oltp-dsn",
            help="OLTP PostgreSQL (postgresql://user@host:port/db or a libpq DSN).",
        ),
    ],
    tables: Annotated[
        str, typer.Option(help="Comma-separated tables.")
    ] = "ledger_entries,payment_orders",
    schema: Annotated[str, typer.Option(help="The tables' schema in the OLTP database.")] = (
        "public"
    ),
    run_id: Annotated[
        str | None,
        typer.Option(help="Progress key; default: derived from the OLTP database and tables."),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget earlier progress of this run and start over.")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Rows per transaction.")] = 2000,
    as_json: JsonOpt = False,
) -> int:
    """Read the OLTP tables in one snapshot and append them as `op r` events (resumable)."""
    names = parse_tables(tables)
    if not oltp_dsn.strip():
        raise UsageError("--oltp-dsn is empty")
    c = bootstrap()
    c.require_database()
    reporter = Reporter("backfill", None, enabled=True)
    started = time.monotonic()
    done = [0]

    def on_rows(n: int) -> None:
        done[0] += n
        elapsed = max(time.monotonic() - started, 1e-9)
        reporter.advance(n, rate=f"{done[0] / elapsed:,.0f} rows/s")

    try:
        with reporter.running():
            report = backfill(
                c.engine,
                oltp_dsn,
                names,
                schema=schema,
                run_id=run_id,
                restart=restart,
                batch=batch,
                on_total=reporter.set_total,
                on_rows=on_rows,
            )
    finally:
        c.close()
    summary = report.summary()
    summary["seconds"] = round(time.monotonic() - started, 3)
    emit(summary, as_json, _backfill_line)
    return EXIT_OK


def _backfill_line(d: dict[str, Any]) -> str:
    skipped = [t["table"] for t in d["tables"] if t["skipped"]]
    note = f"; already done: {', '.join(skipped)}" if skipped else ""
    return (
        f"backfill {d['run_id']}: {d['rows']} rows, appended {d['appended']}, "
        f"duplicate {d['duplicate']}, dead_letter {d['dead_letter']}; log head {d['head']} "
        f"({d['seconds']} s){note}"
    )
