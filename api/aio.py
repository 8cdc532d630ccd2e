"""The PostgreSQL hot path on the event loop: asyncpg connections, no thread hops.

``GET /admin/tx/{id}`` (without ``as_of``) and the audit writer are the per-request work
at high rates. On PostgreSQL, once the app's lifespan has started, both run here:

- :class:`AsyncPool`: a few connections per process, handed out to one statement at a
  time (a lookup is one statement: one snapshot, one round trip);
- :class:`AsyncLookups`: the same single statement as :func:`api.queries.tx_bundle`
  (compiled once from it, executed as a prepared statement), shaped by the same pure
  :mod:`api.lookups` functions, and serialised with orjson into exactly the bytes the
  response model would produce (``tests/test_api_aio.py`` compares them);
- :class:`AsyncAuditSink`: group commit of audit records on its own connection, as an
  asyncio task: each request awaits its own batch's commit (one commit per batch).

asyncpg, not psycopg's async mode: measured on the lookup, 52 µs of client CPU per
query against 157 µs (psycopg's async wait registers and removes an event-loop reader
around every wait, and its Python-level protocol handling is heavier). The synchronous
path keeps SQLAlchemy + psycopg.

SQLite (the embedded default), apps whose lifespan never ran (a ``TestClient`` without
``with``) and ``as_of`` lookups use the synchronous path (SQLAlchemy in the thread pool).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import Any, NamedTuple, TypeAlias

import asyncpg  # type: ignore[import-untyped]
import orjson
from loguru import logger
from sqlalchemy import Engine, bindparam, select
from starlette.responses import Response

from api import lookups, models, queries
from api.audit import _LOCK_KEY, HASHED_FIELDS, AuditEntry, AuditUnavailable, chain_rows
from api.problems import ProblemError
from eventlog.schema import audit_log, consumer_heartbeats

UNAVAILABLE = "serving data unavailable (database down or projections not built yet)"
# the connection itself failed (refused, reset, closed, timed out): worth one retry afresh
# (InternalClientError: a connection the server terminated while idle can be handed out
# with its protocol mid-way — "cannot switch to state …; another operation is in progress")
LOST = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InternalClientError,
)
# anything the database or driver can raise: the answer is 503
FAILED = (*LOST, asyncpg.PostgresError)
Connection: TypeAlias = Any  # asyncpg.Connection (asyncpg ships no type information)


# URL query options asyncpg understands as connection options; anything else it would
# send to the server as a setting (``connect_timeout=5`` → "unrecognized configuration
# parameter"), so such a URL keeps the synchronous path instead.
ASYNCPG_OPTIONS = frozenset(
    (
        "host",
        "port",
        "user",
        "password",
        "dbname",
        "database",
        "passfile",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "sslpassword",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "application_name",
    )
)


def conninfo(engine: Engine) -> tuple[str, float] | None:
    """A ``postgresql://`` URI for the engine's database (same user, password, host) and
    the connect timeout (``connect_timeout`` from the URL, else 5 s); ``None`` when the URL
    carries an option asyncpg cannot take (the caller then stays on the synchronous path).
    """
    url = engine.url.set(drivername="postgresql")
    query = dict(url.query)
    timeout = 5.0
    if "connect_timeout" in query:
        raw = query.pop("connect_timeout")
        try:
            timeout = float(raw if isinstance(raw, str) else raw[-1])
        except ValueError:
            return None
        if timeout <= 0:  # libpq: 0 or negative means wait forever; keep a bound
            timeout = 5.0
    if not set(query) <= ASYNCPG_OPTIONS:
        return None
    return url.set(query=query).render_as_string(hide_password=False), timeout


def positional(engine: Engine, statement: Any, param: str) -> str:
    """``statement`` compiled for PostgreSQL with ``param`` as ``$1`` and its constant
    parameters inlined as SQL literals (they are ours: ints and plain strings)."""
    compiled = statement.compile(dialect=engine.dialect)
    values = dict(compiled.params)

    def literal(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == param:
            return "$1"
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"cannot inline {name}={value!r}")
        return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"

    return re.sub(r"%\((\w+)\)s", literal, compiled.string).replace("%%", "%")


class AsyncPool:
    """Connections for one event loop, created on demand up to ``size``.

    A connection that failed (or is left in a transaction) is closed, not reused.
    """

    def __init__(self, dsn: str, size: int = 8, *, connect_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.size = size
        self.connect_timeout = connect_timeout
        self._idle: deque[Connection] = deque()
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._count = 0
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        conn = await self._acquire()
        ok = False
        try:
            yield conn
            ok = True
        finally:
            self._release(conn, ok)

    async def _acquire(self) -> Connection:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("connection pool closed")
            if self._idle:
                return self._idle.pop()
            if self._count < self.size:
                self._count += 1
                try:
                    return await connect(self.dsn, self.connect_timeout)
                except BaseException:
                    self._count -= 1
                    self._wake(None)
                    raise
            waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    handed = waiter.result()
                    if handed is not None:
                        self._release(handed, True)
                raise
            if conn is not None:
                return conn

    def _release(self, conn: Connection, ok: bool) -> None:
        healthy = ok and not self._closed and not conn.is_closed() and not conn.is_in_transaction()
        if not healthy:
            self._count -= 1
            self._close_later(conn)
            self._wake(None)
            return
        if not self._wake(conn):
            self._idle.append(conn)

    def _close_later(self, conn: Connection) -> None:
        if conn.is_closed():
            return
        task = asyncio.get_running_loop().create_task(_close(conn))
        self._closing.add(task)  # keep a reference until it is done
        task.add_done_callback(self._closing.discard)

    def _wake(self, conn: Connection | None) -> bool:
        """Hand ``conn`` (or, with ``None``, a chance to connect) to the oldest waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def discard_idle(self) -> None:
        """Close the idle connections (new ones are made on demand)."""
        while self._idle:
            conn = self._idle.pop()
            self._count -= 1
            self._close_later(conn)
        self._wake(None)

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            conn = self._idle.pop()
            self._count -= 1
            await _close(conn)
        self._wake(None)


async def connect(dsn: str, timeout: float, *, prepared: bool = True) -> Connection:
    """``prepared=False``: no statement cache (every statement is planned afresh)."""
    options = {} if prepared else {"statement_cache_size": 0}
    conn: Connection = await asyncpg.connect(dsn, timeout=timeout, **options)
    return conn


async def _close(conn: Connection) -> None:
    """Close politely, or drop it when the server is gone (never raises)."""
    try:
        await asyncio.wait_for(conn.close(), 5.0)
    except Exception:  # a dead connection cannot say goodbye: just let it go
        conn.terminate()


class _Fresh(NamedTuple):
    fresh_position: Any
    fresh_synced: Any
    fresh_pending: Any


_TX_KEYS = tuple(models.TxDetail.model_fields)
_ORDER_KEYS = tuple(models.PaymentOrder.model_fields)
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # models.Decimal, used with fullmatch
_PAIRING = frozenset(("COMPLETE", "INCOMPLETE", "CONFLICT", "UNKNOWN"))
_HEARTBEATS = select(consumer_heartbeats.c.heartbeat_at, consumer_heartbeats.c.caught_up_at).where(
    consumer_heartbeats.c.group_id == bindparam("group")
)
_Layout = tuple[int, int, int, int, dict[str, list[str]]]


def tx_json(detail: dict[str, Any]) -> bytes | None:
    """The ``TxDetail`` response body for ``detail``, byte for byte as FastAPI would write it
    (field order of the model, compact JSON); ``None`` when the model would reject it (the
    caller then lets FastAPI validate, so such an answer fails exactly as before)."""
    order = detail.get("payment_order")
    for value in (detail.get("amount"), detail.get("amount_signed")):
        if value is not None and (not isinstance(value, str) or not _DECIMAL.fullmatch(value)):
            return None
    if detail.get("pairing_status") not in _PAIRING:
        return None
    out = {k: detail[k] for k in _TX_KEYS}
    out["data_lag_sec"] = float(out["data_lag_sec"])  # a float field: 0 is written 0.0
    if order is not None:
        amount = order.get("amount")
        if amount is not None and (not isinstance(amount, str) or not _DECIMAL.fullmatch(amount)):
            return None
        out["payment_order"] = {k: order[k] for k in _ORDER_KEYS}
    return orjson.dumps(out)


class AsyncLookups:
    """``GET /admin/tx/{id}`` on the event loop (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        pool: AsyncPool,
        clock: Callable[[], datetime],
        kafka_group: str | None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.kafka_group = kafka_group
        self._sql = positional(engine, queries._tx_bundle_statement(), "tx_id")
        self._beats_sql = positional(engine, _HEARTBEATS, "group")
        self._layout: _Layout | None = None

    @staticmethod
    def _columns(names: list[str]) -> _Layout:
        """Where the entry's, order's and pair's columns are in the row, and their names."""
        keys: dict[str, list[str]] = {}
        starts: list[int] = []
        for prefix in ("le", "po", "pr"):
            idx = [i for i, n in enumerate(names) if n.startswith(prefix + "__")]
            assert idx == list(range(idx[0], idx[-1] + 1))
            starts.append(idx[0])
            keys[prefix] = [names[i][len(prefix) + 2 :] for i in idx]
        end = starts[2] + len(keys["pr"])
        return starts[0], starts[1], starts[2], end, keys

    async def tx(self, tx_id: str) -> dict[str, Any]:
        """The same answer as :meth:`api.service.Service.tx` without ``as_of``."""
        try:
            try:
                row, now, consumer_lag = await self._read(tx_id)
            except LOST:
                # pooled connections may have died while idle (server restart, idle
                # timeout): drop the idle ones; a read is safe to repeat once, afresh
                self.pool.discard_idle()
                row, now, consumer_lag = await self._read(tx_id)
        except FAILED as exc:
            raise ProblemError(503, UNAVAILABLE) from exc
        layout = self._layout
        if layout is None:
            layout = self._layout = self._columns(list(row.keys()))
        le, po, pr, end, keys = layout
        values = tuple(row)
        fresh = queries.freshness_with(now, _Fresh(*values[:3]), consumer_lag)
        tx = dict(zip(keys["le"], values[le:po], strict=True))
        if tx["tx_id"] is None:
            raise ProblemError(
                404,
                f"tx {tx_id} not found",
                data_lag_sec=fresh.data_lag_sec,
                synced_through=fresh.synced_through,
            )
        order = dict(zip(keys["po"], values[po:pr], strict=True))
        pair = dict(zip(keys["pr"], values[pr:end], strict=True))
        detail = lookups.tx_detail(
            tx,
            None if order["order_id"] is None else order,
            None if pair["payment_order_id"] is None else pair,
        )
        return queries.with_freshness(detail, fresh)

    async def _read(self, tx_id: str) -> tuple[Any, datetime, float | None]:
        async with self.pool.connection() as conn:
            row = await conn.fetchrow(self._sql, tx_id)  # prepared once per connection
            now = self.clock()
            consumer_lag = None
            if self.kafka_group:
                rows = await conn.fetch(self._beats_sql, self.kafka_group)
                synced = None if row is None or row[1] is None else str(row[1])
                beats = [(r[0], r[1]) for r in rows]
                consumer_lag = queries.consumer_lag_from(now, beats, synced)
        assert row is not None  # the statement always returns its one row
        return row, now, consumer_lag

    async def tx_response(self, tx_id: str) -> Response | dict[str, Any]:
        detail = await self.tx(tx_id)
        body = tx_json(detail)
        if body is None:
            return detail
        return Response(body, media_type="application/json")


# ---------------------------------------------------------------- audit


_COLUMNS = ", ".join((*HASHED_FIELDS, "prev_hash", "hash"))
_TABLE = f"{audit_log.schema}.{audit_log.name}"
# Lock waits end well before a request stops waiting for its record (AuditWriter.timeout,
# 10 s): a blocked chain fails the batch (503, no record) instead of committing it late.
_WAIT_MS = 5000
_BEGIN_LOCK = (
    f"BEGIN; SET LOCAL lock_timeout = {_WAIT_MS}; SET LOCAL statement_timeout = {_WAIT_MS}; "
    f"SELECT pg_advisory_xact_lock({int(_LOCK_KEY)})"
)
_HEAD = f"SELECT id, hash FROM {_TABLE} ORDER BY id DESC LIMIT 1"


def insert_commit(rows: list[dict[str, Any]]) -> str:
    """``INSERT …; COMMIT`` for one batch, as one simple-protocol query (one round trip).

    The batch is one JSON document in a dollar-quoted literal (no escaping inside; the
    tag is chosen so that it does not occur in the document), spread by the server into
    rows of the table's types.
    """
    document = orjson.dumps(rows).decode()
    tag = "$bo$"
    while tag in document:
        tag = f"$bo{secrets.token_hex(4)}$"
    return (
        f"INSERT INTO {_TABLE} ({_COLUMNS}) SELECT {_COLUMNS} FROM "
        f"json_populate_recordset(NULL::{_TABLE}, {tag}{document}{tag}::json); COMMIT"
    )


class AsyncAuditSink:
    """Group commit of audit records on the event loop, on a connection of its own.

    Requests append ``(entry, future)``; one task takes everything pending and appends it
    in one transaction (chain lock, head, inserts, commit) exactly as
    :func:`api.audit.append_records` does. Every future of a failed batch gets
    :class:`AuditUnavailable`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        max_batch: int = 256,
        connect_timeout: float = 5.0,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.max_batch = max_batch
        self.connect_timeout = connect_timeout
        self.on_commit = on_commit
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[AuditEntry, asyncio.Future[int]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._task = self.loop.create_task(self._run(), name="audit-writer")

    def submit(self, entry: AuditEntry) -> asyncio.Future[int]:
        assert self.loop is not None
        assert self._wakeup is not None
        future: asyncio.Future[int] = self.loop.create_future()
        self._pending.append((entry, future))
        self._wakeup.set()
        return future

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        self._fail(self._pending, AuditUnavailable("audit writer stopped"))
        self._pending = []
        await self._drop_connection()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                # a request that gave up has answered 503: its record must not land later
                batch = [(entry, future) for entry, future in batch if not future.done()]
                if not batch:
                    continue
                try:
                    ids = await self._commit([entry for entry, _ in batch])
                except asyncio.CancelledError:
                    self._fail(batch, AuditUnavailable("audit writer stopped"))
                    raise
                except Exception as exc:  # any failure means "not durable": fail every waiter
                    reason = _one_line(exc)
                    logger.error("audit write failed for {} records: {}", len(batch), reason)
                    await self._drop_connection()
                    self._fail(batch, AuditUnavailable(reason))
                    continue
                if self.on_commit is not None:
                    self.on_commit()
                for (_, future), record_id in zip(batch, ids, strict=True):
                    if not future.done():
                        future.set_result(record_id)

    async def _commit(self, entries: list[AuditEntry]) -> list[int]:
        """Append ``entries`` in three round trips: ``BEGIN; lock``, the head, and
        ``INSERT …; COMMIT``. Any failure drops the connection (the server rolls back); one
        found dead before anything was inserted (it died while idle) is replaced once, as
        the pool's pre-ping does on the sync path.
        """
        for attempt in (1, 2):
            conn = self._conn
            if conn is None or conn.is_closed():
                # not prepared: a cached plan of the head query made while the log was
                # empty (seq scan + sort) would be kept as it grows — 6 ms at 20,000 records
                conn = self._conn = await connect(self.dsn, self.connect_timeout, prepared=False)
            try:
                await conn.execute(_BEGIN_LOCK)
                head = await conn.fetchrow(_HEAD)
            except LOST:
                await self._drop_connection()
                if attempt == 2:
                    raise
                continue
            last_id, prev = (0, None) if head is None else (int(head[0]), str(head[1]))
            rows = chain_rows(entries, last_id, prev)
            await conn.execute(insert_commit(rows))
            if conn.is_in_transaction():
                raise AuditUnavailable("audit commit did not complete")
            return [int(r["id"]) for r in rows]
        raise AssertionError("unreachable")

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)

    @staticmethod
    def _fail(batch: list[tuple[AuditEntry, asyncio.Future[int]]], error: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)


def _one_line(exc: BaseException) -> str:
    text_ = str(exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
