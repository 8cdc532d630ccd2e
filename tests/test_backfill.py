"""`bo backfill`: one consistent snapshot of the OLTP tables → `op r` events, resumable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from loguru import logger
from sqlalchemy import Engine, select

from bo.pgcluster import Cluster, free_port, throwaway_cluster
from eventlog.backfill import (
    BackfillConflict,
    OltpError,
    backfill,
    json_value,
    parse_tables,
)
from eventlog.errors import ConfigError, UsageError
from eventlog.schema import backfill_progress, dead_letters, events
from eventlog.store import iter_events
from projections.memory import replay
from tests.fixtures_kafka import log_count, wait_for
from tests.fixtures_projections import append

pytestmark = pytest.mark.pg

LEDGER_DDL = """
CREATE TABLE ledger_entries (
  tx_id bigint PRIMARY KEY, wallet_id text NOT NULL, type text NOT NULL,
  amount numeric(18,2) NOT NULL, amount_signed numeric(18,2), currency text NOT NULL,
  related_id text, related_type text, status text,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL,
  memo text, api_token text
);
CREATE TABLE payment_orders (
  order_id text PRIMARY KEY, payer_wallet_id text, receiver_wallet_id text,
  amount numeric(18,2), currency text, status text,
  created_at timestamptz, updated_at timestamptz, settled_at timestamptz,
  failed_at timestamp, version int
);
"""
BASE = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
N_LEDGER, N_ORDERS = 250, 40


@pytest.fixture
def oltp(pg_cluster: Cluster) -> str:
    """A seeded OLTP database; yields its libpq DSN."""
    name = f"oltp{os.getpid()}_{next(_n)}"
    pg_cluster.create_database(name)
    dsn = pg_cluster.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ledger_entries VALUES (%s,%s,%s,%s,NULL,'KRW',%s,NULL,'POSTED',"
                "%s,%s,1,NULL,'s3cret-token')",
                [
                    (
                        i,
                        f"W{i % 7}",
                        "PAYMENT" if i % 2 else "RECEIVE",
                        f"{i}.50",
                        f"O{(i + 1) // 2}" if i <= 2 * N_ORDERS else None,
                        BASE + timedelta(seconds=i),
                        BASE + timedelta(seconds=i),
                    )
                    for i in range(1, N_LEDGER + 1)
                ],
            )
            cur.executemany(
                "INSERT INTO payment_orders VALUES (%s,'W1','W2','10.00','KRW','PENDING',"
                "%s,%s,NULL,NULL,1)",
                [(f"O{i}", BASE, BASE + timedelta(seconds=i)) for i in range(1, N_ORDERS + 1)],
            )
    return dsn


_n = iter(range(1_000_000))


def _events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return [e for batch in iter_events(conn) for e in batch]


def test_backfill_appends_one_snapshot_event_per_row(migrated: Engine, oltp: str) -> None:
    report = backfill(migrated, oltp, batch=100)
    summary = report.summary()
    assert summary["rows"] == N_LEDGER + N_ORDERS
    assert summary["appended"] == N_LEDGER + N_ORDERS
    assert summary["dead_letter"] == 0
    logged = _events(migrated)
    assert {e.change.op for e in logged} == {"r"}
    by_key = {e.change.entity_key: e.change for e in logged}
    t10 = by_key["ledger_entries:10"]
    assert t10.row["amount"] == "10.50"  # scale kept
    assert t10.row["created_at"] == "2026-03-01T23:00:10.000000Z"
    assert t10.row["version"] == 1
    assert t10.source_ts == "2026-03-01T23:00:10.000000Z"  # the row's updated_at
    assert t10.snapshot == "true"
    assert by_key["payment_orders:O3"].row["status"] == "PENDING"
    # every event of the run shares the snapshot's coordinates
    assert len({e.change.lsn for e in logged}) == 1
    with migrated.connect() as conn:
        payloads = conn.execute(select(events.c.payload)).scalars().all()
    assert all(b"s3cret-token" not in bytes(p) for p in payloads)
    assert orjson.loads(bytes(payloads[0]))["after"]["api_token"] == "[REDACTED]"


def test_interrupted_backfill_resumes_after_the_last_key(migrated: Engine, oltp: str) -> None:
    first = backfill(migrated, oltp, run_id="r1", batch=64, stop_after=130)
    assert first.summary()["appended"] == 130
    with migrated.connect() as conn:
        progress = conn.execute(
            select(backfill_progress.c.table_name, backfill_progress.c.last_key)
        ).all()
    assert progress == [("ledger_entries", "130")]

    second = backfill(migrated, oltp, run_id="r1", batch=64)
    assert second.summary()["appended"] == N_LEDGER + N_ORDERS - 130
    assert second.summary()["duplicate"] == 0
    assert log_count(migrated) == N_LEDGER + N_ORDERS
    keys = [e.change.key for e in _events(migrated) if e.change.table == "ledger_entries"]
    assert keys == [str(i) for i in range(1, N_LEDGER + 1)]  # numeric key order, no gap

    third = backfill(migrated, oltp, run_id="r1")
    assert third.summary()["rows"] == 0
    assert all(t["skipped"] for t in third.summary()["tables"])
    assert third.summary()["head"] == N_LEDGER + N_ORDERS  # the log's head, not 0


def test_a_second_backfill_of_the_same_run_cannot_repeat_rows(migrated: Engine, oltp: str) -> None:
    """Two processes backfilling one run (a retried job while the first still runs): the
    one whose progress moved under it stops before appending its batch — the log holds
    every row once."""
    others: list[Any] = []

    def other_run_meanwhile(_rows: int) -> None:
        if not others:  # after this run's first batch: another run copies everything
            others.append(backfill(migrated, oltp, run_id="r9", batch=64))

    with pytest.raises(BackfillConflict, match="another backfill of run r9"):
        backfill(migrated, oltp, run_id="r9", batch=64, on_rows=other_run_meanwhile)
    assert others[0].summary()["appended"] == N_LEDGER + N_ORDERS - 64
    assert log_count(migrated) == N_LEDGER + N_ORDERS
    keys = [e.change.key for e in _events(migrated) if e.change.table == "ledger_entries"]
    assert len(keys) == len(set(keys)) == N_LEDGER


def test_restart_reads_again_and_duplicates_nothing_new(migrated: Engine, oltp: str) -> None:
    backfill(migrated, oltp, run_id="r2", tables=["payment_orders"])
    again = backfill(migrated, oltp, run_id="r2", tables=["payment_orders"], restart=True)
    assert again.summary()["rows"] == N_ORDERS
    assert log_count(migrated) in (N_ORDERS, 2 * N_ORDERS)  # same snapshot coords → duplicates


def test_bad_input_is_a_clear_error(migrated: Engine, oltp: str, pg_cluster: Cluster) -> None:
    with pytest.raises(UsageError, match="unknown table accounts"):
        parse_tables("ledger_entries,accounts")
    with pytest.raises(ConfigError, match="cannot connect to the OLTP database"):
        backfill(migrated, "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2")
    for dsn in ("postgresql://u:S3CRETPW@[::1/oltp", "postgresql://u:S3CRETPW%ZZ@127.0.0.1/x"):
        with pytest.raises(ConfigError, match="cannot connect") as raised:
            backfill(migrated, dsn)  # the driver quotes a malformed DSN in its error
        assert "S3CRETPW" not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        backfill(migrated, "host=127.0.0.1 port=1 password='S3CRET PW' dbname=x user=x x=y")
    assert "S3CRET" not in str(raised.value)
    empty = pg_cluster.create_database(f"empty{next(_n)}")
    with pytest.raises(ConfigError, match=r"OLTP table public.ledger_entries not found"):
        backfill(migrated, empty)


def test_cli_backfill_json_and_exit_codes(sqlite_url: str, engine_factory: Any, oltp: str) -> None:
    engine_factory(sqlite_url)  # migrated
    env = {**os.environ, "BO_DATABASE_URL": sqlite_url}
    bo = [sys.executable, "-m", "bo.cli"]
    ok = subprocess.run(
        [*bo, "backfill", "--oltp-dsn", oltp, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = orjson.loads(lines[0])
    assert summary["appended"] == N_LEDGER + N_ORDERS
    assert {t["table"] for t in summary["tables"]} == {"ledger_entries", "payment_orders"}

    bad = subprocess.run(
        [*bo, "backfill", "--oltp-dsn", oltp, "--tables", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: --tables: unknown table nope")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_oltp_failure_midway_is_a_clear_error_and_a_rerun_resumes(
    migrated: Engine, oltp: str
) -> None:
    def kill_reader(_rows: int) -> None:
        with psycopg.connect(oltp, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    with pytest.raises(OltpError, match=r"OLTP database error during backfill.*re-run to resume"):
        backfill(migrated, oltp, run_id="r3", batch=50, on_rows=kill_reader)
    partial = log_count(migrated)
    assert 0 < partial < N_LEDGER + N_ORDERS

    resumed = backfill(migrated, oltp, run_id="r3", batch=50)
    assert resumed.summary()["duplicate"] == 0
    assert log_count(migrated) == N_LEDGER + N_ORDERS


def test_unusual_column_types_are_encoded_not_fatal(migrated: Engine, pg_cluster: Cluster) -> None:
    name = f"odd{next(_n)}"
    pg_cluster.create_database(name)
    dsn = pg_cluster.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE payment_orders (order_id uuid PRIMARY KEY, payer_wallet_id text, "
            "receiver_wallet_id text, amount numeric, currency text, status text, "
            "created_at timestamp, updated_at timestamptz, settled_at timestamptz, "
            "failed_at timestamptz, version int, ip inet, span interval, tags text[], "
            "meta jsonb, raw bytea, card_number text)"
        )
        conn.execute(
            "INSERT INTO payment_orders VALUES ('00000000-0000-0000-0000-000000000001', 'W1', "
            "NULL, 0.000001, 'KRW', 'SETTLED', '2026-03-01 23:00:00', "
            "'2026-03-01 23:00:01+09', NULL, NULL, 3, '10.0.0.1', '1 day 2 seconds', "
            "'{a,b}', '{\"password\": \"pw\", \"n\": 1}', '\\x00ff', '4111111111111111')"
        )
    report = backfill(migrated, dsn, ["payment_orders"])
    assert report.summary()["appended"] == 1
    (event,) = _events(migrated)
    row = event.change.row
    assert row["amount"] == "0.000001"  # never 1E-6
    assert row["created_at"] == "2026-03-01T23:00:00.000000Z"  # naive read as UTC
    assert row["updated_at"] == "2026-03-01T14:00:01.000000Z"
    assert row["version"] == 3
    with migrated.connect() as conn:
        payload = orjson.loads(bytes(conn.execute(select(events.c.payload)).scalar_one()))
    after = payload["after"]
    # the event itself carries canonical UTC text, naive or not
    assert after["created_at"] == "2026-03-01T23:00:00.000000Z"
    assert after["updated_at"] == "2026-03-01T14:00:01.000000Z"
    assert after["ip"] == "10.0.0.1"
    assert after["span"] == (86_400 + 2) * 1_000_000
    assert after["tags"] == ["a", "b"]
    assert orjson.loads(after["meta"]) == {"password": "[REDACTED]", "n": 1}  # Debezium: text
    assert after["card_number"] == "[REDACTED]"


# ---------------------------------------------------------------- the snapshot's lsn


def _update_event(conn: psycopg.Connection[Any], order_id: str, status: str) -> bytes:
    """UPDATE ``order_id`` in ``conn``'s open transaction; the ``u`` event Debezium emits
    for it once committed (``source.lsn`` = where the change was written)."""
    query = "SELECT * FROM payment_orders WHERE order_id = %s"
    cur = conn.execute(query, (order_id,))
    names = [d.name for d in cur.description or []]
    before = dict(zip(names, cur.fetchone() or (), strict=True))
    conn.execute("UPDATE payment_orders SET status = %s WHERE order_id = %s", (status, order_id))
    after = dict(zip(names, conn.execute(query, (order_id,)).fetchone() or (), strict=True))
    got = conn.execute(
        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint, txid_current()"
    ).fetchone()
    assert got is not None
    source = {"ts_ms": 0, "db": "payments", "schema": "public", "table": "payment_orders"}
    return orjson.dumps(
        {
            "before": {k: json_value(v) for k, v in before.items()},
            "after": {k: json_value(v) for k, v in after.items()},
            "source": {**source, "txId": int(got[1]), "lsn": int(got[0])},
            "op": "u",
            "ts_ms": 0,
        }
    )


def _polling(dsn: str) -> bool:
    """Whether a backfill is waiting for open transactions in that database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE 'SELECT txid_snapshot_xmin(%%'"
        ).fetchone()
    return bool(row and row[0])


def test_open_transactions_are_waited_for_and_changes_the_snapshot_missed_win(
    migrated: Engine, oltp: str
) -> None:
    """Rows with neither version nor updated_at: ordered by lsn alone. A transaction open
    when the backfill starts wrote below the snapshot's lsn: the backfill waits for it, so
    its snapshot sees it. One that starts after that lsn and commits after the snapshot
    is not in it and wins by its higher lsn."""
    with psycopg.connect(oltp, autocommit=True) as admin:
        admin.execute(
            "UPDATE payment_orders SET version = NULL, updated_at = NULL "
            "WHERE order_id IN ('O1', 'O2')"
        )
    early, late = psycopg.connect(oltp), psycopg.connect(oltp)
    try:
        early_change = _update_event(early, "O1", "SETTLED")  # left open
        done: list[Any] = []
        running = threading.Thread(
            target=lambda: done.append(backfill(migrated, oltp, ["payment_orders"]))
        )
        running.start()
        wait_for(lambda: _polling(oltp) or not running.is_alive(), 60, "the backfill's wait")
        late_change = _update_event(late, "O2", "FAILED")  # begins after the backfill's lsn
        early.commit()
        running.join(60)
        assert done, "the backfill did not finish"
        late.commit()  # after the snapshot
    finally:
        early.close()
        late.close()
    snapshot = {e.change.key: e.change for e in _events(migrated)}
    assert snapshot["O1"].row["status"] == "SETTLED"  # waited for, then seen
    assert snapshot["O2"].row["status"] == "PENDING"
    append(migrated, [early_change, late_change])  # Debezium's events, after the backfill
    orders = replay(_events(migrated)).rows("payment_orders")
    assert (orders["O1"]["status"], orders["O2"]["status"]) == ("SETTLED", "FAILED")


def test_a_transaction_open_past_the_wait_gives_lsn_0_and_a_warning(
    migrated: Engine, oltp: str
) -> None:
    warnings: list[str] = []
    sink = logger.add(warnings.append, level="WARNING", format="{message}")
    held = psycopg.connect(oltp)
    pid = held.info.backend_pid
    try:
        held.execute("UPDATE payment_orders SET status = 'HELD' WHERE order_id = 'O3'")
        report = backfill(migrated, oltp, ["payment_orders"], wait_timeout=0.2)
    finally:
        logger.remove(sink)
        held.rollback()
        held.close()
    assert report.summary()["appended"] == N_ORDERS
    assert {e.change.lsn for e in _events(migrated)} == {0}  # every live change wins
    (warning,) = warnings
    assert f"pid {pid}, started 20" in warning
    assert "source.lsn 0" in warning


@contextmanager
def _standby(primary: Cluster) -> Iterator[Cluster]:
    """A streaming hot standby of ``primary`` (pg_basebackup -R)."""
    base = Path(tempfile.mkdtemp(prefix="bo-standby-"))
    if primary.run_as:
        shutil.chown(base, primary.run_as, primary.run_as)
    standby = Cluster(primary.bindir, base / "data", free_port(), primary.user, primary.run_as)
    try:
        primary.run(
            str(primary.bindir / "pg_basebackup"),
            *("-D", str(standby.datadir), "-h", "127.0.0.1", "-p", str(primary.port)),
            *("-U", primary.user, "-R", "-X", "stream", "-c", "fast"),
        )
        standby.start()
        yield standby
    finally:
        standby.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def test_a_standby_is_read_at_its_replay_position(sqlite_url: str, engine_factory: Any) -> None:
    engine: Engine = engine_factory(sqlite_url)
    with throwaway_cluster() as primary:
        primary.create_database("payments")
        primary.psql(
            LEDGER_DDL + "INSERT INTO payment_orders (order_id, status, version) "
            "VALUES ('O1', 'PENDING', 1), ('O2', 'SETTLED', 2)",
            "payments",
        )
        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            assert row is not None
            written = row[0]
        with _standby(primary) as standby, psycopg.connect(standby.dsn("payments")) as conn:

            def replayed() -> bool:
                got = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (written,)
                ).fetchone()
                conn.rollback()
                return bool(got and got[0])

            wait_for(replayed, 60, "the standby to replay the seed")
            report = backfill(engine, standby.dsn("payments"), ["payment_orders"])
    assert report.summary()["appended"] == 2
    lsns = {e.change.lsn for e in _events(engine)}
    assert len(lsns) == 1
    assert lsns.pop() >= int(written.split("/")[0], 16) << 32 | int(written.split("/")[1], 16)


# ---------------------------------------------------------------- run id, values


def test_the_default_run_id_names_the_schema_and_tables(migrated: Engine, oltp: str) -> None:
    with psycopg.connect(oltp, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA other; "
            "CREATE TABLE other.ledger_entries (LIKE public.ledger_entries INCLUDING ALL); "
            "INSERT INTO other.ledger_entries SELECT * FROM public.ledger_entries "
            "WHERE tx_id <= 5"
        )
    first = backfill(migrated, oltp)
    assert first.summary()["rows"] == N_LEDGER + N_ORDERS
    other = backfill(migrated, oltp, ["ledger_entries"], schema="other")
    assert other.run_id != first.run_id
    assert other.summary()["rows"] == 5
    assert not other.tables[0].skipped
    assert backfill(migrated, oltp, ["payment_orders", "ledger_entries"]).run_id == first.run_id
    again = backfill(migrated, oltp, ["ledger_entries"], schema="other", run_id=first.run_id)
    assert again.summary()["rows"] == 0  # --run-id still decides
    assert again.tables[0].skipped


def test_timestamps_out_of_python_range_are_dead_letters(migrated: Engine, oltp: str) -> None:
    with psycopg.connect(oltp, autocommit=True) as conn:
        conn.execute("ALTER TABLE payment_orders ADD COLUMN due date")
        conn.execute("UPDATE payment_orders SET settled_at = 'infinity' WHERE order_id = 'O4'")
        conn.execute("UPDATE payment_orders SET settled_at = '0001-01-01 BC' WHERE order_id = 'O5'")
        conn.execute("UPDATE payment_orders SET failed_at = '-infinity' WHERE order_id = 'O6'")
        conn.execute("UPDATE payment_orders SET due = 'infinity' WHERE order_id = 'O7'")
    report = backfill(migrated, oltp, ["payment_orders"])
    summary = report.summary()
    assert (summary["rows"], summary["appended"], summary["dead_letter"]) == (N_ORDERS, 37, 3)
    assert not report.tables[0].skipped
    with migrated.connect() as conn:
        reasons = sorted(conn.execute(select(dead_letters.c.reason)).scalars())
    assert reasons == [
        "undecodable timestamp failed_at: '-infinity'",
        "undecodable timestamp settled_at: '0001-01-01 00:00:00+00 BC'",
        "undecodable timestamp settled_at: 'infinity'",
    ]
    o7 = {e.change.key: e.change for e in _events(migrated)}["O7"]
    assert o7.row["status"] == "PENDING"  # an unprojected column keeps PostgreSQL's text
    with migrated.connect() as conn:
        payloads = [
            orjson.loads(bytes(p)) for p in conn.execute(select(events.c.payload)).scalars()
        ]
    assert [p["after"]["due"] for p in payloads if p["after"]["order_id"] == "O7"] == ["infinity"]


def test_json_columns_are_their_text_exact_and_redacted(migrated: Engine, oltp: str) -> None:
    with psycopg.connect(oltp, autocommit=True) as conn:
        conn.execute("ALTER TABLE payment_orders ADD COLUMN meta jsonb, ADD COLUMN doc json")
        conn.execute(
            "UPDATE payment_orders SET "
            'meta = \'{"fee": 12345678901234567890.123456789, "password": "pw-9"}\', '
            "doc = '{\"n\": 12345678901234567890.123456789}' WHERE order_id = 'O1'"
        )
    assert backfill(migrated, oltp, ["payment_orders"]).summary()["appended"] == N_ORDERS
    with migrated.connect() as conn:
        stored = [
            (bytes(r[0]), r[1])
            for r in conn.execute(select(events.c.payload, events.c.redacted_paths))
        ]
    (payload, paths), *_ = [(p, r) for p, r in stored if b'"O1"' in p]
    assert b"pw-9" not in payload
    after = orjson.loads(payload)["after"]
    assert after["doc"] == '{"n": 12345678901234567890.123456789}'  # a string, as Debezium's
    assert isinstance(after["meta"], str)
    assert "12345678901234567890.123456789" in after["meta"]
    assert '"password":"[REDACTED]"' in after["meta"].replace(" ", "")
    assert "after.meta.password" in paths
