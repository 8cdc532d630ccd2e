"""The Kafka consumer against a real broker (Tansu) and both database backends."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer
from sqlalchemy import Engine, select

from bo.broker import Broker
from eventlog.kafka import (
    ConsumerConfig,
    OffsetRegression,
    Record,
    SyncConsumer,
    format_assigned,
    parse_assigned,
    read_offsets,
    write_heartbeat_in,
    write_offsets,
)
from eventlog.schema import consumer_heartbeats, dead_letters, events
from tests.fixtures_kafka import (
    create_topics,
    kafka_broker,
    kafka_settings,
    ledger_event,
    log_count,
    produce,
    read_topic,
    start_consumer,
    unique,
    wait_for,
)

pytestmark = pytest.mark.kafka
__all__ = ["kafka_broker"]


def test_consumes_events_tombstones_and_malformed_records(
    kafka_broker: Broker, migrated: Engine
) -> None:
    ledger, dlq = unique("ledger-"), unique("dlq-")
    create_topics(kafka_broker.bootstrap, [ledger, dlq], partitions=3)
    good = [ledger_event(f"T{i}") for i in range(300)]
    huge = b'{"password": "hunter2", "pad": "' + b" " * (1100 * 1024) + b'"}'  # over 1 MiB
    bad = [
        b"not json",
        huge,
        b"[1,2]",
        ledger_event("T-bad", op="x"),
        b'{"op":"c","password":"hunter2"',
    ]
    records = [(ledger, f"T{i}".encode(), v) for i, v in enumerate(good)]
    records += [(ledger, b"bad", v) for v in bad[:-1]]
    # Debezium keys a record by the row's primary key: a credential column, here
    records += [(ledger, b'{"session_token": "hunter2"}', bad[-1])]
    records += [(ledger, b"T1", None)]  # tombstone
    records += [(ledger, f"T{i}".encode(), good[i]) for i in range(20)]  # redeliveries
    produce(kafka_broker.bootstrap, records)

    settings = kafka_settings(kafka_broker.bootstrap, str(migrated.url), [ledger], dlq_topic=dlq)
    running = start_consumer(settings, migrated)
    wait_for(lambda: running.consumer.stats.records >= len(records), 60, "all records consumed")
    stats = running.finish()

    assert log_count(migrated) == 300
    summary = stats.summary()
    assert summary["appended"] == 300
    assert summary["duplicate"] == 20
    assert summary["dead_letter"] == len(bad)
    assert summary["tombstone"] == 1
    assert stats.dlq_produced == len(bad)  # the oversize one stopped none of the others
    with migrated.connect() as conn:
        letters = conn.execute(select(dead_letters.c.reason, dead_letters.c.raw)).all()
        offsets = read_offsets(conn, [(ledger, p) for p in range(3)])
        beat = conn.execute(select(consumer_heartbeats)).mappings().one()
        topics = set(conn.execute(select(events.c.source_topic)).scalars())
    assert len(letters) == len(bad)
    assert all(b"hunter2" not in raw for _, raw in letters)
    assert sum(offsets.values()) == len(records)  # every partition moved past everything
    assert topics == {ledger}
    assert beat["lag_records"] == 0
    assert beat["caught_up_at"] is not None

    dlq_records = read_topic(kafka_broker.bootstrap, dlq, len(bad))
    assert len(dlq_records) == len(bad)
    headers = dict(dlq_records[0].headers)
    assert {"reason", "source_topic", "source_partition", "source_offset"} <= headers.keys()
    assert headers["source_topic"] == ledger.encode()
    assert all(b"hunter2" not in r.value for r in dlq_records)
    assert all(b"hunter2" not in (r.key or b"") for r in dlq_records)  # keys redacted too
    assert b'{"session_token":"[REDACTED]"}' in {r.key for r in dlq_records}
    cut = [r for r in dlq_records if "truncated_from" in dict(r.headers)]
    assert len(cut) == 1  # the oversize value, truncated to fit a Kafka request
    assert int(dict(cut[0].headers)["truncated_from"]) > len(cut[0].value)


def test_restart_resumes_from_database_offsets(kafka_broker: Broker, migrated: Engine) -> None:
    ledger = unique("ledger-")
    create_topics(kafka_broker.bootstrap, [ledger], partitions=2)
    settings = kafka_settings(kafka_broker.bootstrap, str(migrated.url), [ledger])
    produce(kafka_broker.bootstrap, [(ledger, None, ledger_event(f"A{i}")) for i in range(50)])
    first = start_consumer(settings, migrated)
    wait_for(lambda: log_count(migrated) == 50, 60, "first 50 events")
    first.finish()

    produce(kafka_broker.bootstrap, [(ledger, None, ledger_event(f"B{i}")) for i in range(50)])
    second = start_consumer(settings, migrated)
    wait_for(lambda: log_count(migrated) == 100, 60, "next 50 events")
    stats = second.finish()
    assert stats.summary()["duplicate"] == 0  # resumed where the database said, not from 0
    assert stats.records == 50


def test_offsets_never_go_backwards(migrated: Engine) -> None:
    with migrated.begin() as conn:
        write_offsets(conn, {("t", 0): 10})
        write_offsets(conn, {("t", 0): 12})
    with (
        pytest.raises(OffsetRegression, match=r"t\[0\].*stored 12, proposed 5"),
        migrated.begin() as conn,
    ):
        write_offsets(conn, {("t", 0): 5})
    with migrated.begin() as conn:
        write_offsets(conn, {("t", 0): 3}, rewound=frozenset({("t", 0)}))
        assert read_offsets(conn, [("t", 0)]) == {("t", 0): 3}


def test_payload_is_stored_unchanged(kafka_broker: Broker, migrated: Engine) -> None:
    ledger = unique("ledger-")
    create_topics(kafka_broker.bootstrap, [ledger], partitions=1)
    raw = ledger_event("U1", amount="12.340")
    secret = ledger_event("U2", extra={"api_key": "abc123"})
    produce(kafka_broker.bootstrap, [(ledger, None, raw), (ledger, None, secret)])
    settings = kafka_settings(kafka_broker.bootstrap, str(migrated.url), [ledger])
    running = start_consumer(settings, migrated)
    wait_for(lambda: log_count(migrated) == 2, 60, "two events")
    running.finish()
    with migrated.connect() as conn:
        stored = dict(conn.execute(select(events.c.entity_key, events.c.payload)).all())
    assert bytes(stored["ledger_entries:U1"]) == raw
    assert b"abc123" not in bytes(stored["ledger_entries:U2"])
    assert orjson.loads(stored["ledger_entries:U2"])["after"]["api_key"] == "[REDACTED]"


def test_value_over_1_mib_is_dead_lettered_and_the_partition_moves_on(
    kafka_broker: Broker, sqlite_url: str, engine_factory: Any
) -> None:
    engine = engine_factory(sqlite_url)
    ledger = unique("ledger-")
    create_topics(kafka_broker.bootstrap, [ledger], partitions=1)
    huge = ledger_event("BIG", extra={"memo": "x" * (1024 * 1024 + 10)})
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, max_request_size=4 << 20)
    producer.send(ledger, value=huge)
    producer.send(ledger, value=ledger_event("AFTER"))
    producer.flush(30)
    producer.close()
    settings = kafka_settings(kafka_broker.bootstrap, sqlite_url, [ledger])
    running = start_consumer(settings, engine)
    wait_for(lambda: running.consumer.stats.records >= 2, 60, "both records")
    running.finish()
    assert log_count(engine) == 1
    with engine.connect() as conn:
        reasons = conn.execute(select(dead_letters.c.reason)).scalars().all()
    assert len(reasons) == 1
    assert reasons[0].startswith("value over 1 MiB")


def test_not_caught_up_before_joining_and_reading_the_backlog(
    kafka_broker: Broker, sqlite_url: str, engine_factory: Any
) -> None:
    engine = engine_factory(sqlite_url)
    ledger = unique("backlog-")
    create_topics(kafka_broker.bootstrap, [ledger], partitions=2)
    produce(kafka_broker.bootstrap, [(ledger, None, ledger_event(f"K{i}")) for i in range(3000)])
    settings = kafka_settings(kafka_broker.bootstrap, sqlite_url, [ledger])
    running = start_consumer(settings, engine)
    early: list[int] = []

    def observe() -> bool:
        with engine.connect() as conn:
            caught = conn.execute(select(consumer_heartbeats.c.caught_up_at)).scalar()
        count = log_count(engine)
        if caught is not None and count < 3000:
            early.append(count)
        return caught is not None and count == 3000

    wait_for(observe, 90, "caught up after the backlog")
    running.finish()
    assert early == []  # never claimed "caught up" while joining or behind


def test_a_batch_read_to_the_end_lingers_before_its_commit(migrated: Engine) -> None:
    """Read to the partitions' end, a batch is committed once its first record is
    ``linger_ms`` old (so small polls share a transaction), never later than ``batch_ms``,
    and at once when full."""
    settings = kafka_settings("127.0.0.1:1", str(migrated.url), ["t"])
    config = ConsumerConfig(batch_size=3, batch_ms=50, linger_ms=10, prepare_workers=0)
    consumer = SyncConsumer(settings, migrated, threading.Event(), config)
    consumer.batch = [Record("t", 0, 0, None, b"{}")]
    consumer.last_poll_empty = True  # nothing more to read right now
    consumer.batch_started = time.monotonic()
    assert not consumer._batch_due()  # younger than linger_ms: wait for company
    consumer.batch_started = time.monotonic() - 0.011
    assert consumer._batch_due()  # lingered long enough, and nothing more came
    consumer.batch_started = time.monotonic()
    consumer.batch = [Record("t", 0, n, None, b"{}") for n in range(3)]
    consumer.last_poll_empty = False
    assert consumer._batch_due()  # full: at once
    consumer.batch = consumer.batch[:1]
    consumer.batch_started = time.monotonic() - 0.051
    assert consumer._batch_due()  # batch_ms bounds the wait whatever else happens


def test_a_batch_appended_meanwhile_is_collected_in_order_or_put_back(migrated: Engine) -> None:
    """With the appender thread, a flush hands its batch over and returns; the next flush
    (or a collect) takes the post-commit steps first, so offsets are stored in batch
    order. A failed append puts its records back in front of the batch, in order, and
    raises where a synchronous append would have: nothing is counted or lost."""
    settings = kafka_settings("127.0.0.1:1", str(migrated.url), ["t"])
    config = ConsumerConfig(batch_size=3, prepare_workers=0, pipeline=True)
    consumer = SyncConsumer(settings, migrated, threading.Event(), config)
    assert consumer.appender is not None
    try:
        records = [Record.received("t", 0, n, None, ledger_event(f"PIPE{n}")) for n in range(5)]
        consumer.batch = list(records)
        consumer._flush()
        assert consumer.appending is not None
        assert consumer.batch == records[3:]
        consumer._flush()  # collects the first three, hands over the last two
        assert consumer.durable == {("t", 0): 3}
        assert consumer.stats.records == 3
        consumer._collect()
        assert consumer.appending is None
        assert consumer.batch == []
        assert consumer.durable == {("t", 0): 5}
        assert consumer.stats.records == 5
        with migrated.connect() as conn:
            stored = conn.execute(
                select(events.c.source_offset).order_by(events.c.position)
            ).scalars()
            assert list(stored) == [0, 1, 2, 3, 4]
            assert read_offsets(conn, [("t", 0)]) == {("t", 0): 5}

        with migrated.begin() as conn:
            write_offsets(conn, {("t", 1): 50})  # stored further on: this batch regresses
        behind = [Record.received("t", 1, n, None, ledger_event(f"BACK{n}")) for n in range(4)]
        consumer.batch = list(behind)
        consumer._flush()
        with pytest.raises(OffsetRegression):
            consumer._collect()
        assert consumer.appending is None
        assert consumer.batch == behind
        assert consumer.stats.records == 5
        assert log_count(migrated) == 5
    finally:
        assert consumer.appender is not None
        consumer.appender.shutdown()


def test_offsets_of_many_partitions_move_together(migrated: Engine) -> None:
    """The one-statement update (PostgreSQL) moves each partition to its own offset,
    leaves unmoved and other topics' rows alone, and still refuses a regression."""
    with migrated.begin() as conn:
        write_offsets(conn, {("a", 0): 5, ("a", 1): 7, ("a", 2): 9, ("b", 0): 1})
    with migrated.begin() as conn:
        stored = read_offsets(conn, [("a", 0), ("a", 1), ("a", 2)], lock=True)
        assert stored == {("a", 0): 5, ("a", 1): 7, ("a", 2): 9}
        write_offsets(conn, {("a", 0): 6, ("a", 1): 7, ("a", 2): 20, ("a", 3): 2}, stored=stored)
    with migrated.begin() as conn:
        assert read_offsets(conn, [("a", p) for p in range(4)] + [("b", 0), ("c", 0)]) == {
            ("a", 0): 6,
            ("a", 1): 7,
            ("a", 2): 20,
            ("a", 3): 2,
            ("b", 0): 1,
        }
    with pytest.raises(OffsetRegression), migrated.begin() as conn:
        write_offsets(conn, {("a", 0): 8, ("a", 2): 19})
    with migrated.begin() as conn:  # rolled back as a whole
        assert read_offsets(conn, [("a", 0), ("a", 2)]) == {("a", 0): 6, ("a", 2): 20}


def test_heartbeat_upsert_moves_caught_up_only_when_caught_up(migrated: Engine) -> None:
    def beat_row(member: str) -> dict[str, object]:
        with migrated.connect() as conn:
            query = select(consumer_heartbeats).where(consumer_heartbeats.c.member == member)
            return dict(conn.execute(query).mappings().one())

    with migrated.begin() as conn:
        write_heartbeat_in(conn, "m1", "g", lag=5, caught_up=False, assigned="t[0]")
        write_heartbeat_in(conn, "m2", "g", lag=0, caught_up=True, assigned="t[1]")
    first = beat_row("m1")
    assert first["caught_up_at"] is None
    assert (first["group_id"], first["lag_records"], first["assigned"]) == ("g", 5, "t[0]")
    caught = beat_row("m2")["caught_up_at"]
    assert caught is not None
    with migrated.begin() as conn:
        write_heartbeat_in(conn, "m2", "g2", lag=3, caught_up=False, assigned="t[1],t[2]")
    second = beat_row("m2")
    assert second["caught_up_at"] == caught  # kept while behind
    assert (second["group_id"], second["lag_records"], second["assigned"]) == ("g2", 3, "t[1],t[2]")
    with migrated.begin() as conn:
        write_heartbeat_in(conn, "m1", "g", lag=0, caught_up=True, assigned="t[0]")
    assert beat_row("m1")["caught_up_at"] is not None
    with migrated.connect() as conn:
        assert len(conn.execute(select(consumer_heartbeats)).all()) == 2


def test_a_heartbeat_carries_each_partitions_lag_and_parses_back() -> None:
    lags = {("oltp.public.ledger_entries", 0): 12, ("oltp.public.payment_orders", 10): 0}
    partitions = [*lags, ("oltp.public.ledger_entries", 1)]  # the last one: lag unknown
    text_ = format_assigned(partitions, lags)
    assert text_ == (
        "oltp.public.ledger_entries[0]=12,oltp.public.ledger_entries[1],"
        "oltp.public.payment_orders[10]=0"
    )
    assert parse_assigned(text_) == lags
    assert parse_assigned("") == {}
    assert parse_assigned("t[x]=1,t[1]=y,[2]=3,t[3]=4") == {("t", 3): 4}
