"""The rebuild's fast paths give what the reference paths give.

- decoding workers: what crosses the process boundary (:func:`rebuild.decoding.pack` /
  :func:`~rebuild.decoding.unpack`) rebuilds the very events the main process would decode;
- a PostgreSQL build with workers reading their own ranges = one without;
- a replay into fresh tables (lookups skipped, new rows COPYed) = the live runner, even when
  one key is revisited across many small batches;
- how many workers ``None`` picks;
- the checksum's read-ahead thread and the checksum computed while indexes are built.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from eventlog.decode import Change
from eventlog.store import LoggedEvent, Prepared, prepare
from projections import registry
from projections.checksum import _read_ahead
from projections.runner import Runner
from projections.source import decode_rows
from projections.status import status
from projections.store import tables_for
from rebuild.build import EarlyChecksum, auto_workers, build
from rebuild.decoding import pack, unpack
from tests.fixtures_eventlog import golden_lines
from tests.fixtures_projections import append, event, ledger_row, order_row

GOLDEN = Path(__file__).resolve().parent / "golden"
L, P = "ledger_entries", "payment_orders"


def stored_rows(lines: list[bytes]) -> list[tuple[int, bytes, str]]:
    rows: list[tuple[int, bytes, str]] = []
    for line in lines:
        outcome = prepare(line)
        if isinstance(outcome, Prepared):
            rows.append((len(rows) + 1, outcome.payload, "2026-01-01T00:00:00.000000Z"))
    return rows


def test_the_fast_constructors_set_every_field() -> None:
    # decode_stored and unpack set these fields one by one: a new field must be added there
    assert [f.name for f in fields(Change)] == [
        "table",
        "op",
        "key",
        "row",
        "source_ts",
        "lsn",
        "source_tx",
        "snapshot",
    ]
    assert [f.name for f in fields(LoggedEvent)] == ["position", "change", "ingested_at"]


def test_packed_events_are_the_decoded_events() -> None:
    lines = golden_lines()
    rows = stored_rows(lines)
    assert len(rows) > 50
    blob = pack(rows)
    assert blob[:1] == b"j"  # JSON, the common case
    assert unpack(blob) == decode_rows(rows)


def test_values_json_cannot_carry_travel_as_a_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder refuses integers past 64 bits today; should a value orjson cannot
    write ever come out of it, the batch still travels (as a pickle), unchanged."""
    import rebuild.decoding

    rows = stored_rows([event(L, "c", ledger_row("BIG")), event(P, "c", order_row("O1"))])
    real = rebuild.decoding.decode_one

    def widened(position: int, payload: bytes) -> Any:
        change = real(position, payload)
        if change.key == "BIG":
            return dataclasses.replace(change, row={**change.row, "version": 2**70})
        return change

    monkeypatch.setattr(rebuild.decoding, "decode_one", widened)
    blob = pack(rows)
    assert blob[:1] == b"p"
    events = unpack(blob)
    assert events[0].change.row["version"] == 2**70
    assert events[1:] == decode_rows(rows)[1:]


def fill(engine: Engine, orders: int) -> None:
    """Orders whose legs and updates come back many batches later (keys revisited)."""
    lines: list[bytes] = []
    for i in range(orders):
        order = f"O{i}"
        lines.append(event(P, "c", order_row(order, status="CREATED", version=1), lsn=i))
        leg = ledger_row(f"P{i}", related_id=order, version=1)
        lines.append(event(L, "c", leg, lsn=1000 + i, ts=i))
    for i in range(orders):
        order = f"O{i}"
        lines.append(event(P, "u", order_row(order, status="SETTLED", version=2), lsn=5000 + i))
        receive = ledger_row(f"R{i}", type="RECEIVE", wallet="W2", related_id=order, version=1)
        lines.append(event(L, "c", receive, lsn=6000 + i, ts=i + 1))
        moved = ledger_row(f"P{i}", related_id=f"O{(i + 1) % orders}", version=2)
        lines.append(event(L, "u", moved, lsn=7000 + i, ts=i + 2))
        if i % 4 == 0:
            lines.append(event(L, "d", {"tx_id": f"R{i}"}, lsn=8000 + i, ts=i + 3))
    append(engine, lines)


def checksums(engine: Engine) -> dict[str, Any]:
    return {f"{s['projection']}.v{s['version']}": s["checksum"] for s in status(engine, None)}


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_fresh_replay_equals_the_live_runner(migrated: Engine, batch: int) -> None:
    fill(migrated, 12)
    assert Runner(migrated, None).run_once()["failed"] == []
    live = checksums(migrated)
    for name in ("ledger_entries", "payment_orders", "pairs"):
        result = build(migrated, None, name, 1, batch=batch, workers=0)
        assert live[f"{name}.v1"] is not None
        assert result.checksum == live[f"{name}.v1"], name


def test_workers_reading_postgresql_give_the_same_result(pg_url: str, engine_factory: Any) -> None:
    engine = engine_factory(pg_url)
    fill(engine, 30)
    for name in ("ledger_entries", "pairs"):
        serial = build(engine, None, name, batch=11, workers=0)
        parallel = build(engine, None, name, batch=11, workers=2)
        assert (parallel.checksum, parallel.rows, parallel.position) == (
            serial.checksum,
            serial.rows,
            serial.position,
        )


def test_auto_workers(
    sqlite_url: str, pg_url: str, engine_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite, pg = engine_factory(sqlite_url), engine_factory(pg_url)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert auto_workers(pg, 10_000) == 0  # small: not worth spawning
    assert auto_workers(sqlite, 10**6) == 0
    assert auto_workers(pg, 10**6) == 1
    assert auto_workers(pg, 10**6, partitioned=True) == 2  # key partitions: one per CPU
    assert auto_workers(sqlite, 10**6, partitioned=True) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert auto_workers(pg, 10**6) == 2
    assert auto_workers(pg, 10**6, partitioned=True) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert auto_workers(pg, 10**6) == 0


def test_read_ahead_yields_every_chunk_and_passes_errors_on() -> None:
    chunks = iter([[1, 2], [3], []])
    assert list(_read_ahead(lambda: next(chunks))) == [[1, 2], [3]]

    def failing() -> list[Any]:
        raise RuntimeError("server gone")

    with pytest.raises(RuntimeError, match="server gone"):
        list(_read_ahead(failing))
    endless = _read_ahead(lambda: [0])
    assert next(endless) == [0]
    endless.close()  # the consumer stops early: the thread is stopped and joined
    assert not [t for t in threading.enumerate() if t.name == "checksum-read-ahead"]


def test_the_early_checksum_is_used_only_for_the_same_position(
    pg_url: str, engine_factory: Any
) -> None:
    engine = engine_factory(pg_url)
    fill(engine, 5)
    result = build(engine, None, "pairs", workers=0)
    projection = registry.make("pairs", None, None)
    early = EarlyChecksum(engine, projection, tables_for(projection), result.position)
    assert early.result(result.position + 1) is None  # something was applied since
    assert early.result(result.position) == result.checksum
