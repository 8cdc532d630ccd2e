"""Fixtures and helpers for the Kafka tests: a real Tansu broker, topics, Debezium events.

Import the fixtures into a test module with
``from tests.fixtures_kafka import kafka_broker, own_broker``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from sqlalchemy import Engine, func, select

from bo.broker import Broker, throwaway_broker
from eventlog.kafka import ConsumerConfig, ConsumeStats, SyncConsumer
from eventlog.schema import events
from eventlog.settings import Settings, load_settings

LEDGER = "oltp.public.ledger_entries"
ORDERS = "oltp.public.payment_orders"
TOPICS = (LEDGER, ORDERS)

# Short waits so the group settles fast on a loopback broker.
FAST = ConsumerConfig(batch_size=1000, batch_ms=20, poll_ms=100, backoff_max=1.0)


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[Broker]:
    """One broker per test module (topics are per-test, by unique name)."""
    with throwaway_broker() as broker:
        yield broker


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker this test may stop and start."""
    with throwaway_broker() as broker:
        yield broker


_ids = iter(range(1, 1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}{next(_ids)}-{int(time.time() * 1000) % 100000}"


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        admin.close()


def produce(
    bootstrap: str,
    items: Iterable[tuple[str, bytes | None, bytes | None]],
) -> int:
    """Send (topic, key, value) records and wait until all are acknowledged (values up to
    4 MiB: a test may send one past the service's 1 MiB limit)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, acks="all", max_request_size=4 << 20
    )
    n = 0
    try:
        for topic, key, value in items:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=5)
    return n


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30) -> list[Any]:
    """Read ``expect`` records from every partition of ``topic`` (no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        parts = wait_for(lambda: consumer.partitions_for_topic(topic), timeout, "topic metadata")
        consumer.assign([TopicPartition(topic, p) for p in parts])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                got.extend(recs)
        return got
    finally:
        consumer.close()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------- Debezium events


def ledger_event(
    tx_id: str,
    *,
    version: int = 1,
    amount: str = "100.00",
    op: str = "c",
    wallet: str = "W1",
    related: str | None = None,
    kind: str = "PAYMENT",
    ts_ms: int = 1_772_406_000_000,
    lsn: int | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    row: dict[str, Any] = {
        "tx_id": tx_id,
        "wallet_id": wallet,
        "type": kind,
        "amount": amount,
        "currency": "KRW",
        "related_id": related,
        "related_type": None,
        "status": "POSTED",
        "created_at": "2026-03-01T23:00:00.000000Z",
        "updated_at": f"2026-03-01T23:00:{version % 60:02d}.000000Z",
        "version": version,
        **(extra or {}),
    }
    doc = {
        "before": row if op == "d" else None,
        "after": None if op == "d" else row,
        "source": {
            "connector": "postgresql",
            "name": "oltp",
            "ts_ms": ts_ms,
            "db": "payments",
            "schema": "public",
            "table": "ledger_entries",
            "txId": 1000 + version,
            "lsn": lsn if lsn is not None else 10_000 + version,
        },
        "op": op,
        "ts_ms": ts_ms + 5,
    }
    return orjson.dumps(doc)


def order_event(
    order_id: str,
    *,
    version: int = 1,
    status: str = "PENDING",
    ts_ms: int = 1_772_406_000_000,
    payer: str = "W1",
    receiver: str = "W2",
) -> bytes:
    row = {
        "order_id": order_id,
        "payer_wallet_id": payer,
        "receiver_wallet_id": receiver,
        "amount": "100.00",
        "currency": "KRW",
        "status": status,
        "created_at": "2026-03-01T23:00:00.000000Z",
        "updated_at": f"2026-03-01T23:00:{version % 60:02d}.000000Z",
        "version": version,
    }
    doc = {
        "before": None,
        "after": row,
        "source": {
            "ts_ms": ts_ms,
            "db": "payments",
            "schema": "public",
            "table": "payment_orders",
            "txId": 2000 + version,
            "lsn": 20_000 + version,
        },
        "op": "c" if version == 1 else "u",
        "ts_ms": ts_ms + 5,
    }
    return orjson.dumps(doc)


# ---------------------------------------------------------------- a consumer in a thread


@dataclass
class Running:
    consumer: SyncConsumer
    thread: threading.Thread
    stop: threading.Event
    stats: list[ConsumeStats] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def finish(self, timeout: float = 30) -> ConsumeStats:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "consumer thread did not stop"
        assert not self.errors, f"consumer crashed: {self.errors!r}"
        return self.stats[0]


def start_consumer(settings: Settings, engine: Engine, config: ConsumerConfig = FAST) -> Running:
    stop = threading.Event()
    consumer = SyncConsumer(settings, engine, stop, config)
    running = Running(consumer, threading.Thread(target=lambda: None), stop)

    def target() -> None:
        try:
            running.stats.append(consumer.run())
        except BaseException as exc:
            running.errors.append(exc)
            raise

    running.thread = threading.Thread(target=target, name="bo-consumer", daemon=True)
    running.thread.start()
    return running


def kafka_settings(bootstrap: str, url: str, topics: Iterable[str], **extra: Any) -> Settings:
    return load_settings(
        database_url=url,
        kafka_bootstrap=bootstrap,
        kafka_topics=",".join(topics),
        kafka_group=extra.pop("group", unique("g-")),
        **extra,
    )


def log_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())
