"""The append-only, hash-chained event log (SPEC §3).

Append protocol, one database transaction per batch:

1. take the log's writer lock (PostgreSQL: a transaction-scoped advisory lock;
   SQLite: the database write lock from ``BEGIN IMMEDIATE``), so positions are
   assigned in commit order and a reader never sees N+1 before N;
2. read the head (last position and hash);
3. drop events whose ``event_id`` is already stored (or repeats within the batch);
4. insert the rest with ``position = head + 1 …`` and their chain hashes, the batch's
   dead letters, and whatever the caller adds in the same transaction (Kafka offsets);
5. on PostgreSQL, ``NOTIFY bo_events`` so projection runners wake up at commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, insert, select, text

from eventlog.db import is_sqlite, write_tx
from eventlog.decode import Change, decode_bytes, load_json, parse, to_change
from eventlog.errors import DecodeError
from eventlog.identity import GENESIS, chain_hash, event_id
from eventlog.metrics import count_ingest
from eventlog.redact import redact_text, redact_tree
from eventlog.schema import dead_letters, events
from eventlog.timeutil import now_text

_LOCK_KEY = 0x626F6C6F67  # "bolog"
NOTIFY_CHANNEL = "bo_events"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a record came from: Kafka coordinates or a file line."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A valid change, redacted and identified, ready to append."""

    event_id: str
    change: Change
    payload: bytes
    redacted_paths: list[str]
    source: SourceRef


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that cannot be understood; becomes a dead letter."""

    reason: str
    raw: bytes  # redacted
    source: SourceRef


@dataclass(frozen=True, slots=True)
class Tombstone:
    source: SourceRef


Outcome = Prepared | Rejected | Tombstone


@dataclass(slots=True)
class AppendResult:
    appended: int = 0
    duplicate: int = 0
    dead_letter: int = 0
    tombstone: int = 0
    positions: list[int] = field(default_factory=list)
    head: int = 0

    def add(self, other: AppendResult) -> None:
        self.appended += other.appended
        self.duplicate += other.duplicate
        self.dead_letter += other.dead_letter
        self.tombstone += other.tombstone
        self.positions += other.positions
        self.head = max(self.head, other.head)

    def summary(self) -> dict[str, int]:
        return {
            "appended": self.appended,
            "duplicate": self.duplicate,
            "dead_letter": self.dead_letter,
            "tombstone": self.tombstone,
        }


def prepare(raw: bytes | None, source: SourceRef = SourceRef()) -> Outcome:
    """Turn one received value into a :class:`Prepared`, :class:`Rejected` or :class:`Tombstone`.

    Never raises for bad input: every failure becomes a reason.
    """
    if raw is None:
        return Tombstone(source)
    try:
        parsed = parse(raw)
        if parsed is None:
            return Tombstone(source)
        change = to_change(parsed)
    except DecodeError as exc:
        return Rejected(reason=str(exc), raw=redact_raw(raw), source=source)
    payload = orjson.dumps(parsed.document, default=_exact_number) if parsed.rewritten else raw
    return Prepared(
        event_id=event_id(parsed, change),
        change=change,
        payload=payload,
        redacted_paths=parsed.redacted_paths,
        source=source,
    )


def _exact_number(value: Any) -> Any:
    # Decimals and big ints re-serialised as JSON numbers with their own text.
    return orjson.Fragment(str(value).encode())


def redact_raw(raw: bytes) -> bytes:
    """Redact bytes for a dead letter: structurally when they are JSON, textually otherwise."""
    try:
        doc = load_json(raw)
    except DecodeError:
        return redact_text(raw)
    found: list[str] = []
    if isinstance(doc, dict | list) and redact_tree(doc, "", found):
        return orjson.dumps(doc, default=_exact_number)
    return raw


class EventLog:
    """Append to and read the log; one instance per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(
        self,
        outcomes: Sequence[Outcome],
        *,
        also: Callable[[Connection], None] | None = None,
    ) -> AppendResult:
        """Append a batch in one transaction (see the module docstring for the protocol)."""
        with write_tx(self.engine) as conn:
            result = append_in(conn, outcomes)
            if also is not None:
                also(conn)
        count_ingest(result.appended, result.duplicate, result.dead_letter, result.tombstone)
        return result

    def head(self) -> int:
        with self.engine.connect() as conn:
            return head_position(conn)


def _lock(conn: Connection) -> None:
    if not is_sqlite(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def head_position(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one())


def _head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(
        select(events.c.position, events.c.hash).order_by(events.c.position.desc()).limit(1)
    ).first()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def _known(conn: Connection, ids: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        known.update(
            conn.execute(select(events.c.event_id).where(events.c.event_id.in_(chunk))).scalars()
        )
    return known


def append_in(conn: Connection, outcomes: Sequence[Outcome]) -> AppendResult:
    """Append inside the caller's write transaction."""
    result = AppendResult()
    prepared = [o for o in outcomes if isinstance(o, Prepared)]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    result.tombstone = sum(isinstance(o, Tombstone) for o in outcomes)
    now = now_text()
    _lock(conn)
    position, prev = _head(conn)
    seen = _known(conn, [p.event_id for p in prepared]) if prepared else set()
    rows: list[dict[str, Any]] = []
    for item in prepared:
        if item.event_id in seen:
            result.duplicate += 1
            continue
        seen.add(item.event_id)
        position += 1
        digest = chain_hash(prev, position, item.event_id, item.payload)
        rows.append(_event_row(item, position, prev, digest, now))
        result.positions.append(position)
        prev = digest
    if rows:
        conn.execute(insert(events), rows)
        if not is_sqlite(conn):
            conn.execute(
                text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": str(position)}
            )
    if rejected:
        conn.execute(insert(dead_letters), [_dead_row(r, now) for r in rejected])
    result.appended = len(rows)
    result.dead_letter = len(rejected)
    result.head = position
    return result


def _event_row(item: Prepared, position: int, prev: str, digest: str, now: str) -> dict[str, Any]:
    change = item.change
    return {
        "position": position,
        "event_id": item.event_id,
        "source_topic": item.source.topic,
        "source_partition": item.source.partition,
        "source_offset": item.source.offset,
        "table_name": change.table,
        "op": change.op,
        "entity_key": change.entity_key,
        "group_key": change.group_key,
        "source_ts": change.source_ts,
        "ingested_at": now,
        "payload": item.payload,
        "redacted_paths": orjson.dumps(item.redacted_paths).decode(),
        "prev_hash": prev,
        "hash": digest,
    }


def _dead_row(item: Rejected, now: str) -> dict[str, Any]:
    return {
        "received_at": now,
        "source_topic": item.source.topic,
        "source_partition": item.source.partition,
        "source_offset": item.source.offset,
        "source_file": item.source.file,
        "source_line": item.source.line,
        "reason": item.reason,
        "raw": item.raw,
        "status": "open",
    }


# ---------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One stored event as projections see it."""

    position: int
    change: Change
    ingested_at: str


def iter_events(
    conn: Connection,
    after: int = 0,
    *,
    upto: int | None = None,
    batch: int = 5000,
) -> Iterator[list[LoggedEvent]]:
    """Yield decoded events with ``position > after`` (and ``<= upto``) in batches."""
    while True:
        query = (
            select(events.c.position, events.c.payload, events.c.ingested_at)
            .where(events.c.position > after)
            .order_by(events.c.position)
            .limit(batch)
        )
        if upto is not None:
            query = query.where(events.c.position <= upto)
        rows = conn.execute(query).all()
        if not rows:
            return
        yield [LoggedEvent(int(r[0]), decode_bytes(bytes(r[1])), str(r[2])) for r in rows]
        after = int(rows[-1][0])
