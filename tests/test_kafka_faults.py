"""Fault tolerance of the consumer: kill -9, broker restart, PostgreSQL restart, two members.

Everything is real: a Tansu broker, PostgreSQL clusters, `bo consume` processes.
The whole file stays well under three minutes.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from sqlalchemy import Engine, func, select

from bo.broker import Broker
from bo.pgcluster import Cluster, throwaway_cluster
from eventlog.db import make_engine
from eventlog.ingest import ingest_stream, read_lines
from eventlog.kafka import read_offsets
from eventlog.migrate import upgrade
from eventlog.schema import consumer_heartbeats, events, kafka_offsets
from eventlog.settings import Settings
from eventlog.store import EventLog
from eventlog.timeutil import parse_ts, utcnow
from projections import registry
from projections.checksum import table_checksum
from projections.runner import Runner
from projections.status import status
from projections.store import pairs_of, tables_for
from tests.fixtures_kafka import (
    FAST,
    create_topics,
    kafka_broker,
    kafka_settings,
    ledger_event,
    log_count,
    order_event,
    own_broker,
    produce,
    start_consumer,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.pg]
__all__ = ["kafka_broker", "own_broker"]

Item = tuple[str, bytes, bytes]  # topic, key, value


def workload(
    ledger: str, orders: str, n_unique: int, redeliver: float, seed: int, prefix: str = ""
) -> tuple[list[Item], list[Item]]:
    """(``unique`` events, ``stream`` to produce = unique + redeliveries, interleaved).

    Every change is versioned, so any arrival order gives the same projections.
    Ledger legs pair up on ``related_id`` = an order id, PAYMENT and RECEIVE.
    """
    rng = random.Random(seed)
    unique_items: list[Item] = []
    n_orders = n_unique // 10
    for o in range(n_orders):
        oid = f"{prefix}O{o}"
        for v in range(1, 3):
            status_ = "PENDING" if v == 1 else rng.choice(["SETTLED", "FAILED"])
            unique_items.append(
                (
                    orders,
                    oid.encode(),
                    order_event(
                        oid, version=v, status=status_, ts_ms=1_772_406_000_000 + o * 10 + v
                    ),
                )
            )
    tx = 0
    while len(unique_items) < n_unique:
        tid = f"{prefix}T{tx}"
        related = f"{prefix}O{(tx // 2) % max(1, n_orders)}" if tx % 5 else None
        kind = "PAYMENT" if tx % 2 else "RECEIVE"
        for v in range(1, 1 + rng.choice([1, 2, 3])):
            if len(unique_items) >= n_unique:
                break
            unique_items.append(
                (
                    ledger,
                    tid.encode(),
                    ledger_event(
                        tid,
                        version=v,
                        amount=f"{rng.randint(1, 10**6)}.{rng.randint(0, 99):02d}",
                        related=related,
                        kind=kind,
                        wallet=f"W{tx % 97}",
                        ts_ms=1_772_406_000_000 + tx * 10 + v,
                        lsn=tx * 10 + v,
                    ),
                )
            )
        tx += 1
    stream = list(unique_items)
    rng.shuffle(stream)  # versions of one key may arrive in any order
    for item in rng.sample(unique_items, int(len(unique_items) * redeliver)):
        stream.insert(rng.randrange(len(stream) // 2, len(stream) + 1), item)
    return unique_items, stream


def checksums(engine: Engine, settings: Settings) -> dict[tuple[str, int], str]:
    """Catch the projections up, then checksum every active version's stored tables."""
    summary = Runner(engine, settings).run_once(checksums=False)
    assert not summary["failed"], summary
    out: dict[tuple[str, int], str] = {}
    for item in status(engine, settings):
        projection = registry.make(item["projection"], item["version"], settings)
        with engine.connect() as conn:
            out[(projection.name, projection.version)] = table_checksum(
                conn, pairs_of(projection, tables_for(projection))
            )
    return out


def clean_ingest(cluster_or_url: Any, items: list[Item], tmp: Path, settings: Settings) -> Any:
    """The same unique events through `bo ingest`'s path into a fresh database."""
    url = (
        cluster_or_url.create_database(unique("clean"))
        if isinstance(cluster_or_url, Cluster)
        else cluster_or_url
    )
    engine = make_engine(url)
    upgrade(engine)
    path = tmp / "events.jsonl"
    path.write_bytes(b"\n".join(v for _, _, v in items) + b"\n")
    with path.open("rb") as stream:
        ingest_stream(EventLog(engine), read_lines(stream, str(path)), str(path))
    sums = checksums(engine, settings.model_copy(update={"database_url": url}))
    engine.dispose()
    return sums


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _bo_consume(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BO_DATABASE_URL": settings.database_url,
        "BO_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "BO_KAFKA_TOPICS": settings.kafka_topics,
        "BO_KAFKA_GROUP": settings.kafka_group,
        "BO_LOG_LEVEL": "WARNING",
    }
    with log.open("ab") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bo.cli",
                "consume",
                "--json",
                "--batch-size",
                "500",
                "--no-check-crcs",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )


def _offsets_total(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(kafka_offsets.c.next_offset), 0))
            ).scalar_one()
        )


def test_kill_9_three_times_loses_and_doubles_nothing(
    kafka_broker: Broker, pg_cluster: Cluster, pg_engine: Engine, tmp_path: Path
) -> None:
    ledger, orders = unique("ledger-"), unique("orders-")
    create_topics(kafka_broker.bootstrap, [ledger, orders], partitions=3)
    uniq, stream = workload(ledger, orders, 50_000, 0.05, seed=7)
    assert len(stream) >= 52_000
    produce(kafka_broker.bootstrap, stream)
    settings = kafka_settings(
        kafka_broker.bootstrap,
        str(pg_engine.url.render_as_string(hide_password=False)),
        [ledger, orders],
    )
    log = tmp_path / "consume.log"

    kills = 0
    for threshold in (6_000, 20_000, 34_000):
        proc = _bo_consume(settings, log)
        wait_for(
            lambda t=threshold, p=proc: log_count(pg_engine) >= t or p.poll() is not None,
            90,
            f"{threshold} events before kill -9",
        )
        assert proc.poll() is None, log.read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kills += 1
    final = _bo_consume(settings, log)
    wait_for(
        lambda: _offsets_total(pg_engine) >= len(stream) or final.poll() is not None,
        120,
        "every record consumed",
    )
    final.send_signal(signal.SIGTERM)
    out, _ = final.communicate(timeout=30)
    assert final.returncode == 0, log.read_text()[-2000:]
    summary = orjson.loads(out.decode().strip().splitlines()[-1])
    assert summary["dead_letter"] == 0

    assert kills == 3
    assert log_count(pg_engine) == len(uniq)
    with pg_engine.connect() as conn:
        distinct = conn.execute(select(func.count(func.distinct(events.c.event_id)))).scalar_one()
    assert distinct == len(uniq)
    assert _offsets_total(pg_engine) == len(stream)

    live = checksums(pg_engine, settings)
    clean = clean_ingest(pg_cluster, uniq, tmp_path, settings)
    assert live == clean
    assert all(live.values())


def test_broker_restart_consumer_survives_and_resumes(
    own_broker: Broker, pg_engine: Engine
) -> None:
    ledger = unique("ledger-")
    create_topics(own_broker.bootstrap, [ledger], partitions=2)
    before = [(ledger, f"A{i}".encode(), ledger_event(f"A{i}")) for i in range(1500)]
    produce(own_broker.bootstrap, before)
    settings = kafka_settings(
        own_broker.bootstrap, pg_engine.url.render_as_string(hide_password=False), [ledger]
    )
    running = start_consumer(settings, pg_engine)
    wait_for(lambda: log_count(pg_engine) == 1500, 60, "first events")

    wait_for(lambda: _heartbeat(pg_engine)[1] is not None, 30, "a caught-up heartbeat")
    own_broker.stop()  # in-memory storage: topics, offsets and groups are gone
    stopped_at = utcnow()
    # while the broker is away the member keeps beating but is no longer "caught up"
    wait_for(
        lambda: parse_ts(_heartbeat(pg_engine)[0]) > stopped_at + timedelta(seconds=3),
        30,
        "heartbeats during the outage",
    )
    assert parse_ts(_heartbeat(pg_engine)[1]) < stopped_at + timedelta(seconds=3)
    own_broker.start()
    with contextlib.suppress(TopicAlreadyExistsError):
        create_topics(own_broker.bootstrap, [ledger], partitions=2)
    # the recreated log starts at offset 0 again: fewer records than the stored offsets on
    # one partition, more on the other — neither may be skipped
    after = [(ledger, f"B{i}".encode(), ledger_event(f"B{i}")) for i in range(2000)]
    produce(own_broker.bootstrap, after + before[:100])
    wait_for(lambda: log_count(pg_engine) == 3500, 90, "events produced after the restart")
    assert running.thread.is_alive()
    stats = running.finish()
    assert stats.rewinds >= 1
    assert log_count(pg_engine) == 3500
    assert _offsets_total(pg_engine) == 2100  # offsets now describe the recreated log


def test_a_topic_recreated_while_consuming_is_read_from_its_start(
    own_broker: Broker, pg_engine: Engine
) -> None:
    """Deleted and created again under its name, a topic restarts at offset 0 while the
    member's position (and the stored offsets) still point past it: its new records below
    that offset must not be skipped. The topic id changes with it; the member rewinds."""
    ledger = unique("ledger-")
    create_topics(own_broker.bootstrap, [ledger], partitions=1)
    first = [(ledger, None, ledger_event(f"A{i}")) for i in range(300)]
    produce(own_broker.bootstrap, first)
    settings = kafka_settings(
        own_broker.bootstrap, pg_engine.url.render_as_string(hide_password=False), [ledger]
    )
    running = start_consumer(settings, pg_engine)
    wait_for(lambda: log_count(pg_engine) == 300, 60, "the first topic's events")
    admin = KafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    try:
        admin.delete_topics([ledger])
        with contextlib.suppress(TopicAlreadyExistsError):  # Tansu may re-create it at once
            admin.create_topics([NewTopic(ledger, 1, 1)])
    finally:
        admin.close()
    produce(own_broker.bootstrap, [(ledger, None, ledger_event(f"B{i}")) for i in range(500)])
    wait_for(lambda: log_count(pg_engine) == 800, 90, "every event of the re-created topic")
    stats = running.finish()
    assert stats.rewinds >= 1
    assert log_count(pg_engine) == 800
    assert _offsets_total(pg_engine) == 500  # the offsets describe the re-created topic


def _heartbeat(engine: Engine) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            select(consumer_heartbeats.c.heartbeat_at, consumer_heartbeats.c.caught_up_at)
        ).one()
    return str(row[0]), None if row[1] is None else str(row[1])


def test_postgres_restart_nothing_lost_nothing_doubled(kafka_broker: Broker) -> None:
    ledger = unique("ledger-")
    create_topics(kafka_broker.bootstrap, [ledger], partitions=3)
    with throwaway_cluster() as cluster:
        url = cluster.create_database("consumer")
        engine = make_engine(url)
        upgrade(engine)
        settings = kafka_settings(kafka_broker.bootstrap, url, [ledger])
        running = start_consumer(settings, engine)
        first = [(ledger, f"P{i}".encode(), ledger_event(f"P{i}")) for i in range(2000)]
        produce(kafka_broker.bootstrap, first)
        wait_for(lambda: log_count(engine) == 2000, 60, "first events")

        cluster.stop("fast")
        second = [(ledger, f"Q{i}".encode(), ledger_event(f"Q{i}")) for i in range(2000)]
        produce(kafka_broker.bootstrap, second + first[:200])
        wait_for(lambda: running.consumer.stats.db_retries >= 2, 60, "consumer sees the outage")
        assert running.thread.is_alive()
        cluster.start()
        wait_for(lambda: _offsets_total(engine) == 4200, 90, "all records after the restart")
        stats = running.finish()
        assert log_count(engine) == 4000
        with engine.connect() as conn:
            assert sum(read_offsets(conn, [(ledger, p) for p in range(3)]).values()) == 4200
        assert stats.result.appended == 4000
        assert stats.result.duplicate == 200
        assert stats.result.dead_letter == 0
        engine.dispose()


def test_two_members_split_partitions_and_match_one(
    kafka_broker: Broker, pg_cluster: Cluster, pg_engine: Engine, tmp_path: Path
) -> None:
    ledger, orders = unique("ledger-"), unique("orders-")
    create_topics(kafka_broker.bootstrap, [ledger, orders], partitions=3)
    uniq, stream = workload(ledger, orders, 6_000, 0.05, seed=11, prefix="m")
    settings = kafka_settings(
        kafka_broker.bootstrap,
        pg_engine.url.render_as_string(hide_password=False),
        [ledger, orders],
    )
    a = start_consumer(settings, pg_engine, FAST)
    b = start_consumer(settings, pg_engine, FAST)
    wait_for(
        lambda: (
            a.consumer.consumer is not None
            and b.consumer.consumer is not None
            and a.consumer.consumer.assignment()
            and b.consumer.consumer.assignment()
            and len(a.consumer.consumer.assignment() | b.consumer.consumer.assignment()) == 6
        ),
        60,
        "both members assigned",
    )
    got_a = set(a.consumer.consumer.assignment())
    got_b = set(b.consumer.consumer.assignment())
    assert got_a.isdisjoint(got_b)
    produce(kafka_broker.bootstrap, stream)
    wait_for(lambda: _offsets_total(pg_engine) == len(stream), 90, "every record consumed")
    sa, sb = a.finish(), b.finish()
    assert sa.records > 0
    assert sb.records > 0
    assert log_count(pg_engine) == len(uniq)
    both = checksums(pg_engine, settings)
    assert len(both) >= 3
    assert both == clean_ingest(pg_cluster, uniq, tmp_path, settings)
