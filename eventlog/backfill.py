"""Backfill: read the OLTP tables in one consistent snapshot and append ``op r`` events.

Protocol (``bo backfill --oltp-dsn DSN``):

1. in autocommit, read the WAL position L0 (``pg_current_wal_lsn()``; on a standby
   ``pg_last_wal_replay_lsn()``) and, in the same statement, the next transaction id N;
   then wait (polling) until every transaction with an id below N has ended
   (``txid_snapshot_xmin(txid_current_snapshot()) >= N``);
2. open one ``REPEATABLE READ, READ ONLY`` transaction on the OLTP database: every table
   is read from the same snapshot; note the snapshot's time (``now()``) and transaction
   id (its xmin); its events carry ``source.lsn`` = L0;
3. per table, read rows in primary-key order after the last key recorded in
   ``eventlog.backfill_progress`` for this run (server-side cursor, in batches);
4. turn each row into a Debezium-shaped snapshot event (``op r``, ``source.snapshot``
   ``true``) and append the batch through ``prepare`` + ``EventLog.append``; the run's
   progress (last key, rows) is written in the SAME transaction, so an interrupted run
   continues after the last appended key and never skips one;
5. mark the table done.

Convergence with live changes consumed before or after: the snapshot event carries the
row's own ``version`` and ``updated_at`` (the first two fields of the projections'
last-writer-wins order key) and ``source.lsn`` = L0, so a change the snapshot does not
see wins (higher version / later ``updated_at`` / higher lsn), and a change already
consumed that the snapshot also saw is the same state. Why L0 and the wait: a
transaction writes its change at a WAL position before it commits, and Debezium reports
that position. Every transaction that wrote before L0 had an id below N and has
committed (or aborted) before the snapshot starts, so the snapshot sees it; every
transaction the snapshot cannot see started writing after L0, so its changes have
higher lsns and win even for rows with neither ``version`` nor ``updated_at``. (The
snapshot's own WAL position would be wrong: a transaction open when the snapshot starts
has written below it and commits after it.) If the wait times out (a long transaction,
``wait_timeout``), the run does not fail: it logs a warning naming the oldest open
transaction and gives the snapshot events ``source.lsn`` 0, so every live change wins;
Kafka keeps each partition's changes contiguously, so the live changes after that one
converge the row.
``source.ts_ms`` is the row's ``updated_at`` (else ``created_at``, else the snapshot
time): the best known commit time of the row's current state, which keeps
``first_seen_at``/``completed_at`` of pairs meaningful for historical rows.
A resumed run reads the remaining keys from a new snapshot; rows changed in between
reach the log through the live stream. The default run id is derived from the OLTP
database, the schema and the sorted table list; a completed run is skipped when run
again, so backfilling again needs ``--restart`` or a new ``--run-id``: that appends one
new snapshot event per row (not duplicates — the snapshot's lsn and txId are part of an
event's identity), which leaves the projections as they were.

Values are encoded as Debezium does: json/jsonb as their text (a JSON string, numbers
exact; credentials inside are redacted by the ingest path), timestamps and dates
psycopg cannot hold (``infinity``, BC, after year 9999) as PostgreSQL's text: in a column
the decoder reads (``created_at``, ``settled_at``…) that row is a dead letter (SPEC §2.4)
while the other rows are appended; elsewhere the event keeps the text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import time as clock
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from loguru import logger
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader
from psycopg.types.string import TextLoader
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from eventlog.db import without_password, write_tx
from eventlog.decode import TABLES
from eventlog.errors import BoError, ConfigError, UsageError
from eventlog.schema import backfill_progress
from eventlog.store import AppendResult, EventLog, Outcome, SourceRef, prepare
from eventlog.timeutil import format_ts, now_text

DEFAULT_TABLES = ("ledger_entries", "payment_orders")
BATCH = 2000
WAIT_TIMEOUT = 30.0  # seconds to wait for the transactions open at the snapshot's lsn
_POLL = 0.05


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Coordinates shared by every event of one backfill snapshot."""

    db: str
    ts_ms: int
    lsn: int
    tx_id: int


@dataclass(slots=True)
class TableReport:
    table: str
    rows: int = 0
    skipped: bool = False  # already completed by an earlier run
    result: AppendResult = field(default_factory=AppendResult)

    def summary(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows": self.rows,
            "skipped": self.skipped,
            **self.result.summary(),
        }


@dataclass(slots=True)
class BackfillReport:
    run_id: str
    tables: list[TableReport] = field(default_factory=list)
    head: int = 0  # the log's head when the run ended (whatever it appended)

    def summary(self) -> dict[str, Any]:
        total = AppendResult()
        for table in self.tables:
            total.add(table.result)
        return {
            "run_id": self.run_id,
            "rows": sum(t.rows for t in self.tables),
            **total.summary(),
            "head": max(self.head, total.head),
            "tables": [t.summary() for t in self.tables],
        }


def parse_tables(value: str | None) -> list[str]:
    """``ledger_entries,payment_orders`` → list; unknown names are a usage error."""
    names = [t.strip() for t in (value or ",".join(DEFAULT_TABLES)).split(",") if t.strip()]
    unknown = [n for n in names if n not in TABLES]
    if not names or unknown:
        raise UsageError(
            f"--tables: unknown table {', '.join(unknown) or '(none)'} "
            f"(choose from {', '.join(DEFAULT_TABLES)})"
        )
    return list(dict.fromkeys(names))


def libpq_dsn(dsn: str) -> str:
    """Accept SQLAlchemy-style URLs too (``postgresql+psycopg://``)."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql://" + dsn[len(prefix) :]
    return dsn


def default_run_id(conn: psycopg.Connection[Any], schema: str, tables: Sequence[str]) -> str:
    """A stable id for "these tables of this OLTP database", so re-running the same
    command resumes, and another schema or table list is another run (never "already
    done" for tables it has not copied).
    """
    row = conn.execute(
        "SELECT current_database(), coalesce(host(inet_server_addr()), 'local'), "
        "coalesce(inet_server_port(), 0)"
    ).fetchone()
    assert row is not None
    ident = orjson.dumps([f"{row[0]}@{row[1]}:{row[2]}", schema, sorted(tables)]).decode()
    digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
    return f"{row[0]}-{digest}"


def backfill(
    engine: Engine,
    dsn: str,
    tables: Sequence[str] = DEFAULT_TABLES,
    *,
    schema: str = "public",
    run_id: str | None = None,
    restart: bool = False,
    batch: int = BATCH,
    on_total: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
    stop_after: int | None = None,
    wait_timeout: float = WAIT_TIMEOUT,
) -> BackfillReport:
    """Run (or resume) a backfill of ``tables`` from the OLTP database at ``dsn``.

    ``stop_after`` stops after that many rows (tests use it to simulate an interruption);
    ``wait_timeout`` bounds the wait for transactions open at the snapshot's lsn (module
    docstring).
    """
    try:
        oltp = psycopg.connect(libpq_dsn(dsn), autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        message = without_password(_first_line(exc), dsn)
        raise ConfigError(f"cannot connect to the OLTP database: {message}") from exc
    try:
        with oltp:
            _register_loaders(oltp)
            run = run_id or default_run_id(oltp, schema, tables)
            if restart:
                _reset_progress(engine, run)
            report = BackfillReport(run)
            snap = _snapshot(oltp, wait_timeout)
            _copy_all(
                EventLog(engine),
                oltp,
                snap,
                report,
                tables,
                schema,
                batch,
                stop_after,
                on_total,
                on_rows,
            )
            oltp.rollback()
    except psycopg.Error as exc:
        raise OltpError(
            f"OLTP database error during backfill: {without_password(_first_line(exc), dsn)} "
            "(progress up to the last appended batch is saved: re-run to resume)"
        ) from exc
    report.head = EventLog(engine).head()
    return report


class BackfillConflict(BoError):
    """Another backfill of the same run moved its progress meanwhile (exit code 2)."""


class OltpError(BoError):
    """The OLTP database failed while being read (exit code 2; re-running resumes)."""


def _copy_all(
    log: EventLog,
    oltp: psycopg.Connection[Any],
    snap: Snapshot,
    report: BackfillReport,
    tables: Sequence[str],
    schema: str,
    batch: int,
    stop_after: int | None,
    on_total: Callable[[int], None] | None,
    on_rows: Callable[[int], None] | None,
) -> None:
    columns = {t: _columns(oltp, schema, t) for t in tables}
    progress = _progress(log.engine, report.run_id)
    if on_total is not None:
        on_total(sum(_remaining(oltp, schema, t, columns[t], progress.get(t)) for t in tables))
    budget = stop_after
    for table in tables:
        state = progress.get(table)
        if state is not None and state[1]:
            report.tables.append(TableReport(table, skipped=True))
            continue
        done = _copy_table(
            log,
            oltp,
            snap,
            schema,
            table,
            columns[table],
            report.run_id,
            after=state[0] if state else None,
            batch=batch,
            budget=budget,
            on_rows=on_rows,
        )
        report.tables.append(done)
        if budget is not None:
            budget -= done.rows
            if budget <= 0:
                return


# ---------------------------------------------------------------- OLTP side


@dataclass(frozen=True, slots=True)
class Columns:
    names: list[str]
    key: str
    key_type: str


# L0 and the next transaction id N, read together (steps 1 and 2 of the module docstring).
# N is not txid_snapshot_xmax (latest completed id + 1): an open transaction whose id is
# above every completed one is at or past that xmax and would not be waited for. age()
# of an id is "next id - id" for a session without an id of its own, so N = xmax + age.
WAL_POSITION = (
    "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
    "ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint, "
    "txid_snapshot_xmax(s) + age((txid_snapshot_xmax(s) % 4294967296)::text::xid) "
    "FROM txid_current_snapshot() AS s"
)
_OLDEST_XMIN = "SELECT txid_snapshot_xmin(txid_current_snapshot())"
_OLDEST_OPEN = (
    "SELECT pid, xact_start FROM pg_stat_activity "
    "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
    "ORDER BY age(backend_xid) DESC LIMIT 1"
)


def _snapshot(conn: psycopg.Connection[Any], wait_timeout: float) -> Snapshot:
    """Wait for the transactions open at L0, then open the snapshot transaction."""
    lsn = _settled_lsn(conn, wait_timeout)
    conn.autocommit = False
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    row = conn.execute(
        "SELECT current_database(), (extract(epoch FROM now()) * 1000)::bigint, "
        "txid_snapshot_xmin(txid_current_snapshot())"
    ).fetchone()
    assert row is not None
    return Snapshot(db=str(row[0]), ts_ms=int(row[1]), lsn=lsn, tx_id=int(row[2]))


def _settled_lsn(conn: psycopg.Connection[Any], wait_timeout: float) -> int:
    """L0 once every transaction with an id below N has ended (``conn`` in autocommit:
    each poll sees a new snapshot); 0 with a warning when ``wait_timeout`` runs out."""
    row = conn.execute(WAL_POSITION).fetchone()
    assert row is not None
    lsn, next_xid = int(row[0]), int(row[1])
    deadline = clock.monotonic() + wait_timeout
    while True:
        polled = conn.execute(_OLDEST_XMIN).fetchone()
        assert polled is not None
        if int(polled[0]) >= next_xid:
            return lsn
        if clock.monotonic() >= deadline:
            _warn_open(conn, wait_timeout)
            return 0
        clock.sleep(_POLL)


def _warn_open(conn: psycopg.Connection[Any], wait_timeout: float) -> None:
    oldest = conn.execute(_OLDEST_OPEN).fetchone()
    who = (
        f"pid {oldest[0]}, started {oldest[1] or 'at a time this role may not see'}"
        if oldest is not None
        else "not visible here: a prepared transaction, or on a standby one on the primary"
    )
    logger.warning(
        "backfill: a transaction open at the snapshot's WAL position did not end within "
        "{} s (oldest open transaction: {}); the snapshot events get source.lsn 0, so every "
        "live change of their rows wins",
        wait_timeout,
        who,
    )


def _text_when_out_of_range(load: Callable[[Buffer], Any], data: Buffer) -> Any:
    """``load(data)``, or PostgreSQL's text for a date/time Python's datetime cannot hold
    (``infinity``, BC, after year 9999) instead of failing the whole backfill."""
    try:
        return load(data)
    except (psycopg.DataError, ValueError, OverflowError):
        return bytes(data).decode("utf-8", "replace")


class _Timestamptz(TimestamptzLoader):
    def load(self, data: Buffer) -> Any:
        return _text_when_out_of_range(super().load, data)


class _Timestamp(TimestampLoader):
    def load(self, data: Buffer) -> Any:
        return _text_when_out_of_range(super().load, data)


class _Date(DateLoader):
    def load(self, data: Buffer) -> Any:
        return _text_when_out_of_range(super().load, data)


def _register_loaders(conn: psycopg.Connection[Any]) -> None:
    """json/jsonb as their text (Debezium's JSON string; numbers stay exact), dates and
    timestamps as text when out of Python's range (module docstring)."""
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)
    conn.adapters.register_loader("timestamptz", _Timestamptz)
    conn.adapters.register_loader("timestamp", _Timestamp)
    conn.adapters.register_loader("date", _Date)


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> Columns:
    key = TABLES[table].key
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (schema, table),
    ).fetchall()
    if not rows:
        raise ConfigError(f"OLTP table {schema}.{table} not found")
    types = {str(r[0]): str(r[1]) for r in rows}
    if key not in types:
        raise ConfigError(f"OLTP table {schema}.{table} has no {key} column")
    return Columns([str(r[0]) for r in rows], key, types[key])


def _after_clause(cols: Columns, after: str | None) -> tuple[sql.Composable, tuple[Any, ...]]:
    if after is None:
        return sql.SQL(""), ()
    clause = sql.SQL(" WHERE {} > CAST(%s AS {})").format(
        sql.Identifier(cols.key), sql.SQL(cols.key_type)
    )
    return clause, (after,)


def _remaining(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    cols: Columns,
    state: tuple[str | None, bool] | None,
) -> int:
    if state is not None and state[1]:
        return 0
    where, params = _after_clause(cols, state[0] if state else None)
    query = (
        sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        + where
    )
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def _rows(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    cols: Columns,
    after: str | None,
    batch: int,
) -> Iterator[list[dict[str, Any]]]:
    where, params = _after_clause(cols, after)
    query = (
        sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in cols.names),
            sql.Identifier(schema),
            sql.Identifier(table),
        )
        + where
        + sql.SQL(" ORDER BY {}").format(sql.Identifier(cols.key))
    )
    with conn.cursor(name=f"bo_backfill_{table}") as cur:
        cur.itersize = batch
        cur.execute(query, params)
        while True:
            chunk = cur.fetchmany(batch)
            if not chunk:
                return
            yield [dict(zip(cols.names, r, strict=True)) for r in chunk]


# ---------------------------------------------------------------- events


def json_value(value: Any) -> Any:
    """A column value as Debezium's JSON encodes it.

    Decimals as strings with their scale; timestamps as the log's canonical RFC 3339 UTC
    text with microseconds (``2026-03-01T23:00:00.000000Z``; ``timestamp without time
    zone`` read as UTC), or as written when UTC cannot hold them (the decoder then says so).
    """
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        try:
            return format_ts(value)
        except (OverflowError, ValueError):
            return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # inet, ranges, money…: their text form, as Debezium's string modes


def _commit_ms(row: dict[str, Any], snap: Snapshot) -> int:
    for column in ("updated_at", "created_at"):
        value = row.get(column)
        if isinstance(value, datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=UTC)
            return int(aware.timestamp() * 1000)
    return snap.ts_ms


def snapshot_event(table: str, schema: str, row: dict[str, Any], snap: Snapshot) -> bytes:
    """One Debezium-shaped ``op r`` event for ``row`` read in ``snap``."""
    doc = {
        "before": None,
        "after": {k: json_value(v) for k, v in row.items()},
        "source": {
            "connector": "bo-backfill",
            "name": "backfill",
            "ts_ms": _commit_ms(row, snap),
            "snapshot": "true",
            "db": snap.db,
            "schema": schema,
            "table": table,
            "txId": snap.tx_id,
            "lsn": snap.lsn,
        },
        "op": "r",
        "ts_ms": snap.ts_ms,
    }
    return orjson.dumps(doc)


def _copy_table(
    log: EventLog,
    oltp: psycopg.Connection[Any],
    snap: Snapshot,
    schema: str,
    table: str,
    cols: Columns,
    run: str,
    *,
    after: str | None,
    batch: int,
    budget: int | None,
    on_rows: Callable[[int], None] | None,
) -> TableReport:
    report = TableReport(table)
    expected = after  # the progress this run continues from, batch by batch
    for chunk in _rows(oltp, schema, table, cols, after, batch):
        if budget is not None:
            chunk = chunk[: max(0, budget - report.rows)]
        if not chunk:
            break
        source = f"backfill:{run}:{table}"
        outcomes: list[Outcome] = [
            prepare(
                snapshot_event(table, schema, r, snap),
                SourceRef(file=source, line=report.rows + i + 1),
            )
            for i, r in enumerate(chunk)
        ]
        last_key = str(chunk[-1][cols.key])
        count = len(chunk)
        report.result.add(
            log.append(
                outcomes,
                also=functools.partial(
                    _save_progress,
                    run=run,
                    table=table,
                    last_key=last_key,
                    rows=count,
                    expected=expected,
                ),
            )
        )
        expected = last_key
        report.rows += count
        if on_rows is not None:
            on_rows(count)
        if budget is not None and report.rows >= budget:
            return report
    _finish(log.engine, run, table)
    return report


# ---------------------------------------------------------------- progress


def _progress(engine: Engine, run: str) -> dict[str, tuple[str | None, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                backfill_progress.c.table_name,
                backfill_progress.c.last_key,
                backfill_progress.c.done,
            ).where(backfill_progress.c.run_id == run)
        ).all()
    return {str(r[0]): (r[1], bool(r[2])) for r in rows}


def _save_progress(
    conn: Connection, run: str, table: str, last_key: str, rows: int, expected: str | None
) -> None:
    """Move the run's progress for ``table`` from ``expected`` to ``last_key`` in the
    batch's append transaction; :class:`BackfillConflict` (the batch is not appended) when
    it is no longer at ``expected`` — a second backfill of the same run got there first.
    The progress row is read ``FOR UPDATE`` on PostgreSQL (SQLite's transaction holds the
    write lock), so two runs cannot both pass the check."""
    where = (backfill_progress.c.run_id == run) & (backfill_progress.c.table_name == table)
    current = conn.execute(
        select(backfill_progress.c.rows, backfill_progress.c.last_key, backfill_progress.c.done)
        .where(where)
        .with_for_update()
    ).first()
    at = None if current is None else current[1]
    if at != expected or (current is not None and current[2]):
        raise _conflict(run, table)
    now = now_text()
    if current is None:
        try:
            _insert_progress(conn, run, table, last_key=last_key, done=0, rows=rows)
        except IntegrityError as exc:  # the other run inserted the row first
            raise _conflict(run, table) from exc
        return
    conn.execute(
        update(backfill_progress)
        .where(where)
        .values(last_key=last_key, rows=int(current[0]) + rows, updated_at=now)
    )


def _insert_progress(
    conn: Connection, run: str, table: str, *, last_key: str | None, done: int, rows: int
) -> None:
    conn.execute(
        insert(backfill_progress).values(
            run_id=run,
            table_name=table,
            last_key=last_key,
            done=done,
            rows=rows,
            updated_at=now_text(),
        )
    )


def _conflict(run: str, table: str) -> BackfillConflict:
    return BackfillConflict(
        f"another backfill of run {run} is copying {table} (its progress moved under this "
        "one): this run stopped without appending its batch; let the other finish, or re-run "
        "afterwards to resume"
    )


def _finish(engine: Engine, run: str, table: str) -> None:
    with write_tx(engine) as conn:
        where = (backfill_progress.c.run_id == run) & (backfill_progress.c.table_name == table)
        if conn.execute(select(backfill_progress.c.run_id).where(where)).first() is None:
            _insert_progress(conn, run, table, last_key=None, done=1, rows=0)
        else:
            conn.execute(
                update(backfill_progress).where(where).values(done=1, updated_at=now_text())
            )


def _reset_progress(engine: Engine, run: str) -> None:
    with write_tx(engine) as conn:
        conn.execute(delete(backfill_progress).where(backfill_progress.c.run_id == run))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
