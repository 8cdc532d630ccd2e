"""End to end: produce Debezium events → `bo consume` path → projections → GET /admin/tx."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from bo.broker import Broker
from eventlog.schema import consumer_heartbeats
from eventlog.timeutil import parse_ts, utcnow
from tests.fixtures_api import client, make_env
from tests.fixtures_kafka import (
    create_topics,
    kafka_broker,
    ledger_event,
    log_count,
    order_event,
    produce,
    start_consumer,
    unique,
    wait_for,
)

pytestmark = pytest.mark.kafka
__all__ = ["kafka_broker"]
READ = "ADMIN_READ"


def test_produced_change_is_served_by_the_api(
    kafka_broker: Broker, migrated: Engine, tmp_path: Path
) -> None:
    ledger, orders = unique("ledger-"), unique("orders-")
    create_topics(kafka_broker.bootstrap, [ledger, orders], partitions=3)
    env = make_env(
        migrated,
        tmp_path,
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_topics=f"{ledger},{orders}",
        kafka_group=unique("g-"),
    )
    produce(
        kafka_broker.bootstrap,
        [
            (orders, b"E1", order_event("E1", status="SETTLED")),
            (ledger, b"ET1", ledger_event("ET1", related="E1", kind="PAYMENT", wallet="WA")),
            (ledger, b"ET2", ledger_event("ET2", related="E1", kind="RECEIVE", wallet="WB")),
            (ledger, b"ET2", None),  # tombstone after the change
        ],
    )
    running = start_consumer(env.settings, migrated)
    wait_for(lambda: log_count(migrated) == 3, 60, "three events in the log")
    wait_for(lambda: _caught_up(migrated), 30, "a caught-up heartbeat")
    env.project()

    app = env.app()
    with client(app) as http:
        got = http.get("/admin/tx/ET1", headers=env.headers(READ))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["wallet_id"] == "WA"
    assert body["amount"] == "100.00"
    assert body["pairing_status"] == "COMPLETE"
    assert body["paired_tx_id"] == "ET2"
    assert body["payment_order"]["order_id"] == "E1"
    assert body["data_lag_sec"] < 5  # consumer and projections caught up

    with client(app) as http:  # bo consume serves no HTTP: the API reports its lag
        scraped = http.get("/metrics").text
    lags = [line for line in scraped.splitlines() if line.startswith("bo_consumer_lag_records{")]
    assert any(f'topic="{ledger}"' in line for line in lags), lags
    assert all(line.endswith(" 0.0") for line in lags), lags

    running.finish()
    later = utcnow() + timedelta(seconds=60)
    with client(env.app(clock=lambda: later)) as http:
        stale = http.get("/admin/tx/ET1", headers=env.headers(READ)).json()
    assert stale["data_lag_sec"] >= 60  # a stopped consumer makes the lag grow


def _caught_up(engine: Engine) -> bool:
    with engine.connect() as conn:
        row = conn.execute(
            select(consumer_heartbeats.c.caught_up_at, consumer_heartbeats.c.lag_records)
        ).first()
    if row is None or row[0] is None:
        return False
    return int(row[1]) == 0 and (utcnow() - parse_ts(str(row[0]))).total_seconds() < 5
