"""The server-side derive of pair rows (``PairsV1.derive_select``) is ``pair_row``.

A rebuild of ``pairs`` folds the legs in key partitions, then has PostgreSQL compute every
pair row from the final legs in one statement per partition; the live runner computes
them with :func:`projections.pairs.pair_row`. Both must give the same rows for any legs:
sides with zero, one or several legs, deleted legs, other leg and relation types, null
and empty ``related_id``, null wallets and commit times.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, text

from eventlog.db import make_engine, write_tx
from projections import registry
from projections.pairs import PAIR_LEGS, PAIRS, pair_row, side_key
from projections.store import create_tables, tables_for
from projections.tables import Row, qualified

TIMES = [None, *(f"2026-03-01T00:00:0{n}.000000Z" for n in range(4))]

legs_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "wallet_id": st.sampled_from([None, "W1", "W2", "W3"]),
            "type": st.sampled_from(["PAYMENT", "RECEIVE", "FEE", None]),
            "related_id": st.sampled_from([None, "", "O1", "O2", "O3", "o1"]),
            "related_type": st.sampled_from([None, "PAYMENT_ORDER", "REFUND"]),
            "deleted": st.booleans(),
            "deleted_at": st.sampled_from(TIMES),  # kept only on a deleted leg
            # per side and related_id, the earliest time as its leg (other orders' and the
            # other side's entries included)
            "candidate_since": st.dictionaries(
                st.builds(
                    side_key,
                    st.sampled_from(["PAYMENT", "RECEIVE"]),
                    st.sampled_from(["O1", "O2", "O3", "o1"]),
                ),
                st.sampled_from(TIMES[1:]),
                max_size=4,
            ).map(lambda d: orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode() if d else None),
        }
    ),
    max_size=14,
)


@pytest.fixture(scope="module")
def legs_db(pg_cluster: Any) -> Iterator[Engine]:
    engine = make_engine(pg_cluster.create_database("pairs_derive"))
    with write_tx(engine) as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS bo"))
        create_tables(conn, registry.make("pairs", 1, None), "__t")
    yield engine
    engine.dispose()


def full_leg(index: int, leg: dict[str, Any]) -> Row:
    return {
        "tx_id": f"T{index:03d}",
        **leg,
        "updated_at": None,
        "version": index,
        "deleted_at": leg["deleted_at"] if leg["deleted"] else None,
        "source_ts": None,
        "lsn": None,
        "position": index + 1,
    }


def python_pairs(legs: list[Row]) -> set[tuple[Any, ...]]:
    groups: dict[str, list[Row]] = {}
    for leg in legs:
        if leg["related_id"]:  # the fold touches a leg's related_id only when it has one
            groups.setdefault(leg["related_id"], []).append(leg)
    rows = (pair_row(related_id, group) for related_id, group in groups.items())
    return {tuple(row[c] for c in PAIRS.column_names) for row in rows if row is not None}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(legs=legs_strategy)
def test_the_server_derives_what_pair_row_computes(
    legs_db: Engine, legs: list[dict[str, Any]]
) -> None:
    projection = registry.make("pairs", 1, None)
    tables = tables_for(projection, "__t")
    rows = [full_leg(i, leg) for i, leg in enumerate(legs)]
    with write_tx(legs_db) as conn:
        conn.execute(tables[PAIR_LEGS.name].delete())
        if rows:
            conn.execute(insert(tables[PAIR_LEGS.name]), rows)
        select = projection.derive_select(qualified(conn, tables[PAIR_LEGS.name].name), "true")
        derived = {tuple(r) for r in conn.exec_driver_sql(select)}
    assert derived == python_pairs(rows)
