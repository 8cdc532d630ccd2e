"""Rebuilds folded in key partitions (rebuild.partitioned) give what one process gives.

- every projection (pairs through its legs and the derive step) and payment_orders with a
  status map (the projection travels to the workers): same checksum, rows and position
  as the in-process replay, for several partition counts and batch sizes;
- a builder error is reported at the earliest failing position, whichever partition
  meets it first;
- a stored ``entity_key`` that is not what the decoder makes of the event now: the rebuild
  falls back to one process and is still right;
- a worker that dies without reporting fails the rebuild with a clear error.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from loguru import logger
from sqlalchemy import Engine, text

from eventlog.settings import load_settings
from projections import registry
from projections.pairs import PairsV1
from rebuild import build as build_module
from rebuild.batches import RebuildFailed
from rebuild.build import build
from rebuild.compare import verify
from rebuild.partitioned import WorkerFailed, _collect, _context
from tests.fixtures_eventlog import golden_lines
from tests.fixtures_projections import append, append_refused, huge_version
from tests.test_rebuild_fast import fill

GOLDEN = Path(__file__).resolve().parent / "golden"
L = "ledger_entries"


@pytest.fixture
def pg(pg_url: str, engine_factory: Any) -> Engine:
    engine: Engine = engine_factory(pg_url)
    fill(engine, 40)
    golden = golden_lines()
    append(engine, golden)
    return engine


def partition_of(engine: Engine, key: str, parts: int) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT (hashtext(:k) & 2147483647) % :n"), {"k": key, "n": parts}
        ).scalar_one()
    return int(found)


@pytest.mark.parametrize(("parts", "batch"), [(2, 13), (3, 1000)])
def test_partitioned_rebuilds_equal_one_process(
    pg: Engine, parts: int, batch: int, tmp_path: Path
) -> None:
    status_map = tmp_path / "status_map.json"
    status_map.write_text('{"SUCCESS": ["SETTLED"], "IN_PROGRESS": ["CREATED"]}')
    settings = load_settings(status_map=str(status_map))
    for name, version in (("ledger_entries", 1), ("payment_orders", 2), ("pairs", 1)):
        serial = build(pg, settings, name, version, batch=batch, workers=0)
        parallel = build(pg, settings, name, version, batch=batch, workers=parts)
        assert serial.rows > 0
        assert (parallel.checksum, parallel.rows, parallel.position) == (
            serial.checksum,
            serial.rows,
            serial.position,
        ), name
    v1 = build(pg, settings, "payment_orders", 1, workers=parts)
    assert v1.checksum != build(pg, settings, "payment_orders", 2, workers=parts).checksum


def test_pairs_rebuild_folds_legs_then_derives_pairs(pg: Engine) -> None:
    pairs = registry.make("pairs", None, None)
    legs = pairs.per_key_part()
    assert isinstance(pairs, PairsV1)
    assert legs is not None
    assert legs is not pairs
    assert legs.per_key
    assert [t.name for t in legs.tables] == ["pair_legs"]
    assert legs.version == pairs.version  # the same physical table
    assert registry.make("ledger_entries", None, None).per_key_part() is not None


@pytest.mark.parametrize("parts", [2, 3])
def test_a_builder_error_is_reported_at_the_earliest_position(
    pg_url: str, engine_factory: Any, parts: int
) -> None:
    engine: Engine = engine_factory(pg_url)
    fill(engine, 10)
    keys = [f"BIG{i}" for i in range(50)]
    first = next(k for k in keys if partition_of(engine, f"{L}:{k}", parts) != 0)
    second = next(k for k in keys if partition_of(engine, f"{L}:{k}", parts) == 0)
    # the later failure sits in partition 0, the earlier one elsewhere
    append_refused(engine, *huge_version(first))
    with engine.connect() as conn:
        position = conn.execute(text("SELECT max(position) FROM eventlog.events")).scalar_one()
    append_refused(engine, *huge_version(second))
    with pytest.raises(RebuildFailed) as failed:
        build(engine, None, "ledger_entries", batch=5, workers=parts)
    assert failed.value.position == position
    assert "failed at position" in str(failed.value)


def test_a_stored_key_the_decoder_no_longer_makes_falls_back_to_one_process(
    pg: Engine,
) -> None:
    expected = build(pg, None, "ledger_entries", workers=0)
    url = pg.url
    dsn = f"host={url.host} port={url.port} user={url.username} dbname={url.database}"
    with psycopg.connect(dsn, autocommit=True) as conn:  # the owner may bypass the triggers
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "UPDATE eventlog.events SET entity_key = 'ledger_entries:elsewhere' "
            "WHERE position = (SELECT min(position) FROM eventlog.events "
            "WHERE table_name = 'ledger_entries')"
        )
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        result = build(pg, None, "ledger_entries", workers=2)
    finally:
        logger.remove(sink)
    assert (result.checksum, result.rows) == (expected.checksum, expected.rows)
    assert any("stored entity_key 'ledger_entries:elsewhere'" in w for w in warnings)
    assert any("replaying in one process" in w for w in warnings)


def test_a_worker_that_dies_without_a_word_fails_the_rebuild() -> None:
    class Silent:
        def get(self, timeout: float) -> Any:
            import queue

            raise queue.Empty

    dead = SimpleNamespace(exitcode=-9)
    projection = registry.make("ledger_entries", None, None)
    with pytest.raises(WorkerFailed, match="exited with code -9"):
        _collect(projection, [dead], Silent(), 10, None)  # type: ignore[arg-type]


def test_verify_replays_in_partitions_into_its_own_scratch_tables(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ledger_entries", "payment_orders", "pairs"):
        build(pg, None, name, workers=0)
    monkeypatch.setattr(build_module, "AUTO_WORKERS_FROM", 0)  # partitions even for this log
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    for name in ("ledger_entries", "payment_orders", "pairs"):
        report = verify(pg, None, name)
        assert report["ok"] is True, report
        assert report["checksum_replay"] == report["stored_checksum"]
    with pg.connect() as conn:
        leftovers = conn.execute(
            text(
                "SELECT count(*) FROM pg_tables "
                "WHERE schemaname = 'bo' AND tablename LIKE '%\\_\\_%'"
            )
        ).scalar_one()
    assert leftovers == 0  # no __new (or scratch) tables written on the side


def test_with_another_thread_running_the_workers_are_spawned_and_agree(
    pg: Engine, tmp_path: Path
) -> None:
    # a progress bar's refresh thread on a terminal: no fork; the projection (and its
    # status map) travels to the spawned workers by pickle
    status_map = tmp_path / "status_map.json"
    status_map.write_text('{"SUCCESS": ["SETTLED"]}')
    settings = load_settings(status_map=str(status_map))
    serial = build(pg, settings, "payment_orders", 2, workers=0)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert _context().get_start_method() == "spawn"
        spawned = build(pg, settings, "payment_orders", 2, workers=2)
    finally:
        stop.set()
        other.join()
    assert (spawned.checksum, spawned.rows) == (serial.checksum, serial.rows)


def test_a_worker_error_fails_the_rebuild_with_its_message() -> None:
    class Reporting:
        def get(self, timeout: float) -> Any:
            return ("error", 1, "OperationalError: server closed the connection")

    alive = SimpleNamespace(exitcode=None)
    projection = registry.make("pairs", None, None)
    with pytest.raises(WorkerFailed, match="worker 1 of pairs failed: OperationalError"):
        _collect(projection, [alive, alive], Reporting(), 0, None)  # type: ignore[arg-type]
