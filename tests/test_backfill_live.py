"""Backfill, then live changes through Kafka: the projections converge on the OLTP state.

Includes the race a real deployment has: a change committed after the backfill's
snapshot is consumed *before* the backfill appends the older snapshot row.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest
from sqlalchemy import Engine, text

from bo.broker import Broker
from eventlog.backfill import backfill, json_value
from eventlog.settings import Settings
from projections.runner import Runner
from tests.fixtures_kafka import (
    create_topics,
    kafka_broker,
    kafka_settings,
    produce,
    start_consumer,
    unique,
    wait_for,
)
from tests.test_backfill import N_LEDGER, N_ORDERS, oltp

pytestmark = [pytest.mark.kafka, pytest.mark.pg]
__all__ = ["kafka_broker", "oltp"]

KEYS = {"ledger_entries": "tx_id", "payment_orders": "order_id"}


def _row(conn: psycopg.Connection[Any], table: str, key: Any) -> dict[str, Any] | None:
    cur = conn.execute(f"SELECT * FROM {table} WHERE {KEYS[table]} = %s", (key,))
    found = cur.fetchone()
    if found is None:
        return None
    names = [d.name for d in cur.description or []]
    return dict(zip(names, found, strict=True))


def _lsn(conn: psycopg.Connection[Any]) -> int:
    got = conn.execute("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint").fetchone()
    assert got is not None
    return int(got[0])


def debezium(
    table: str, op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, lsn: int
) -> bytes:
    """A Debezium change event as the connector would emit it for this OLTP change."""
    row = after or before or {}
    ts = row.get("updated_at")
    return orjson.dumps(
        {
            "before": None if before is None else {k: json_value(v) for k, v in before.items()},
            "after": None if after is None else {k: json_value(v) for k, v in after.items()},
            "source": {
                "ts_ms": int(ts.timestamp() * 1000) if ts else 0,
                "db": "payments",
                "schema": "public",
                "table": table,
                "txId": lsn // 8,
                "lsn": lsn,
            },
            "op": op,
            "ts_ms": 0,
        }
    )


class Oltp:
    """Apply a change to the OLTP database and return the event Debezium would emit."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)

    def update(self, table: str, key: Any, sets: str, *, commit: bool = True) -> bytes:
        before = _row(self.conn, table, key)
        assert before is not None
        after = dict(before)
        # compute the new row without committing when ``commit`` is False (the race case)
        with self.conn.transaction(force_rollback=not commit):
            self.conn.execute(
                f"UPDATE {table} SET {sets}, version = version + 1, "
                f"updated_at = updated_at + interval '1 hour' WHERE {KEYS[table]} = %s",
                (key,),
            )
            after = _row(self.conn, table, key) or after
            lsn = _lsn(self.conn)
        return debezium(table, "u", before, after, lsn)

    def delete(self, table: str, key: Any) -> bytes:
        before = _row(self.conn, table, key)
        self.conn.execute(f"DELETE FROM {table} WHERE {KEYS[table]} = %s", (key,))
        return debezium(table, "d", before, None, _lsn(self.conn))

    def insert_copy(self, table: str, key: Any, new_key: Any) -> bytes:
        row = _row(self.conn, table, key)
        assert row is not None
        row[KEYS[table]] = new_key
        cols = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        self.conn.execute(
            f"INSERT INTO {table} ({cols}) VALUES ({marks})",
            list(row.values()),
        )
        return debezium(table, "c", None, row, _lsn(self.conn))


def _projection(engine: Engine, table: str, cols: str) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {KEYS[table]}, {cols} FROM bo.{table}")).all()
    return {str(r[0]): tuple(r[1:]) for r in rows}


def _oltp_state(conn: psycopg.Connection[Any], table: str, cols: str) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(f"SELECT {KEYS[table]}, {cols} FROM {table}").fetchall()
    return {str(r[0]): tuple(json_value(v) for v in r[1:]) for r in rows}


def test_backfill_then_live_changes_converge(
    kafka_broker: Broker, oltp: str, pg_url: str, engine_factory: Any
) -> None:
    engine: Engine = engine_factory(pg_url)
    ledger, orders = unique("ledger-"), unique("orders-")
    create_topics(kafka_broker.bootstrap, [ledger, orders], partitions=3)
    settings: Settings = kafka_settings(kafka_broker.bootstrap, pg_url, [ledger, orders])
    topic = {"ledger_entries": ledger, "payment_orders": orders}
    db = Oltp(oltp)

    # 1. the race: a change the snapshot will not see is consumed before the backfill
    early = db.update("ledger_entries", 5, "amount = 555.55", commit=False)
    running = start_consumer(settings, engine)
    produce(kafka_broker.bootstrap, [(ledger, b"5", early)])
    wait_for(lambda: running.consumer.stats.result.appended == 1, 60, "the early change")

    # 2. backfill the snapshot (tx 5 still at version 1 there), then commit that change
    report = backfill(engine, oltp, batch=97)
    assert report.summary()["appended"] == N_LEDGER + N_ORDERS
    db.update("ledger_entries", 5, "amount = 555.55")

    # 3. live changes after the snapshot, some redelivered
    live = [
        ("ledger_entries", db.update("ledger_entries", 7, "status = 'REVERSED'")),
        ("ledger_entries", db.update("ledger_entries", 7, "amount = 7.77")),
        ("ledger_entries", db.delete("ledger_entries", 9)),
        ("ledger_entries", db.insert_copy("ledger_entries", 11, N_LEDGER + 1)),
        ("payment_orders", db.update("payment_orders", "O1", "status = 'SETTLED'")),
        ("payment_orders", db.delete("payment_orders", "O2")),
    ]
    stream = [(topic[t], None, v) for t, v in live]
    produce(kafka_broker.bootstrap, stream + stream[:3] + [(ledger, b"5", early)])
    expected = 1 + len(live) + 3 + 1
    wait_for(lambda: running.consumer.stats.records >= expected, 60, "live changes consumed")
    running.finish()
    summary = Runner(engine, settings).run_once(checksums=False)
    assert not summary["failed"], summary

    cols = "amount, status, version, wallet_id"
    served = _projection(engine, "ledger_entries", cols + ", deleted")
    truth = _oltp_state(db.conn, "ledger_entries", cols)
    assert {k: v[:-1] for k, v in served.items() if not v[-1]} == truth
    assert served["9"][-1] is True  # the deleted entry stays, flagged
    assert served["5"][0] == "555.55"
    assert served[str(N_LEDGER + 1)][2] == 1

    ocols = "status, version, payer_wallet_id"
    served_orders = _projection(engine, "payment_orders", ocols + ", deleted")
    assert {k: v[:-1] for k, v in served_orders.items() if not v[-1]} == _oltp_state(
        db.conn, "payment_orders", ocols
    )
    assert served_orders["O2"][-1] is True
    assert len(served_orders) == N_ORDERS
    db.conn.close()
