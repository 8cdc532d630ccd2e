"""The Kafka sync consumer: Debezium topics → the event log (SPEC §2.1, §2.4, §8, §9).

Offset protocol, per batch (the database is the source of truth for offsets):

1. poll records from the assigned partitions into a batch, until it is full
   (``batch_size``) or ``batch_ms`` have passed since its first record or the
   partitions have nothing more right now (a poll came back empty, or every assigned
   partition has been read up to its high watermark: a live stream is committed as
   soon as it is read — once its first record is ``linger_ms`` old, so that a stream of
   small polls shares transactions — and a backlog fills whole batches);
2. ``prepare`` each record (tombstones counted and skipped, malformed ones become
   dead letters);
3. in ONE database write transaction: read the stored next offsets of the batch's
   partitions, drop records the log already holds (a retried batch whose commit did
   land), append the rest, and store the new next offsets — refusing any that go
   backwards (:class:`OffsetRegression`) unless the partition was rewound on purpose;
4. only after that commit: produce the batch's dead letters to ``BO_DLQ_TOPIC`` (when
   set), then commit the same offsets to Kafka (best effort: the database wins).

On assignment a partition is paused until its position is resolved from the database:
the stored next offset, or the beginning when none is stored. When the broker has no
committed offset for the group although the database has one, the broker lost its
state (a restart with fresh storage, a recreated topic, an expired group): the
partition is rewound to the beginning with a warning, because the stored offset may
point past data that is new in the recreated log. A record arriving below the
expected offset (the broker reset an out-of-range position) is treated the same way.
Re-reading is safe: the log deduplicates by ``event_id``.

Faults: an unreachable broker is retried with capped exponential backoff; an
unreachable database pauses every partition (the group membership is kept alive by
polling), keeps the batch in memory and retries it until it commits.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from loguru import logger
from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from eventlog.db import is_sqlite, write_tx
from eventlog.errors import BoError, ConfigError, DatabaseUnavailable
from eventlog.gcpause import gc_paused
from eventlog.metrics import count_ingest
from eventlog.schema import consumer_heartbeats, kafka_offsets
from eventlog.settings import Settings
from eventlog.store import (
    Appendable,
    AppendResult,
    Rejected,
    SlimOutcome,
    SourceRef,
    Tombstone,
    append_in,
    prepare,
    prepare_slim,
    redact_raw,
    stage,
    unslim,
)
from eventlog.timeutil import now_text
from eventlog.workers import exit_with_parent

TopicPartitionKey = tuple[str, int]
DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError, DBAPIError, DatabaseUnavailable)
_instances = itertools.count()


class OffsetRegression(BoError):
    """A stored Kafka offset would move backwards without an explicit rewind."""

    def __init__(self, topic: str, partition: int, stored: int, proposed: int) -> None:
        super().__init__(
            f"offset for {topic}[{partition}] would go backwards: stored {stored}, "
            f"proposed {proposed}"
        )
        self.topic = topic
        self.partition = partition
        self.stored = stored
        self.proposed = proposed


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Tuning knobs; the defaults suit a loopback broker and a local database."""

    batch_size: int = 5000
    batch_ms: int = 50
    # A batch read to the partitions' end is committed once its first record is this old:
    # records arriving meanwhile share its transaction (and the projections' pass that its
    # NOTIFY wakes) instead of each poll's few records paying for their own.
    linger_ms: int = 10
    poll_ms: int = 200
    max_poll_interval_ms: int = 5000  # small: Tansu's group join waits for it
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    metadata_max_age_ms: int = 3000
    backoff_start: float = 0.2
    backoff_max: float = 5.0
    heartbeat_every: float = 1.0
    commit_timeout_ms: int = 5000
    check_crcs: bool = True
    fetch_max_wait_ms: int = 50  # an idle fetch returns this soon: bounds added latency
    bootstrap_timeout_ms: int = 5000  # one connection attempt; then back off and retry
    # Prepare in worker processes (None: one per CPU, at most 4, when the consumer is the
    # process's only thread — `bo consume` — so forking is safe; 0 or 1: never) when a
    # poll brings at least ``parallel_min`` records (a backlog); live traffic stays inline.
    prepare_workers: int | None = None
    parallel_min: int = 256
    prepare_chunk: int = 500  # records per worker task
    # Append a batch on a thread of its own while the main loop reads and prepares the
    # next (None: on PostgreSQL, not SQLite, whose single writer gains nothing from it).
    pipeline: bool | None = None


@dataclass(slots=True)
class Record:
    """A received Kafka record and what :func:`eventlog.store.prepare` made of it.

    ``outcome`` is ``None`` while a worker process prepares it (see :class:`Preparer`);
    every record of a batch is prepared before the batch is appended.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    outcome: Appendable | None

    @property
    def tp(self) -> TopicPartitionKey:
        return (self.topic, self.partition)

    @classmethod
    def received(
        cls, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Record:
        """Prepare the value now, outside any database transaction."""
        return cls(topic, partition, offset, key, prepare_one(topic, partition, offset, value))


def prepare_one(topic: str, partition: int, offset: int, value: bytes | None) -> Appendable:
    """What the log appends for one record: :func:`eventlog.store.prepare`, then
    :func:`eventlog.store.stage` (the same rows; cheap to send between processes)."""
    return stage(prepare(value, SourceRef(topic=topic, partition=partition, offset=offset)))


DLQ_VALUE_LIMIT = 900_000  # bytes: under the producer's 1 MiB request with key and headers


def dlq_record(
    topic: str, partition: int, offset: int, letter: Rejected
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The DLQ record of a dead letter: its (redacted) raw bytes, at most
    :data:`DLQ_VALUE_LIMIT` of them, and the reason and source coordinates as headers."""
    headers = [
        ("reason", letter.reason.encode()),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]
    value = letter.raw
    if len(value) > DLQ_VALUE_LIMIT:
        headers.append(("truncated_from", str(len(value)).encode()))
        value = value[:DLQ_VALUE_LIMIT]
    return value, headers


def dlq_key(key: bytes | None) -> bytes | None:
    """A DLQ record's key: the source record's, redacted like its value (Debezium keys a
    record by the row's primary key, which may be a credential column: SPEC §2.5)."""
    return None if key is None else redact_raw(key)


def prepare_values(values: list[bytes | None]) -> list[SlimOutcome]:
    """In a worker: :func:`eventlog.store.prepare_slim` of each received value (the
    consumer holds the records' coordinates: :func:`complete` adds them back)."""
    return [prepare_slim(value) for value in values]


def complete(rec: Record, value: bytes | None, slim: SlimOutcome) -> Appendable:
    """What :func:`prepare_one` gives for ``rec`` (received as ``value``), from what
    :func:`prepare_values` gave for it."""
    if isinstance(slim, tuple):
        return unslim(slim, value, rec.topic, rec.partition, rec.offset)
    source = SourceRef(topic=rec.topic, partition=rec.partition, offset=rec.offset)
    if isinstance(slim, Rejected):
        return Rejected(reason=slim.reason, raw=slim.raw, source=source)
    return Tombstone(source)


def prepare_records(records: list[Record], values: list[bytes | None]) -> None:
    """Prepare ``records`` (received as ``values``) in this process, as a worker would."""
    for rec, value, slim in zip(records, values, prepare_values(values), strict=True):
        rec.outcome = complete(rec, value, slim)


class Preparer:
    """Worker processes that prepare records while the consumer reads and appends.

    Parsing, redaction, decoding and identity cost several times what reading a record
    from Kafka and appending it cost; a backlog is therefore prepared in chunks by
    ``workers`` processes, submitted as the records are polled and collected, in order,
    when their batch is appended.

    The processes are forked by :meth:`start`, which the consumer calls before its Kafka
    client starts any thread (so no lock held by another thread is copied into them);
    each leaves as soon as the consumer is gone, even after ``kill -9``.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self.pool is None:
            context = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            )
            self.pool.submit(prepare_values, []).result()  # fork them now

    def submit(self, values: list[bytes | None]) -> Future[list[SlimOutcome]]:
        """Prepare received values (:func:`prepare_values`; :func:`complete` completes them)."""
        if self.pool is None:
            raise RuntimeError("Preparer.start() was not called")
        return self.pool.submit(prepare_values, values)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def default_prepare_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass(slots=True)
class ConsumeStats:
    """What one consumer run did (the ``bo consume --json`` summary)."""

    records: int = 0
    batches: int = 0
    rewinds: int = 0
    dlq_produced: int = 0
    db_retries: int = 0
    broker_retries: int = 0
    result: AppendResult = field(default_factory=AppendResult)

    def summary(self) -> dict[str, int]:
        return {
            "records": self.records,
            "batches": self.batches,
            **self.result.summary(),
            "rewinds": self.rewinds,
            "dlq_produced": self.dlq_produced,
            "db_retries": self.db_retries,
            "broker_retries": self.broker_retries,
        }


class Backoff:
    """Capped exponential backoff that waits on the stop event (never a blind sleep)."""

    def __init__(self, start: float, cap: float) -> None:
        self.start = start
        self.cap = cap
        self.delay = start

    def reset(self) -> None:
        self.delay = self.start

    def wait(self, stop: threading.Event) -> None:
        stop.wait(self.delay)
        self.delay = min(self.cap, self.delay * 2)


# ---------------------------------------------------------------- offsets in the database


def read_offsets(
    conn: Connection, tps: Iterable[TopicPartitionKey], *, lock: bool = False
) -> dict[TopicPartitionKey, int]:
    """Stored next offsets for the given partitions (absent when never stored).

    ``lock`` holds the rows until the transaction ends (PostgreSQL ``FOR UPDATE``; SQLite's
    write transaction already holds the database), so two members that briefly both own
    a partition during a rebalance cannot both act on the same stale offset.
    """
    wanted = set(tps)
    if not wanted:
        return {}
    topics = sorted({t for t, _ in wanted})
    if is_sqlite(conn):
        query = select(
            kafka_offsets.c.topic, kafka_offsets.c.partition, kafka_offsets.c.next_offset
        ).where(kafka_offsets.c.topic.in_(topics))
        rows = conn.execute(query.order_by(kafka_offsets.c.topic, kafka_offsets.c.partition))
    else:  # plain SQL: no statement to build and compile per batch (see _PG_READ_OFFSETS)
        sql = _PG_READ_OFFSETS_LOCKED if lock else _PG_READ_OFFSETS
        rows = conn.exec_driver_sql(sql, {"topics": topics})
    found = {(str(t), int(p)): int(o) for t, p, o in rows}
    return {tp: o for tp, o in found.items() if tp in wanted}


# The consumer's per-batch statements on PostgreSQL, as SQL text run by the driver: a
# live batch (tens of records) paid ~0.2-0.6 ms of client CPU per statement for building
# and compiling the SQLAlchemy constructs (the offsets executemany the most). Same rows,
# same locks; SQLite keeps the Core statements (its schema names are translated away).
_OFFSETS = f"{kafka_offsets.schema}.{kafka_offsets.name}"
_PG_READ_OFFSETS = (
    f"SELECT topic, partition, next_offset FROM {_OFFSETS} "
    "WHERE topic = ANY(%(topics)s) ORDER BY topic, partition"  # the lock order
)
_PG_READ_OFFSETS_LOCKED = _PG_READ_OFFSETS + " FOR UPDATE"
_PG_MOVE_OFFSETS = (
    f"UPDATE {_OFFSETS} AS k SET next_offset = v.o, updated_at = %(now)s "
    "FROM unnest(%(t)s::text[], %(p)s::int[], %(o)s::bigint[]) AS v(t, p, o) "
    "WHERE k.topic = v.t AND k.partition = v.p"
)


def write_offsets(
    conn: Connection,
    next_offsets: dict[TopicPartitionKey, int],
    *,
    stored: dict[TopicPartitionKey, int] | None = None,
    rewound: frozenset[TopicPartitionKey] = frozenset(),
) -> None:
    """Store next offsets per partition in the caller's transaction.

    Raises :class:`OffsetRegression` if one would go below the stored value, unless its
    partition is in ``rewound`` (the broker's log restarted; see the module docstring).
    """
    if stored is None:
        stored = read_offsets(conn, next_offsets)
    now = now_text()
    moved: list[dict[str, Any]] = []
    for (topic, partition), offset in sorted(next_offsets.items()):
        previous = stored.get((topic, partition))
        if previous is None:
            conn.execute(
                insert(kafka_offsets).values(
                    topic=topic, partition=partition, next_offset=offset, updated_at=now
                )
            )
            continue
        if offset < previous and (topic, partition) not in rewound:
            raise OffsetRegression(topic, partition, previous, offset)
        if offset != previous:
            moved.append({"t": topic, "p": partition, "o": offset})
    if moved and not is_sqlite(conn):  # one statement for every partition
        conn.exec_driver_sql(
            _PG_MOVE_OFFSETS,
            {
                "now": now,
                "t": [m["t"] for m in moved],
                "p": [m["p"] for m in moved],
                "o": [m["o"] for m in moved],
            },
        )
    elif moved:
        conn.execute(
            update(kafka_offsets)
            .where(
                kafka_offsets.c.topic == bindparam("t"),
                kafka_offsets.c.partition == bindparam("p"),
            )
            .values(next_offset=bindparam("o"), updated_at=now),
            moved,
        )


@dataclass(slots=True)
class Durable:
    """What one batch made durable."""

    result: AppendResult
    offsets: dict[TopicPartitionKey, int]
    rejected: list[tuple[Record, Rejected]]


def next_offsets_of(records: Sequence[Record]) -> dict[TopicPartitionKey, int]:
    """The next offset per partition once ``records`` are durable."""
    next_offsets: dict[TopicPartitionKey, int] = {}
    get = next_offsets.get
    for rec in records:
        key = (rec.topic, rec.partition)
        after = rec.offset + 1
        if after > get(key, 0):
            next_offsets[key] = after
    return next_offsets


def append_batch(
    engine: Engine,
    records: Sequence[Record],
    *,
    rewound: frozenset[TopicPartitionKey] = frozenset(),
    also: Callable[[Connection], None] | None = None,
) -> Durable:
    """Step 3 of the protocol: append prepared records and store offsets in one transaction
    (``also`` adds to it: the consumer's heartbeat when the batch makes it caught up)."""
    next_offsets = next_offsets_of(records)
    lowest: dict[TopicPartitionKey, int] = {}
    for rec in records:
        key = (rec.topic, rec.partition)
        if rec.offset < lowest.get(key, rec.offset + 1):
            lowest[key] = rec.offset
    with write_tx(engine) as conn:
        stored = read_offsets(conn, next_offsets, lock=True)
        if not rewound and all(low >= stored.get(tp, 0) for tp, low in lowest.items()):
            fresh = list(records)  # the usual case: nothing below the stored offsets
        else:
            fresh = [r for r in records if r.tp in rewound or r.offset >= stored.get(r.tp, 0)]
        result = append_in(conn, [_outcome(r) for r in fresh])
        write_offsets(conn, next_offsets, stored=stored, rewound=rewound)
        if also is not None:
            also(conn)
    count_ingest(result.appended, result.duplicate, result.dead_letter, result.tombstone)
    rejected = [(r, r.outcome) for r in fresh if isinstance(r.outcome, Rejected)]
    return Durable(result, next_offsets, rejected)


def _outcome(rec: Record) -> Appendable:
    if rec.outcome is None:
        raise RuntimeError(f"record {rec.topic}[{rec.partition}]@{rec.offset} not prepared")
    return rec.outcome


# ---------------------------------------------------------------- heartbeats


def member_id(group: str) -> str:
    """``host:pid/group``; a second consumer in the same process gets ``#n``."""
    n = next(_instances)
    suffix = f"#{n}" if n else ""
    return f"{socket.gethostname()}:{os.getpid()}{suffix}/{group}"


def format_assigned(
    partitions: Iterable[TopicPartitionKey], lags: Mapping[TopicPartitionKey, int]
) -> str:
    """``topic[p]=lag,…`` in partition order; a partition whose lag is unknown has no ``=``.
    Kafka topic names hold only ``[A-Za-z0-9._-]``, so the text parses back unambiguously."""
    parts = []
    for topic, partition in sorted(partitions):
        lag = lags.get((topic, partition))
        parts.append(f"{topic}[{partition}]" + ("" if lag is None else f"={lag}"))
    return ",".join(parts)


def parse_assigned(text: str) -> dict[TopicPartitionKey, int]:
    """The known lags of a heartbeat's ``assigned`` (:func:`format_assigned`)."""
    lags: dict[TopicPartitionKey, int] = {}
    for part in text.split(","):
        where, sep, lag = part.partition("=")
        topic, bracket, rest = where.rpartition("[")
        if not (topic and sep and bracket and rest.endswith("]") and lag.isdigit()):
            continue
        partition = rest[:-1]
        if partition.isdigit():
            lags[(topic, int(partition))] = int(lag)
    return lags


def write_heartbeat(
    engine: Engine,
    member: str,
    group: str,
    *,
    lag: int,
    caught_up: bool,
    assigned: str,
) -> None:
    """Upsert this member's heartbeat; ``caught_up_at`` moves only when lag is 0."""
    with write_tx(engine) as conn:
        write_heartbeat_in(conn, member, group, lag=lag, caught_up=caught_up, assigned=assigned)


def write_heartbeat_in(
    conn: Connection,
    member: str,
    group: str,
    *,
    lag: int,
    caught_up: bool,
    assigned: str,
) -> None:
    """:func:`write_heartbeat` in the caller's transaction."""
    now = now_text()
    values: dict[str, Any] = {
        "group_id": group,
        "heartbeat_at": now,
        "lag_records": lag,
        "assigned": assigned,
    }
    if caught_up:
        values["caught_up_at"] = now
    if not is_sqlite(conn):  # one statement (an upsert) instead of UPDATE, then INSERT if new
        conn.exec_driver_sql(
            _PG_HEARTBEAT_CAUGHT_UP if caught_up else _PG_HEARTBEAT, {"member": member, **values}
        )
        return
    done = conn.execute(
        update(consumer_heartbeats).where(consumer_heartbeats.c.member == member).values(values)
    )
    if done.rowcount == 0:
        conn.execute(insert(consumer_heartbeats).values(member=member, **values))


def _pg_heartbeat(columns: tuple[str, ...]) -> str:
    table = f"{consumer_heartbeats.schema}.{consumer_heartbeats.name}"
    names = ("member", *columns)
    return (
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"VALUES ({', '.join(f'%({c})s' for c in names)}) "
        f"ON CONFLICT (member) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in columns)}"
    )


_HEARTBEAT_COLUMNS = ("group_id", "heartbeat_at", "lag_records", "assigned")
_PG_HEARTBEAT = _pg_heartbeat(_HEARTBEAT_COLUMNS)
_PG_HEARTBEAT_CAUGHT_UP = _pg_heartbeat((*_HEARTBEAT_COLUMNS, "caught_up_at"))


# ---------------------------------------------------------------- the consumer


def check_kafka_settings(settings: Settings) -> None:
    """Refuse missing or malformed Kafka settings at start, with one clear line."""
    if not settings.kafka_bootstrap:
        raise ConfigError("BO_KAFKA_BOOTSTRAP is not set: the consumer needs a broker")
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"BO_KAFKA_BOOTSTRAP: expected host:port[,host:port...], got {server.strip()!r}"
            )
    if not settings.topics:
        raise ConfigError("BO_KAFKA_TOPICS is empty: name at least one topic")
    for topic in settings.topics:
        if not _LEGAL_TOPIC.fullmatch(topic) or topic in (".", ".."):
            raise ConfigError(
                f"BO_KAFKA_TOPICS: {topic!r} is not a legal Kafka topic name "
                "(1 to 249 of letters, digits, '.', '_' and '-')"
            )
    dlq = (settings.dlq_topic or "").strip()
    if dlq and (not _LEGAL_TOPIC.fullmatch(dlq) or dlq in (".", "..")):
        raise ConfigError(f"BO_DLQ_TOPIC: {dlq!r} is not a legal Kafka topic name")
    if settings.dlq_topic is not None and settings.dlq_topic.strip() in settings.topics:
        raise ConfigError("BO_DLQ_TOPIC must not be one of BO_KAFKA_TOPICS")
    if not settings.kafka_group.strip():
        raise ConfigError("BO_KAFKA_GROUP is empty: name the consumer group")
    cafile = settings.kafka_ssl_cafile
    if cafile and settings.kafka_security_protocol.endswith("SSL") and not os.path.isfile(cafile):
        # kafka-python would only fail each connection, and the consumer retry for ever
        raise ConfigError(f"BO_KAFKA_SSL_CAFILE: no such file: {cafile}")


_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's own rule for topic names


@dataclass(slots=True)
class _Appending:
    """A batch handed to the appender thread, and what its post-commit steps need."""

    future: Future[Durable]
    records: list[Record]
    rewound: frozenset[TopicPartitionKey]
    beat: Callable[[Connection], None] | None
    rewound_since: set[TopicPartitionKey] = field(default_factory=set)


class SyncConsumer:
    """One member of the consumer group (see the module docstring for the protocol)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        stop: threading.Event,
        config: ConsumerConfig | None = None,
    ) -> None:
        check_kafka_settings(settings)
        self.settings = settings
        self.engine = engine
        self.stop = stop
        self.config = config or ConsumerConfig()
        self.group = settings.kafka_group
        self.member = member_id(self.group)
        self.stats = ConsumeStats()
        self.consumer: Any = None
        self.producer: Any = None
        self.batch: list[Record] = []
        self.batch_started = 0.0
        pipeline = self.config.pipeline
        pipeline = not is_sqlite(engine) if pipeline is None else pipeline
        self.appender = ThreadPoolExecutor(1, thread_name_prefix="bo-append") if pipeline else None
        self.appending: _Appending | None = None  # the batch being appended meanwhile
        workers = self.config.prepare_workers
        workers = default_prepare_workers() if workers is None else workers
        self.preparer = Preparer(workers) if workers > 1 else None
        # chunks being prepared, in batch order: (future outcomes, their records, values)
        self.inflight: deque[tuple[Future[list[SlimOutcome]], list[Record], list[bytes | None]]] = (
            deque()
        )
        self.pending: set[TopicPartitionKey] = set()  # assigned, position not yet resolved
        self.expected: dict[TopicPartitionKey, int] = {}  # next offset we expect to read
        self.durable: dict[TopicPartitionKey, int] = {}  # next offsets stored in the database
        self.rewound: set[TopicPartitionKey] = set()
        self.topic_ids: dict[str, Any] = {}  # topic → its id when first seen (re-creation)
        self.deferred_dlq: list[tuple[Record, Rejected]] = []  # flushed in a callback
        self.paused_for_db = False
        self.lags: dict[TopicPartitionKey, int] = {}  # records behind, from the last _lag()
        self.last_poll_empty = True
        self.last_heartbeat = 0.0
        self.missing_warned = 0.0
        self.broker_backoff = Backoff(self.config.backoff_start, self.config.backoff_max)
        # keep polling often enough to stay in the group while the database is down
        db_cap = min(self.config.backoff_max, self.config.max_poll_interval_ms / 2500)
        self.db_backoff = Backoff(self.config.backoff_start, db_cap)

    # -- lifecycle

    def run(self) -> ConsumeStats:
        """Consume until ``stop`` is set; finish and commit the current batch, then return."""
        logger.info("consumer {} starting on {}", self.member, self.settings.topics)
        try:
            self._start_preparer()  # before the Kafka client starts its threads
            while not self.stop.is_set():
                if self.consumer is None and not self._connect():
                    continue
                self._step()
            self._drain()
        finally:
            self._abandon_append()
            self._close()
            if self.preparer is not None:
                self.preparer.close()
            if self.appender is not None:
                self.appender.shutdown(wait=True)
        logger.info("consumer {} stopped: {}", self.member, self.stats.summary())
        return self.stats

    def _connect(self) -> bool:
        cfg = self.config
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=self.group,
                client_id=self.member,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=cfg.batch_size,
                max_poll_interval_ms=cfg.max_poll_interval_ms,
                session_timeout_ms=cfg.session_timeout_ms,
                heartbeat_interval_ms=cfg.heartbeat_interval_ms,
                metadata_max_age_ms=cfg.metadata_max_age_ms,
                allow_auto_create_topics=False,  # topics are provisioned, never guessed
                check_crcs=cfg.check_crcs,
                fetch_max_wait_ms=cfg.fetch_max_wait_ms,
                bootstrap_timeout_ms=cfg.bootstrap_timeout_ms,
                reconnect_backoff_max_ms=int(cfg.backoff_max * 1000),
                **self.settings.kafka_client_options(),
            )
            consumer.subscribe(self.settings.topics, listener=_Listener(self))
        except KafkaError as exc:
            self.stats.broker_retries += 1
            logger.warning(
                "broker unreachable ({}); retrying in {:.1f} s", exc, self.broker_backoff.delay
            )
            self._heartbeat(force=False)
            self.broker_backoff.wait(self.stop)
            return False
        self.consumer = consumer
        self.broker_backoff.reset()
        return True

    def _close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False)
            except Exception as exc:  # closing is best effort
                logger.warning("closing the consumer failed: {}", exc)
            self.consumer = None
        self.inflight.clear()
        if self.producer is not None:
            try:
                self.producer.close(timeout=5)
            except Exception as exc:
                logger.warning("closing the DLQ producer failed: {}", exc)
            self.producer = None

    def _drain(self) -> None:
        """On stop: append what is buffered (if the database answers) and commit it."""
        try:
            self._collect(sync=True)
            if not self.batch:
                self._commit_kafka(self.durable, sync=True)
                return
            while self.batch:
                self._flush(sync=True)
        except DB_ERRORS as exc:
            logger.warning(
                "stopping with an unflushed batch (database: {}); it will be re-read", exc
            )

    # -- one turn of the loop

    def _step(self) -> None:
        # No cyclic collection inside a turn: a batch's records are freed by reference
        # counting; the collector then runs at most once per turn, not every 700
        # allocations over the whole read-ahead (2.5-4 µs of CPU per record before).
        with gc_paused():
            self._turn()

    def _turn(self) -> None:
        try:
            if self.paused_for_db:
                self._retry_after_db_outage()
                return
            self._resolve_pending()
            self._poll()
            if self.appending is not None and self.appending.future.done():
                self._collect()
            self._rewind_recreated()
            if self.deferred_dlq:
                deferred, self.deferred_dlq = self.deferred_dlq, []
                self._produce_dlq(deferred)
            if self.batch and self._batch_due():
                self._flush()
            self._heartbeat(force=False)
        except OffsetRegression as exc:
            logger.error("{}; discarding the batch and re-reading from the database offsets", exc)
            self._restart_from_database({r.tp for r in self.batch})
        except IntegrityError as exc:  # a concurrent first write of the same partition
            logger.warning(
                "offset write raced ({}); re-reading from the database offsets", _first_line(exc)
            )
            self._restart_from_database({r.tp for r in self.batch})
        except DB_ERRORS as exc:
            self._database_down(exc)
        except KafkaError as exc:
            self.stats.broker_retries += 1
            logger.warning(
                "broker error ({}); retrying in {:.1f} s", exc, self.broker_backoff.delay
            )
            self.broker_backoff.wait(self.stop)
        except Exception:
            # Never crash the service: log with the traceback, reconnect, re-read from the
            # database offsets (nothing uncommitted is lost; the log dedupes re-reads).
            self.stats.broker_retries += 1
            logger.exception("unexpected consumer error; reconnecting")
            self._drop_batch()
            self.paused_for_db = False
            self._close()
            for state in (self.pending, self.expected, self.durable, self.rewound):
                state.clear()
            self.broker_backoff.wait(self.stop)

    def _poll(self) -> None:
        timeout = self.config.poll_ms
        if self.batch:
            age = time.monotonic() - self.batch_started
            wait = (
                self.config.batch_ms
                if age * 1000 >= self.config.linger_ms
                else (self.config.linger_ms)
            )
            timeout = max(0, int(wait - age * 1000))
        # with workers, read up to one batch ahead while the current one is prepared
        limit = self.config.batch_size * (2 if self.preparer is not None else 1)
        room = limit - len(self.batch)
        polled = self.consumer.poll(timeout_ms=timeout, max_records=max(1, room))
        items = [
            item
            for tp, part in polled.items()
            if (tp.topic, tp.partition) not in self.pending  # re-read after the seek
            for item in part
        ]
        fresh_batch = not self.batch
        if self.preparer is not None and len(items) >= self.config.parallel_min:
            self._accept_parallel(items)
        else:
            for item in items:
                self._accept(
                    Record.received(item.topic, item.partition, item.offset, item.key, item.value)
                )
        if items and fresh_batch:
            self.batch_started = time.monotonic()
        self.last_poll_empty = not items
        self.broker_backoff.reset()

    def _accept_parallel(self, items: list[Any]) -> None:
        """Accept records unprepared and hand their values to the workers in chunks."""
        size = self.config.prepare_chunk
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            records = [Record(i.topic, i.partition, i.offset, i.key, None) for i in chunk]
            values = [i.value for i in chunk]
            try:
                if self.preparer is None:
                    raise BrokenProcessPool("no prepare workers")
                self.inflight.append((self.preparer.submit(values), records, values))
            except BrokenProcessPool as exc:
                if self.preparer is not None:
                    self._lose_preparer(exc)
                prepare_records(records, values)
            for rec in records:
                self._accept(rec)

    def _settle(self, records: Sequence[Record]) -> None:
        """Wait for the workers to prepare ``records`` (chunks are collected in order)."""
        while any(r.outcome is None for r in records):
            if not self.inflight:
                raise RuntimeError("a record is neither prepared nor being prepared")
            future, chunk, values = self.inflight.popleft()
            try:
                slims = future.result()
            except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                self._lose_preparer(exc)
                prepare_records(chunk, values)
                continue
            for rec, value, slim in zip(chunk, values, slims, strict=True):
                rec.outcome = complete(rec, value, slim)

    def _start_preparer(self) -> None:
        if self.preparer is None:
            return
        if self.config.prepare_workers is None and threading.active_count() > 1:
            # e.g. `bo serve --with-consumer`: other threads may hold locks a fork copies
            self.preparer = None
            return
        try:
            self.preparer.start()
        except (OSError, BrokenProcessPool) as exc:
            self._lose_preparer(exc)

    def _lose_preparer(self, exc: BaseException) -> None:
        """Carry on preparing inline: a pool is not re-forked once Kafka threads run."""
        logger.warning("prepare workers unavailable ({}); preparing in this process", exc)
        if self.preparer is not None:
            self.preparer.close()
            self.preparer = None

    def _drop_batch(self) -> None:
        self._abandon_append()
        self.batch = []
        self.inflight.clear()  # their results are no longer wanted

    def _accept(self, rec: Record) -> None:
        expected = self.expected.get(rec.tp)
        if expected is not None and rec.offset < expected:
            self._mark_rewound(rec.tp, f"record at offset {rec.offset} below expected {expected}")
            self.batch = [r for r in self.batch if r.tp != rec.tp]
        self.expected[rec.tp] = rec.offset + 1
        self.batch.append(rec)

    def _rewind_recreated(self) -> None:
        """A topic deleted and created again under its name restarts at offset 0: the
        position and the stored offsets point into unrelated new data, and every record
        below them would be skipped. Its topic id (KIP-516) changes with it — seen in the
        client's metadata, refreshed every ``metadata_max_age_ms`` — so its partitions are
        rewound: read again from their beginning, duplicates dropped by event_id."""
        cluster = getattr(getattr(self.consumer, "_client", None), "cluster", None)
        if cluster is None:
            return
        for tp in list(self.consumer.assignment()):
            now = cluster.topic_id(tp.topic)
            known = self.topic_ids.setdefault(tp.topic, now)
            if now is None or known is None or now == known:
                if known is None:
                    self.topic_ids[tp.topic] = now
                continue
            self.topic_ids[tp.topic] = now
            logger.warning("topic {} was re-created (topic id {} → {})", tp.topic, known, now)
            for part in [p for p in self.consumer.assignment() if p.topic == tp.topic]:
                key = (part.topic, part.partition)
                self._mark_rewound(key, "the topic was re-created")
                self.batch = [r for r in self.batch if r.tp != key]
                self.expected.pop(key, None)
                self.consumer.seek_to_beginning(part)

    def _mark_rewound(self, tp: TopicPartitionKey, why: str) -> None:
        logger.warning(
            "{}[{}]: the broker's log restarted ({}); re-reading from its beginning, "
            "duplicates are dropped by event_id",
            tp[0],
            tp[1],
            why,
        )
        self.rewound.add(tp)
        self.stats.rewinds += 1
        if self.appending is not None:
            self.appending.rewound_since.add(tp)

    def _batch_due(self) -> bool:
        size = self.config.batch_size
        if len(self.batch) >= size:
            # A full batch still being prepared: read ahead (the workers prepare while
            # this process reads) until the next batch is full as well.
            ahead = len(self.batch) < 2 * size and not self.last_poll_empty
            return not (ahead and any(r.outcome is None for r in self.batch[:size]))
        age = time.monotonic() - self.batch_started
        if age >= self.config.batch_ms / 1000:
            return True
        if age < self.config.linger_ms / 1000:
            return False
        if self.last_poll_empty:
            return True
        return self._read_to_highwater()

    def _read_to_highwater(self) -> bool:
        """Whether every assigned partition has been read up to its last known high
        watermark: nothing more is there to fill the batch with, so waiting for
        ``batch_ms`` would only add latency (a live stream commits at once; a backlog
        still fills whole batches)."""
        if self.consumer is None or self.pending:
            return False
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                return False
            read = self.expected.get((tp.topic, tp.partition))
            if (read if read is not None else 0) < highwater:
                return False
        return True

    # -- steps 2 to 4

    def _flush(self, *, sync: bool = False, in_callback: bool = False) -> None:
        """Append the next batch (step 3), then the post-commit steps (step 4).

        With the appender thread (PostgreSQL), the append runs there while the main loop
        reads and prepares the next batch, and step 4 follows when it is collected: at
        the next flush, or as soon as the loop sees it done. One batch is in flight at
        a time, so the offsets are stored in batch order. ``sync`` (stopping) and
        ``in_callback`` append and collect at once.

        ``in_callback``: called from a rebalance callback, which kafka-python runs on its
        IO thread where blocking Kafka calls are refused: the offsets are committed
        asynchronously and the DLQ produce and heartbeat wait for the main loop.
        """
        self._collect(sync=sync, in_callback=in_callback)
        records = self.batch[: self.config.batch_size]
        self._settle(records)
        rewound = frozenset(self.rewound & {r.tp for r in records})
        # the heartbeat that says "caught up" rides in the batch's own transaction
        beat = None if in_callback else self._caught_up_beat(records)
        self.batch = self.batch[len(records) :]
        if self.batch:
            self.batch_started = time.monotonic()
        if self.appender is not None and not (sync or in_callback):
            future = self.appender.submit(
                append_batch, self.engine, records, rewound=rewound, also=beat
            )
            self.appending = _Appending(future, records, rewound, beat)
            return
        done: Future[Durable] = Future()
        try:
            done.set_result(append_batch(self.engine, records, rewound=rewound, also=beat))
        except BaseException as exc:  # raised by _collect, as for the threaded append
            done.set_exception(exc)
        self.appending = _Appending(done, records, rewound, beat)
        self._collect(sync=sync, in_callback=in_callback)

    def _collect(self, *, sync: bool = False, in_callback: bool = False) -> None:
        """Wait for the batch being appended and take step 4 for it; if its append failed,
        its records go back to the front of the batch (for the retry or the re-read) and
        the error is raised here."""
        appending, self.appending = self.appending, None
        if appending is None:
            return
        try:
            durable = appending.future.result()
        except BaseException:
            self.batch = appending.records + self.batch
            raise
        self.rewound -= appending.rewound - appending.rewound_since  # a later rewind stands
        self.durable.update(durable.offsets)
        self.stats.records += len(appending.records)
        self.stats.batches += 1
        self.stats.result.add(durable.result)
        self.db_backoff.reset()
        if in_callback:
            self.deferred_dlq += durable.rejected
            self._commit_kafka(durable.offsets, sync=False)
            return
        if durable.rejected:
            self._produce_dlq(durable.rejected)
        self._commit_kafka(durable.offsets, sync=sync)
        if appending.beat is not None:
            self.last_heartbeat = time.monotonic()
        else:
            self._heartbeat(force=False)

    def _abandon_append(self) -> None:
        """Wait for the batch being appended and forget it (its partitions are re-read
        from the database offsets, or another member owns them now)."""
        appending, self.appending = self.appending, None
        if appending is None:
            return
        try:
            appending.future.result()
        except Exception as exc:  # whatever it was, the database offsets say where to resume
            logger.debug("abandoned append failed: {}", exc)

    def _caught_up_beat(self, records: Sequence[Record]) -> Callable[[Connection], None] | None:
        """The heartbeat write for the append transaction when, once ``records`` are
        durable, this member is caught up (no lag, nothing more buffered); else None."""
        if len(records) < len(self.batch):
            return None
        lag, known = self._lag(next_offsets_of(records))
        if not known or lag:
            return None
        assigned = self._assigned()

        def beat(conn: Connection) -> None:
            write_heartbeat_in(
                conn, self.member, self.group, lag=0, caught_up=True, assigned=assigned
            )

        return beat

    def _commit_kafka(self, offsets: dict[TopicPartitionKey, int], *, sync: bool) -> None:
        """Tell Kafka what is durable: async in the loop and in rebalance callbacks (no
        round trip per batch), sync before stopping."""
        if not offsets or self.consumer is None:
            return
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        commit = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
            for (t, p), o in offsets.items()
            if (t, p) in owned
        }
        if not commit:
            return
        try:
            if sync:
                self.consumer.commit(offsets=commit, timeout_ms=self.config.commit_timeout_ms)
            else:
                self.consumer.commit_async(offsets=commit, callback=_commit_done)
        except KafkaError as exc:  # the database holds the truth
            logger.warning("Kafka offset commit failed ({}); the database offsets stand", exc)

    def _produce_dlq(self, rejected: list[tuple[Record, Rejected]]) -> None:
        """Each dead letter to the DLQ topic, one at a time: one that fails (too large,
        say) neither stops the others nor counts as produced. A value past
        :data:`DLQ_VALUE_LIMIT` goes truncated, with a ``truncated_from`` header (its full
        bytes are in the dead_letters table); the request limit is 1 MiB."""
        topic = self.settings.dlq_topic
        if not topic:
            return
        sent: list[Any] = []
        errors: list[str] = []
        try:
            if self.producer is None:
                self.producer = KafkaProducer(
                    bootstrap_servers=self.settings.kafka_bootstrap,
                    client_id=f"{self.member}-dlq",
                    acks="all",
                    retries=5,
                    bootstrap_timeout_ms=self.config.bootstrap_timeout_ms,
                    **self.settings.kafka_client_options(),
                )
            for rec, letter in rejected:
                value, headers = dlq_record(rec.topic, rec.partition, rec.offset, letter)
                key = dlq_key(rec.key)
                try:
                    sent.append(self.producer.send(topic, key=key, value=value, headers=headers))
                except KafkaError as exc:
                    errors.append(f"offset {rec.offset}: {exc}")
            self.producer.flush(timeout=self.config.commit_timeout_ms / 1000)
        except KafkaError as exc:
            errors.append(str(exc))
        produced = sum(1 for future in sent if future.succeeded())
        self.stats.dlq_produced += produced
        if produced < len(rejected):  # the dead letters are safe in the database
            logger.warning(
                "could not produce {} of {} dead letters to {} ({}); they are in the "
                "dead_letters table",
                len(rejected) - produced,
                len(rejected),
                topic,
                "; ".join(errors[:3]) or "not acknowledged",
            )

    # -- assignment

    def on_assigned(self, tps: list[Any]) -> None:
        keys = {(tp.topic, tp.partition) for tp in tps}
        logger.info("assigned {}", sorted(keys))
        self.pending |= keys
        if tps:
            self.consumer.pause(*tps)

    def on_revoked(self, tps: list[Any]) -> None:
        keys = {(tp.topic, tp.partition) for tp in tps}
        logger.info("revoked {}", sorted(keys))
        try:
            self._collect(in_callback=True)
            if self.batch and any(r.tp in keys for r in self.batch):
                while self.batch:
                    self._flush(in_callback=True)
            else:
                durable = {k: v for k, v in self.durable.items() if k in keys}
                self._commit_kafka(durable, sync=False)
        except (OperationalError, DBAPIError, DatabaseUnavailable, OffsetRegression) as exc:
            logger.warning("revoked with an unflushed batch ({}); the new owner re-reads it", exc)
            self.batch = [r for r in self.batch if r.tp not in keys]
        self._forget(keys)

    def on_lost(self, tps: list[Any]) -> None:
        """Evicted from the group: another member may own these already, so flush nothing."""
        keys = {(tp.topic, tp.partition) for tp in tps}
        logger.warning("partitions lost {}; their unflushed records will be re-read", sorted(keys))
        try:
            self._collect(in_callback=True)  # appended already: its offsets are stored
        except (OperationalError, DBAPIError, DatabaseUnavailable, OffsetRegression) as exc:
            logger.warning("the batch being appended failed ({}); it will be re-read", exc)
        self.batch = [r for r in self.batch if r.tp not in keys]
        self._forget(keys)

    def _forget(self, keys: set[TopicPartitionKey]) -> None:
        for key in keys:
            self.pending.discard(key)
            self.expected.pop(key, None)
            self.durable.pop(key, None)
            self.rewound.discard(key)
            self.lags.pop(key, None)

    def _resolve_pending(self) -> None:
        """Seek newly assigned partitions to the database offsets, then resume them."""
        if not self.pending:
            return
        with self.engine.connect() as conn:
            stored = read_offsets(conn, self.pending)
        for key in sorted(self.pending):
            tp = TopicPartition(*key)
            offset = stored.get(key)
            committed = (
                self.consumer.committed(tp, timeout_ms=self.config.commit_timeout_ms)
                if offset is not None
                else None
            )
            if offset is not None and committed is None:
                self._mark_rewound(key, "the broker has no committed offset for this group")
                offset = None
            if offset is None:
                self.consumer.seek_to_beginning(tp)
                self.expected.pop(key, None)
            else:
                self.consumer.seek(tp, offset)
                self.expected[key] = offset
                self.durable[key] = offset
            self.consumer.resume(tp)
        self.pending.clear()

    def _restart_from_database(self, tps: set[TopicPartitionKey]) -> None:
        self._drop_batch()
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        again = tps & owned
        if again:
            self.consumer.pause(*(TopicPartition(*k) for k in again))
            self.pending |= again

    # -- database outages

    def _database_down(self, exc: BaseException) -> None:
        self.stats.db_retries += 1
        if not self.paused_for_db:
            logger.warning("database unavailable ({}); pausing consumption", _first_line(exc))
            self.consumer.pause(*self.consumer.assignment())
            self.paused_for_db = True
        self.db_backoff.wait(self.stop)

    def _retry_after_db_outage(self) -> None:
        self.consumer.poll(timeout_ms=0)  # keeps the group membership alive; paused → no data
        self._resolve_pending()
        if self.batch:
            self._flush()
            self._collect()  # durable before the partitions resume
        self.paused_for_db = False
        resumable = [
            tp for tp in self.consumer.assignment() if (tp.topic, tp.partition) not in self.pending
        ]
        if resumable:
            self.consumer.resume(*resumable)
        logger.info("database reachable again; consumption resumed")

    # -- heartbeats and lag

    def _lag(self, appending: dict[TopicPartitionKey, int] | None = None) -> tuple[int, bool]:
        """Records behind the high watermark over assigned partitions; and whether it is known.

        ``appending``: next offsets of a batch being appended, counted as durable.
        """
        if self.consumer is None:
            return 0, False
        total = 0
        known = self._group_stable() and not self._missing_topics()
        self.lags = {}
        for tp in self.consumer.assignment():
            key = (tp.topic, tp.partition)
            highwater = self.consumer.highwater(tp)
            done = (appending or {}).get(key, self.durable.get(key))
            if done is None and highwater is not None and key not in self.pending:
                done = self._position(tp)  # nothing appended yet: where we read from
            if highwater is None or done is None or key in self.pending:
                known = False
                continue
            behind = max(0, int(highwater) - done)
            self.lags[key] = behind
            total += behind
        return total, known

    def _position(self, tp: Any) -> int | None:
        try:
            return int(self.consumer.position(tp, timeout_ms=100))
        except (KafkaError, AssertionError, TypeError, ValueError):
            return None

    def _missing_topics(self) -> list[str]:
        """Subscribed topics the cluster metadata does not know (auto-creation is off).

        A consumer waiting for a topic that does not exist has nothing to read, but it
        is not caught up with the OLTP database either.
        """
        cluster = getattr(self.consumer, "_cluster", None)
        lookup = getattr(cluster, "partitions_for_topic", None)
        if not callable(lookup):
            return []
        missing = [t for t in self.settings.topics if not lookup(t)]
        now = time.monotonic()
        if missing and now - self.missing_warned > 60:
            logger.warning("topics not found on the broker (yet): {}", ", ".join(missing))
            self.missing_warned = now
        return missing

    def _group_stable(self) -> bool:
        """False while the coordinator is unreachable or the member is not (yet) in a stable
        generation of the group (joining at start, or a rebalance in progress).

        kafka-python keeps the last high watermarks while disconnected and an unassigned
        member has no partitions to be behind on; without this check a consumer cut off
        from the broker, or still joining in front of a backlog, would look caught up.
        """
        coordinator = getattr(self.consumer, "_coordinator", None)
        unknown = getattr(coordinator, "coordinator_unknown", None)
        stable = getattr(coordinator, "generation_if_stable", None)
        try:
            if callable(unknown) and unknown():
                return False
            return not callable(stable) or stable() is not None
        except Exception:  # an internal API: if it changes, assume the group is fine
            return True

    def _assigned(self) -> str:
        """The heartbeat's ``assigned``: ``topic[partition]=lag`` per assigned partition
        (``=lag`` left out while unknown), read by the API's ``bo_consumer_lag_records``."""
        if self.consumer is None:
            return ""
        return format_assigned(
            [(tp.topic, tp.partition) for tp in self.consumer.assignment()], self.lags
        )

    def _heartbeat(self, *, force: bool) -> None:
        """The periodic heartbeat (after an append that catches up, see ``_caught_up_beat``)."""
        now = time.monotonic()
        if not force and now - self.last_heartbeat < self.config.heartbeat_every:
            return
        lag, known = self._lag()
        assigned = self._assigned()
        try:
            write_heartbeat(
                self.engine,
                self.member,
                self.group,
                lag=lag,
                caught_up=known and lag == 0 and not self.batch and self.appending is None,
                assigned=assigned,
            )
        except DB_ERRORS as exc:
            logger.warning("heartbeat not written ({})", _first_line(exc))
        self.last_heartbeat = now


def _commit_done(_offsets: Any, response: Any) -> None:
    if isinstance(response, BaseException):
        logger.warning("Kafka offset commit failed ({}); the database offsets stand", response)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Adapts kafka-python's rebalance callbacks to :class:`SyncConsumer`."""

    def __init__(self, owner: SyncConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self.owner.on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self.owner.on_assigned(list(assigned))

    def on_partitions_lost(self, lost: Iterable[Any]) -> None:
        self.owner.on_lost(list(lost))


def run_consumer(
    settings: Settings,
    engine: Engine,
    stop: threading.Event,
    config: ConsumerConfig | None = None,
) -> None:
    """Consume ``settings.topics`` in group ``settings.kafka_group`` until ``stop`` is set."""
    SyncConsumer(settings, engine, stop, config).run()
