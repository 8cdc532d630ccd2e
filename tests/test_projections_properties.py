"""Property tests: order, duplicates, batch size and backend do not change the projections."""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bo.pgcluster import Cluster
from eventlog.db import make_engine
from eventlog.decode import TABLES, decode_bytes
from eventlog.migrate import upgrade
from eventlog.store import LoggedEvent
from projections import registry
from projections.base import Projection
from projections.memory import MemoryTables, replay
from projections.runner import Runner
from projections.status import status
from rebuild.build import build
from tests.fixtures_eventlog import golden_lines
from tests.fixtures_projections import append, event, ledger_row, order_row

NAMES = ("ledger_entries", "payment_orders", "pairs")
TX_IDS = ("T1", "T2", "T3", "T4", "T5")
ORDERS = ("O1", "O2")
TYPES = ("PAYMENT", "RECEIVE", "FEE")
RELATED_TYPES = (None, "PAYMENT_ORDER", "REFUND")
STATUSES = ("CREATED", "SETTLED", "FAILED")


def drawn_row(draw: Any, tx: str, version: int, **columns: Any) -> dict[str, Any]:
    """A ledger row for ``tx`` at ``version`` with drawn type, pairing and amount."""
    return ledger_row(
        tx,
        type=draw(st.sampled_from(TYPES)),
        related_id=draw(st.sampled_from((*ORDERS, None))),
        related_type=draw(st.sampled_from(RELATED_TYPES)),
        version=version,
        **columns,
    )


@st.composite
def versioned_changes(draw: Any) -> list[bytes]:
    """Changes with a distinct (version, lsn) per key: their order must not matter.

    Deletes carry a full ``before`` image with non-null data (REPLICA IDENTITY FULL).
    """
    out: list[bytes] = []
    lsn = 0
    for tx in draw(st.lists(st.sampled_from(TX_IDS), min_size=1, max_size=4, unique=True)):
        versions = draw(st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True))
        for version in versions:
            lsn += 1
            row = drawn_row(
                draw,
                tx,
                version,
                wallet=draw(st.sampled_from(("W1", "W2"))),
                amount=draw(st.sampled_from(("1.00", "2.50", "0.00"))),
            )
            op = draw(st.sampled_from(("c", "u", "r", "d")))
            if op == "d":
                row["related_id"] = row["related_id"] or "O9"
                row["related_type"] = row["related_type"] or "PAYMENT_ORDER"
            out.append(event("ledger_entries", op, row, lsn=lsn, ts=draw(st.integers(0, 99))))
    for order in draw(st.lists(st.sampled_from(ORDERS), max_size=2, unique=True)):
        for version in draw(st.lists(st.integers(1, 9), min_size=1, max_size=3, unique=True)):
            lsn += 1
            row = order_row(order, status=draw(st.sampled_from(STATUSES)), version=version)
            out.append(event("payment_orders", "u", row, lsn=lsn, ts=draw(st.integers(0, 99))))
    return out


@st.composite
def oltp_histories(draw: Any) -> list[bytes]:
    """What a source database commits: per key, versions rising with the lsn, maybe a
    delete — key-only (Debezium's default replica identity: the key alone, or with
    placeholders for required columns, ``version`` 0 included) or a full image of the last
    version, nulls included — and maybe a re-insert with higher versions after it, deleted
    again in its own way (the replica identity may change in between)."""
    out: list[bytes] = []
    lsn = 0
    for tx in draw(st.lists(st.sampled_from(TX_IDS), min_size=1, max_size=3, unique=True)):
        version = 0
        for _incarnation in range(draw(st.integers(1, 2))):
            row: dict[str, Any] = {}
            for step in range(draw(st.integers(1, 3))):
                version += 1
                lsn += 1
                row = drawn_row(
                    draw,
                    tx,
                    version,
                    status=draw(st.sampled_from((None, "POSTED"))),
                    amount=draw(st.sampled_from(("1.00", "2.50"))),
                )
                out.append(event("ledger_entries", "u" if step else "c", row, lsn=lsn, ts=lsn))
            kind = draw(st.sampled_from(("none", "key", "placeholders", "full")))
            if kind == "none":
                break
            lsn += 1
            before = {
                "key": {"tx_id": tx},
                "placeholders": {"tx_id": tx, "wallet_id": "", "amount": "0", "version": 0},
                "full": dict(row),
            }[kind]
            out.append(event("ledger_entries", "d", before, lsn=lsn, ts=lsn))
    return out


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_oltp_histories_give_the_same_rows_in_any_arrival_order(data: Any) -> None:
    """Key-only deletes included: a delete that arrives before the changes it follows
    still wins, and the deleted row holds the data of the last version (SPEC §4.1)."""
    lines = data.draw(oltp_histories())
    shuffled = data.draw(st.permutations(lines))
    assert checksums(shuffled) == checksums(lines)
    again = data.draw(st.lists(st.sampled_from(lines), max_size=len(lines)))
    assert checksums(shuffled + again) == checksums(lines)


def logged(lines: list[bytes]) -> list[LoggedEvent]:
    return [
        LoggedEvent(i, decode_bytes(line), "2026-06-01T00:00:00.000000Z")
        for i, line in enumerate(lines, 1)
    ]


def checksums(lines: list[bytes]) -> dict[str, str]:
    out = replay(logged(lines))
    return {name: out.checksum(name) for name in NAMES}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_permutation_gives_the_same_checksums(data: Any) -> None:
    lines = data.draw(versioned_changes())
    shuffled = data.draw(st.permutations(lines))
    assert checksums(shuffled) == checksums(lines)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_duplicates_change_nothing(data: Any) -> None:
    lines = data.draw(versioned_changes())
    again = data.draw(st.lists(st.sampled_from(lines), max_size=len(lines)))
    assert checksums(lines + again) == checksums(lines)


def _db_checksums(url: str, chunks: list[list[bytes]], batch: int) -> dict[str, str]:
    engine = make_engine(url)
    try:
        runner = Runner(engine, None, batch=batch)
        for chunk in chunks:  # appends interleaved with runner passes
            append(engine, chunk)
            runner.run_once()
        live = {s["projection"]: s["checksum"] for s in status(engine, None)}
        rebuilt = {name: build(engine, None, name, batch=batch + 3).checksum for name in NAMES}
        assert live == rebuilt
        return live
    finally:
        engine.dispose()


def _split(lines: list[bytes], cuts: list[int]) -> list[list[bytes]]:
    points = sorted({min(c, len(lines)) for c in cuts} | {0, len(lines)})
    return [lines[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_live_runner_with_any_batch_size_equals_rebuild_and_memory(data: Any) -> None:
    lines = data.draw(versioned_changes())
    batch = data.draw(st.integers(1, 6))
    cuts = data.draw(st.lists(st.integers(0, len(lines)), max_size=3))
    with tempfile.TemporaryDirectory() as tmp:
        got = _db_checksums(_sqlite_copy(Path(tmp)), _split(lines, cuts), batch)
    assert got == checksums(lines)


_pg_counter = iter(range(10_000))
_TEMPLATES: dict[str, Path] = {}


def _sqlite_copy(directory: Path) -> str:
    """A migrated SQLite database, copied from one migrated once (migrations are slow)."""
    if "sqlite" not in _TEMPLATES:
        template = Path(tempfile.mkdtemp()) / "template.db"
        engine = make_engine(f"sqlite:///{template}")
        upgrade(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        _TEMPLATES["sqlite"] = template
    shutil.copy(_TEMPLATES["sqlite"], directory / "p.db")
    return f"sqlite:///{directory / 'p.db'}"


def _pg_copy(cluster: Cluster) -> str:
    """A migrated PostgreSQL database made with CREATE DATABASE … TEMPLATE."""
    if "pg" not in _TEMPLATES:
        engine = make_engine(cluster.create_database("prop_template"))
        upgrade(engine)
        engine.dispose()
        _TEMPLATES["pg"] = Path("prop_template")
    name = f"prop{next(_pg_counter)}"
    cluster.psql(f'CREATE DATABASE "{name}" TEMPLATE prop_template')
    return cluster.url(name)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_sqlite_and_postgresql_agree(pg_cluster: Cluster, data: Any) -> None:
    lines = data.draw(versioned_changes())
    batch = data.draw(st.integers(1, 6))
    with tempfile.TemporaryDirectory() as tmp:
        on_sqlite = _db_checksums(_sqlite_copy(Path(tmp)), [lines], batch)
    assert _db_checksums(_pg_copy(pg_cluster), [lines], batch) == on_sqlite


def _fold(projection: Projection, events: list[LoggedEvent], batch: int) -> dict[str, Any]:
    store = MemoryTables()
    for start in range(0, len(events), batch):
        store.write(projection, projection.apply(events[start : start + batch], store))
    return store.rows


def _reading_only(projection: Projection, events: list[LoggedEvent]) -> list[LoggedEvent]:
    """The events with rows cut to what the projection declares it reads (a rebuild's
    partition workers decode no more), plus each table's key and group column."""
    assert projection.reads is not None
    out = []
    for e in events:
        spec = TABLES[e.change.table]
        kept = projection.reads | {spec.key, spec.group}
        row = {k: v for k, v in e.change.row.items() if k in kept}
        out.append(LoggedEvent(e.position, dataclasses.replace(e.change, row=row), e.ingested_at))
    return out


@settings(max_examples=60, deadline=None)
@given(versioned_changes(), st.integers(1, 6))
def test_the_legs_fold_reads_only_the_columns_it_declares(lines: list[bytes], batch: int) -> None:
    legs = registry.make("pairs", None, None).per_key_part()
    assert legs is not None
    assert legs.reads is not None
    for events in (logged(lines), logged(golden_lines())):
        assert _fold(legs, _reading_only(legs, events), batch) == _fold(legs, events, batch)
