"""Projection tables on PostgreSQL: byte-wise text, key lookups by one JSON parameter, and
new rows written in key order."""

from __future__ import annotations

import random

from sqlalchemy import text

from eventlog.db import make_engine, write_tx
from eventlog.migrate import upgrade
from projections import registry
from projections.store import (
    SqlReader,
    _select_member,
    create_tables,
    drop_tables,
    insert_rows,
    tables_for,
)
from projections.tables import qualified

# keys whose code-point order differs from a linguistic one (case, accents, punctuation)
AWKWARD = ["a", "B", "b", "É", "e", "z", "_x", "-y", "10", "9", 'q"uote', "back\\slash", "[1,2]"]


def test_text_columns_compare_byte_wise_and_lookups_use_the_key_index(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        upgrade(engine)
        ledger = registry.make("ledger_entries", None, None)
        with write_tx(engine) as conn:
            drop_tables(conn, ledger)
            tables = create_tables(conn, ledger)
            physical = tables["ledger_entries"]
            name = qualified(conn, physical.name)
            collations = conn.execute(
                text(
                    "SELECT column_name, collation_name FROM information_schema.columns "
                    "WHERE table_schema = 'bo' AND table_name = :t AND data_type = 'text'"
                ),
                {"t": physical.name},
            ).all()
            conn.execute(
                text(
                    f"INSERT INTO {name} (tx_id, wallet_id) SELECT 'T' || i, 'W' || (i % 97) "
                    "FROM generate_series(1, 3000) i"
                )
            )
            conn.execute(
                text(f"INSERT INTO {name} (tx_id) SELECT unnest(CAST(:k AS text[]))"),
                {"k": AWKWARD},
            )
            conn.execute(text(f"ANALYZE {name}"))
            ordered = (
                conn.execute(
                    text(f"SELECT tx_id FROM {name} WHERE tx_id NOT LIKE 'T%' ORDER BY tx_id")
                )
                .scalars()
                .all()
            )
            reader = SqlReader(conn, tables_for(ledger))
            found = reader.by_key("ledger_entries", [*AWKWARD, "T7", "missing", ""])
            by_wallet = reader.by_column("ledger_entries", "wallet_id", ["W3", "W5"])
            plan = (
                conn.exec_driver_sql(  # the runner's own statement, its parameter as sent
                    "EXPLAIN " + str(_select_member(physical, "tx_id", False).compile(conn)),
                    {"values": '["T1", "T2"]'},
                )
                .scalars()
                .all()
            )
            drop_tables(conn, ledger)
    finally:
        engine.dispose()
    assert collations
    assert {c for _, c in collations} == {"C"}, collations
    assert ordered == sorted(AWKWARD)  # Python's str order: the checksum's, and SQLite's
    assert set(found) == {*AWKWARD, "T7"}
    assert found['q"uote']["tx_id"] == 'q"uote'
    assert len(by_wallet) == sum(1 for i in range(1, 3001) if i % 97 in (3, 5))
    assert any("Index" in line and "pk_ledger_entries" in line for line in plan), plan


def test_new_rows_reach_the_table_in_key_order(pg_url: str) -> None:
    """A batch of new rows is COPYed sorted by key (code-point order, the key's collation),
    so the primary-key index takes it as one ordered walk: the heap holds them in that
    order, whatever order the fold produced them in."""
    engine = make_engine(pg_url)
    keys = [*AWKWARD, *(f"T{i}" for i in range(500))]
    shuffled = random.Random(7).sample(keys, len(keys))
    try:
        upgrade(engine)
        ledger = registry.make("ledger_entries", None, None)
        with write_tx(engine) as conn:
            drop_tables(conn, ledger)
            physical = create_tables(conn, ledger)["ledger_entries"]
            blank = dict.fromkeys(physical.columns.keys())
            insert_rows(conn, physical, [{**blank, "tx_id": k, "version": 1} for k in shuffled])
            name = qualified(conn, physical.name)
            stored = conn.execute(text(f"SELECT tx_id FROM {name} ORDER BY ctid")).scalars().all()
            drop_tables(conn, ledger)
    finally:
        engine.dispose()
    assert stored == sorted(keys)
