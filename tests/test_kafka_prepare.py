"""The consumer's worker-process prepare path gives exactly what the inline path gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select

from bo.broker import Broker
from eventlog.kafka import (
    ConsumerConfig,
    Preparer,
    Record,
    SyncConsumer,
    complete,
    prepare_one,
    prepare_records,
)
from eventlog.schema import dead_letters, events
from eventlog.store import Rejected, SourceRef, Staged, Tombstone, prepare, stage
from tests.fixtures_kafka import (
    create_topics,
    kafka_broker,
    kafka_settings,
    ledger_event,
    order_event,
    produce,
    start_consumer,
    unique,
    wait_for,
)

__all__ = ["kafka_broker"]

BAD = [
    b"not json",
    b"[1,2]",
    b'{"op":"c","password":"hunter2"',
    ledger_event("T-bad", op="x"),
    orjson.dumps({"before": None, "after": {"tx_id": "X", "card_pan": "4111"}, "op": "c"}),
]


RawValue = tuple[str, int, int, bytes | None]  # topic, partition, offset, value


def _values() -> list[RawValue]:
    raw: list[bytes | None] = [ledger_event(f"T{i}", version=1 + i % 3) for i in range(40)]
    raw += [order_event(f"O{i}", version=1 + i % 2) for i in range(20)]
    raw += [*BAD, None, ledger_event("T1", extra={"secret_token": "abc", "note": None})]
    return [("topic", i % 3, i, v) for i, v in enumerate(raw)]


def _inline(values: list[RawValue]) -> list[Any]:
    """The reference: each record prepared in the consumer's own process."""
    return [prepare_one(*item) for item in values]


def test_prepare_one_is_prepare_then_stage() -> None:
    values = _values()
    expected = [
        stage(prepare(v, SourceRef(topic=t, partition=p, offset=o))) for t, p, o, v in values
    ]
    assert [prepare_one(*item) for item in values] == expected
    kinds = {type(x) for x in expected}
    assert kinds == {Staged, Rejected, Tombstone}


def test_worker_processes_prepare_identically() -> None:
    values = _values()
    raw = [v for _t, _p, _o, v in values]
    records = [Record(t, p, o, None, None) for t, p, o, _v in values]
    preparer = Preparer(2)
    preparer.start()
    try:
        futures = [preparer.submit(raw[i : i + 7]) for i in range(0, len(raw), 7)]
        slims = [outcome for future in futures for outcome in future.result()]
    finally:
        preparer.close()
    got = [complete(rec, v, slim) for rec, v, slim in zip(records, raw, slims, strict=True)]
    assert got == _inline(values)
    # what travels back leaves out what the consumer holds: unchanged bytes, coordinates
    kept = [s for s, v in zip(slims, raw, strict=True) if type(s) is tuple and s[1] is None]
    rewritten = [s for s in slims if type(s) is tuple and s[1] is not None]
    assert kept
    assert rewritten  # the credential-bearing event is stored re-serialised
    assert all(len(s) == 8 for s in kept + rewritten)


def test_inline_fallback_prepares_as_the_workers_do() -> None:
    values = _values()
    records = [Record(t, p, o, None, None) for t, p, o, _v in values]
    prepare_records(records, [v for _t, _p, _o, v in values])
    assert [r.outcome for r in records] == _inline(values)


def test_a_dead_worker_falls_back_to_inline_prepare(migrated: Engine) -> None:
    settings = kafka_settings("127.0.0.1:9", str(migrated.url), ["topic"])
    config = ConsumerConfig(prepare_workers=2, prepare_chunk=5)
    consumer = SyncConsumer(settings, migrated, threading.Event(), config)
    consumer._start_preparer()
    assert consumer.preparer is not None
    assert consumer.preparer.pool is not None
    values = _values()
    items = [
        SimpleNamespace(topic=t, partition=p, offset=o, key=None, value=v) for t, p, o, v in values
    ]
    consumer._accept_parallel(items[:20])
    for process in list(consumer.preparer.pool._processes.values()):
        os.kill(int(process.pid or 0), signal.SIGKILL)
    time.sleep(0.5)
    consumer._accept_parallel(items[20:])
    consumer._settle(consumer.batch)
    assert consumer.preparer is None  # inline from now on
    assert [r.outcome for r in consumer.batch] == _inline(values)


def test_workers_leave_when_the_consumer_is_killed() -> None:
    script = (
        "import os, sys, time\n"
        "from eventlog.kafka import Preparer\n"
        "p = Preparer(2); p.start()\n"
        "print(' '.join(str(w.pid) for w in p.pool._processes.values()), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    pids = [int(x) for x in proc.stdout.readline().split()]
    assert len(pids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    wait_for(lambda: not any(_alive(pid) for pid in pids), 10, "workers to leave")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.kafka
def test_consumer_with_workers_appends_what_inline_prepare_gives(
    kafka_broker: Broker, migrated: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = unique("ledger-")
    create_topics(kafka_broker.bootstrap, [ledger], partitions=3)
    records: list[tuple[str, bytes | None, bytes | None]] = []
    for i in range(1200):
        key = f"T{i % 400}".encode()  # redeliveries share a key: same partition, in order
        records.append((ledger, key, ledger_event(f"T{i % 400}", version=1 + i // 400)))
        if i % 97 == 0:
            records.append((ledger, key, ledger_event(f"T{i % 400}", version=1 + i // 400)))
    records += [(ledger, b"bad", v) for v in BAD] + [(ledger, b"T1", None)]
    produce(kafka_broker.bootstrap, records)

    submitted: list[int] = []
    real_submit = Preparer.submit

    def spy(self: Preparer, values: list[bytes | None]) -> Any:
        submitted.append(len(values))
        return real_submit(self, values)

    monkeypatch.setattr(Preparer, "submit", spy)
    config = ConsumerConfig(
        batch_size=300,
        batch_ms=20,
        poll_ms=100,
        backoff_max=1.0,
        prepare_workers=2,
        parallel_min=50,
        prepare_chunk=64,
    )
    settings = kafka_settings(kafka_broker.bootstrap, str(migrated.url), [ledger])
    running = start_consumer(settings, migrated, config)
    wait_for(lambda: running.consumer.stats.records >= len(records), 90, "all records consumed")
    stats = running.finish()
    assert submitted, "the backlog was not prepared by the workers"
    assert stats.batches > 1

    # the reference: inline prepare of each partition's records in offset order, first
    # occurrence of each event_id kept (redeliveries share their original's partition)
    with migrated.connect() as conn:
        stored = conn.execute(
            select(
                events.c.event_id,
                events.c.payload,
                events.c.redacted_paths,
                events.c.table_name,
                events.c.op,
                events.c.entity_key,
                events.c.group_key,
                events.c.source_ts,
                events.c.source_topic,
                events.c.source_partition,
                events.c.source_offset,
            )
        ).all()
        letters = conn.execute(
            select(dead_letters.c.reason, dead_letters.c.raw, dead_letters.c.source_offset)
        ).all()
    by_offset = {(r.source_partition, r.source_offset): r for r in stored}
    values = _values_by_id(records)
    seen: set[str] = set()
    expected_rows = 0
    rejected: list[tuple[str, bytes, int | None]] = []
    for (partition, offset), row in sorted(by_offset.items()):
        reference = prepare_one(ledger, partition, offset, values[row.event_id])
        assert isinstance(reference, Staged)
        assert tuple(row) == (
            reference.event_id,
            reference.payload,
            reference.redacted_paths,
            reference.table,
            reference.op,
            reference.entity_key,
            reference.group_key,
            reference.source_ts,
            reference.topic,
            reference.partition,
            reference.offset,
        )
        seen.add(row.event_id)
        expected_rows += 1
    unique_ids = set(values)
    assert seen == unique_ids
    assert expected_rows == len(unique_ids)
    for value in BAD:
        letter = prepare_one(ledger, 0, 0, value)
        assert isinstance(letter, Rejected)
        rejected.append((letter.reason, letter.raw, None))
    assert sorted((r, bytes(raw)) for r, raw, _ in letters) == sorted(
        (r, raw) for r, raw, _ in rejected
    )
    summary = stats.summary()
    assert summary["appended"] == len(unique_ids)
    assert summary["tombstone"] == 1
    assert summary["dead_letter"] == len(BAD)


def _values_by_id(records: list[tuple[str, bytes | None, bytes | None]]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for _, _, value in records:
        item = prepare_one("t", 0, 0, value)
        if isinstance(item, Staged) and value is not None:
            found.setdefault(item.event_id, value)
    return found


def test_automatic_workers_only_when_forking_is_safe(migrated: Engine) -> None:
    settings = kafka_settings("127.0.0.1:9", str(migrated.url), ["topic"])
    consumer = SyncConsumer(settings, migrated, threading.Event(), ConsumerConfig())
    assert consumer.preparer is not None or (os.cpu_count() or 1) == 1
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)  # e.g. bo serve's threads
    other.start()
    try:
        consumer._start_preparer()
    finally:
        release.set()
        other.join()
    assert consumer.preparer is None  # inline: no fork from a multi-threaded process
