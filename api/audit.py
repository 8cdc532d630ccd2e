"""The fail-closed, hash-chained audit log (SPEC §7).

Record chain: ``id`` is gapless (1, 2, 3 …) and
``hash = SHA-256(prev_hash as 32 raw bytes ‖ canonical JSON of the stored record)``,
where the canonical JSON holds every stored column except ``prev_hash`` and ``hash``
(``id, at, actor, roles, method, path, action, resource_type, resource_id,
result_count, status, ip, user_agent, request_id``; ``roles`` as its stored JSON
text), keys sorted, no whitespace, UTF-8. The first record's ``prev_hash`` is 64 zeros.
Values are stored and hashed as JSON strings, so CR/LF in a field stays inside that
field and cannot forge another record.

Group commit: requests hand their record to :class:`AuditWriter`; one thread takes
everything queued, and in one transaction (holding the chain's lock) appends the
batch with consecutive ids. Each request waits for *its* batch to commit before its
response is sent; if the commit fails, every request in the batch gets 503. On
PostgreSQL, once the app has started, records from the server's event loop go to
:class:`api.aio.AsyncAuditSink` instead (the same batches on the loop, no thread hop).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson
from loguru import logger
from sqlalchemy import Connection, Engine, and_, insert, select, text

from eventlog.db import is_sqlite, write_tx
from eventlog.errors import CheckFailed, UsageError
from eventlog.schema import audit_log

if TYPE_CHECKING:
    from api.aio import AsyncAuditSink

GENESIS = "0" * 64
_LOCK_KEY = 0x626F617564  # "boaud"
_LIMITS = {"path": 2048, "user_agent": 512, "resource_id": 256, "actor": 256, "request_id": 128}
HASHED_FIELDS = (
    "id",
    "at",
    "actor",
    "roles",
    "method",
    "path",
    "action",
    "resource_type",
    "resource_id",
    "result_count",
    "status",
    "ip",
    "user_agent",
    "request_id",
)


class AuditUnavailable(Exception):
    """The audit record could not be made durable; the request must get 503."""


class AuditChainBroken(CheckFailed):
    def __init__(self, record_id: int, reason: str) -> None:
        super().__init__(f"audit chain broken at record {record_id}: {reason}")
        self.record_id = record_id
        self.reason = reason


@dataclass(slots=True)
class AuditEntry:
    """One request's record before it gets its place in the chain."""

    at: str
    actor: str | None
    roles: list[str]
    method: str
    path: str
    action: str | None
    resource_type: str | None
    resource_id: str | None
    result_count: int | None
    status: int
    ip: str | None
    user_agent: str | None
    request_id: str

    def row(self) -> dict[str, Any]:
        """Column values, bounded and NUL-free (PostgreSQL text cannot hold NUL)."""
        values = {name: getattr(self, name) for name in _FIELDS}  # not asdict: no deep copy
        for name, value in values.items():
            if isinstance(value, str):
                value = value.replace("\x00", "\ufffd")
                limit = _LIMITS.get(name)
                values[name] = value[:limit] if limit else value
        values["roles"] = orjson.dumps([r.replace("\x00", "\ufffd")[:128] for r in self.roles])
        values["roles"] = values["roles"].decode()
        return values


_FIELDS = tuple(f.name for f in fields(AuditEntry))


def canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps({k: record[k] for k in HASHED_FIELDS}, option=orjson.OPT_SORT_KEYS)


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(canonical(record))
    return digest.hexdigest()


def _lock(conn: Connection) -> None:
    if not is_sqlite(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def append_records(conn: Connection, entries: Sequence[AuditEntry]) -> list[int]:
    """Append in the caller's write transaction; return the ids given."""
    _lock(conn)
    head = conn.execute(
        select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
    ).first()
    last_id, prev = (0, GENESIS) if head is None else (int(head[0]), str(head[1]))
    rows = chain_rows(entries, last_id, prev)
    conn.execute(insert(audit_log), rows)
    return [r["id"] for r in rows]


def chain_rows(
    entries: Sequence[AuditEntry], last_id: int, prev: str | None
) -> list[dict[str, Any]]:
    """The stored rows of ``entries`` appended after record ``last_id`` whose hash is
    ``prev`` (``None``: the chain is empty)."""
    prev = GENESIS if prev is None else prev
    rows = []
    for entry in entries:
        last_id += 1
        row = entry.row()
        row["id"] = last_id
        row["prev_hash"] = prev
        row["hash"] = prev = record_hash(prev, row)
        rows.append(row)
    return rows


_STOP = object()


class AuditWriter:
    """Group commit of audit records from concurrent requests (see the module docstring)."""

    def __init__(self, engine: Engine, *, max_batch: int = 256, timeout: float = 10.0) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.timeout = timeout
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.commits = 0  # batches made durable
        self.submitted = 0  # records handed in (for tests and metrics of batching)
        self._sink: AsyncAuditSink | None = None

    def attach(self, sink: AsyncAuditSink | None) -> None:
        """Send records written from ``sink``'s event loop through it (``None``: detach)."""
        self._sink = sink

    def count_commit(self) -> None:
        self.commits += 1

    def submit(self, entry: AuditEntry) -> Future[int]:
        """Queue a record; the future resolves to its id once it is durable."""
        self._ensure_started()
        future: Future[int] = Future()
        self.submitted += 1
        self._queue.put((entry, future))
        return future

    def write(self, entry: AuditEntry) -> int:
        """Block until the record is durable; :class:`AuditUnavailable` if it cannot be."""
        future = self.submit(entry)
        try:
            return future.result(timeout=self.timeout)
        except AuditUnavailable:
            raise
        except Exception as exc:
            future.cancel()  # not written later: see _commit
            raise AuditUnavailable(str(exc) or type(exc).__name__) from exc

    async def awrite(self, entry: AuditEntry) -> int:
        """Await durability from an event loop (one loop wake-up per batch, not per record)."""
        loop = asyncio.get_running_loop()
        sink = self._sink
        waiter: asyncio.Future[int]
        if sink is not None and sink.loop is loop:
            waiter = sink.submit(entry)
            self.submitted += 1
        else:
            self._ensure_started()
            waiter = loop.create_future()
            self.submitted += 1
            self._queue.put((entry, _LoopWaiter(loop, waiter)))
        try:
            return await asyncio.wait_for(waiter, self.timeout)
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise AuditUnavailable(str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=self.timeout)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            try:
                self._commit(batch)
            except Exception:  # never let the writer die: later requests would all time out
                logger.exception("audit writer: unexpected error; {} waiters failed", len(batch))
                self._fail(batch)

    def _commit(self, batch: list[tuple[AuditEntry, Waiter]]) -> None:
        # A request that stopped waiting has answered 503: its record must not land later
        # claiming what it would have sent. Lock waits end well before that timeout, so a
        # blocked database fails the batch (503, no record) instead of committing it late.
        batch = [item for item in batch if not _abandoned(item[1])]
        if not batch:
            return
        try:
            with write_tx(self.engine, wait=self.timeout / 2) as conn:
                ids: list[int | BaseException] = list(
                    append_records(conn, [entry for entry, _ in batch])
                )
        except Exception as exc:  # any failure means "not durable": fail every waiter
            logger.error("audit write failed for {} records: {}", len(batch), _one_line(exc))
            ids = [AuditUnavailable(_one_line(exc))] * len(batch)
        else:
            self.commits += 1
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], Any]]] = {}
        for (_, waiter), outcome in zip(batch, ids, strict=True):
            if isinstance(waiter, _LoopWaiter):
                by_loop.setdefault(waiter.loop, []).append((waiter.future, outcome))
            elif not waiter.done():
                with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
                    if isinstance(outcome, BaseException):
                        waiter.set_exception(outcome)
                    else:
                        waiter.set_result(outcome)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                continue

    @staticmethod
    def _fail(batch: list[tuple[AuditEntry, Waiter]]) -> None:
        error = AuditUnavailable("audit writer error")
        for _, waiter in batch:
            if isinstance(waiter, _LoopWaiter):
                loop, future = waiter.loop, waiter.future
                with contextlib.suppress(RuntimeError):  # the loop may have closed
                    loop.call_soon_threadsafe(_settle, [(future, error)])
            elif not waiter.done():
                waiter.set_exception(error)


@dataclass(frozen=True, slots=True)
class _LoopWaiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]


Waiter = Future[int] | _LoopWaiter


def _abandoned(waiter: Waiter) -> bool:
    """Whether nobody waits for this record any more (its request timed out: 503)."""
    return waiter.future.done() if isinstance(waiter, _LoopWaiter) else waiter.done()


def _settle(items: list[tuple[asyncio.Future[int], Any]]) -> None:
    for future, outcome in items:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


# ---------------------------------------------------------------- verify and read


@dataclass(frozen=True, slots=True)
class AuditReport:
    records: int
    head_hash: str


def verify_audit(engine: Engine, *, batch: int = 5000) -> AuditReport:
    """Walk the audit chain from id 1; raise :class:`AuditChainBroken` at the first bad record."""
    expected, prev, count = 0, GENESIS, 0
    with engine.connect() as conn:
        while True:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.id > expected)
                .order_by(audit_log.c.id)
                .limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                expected += 1
                record = row._asdict()
                if int(record["id"]) != expected:
                    raise AuditChainBroken(expected, f"record missing (next is {record['id']})")
                if record["prev_hash"] != prev:
                    raise AuditChainBroken(expected, "prev_hash does not link to the previous")
                try:
                    digest = record_hash(prev, record)
                except (TypeError, ValueError) as exc:  # a value rewritten with another type
                    raise AuditChainBroken(
                        expected, f"a stored value has the wrong type ({exc})"
                    ) from exc
                if digest != record["hash"]:
                    raise AuditChainBroken(expected, "hash does not match the record")
                prev = record["hash"]
                count += 1
    return AuditReport(records=count, head_hash=prev)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    resource_id: str | None = None
    since: str | None = None  # inclusive, fixed-width UTC text
    until: str | None = None  # exclusive


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """Inverse of :func:`encode_cursor`; :class:`UsageError` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise UsageError("cursor is not valid") from exc
    if (
        not isinstance(values, list)
        or len(values) != len(shape)
        or not all(
            isinstance(v, t) and not isinstance(v, bool) and _storable(v)
            for v, t in zip(values, shape, strict=True)
        )
    ):
        raise UsageError("cursor is not valid")
    return values


def _storable(value: Any) -> bool:
    """Whether a cursor value is one the database could have given: an id within bigint,
    text without NUL (a tampered cursor outside that is the client's error, a 422 — not a
    database failure, a 503)."""
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, str):
        return "\x00" not in value
    return True


def list_audit(
    conn: Connection, where: AuditFilter, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Records newest first, with an opaque cursor for the next page."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit + 1)
    conditions = []
    if where.actor is not None:
        conditions.append(audit_log.c.actor == where.actor)
    if where.resource_id is not None:
        conditions.append(audit_log.c.resource_id == where.resource_id)
    if where.since is not None:
        conditions.append(audit_log.c.at >= where.since)
    if where.until is not None:
        conditions.append(audit_log.c.at < where.until)
    if cursor is not None:
        (before,) = decode_cursor(cursor, (int,))
        conditions.append(audit_log.c.id < before)
    if conditions:
        query = query.where(and_(*conditions))
    rows = [r._asdict() for r in conn.execute(query).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row["roles"] = orjson.loads(row["roles"])
    return rows, encode_cursor([rows[-1]["id"]]) if more and rows else None
