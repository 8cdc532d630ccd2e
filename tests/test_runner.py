"""The live runner on both backends (SPEC §4.5): checkpoints, failures, wake-ups, metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select, text

from eventlog.metrics import FRESHNESS, VERSION_MISSING
from eventlog.settings import Settings
from projections import store
from projections.ledger_entries import LEDGER_ENTRIES
from projections.pairs import PAIRS
from projections.payment_orders import PAYMENT_ORDERS
from projections.runner import Runner
from projections.status import status
from projections.tables import view_table
from rebuild.build import build
from rebuild.compare import verify
from tests.fixtures_projections import (
    append,
    append_refused,
    event,
    huge_version,
    ledger_row,
    order_row,
)

L, P = "ledger_entries", "payment_orders"


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait on a condition (checked every 50 ms), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.05)


def by_name(engine: Engine, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    return {f"{s['projection']}.v{s['version']}": s for s in status(engine, settings)}


def view_rows(engine: Engine, table: Any) -> dict[str, dict[str, Any]]:
    view = view_table(table)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(view)).mappings()]
    return {r[table.key]: r for r in rows}


def sample() -> list[bytes]:
    return [
        event(L, "c", ledger_row("T1", related_id="O1", version=1), lsn=1, ts=1),
        event(L, "c", ledger_row("T2", type="RECEIVE", wallet="W2", related_id="O1"), lsn=2, ts=2),
        event(P, "c", order_row("O1", version=1), lsn=3, ts=3),
        event(L, "c", ledger_row("T3", related_id=None), lsn=4, ts=4),
    ]


def test_catch_up_serves_views_and_records_ignored_positions(migrated: Engine) -> None:
    append(migrated, sample())
    summary = Runner(migrated, None, batch=2).run_once()
    assert summary["head"] == 4
    assert summary["failed"] == []
    states = by_name(migrated)
    assert set(states) == {"ledger_entries.v1", "payment_orders.v1", "pairs.v1"}
    for item in states.values():
        assert item["position"] == 4
        assert item["lag"] == 0
        assert item["state"] == "serving"
        assert item["serving"] is True
        assert item["stale"] is False
        assert item["checksum"]
    assert states["ledger_entries.v1"]["rows"] == 3
    entries = view_rows(migrated, LEDGER_ENTRIES)
    assert entries["T1"]["deleted"] is False
    assert entries["T1"]["amount_signed"] == "-10.00"
    assert view_rows(migrated, PAIRS)["O1"]["pairing_status"] == "COMPLETE"


def test_second_pass_applies_only_new_events(migrated: Engine) -> None:
    runner = Runner(migrated, None)
    append(migrated, sample()[:2])
    assert runner.run_once()["applied"] == 6  # 2 events x 3 projections
    append(migrated, sample()[2:])
    second = runner.run_once()
    assert second["applied"] == 6
    assert runner.run_once()["applied"] == 0
    assert view_rows(migrated, PAIRS)["O1"]["leg_count"] == 2


def test_builder_error_fails_only_that_projection_and_never_skips(migrated: Engine) -> None:
    append(
        migrated,
        [event(L, "c", ledger_row("T1", version=1), lsn=1), event(P, "c", order_row("O1"))],
    )
    append_refused(migrated, *huge_version("T2", lsn=2))  # logged, but no longer decodes
    append(migrated, [event(L, "c", ledger_row("T3", version=1), lsn=3)])
    summary = Runner(migrated, None, batch=10).run_once()
    assert sorted(summary["failed"]) == ["ledger_entries.v1", "pairs.v1"]
    states = by_name(migrated)
    failed = states["ledger_entries.v1"]
    assert failed["state"] == "failed"
    assert failed["serving"] is True  # keeps serving what it had
    assert failed["error_position"] == 3
    assert failed["position"] == 2  # the events before the bad one are applied
    assert failed["last_error"]
    assert states["payment_orders.v1"]["state"] == "serving"
    assert states["payment_orders.v1"]["position"] == 4
    assert set(view_rows(migrated, LEDGER_ENTRIES)) == {"T1"}

    runner = Runner(migrated, None)
    again = runner.run_once()  # a failed version stays put
    assert by_name(migrated)["ledger_entries.v1"]["position"] == 2
    assert again["applied"] == 0
    assert runner.retry_failed() == ["ledger_entries.v1", "pairs.v1"]
    runner.run_once()
    assert by_name(migrated)["ledger_entries.v1"]["error_position"] == 3  # same event, again


def test_stale_fingerprint_keeps_serving(migrated: Engine, tmp_path: Path) -> None:
    first = tmp_path / "a.json"
    first.write_text(orjson.dumps({"SUCCESS": ["SETTLED"]}).decode())
    second = tmp_path / "b.json"
    second.write_text(orjson.dumps({"SUCCESS": ["SETTLED", "DONE"]}).decode())
    append(migrated, [event(P, "c", order_row("O1", status="SETTLED"))])
    Runner(migrated, Settings(status_map=str(first))).run_once()
    assert by_name(migrated, Settings(status_map=str(first)))["payment_orders.v2"]["stale"] is False
    later = by_name(migrated, Settings(status_map=str(second)))["payment_orders.v2"]
    assert later["stale"] is True
    assert later["state"] == "serving"
    assert later["serving"] is True


def test_a_stale_version_is_not_advanced_until_rebuilt(migrated: Engine, tmp_path: Path) -> None:
    """Rows folded under two status maps could not be reproduced by any replay: the stale
    version serves what it holds, is not advanced, and the rebuild brings it back."""
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(orjson.dumps({"SUCCESS": ["DONE"]}).decode())
    second.write_text(orjson.dumps({"FAIL": ["DONE"]}).decode())
    old, new = Settings(status_map=str(first)), Settings(status_map=str(second))
    append(migrated, [event(P, "c", order_row("O1", status="DONE"))])
    Runner(migrated, old).run_once()
    append(migrated, [event(P, "c", order_row("O2", status="DONE"))])
    summary = Runner(migrated, new).run_once()
    frozen = next(p for p in summary["projections"] if p["projection"] == "payment_orders")
    assert frozen["position"] == 1  # not advanced past what the first map folded

    def groups() -> dict[str, str]:
        view = view_table(PAYMENT_ORDERS)
        with migrated.connect() as conn:
            rows = conn.execute(select(view.c.order_id, view.c.status_group))
            return {str(r[0]): str(r[1]) for r in rows}

    assert groups() == {"O1": "SUCCESS"}  # still served, as built
    assert by_name(migrated, new)["ledger_entries.v1"]["position"] == 2  # the others go on
    build(migrated, new, "payment_orders")
    assert groups() == {"O1": "FAIL", "O2": "FAIL"}
    assert by_name(migrated, new)["payment_orders.v2"]["stale"] is False
    append(migrated, [event(P, "c", order_row("O3", status="DONE"))])
    Runner(migrated, new).run_once()
    assert groups()["O3"] == "FAIL"


def test_metrics_freshness_and_version_missing(migrated: Engine) -> None:
    missing_before = VERSION_MISSING._value.get()
    fresh_before = _histogram_count()
    append(migrated, [event(L, "c", ledger_row("T1")), event(L, "c", ledger_row("T2", version=1))])
    Runner(migrated, None).run_once()
    assert VERSION_MISSING._value.get() - missing_before == 1
    assert _histogram_count() - fresh_before == 2


def _histogram_count() -> float:
    for metric in FRESHNESS.collect():
        for sample_ in metric.samples:
            if sample_.name.endswith("_count"):
                return float(sample_.value)
    return 0.0


def test_run_forever_follows_the_log(migrated: Engine) -> None:
    # a long poll interval: on PostgreSQL only NOTIFY can wake the runner in time
    poll = 0.2 if migrated.dialect.name == "sqlite" else 60.0
    runner = Runner(migrated, None, poll_interval=poll)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(status(migrated, None)) == 3)
        wait_for(lambda: _listening(migrated))
        append(migrated, sample())
        wait_for(lambda: all(s["position"] == 4 for s in status(migrated, None)))
        assert view_rows(migrated, PAIRS)["O1"]["pairing_status"] == "COMPLETE"
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_run_forever_follows_back_to_back_commits_on_notify_alone(
    pg_url: str, engine_factory: Any
) -> None:
    """After a pass that applied something the runner waits on LISTEN instead of looking
    again: commits made during or right after a pass must still wake it (no 60 s poll)."""
    engine = engine_factory(pg_url)
    runner = Runner(engine, None, poll_interval=60.0)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(status(engine, None)) == 3)
        wait_for(lambda: _listening(engine))
        lines = sample()
        for line in lines:  # one commit each, back to back
            append(engine, [line])
        wait_for(lambda: all(s["position"] == len(lines) for s in status(engine, None)))
        extra = event(L, "c", ledger_row("T9", related_id=None), lsn=9, ts=9)
        append(engine, [extra])  # and one more after the runner went back to waiting
        wait_for(lambda: all(s["position"] == len(lines) + 1 for s in status(engine, None)))
        assert "T9" in view_rows(engine, LEDGER_ENTRIES)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def _listening(engine: Engine) -> bool:
    if engine.dialect.name == "sqlite":
        return True
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
        ).scalar_one()
    return int(found) > 0


def race_runners(engine: Engine, *, batch: int, runners: int = 3) -> None:
    """``runners`` runner passes at once, each in its own thread; none may raise."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            Runner(engine, None, batch=batch).run_once()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []


def test_concurrent_runners_apply_each_event_once(migrated: Engine) -> None:
    lines = [
        event(L, "c", ledger_row(f"T{i}", related_id=f"O{i % 7}", version=1), lsn=i)
        for i in range(300)
    ]
    append(migrated, lines)
    Runner(migrated, None).run_once()  # create the views once, then race on a fresh tail
    append(
        migrated, [event(L, "u", ledger_row(f"T{i}", version=2), lsn=1000 + i) for i in range(50)]
    )
    race_runners(migrated, batch=7)
    states = by_name(migrated)
    assert all(s["position"] == 350 for s in states.values())
    assert states["ledger_entries.v1"]["rows"] == 300
    rows = view_rows(migrated, LEDGER_ENTRIES)
    assert sum(r["version"] == 2 for r in rows.values()) == 50


def _legs(orders: range, *, version: int = 1, lsn: int = 0) -> list[bytes]:
    out = []
    for i in orders:
        for leg, kind, wallet in (("a", "PAYMENT", "W1"), ("b", "RECEIVE", "W2")):
            row = ledger_row(
                f"T{i}{leg}",
                type=kind,
                wallet=wallet,
                related_id=f"O{i}",
                related_type="PAYMENT_ORDER",
                version=version,
            )
            out.append(event(L, "c" if version == 1 else "u", row, lsn=lsn + 2 * i))
    return out


def test_large_batches_insert_new_keys_and_upsert_known_ones(
    migrated: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the COPY threshold a batch inserts the rows whose keys it did not find and
    upserts the others; the tables equal a replay into scratch tables."""
    inserted: dict[str, int] = {}
    failed: list[BaseException] = []
    plain_insert = store.insert_rows

    def spy(conn: Any, physical: Any, rows: Any) -> None:
        try:
            plain_insert(conn, physical, rows)
        except BaseException as exc:  # a known key inserted: the runner would retry slowly
            failed.append(exc)
            raise
        inserted[physical.name] = inserted.get(physical.name, 0) + len(rows)

    monkeypatch.setattr(store, "insert_rows", spy)
    runner = Runner(migrated, None, batch=5000)
    append(migrated, _legs(range(300)) + [event(P, "c", order_row(f"O{i}")) for i in range(300)])
    runner.run_once()
    changed = [  # one batch: 500 new legs, 500 known ones updated, 50 deleted
        *_legs(range(300, 550), lsn=10_000),
        *_legs(range(250), version=2, lsn=20_000),
        *[event(L, "d", ledger_row(f"T{i}b", version=3), lsn=30_000 + i) for i in range(50)],
        *[event(P, "u", order_row(f"O{i}", version=2, status="SUCCESS")) for i in range(250)],
    ]
    inserted.clear()
    append(migrated, changed)
    summary = runner.run_once()
    assert summary["failed"] == []
    assert failed == []
    assert inserted == {
        "ledger_entries_v1": 500,
        "pair_legs_v1": 500,
        "payment_ledger_pairs_v1": 250,
    }
    for name in ("ledger_entries", "payment_orders", "pairs"):
        checked = verify(migrated, None, name)
        assert checked["ok"], checked["details"]
    states = by_name(migrated)
    assert states["ledger_entries.v1"]["rows"] == 1100
    entries = view_rows(migrated, LEDGER_ENTRIES)
    assert entries["T1a"]["version"] == 2
    assert entries["T1b"]["deleted"] is True
    assert entries["T549b"]["version"] == 1
    pairs = view_rows(migrated, PAIRS)
    assert pairs["O1"]["pairing_status"] == "INCOMPLETE"
    assert pairs["O100"]["pairing_status"] == "COMPLETE"
    assert pairs["O549"]["pairing_status"] == "COMPLETE"


def test_concurrent_runners_with_large_batches_write_each_row_once(migrated: Engine) -> None:
    append(migrated, _legs(range(10)))
    Runner(migrated, None).run_once()  # create the views once, then race on a fresh tail
    append(migrated, _legs(range(10, 400)) + _legs(range(10), version=2, lsn=5000))
    race_runners(migrated, batch=5000)
    states = by_name(migrated)
    assert all(s["state"] == "serving" and s["position"] == 820 for s in states.values())
    assert states["ledger_entries.v1"]["rows"] == 800
    assert verify(migrated, None, "pairs")["ok"]


def test_bo_ingest_and_project_cli(
    migrated: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from bo import cli

    monkeypatch.setenv("BO_DATABASE_URL", migrated.url.render_as_string(hide_password=False))
    monkeypatch.delenv("BO_STATUS_MAP", raising=False)
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(sample()) + b"\n")
    code = _run(monkeypatch, cli.app, ["bo", "ingest", str(source), "--json"])
    out = orjson.loads(capsys.readouterr().out)
    assert code == 0
    assert out["projections"]["head"] == 4
    assert out["projections"]["failed"] == []
    code = _run(monkeypatch, cli.app, ["bo", "project", "--once", "--json"])
    out = orjson.loads(capsys.readouterr().out)
    assert code == 0
    assert {p["position"] for p in out["projections"]} == {4}
    append_refused(migrated, *huge_version("TX"))
    code = _run(monkeypatch, cli.app, ["bo", "project", "--once"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "error at 5" in printed


def _run(monkeypatch: pytest.MonkeyPatch, app: Any, argv: list[str]) -> int:
    from bo.output import run_app

    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        run_app(app)
    return int(exit_info.value.code or 0)


def test_listener_loss_falls_back_to_polling(pg_url: str, engine_factory: Any) -> None:
    engine = engine_factory(pg_url)
    runner = Runner(engine, None, poll_interval=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: _listening(engine))
        with engine.begin() as conn:  # the listener's connection dies
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%'"
                )
            )
        append(engine, sample())
        wait_for(lambda: len(status(engine, None)) == 3)
        wait_for(lambda: all(s["position"] == 4 for s in status(engine, None)))
        wait_for(lambda: _listening(engine))  # and it listens again
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_pass_steps_on_one_pooled_connection(migrated: Engine) -> None:
    """Every step of a pass (3 versions x several batches) is its own transaction on one
    checked-out connection: the head read and that one connection, not one per step."""
    from sqlalchemy import event as sa_event

    runner = Runner(migrated, None, batch=1)
    append(migrated, sample()[:1])
    runner.run_once(checksums=False)  # creates the projections' tables first
    append(migrated, sample()[1:])
    checkouts: list[object] = []

    def count(*_args: Any) -> None:
        checkouts.append(object())

    sa_event.listen(migrated.pool, "checkout", count)
    try:
        summary = runner.run_once(checksums=False)
    finally:
        sa_event.remove(migrated.pool, "checkout", count)
    assert summary["applied"] == 9  # 3 events x 3 versions, one event per step
    assert summary["failed"] == []
    assert len(checkouts) == 2  # the head read and the steps' connection
    assert all(item["position"] == 4 for item in by_name(migrated).values())


def test_bo_project_lowers_its_cpu_priority_as_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bo project`` (the follower) runs at niceness ``BO_PROJECT_NICE`` (default 10), so
    a consumer on the same host gets a backlog into the log first; ``--once`` leaves the
    caller's priority alone; a value off the 0-19 scale is a one-line configuration
    error."""
    import os
    import subprocess
    import sys

    bo = str(Path(sys.executable).with_name("bo"))
    env = dict(os.environ, BO_DATABASE_URL=f"sqlite:///{tmp_path / 'bo.db'}")
    env.pop("BO_PROJECT_NICE", None)
    subprocess.run([bo, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    for setting, expected in ((None, 10), ("7", 7)):
        run_env = env if setting is None else dict(env, BO_PROJECT_NICE=setting)
        proc = subprocess.Popen([bo, "project"], env=run_env, stderr=subprocess.DEVNULL)
        try:
            wait_for(partial(_runs_at, proc.pid, expected), timeout=60)
        finally:
            proc.terminate()
            proc.wait(30)
    from bo import cli

    monkeypatch.setenv("BO_DATABASE_URL", env["BO_DATABASE_URL"])
    monkeypatch.delenv("BO_PROJECT_NICE", raising=False)
    before = os.getpriority(os.PRIO_PROCESS, 0)
    assert _run(monkeypatch, cli.app, ["bo", "project", "--once", "--json"]) == 0
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # in-process: this one unchanged
    bad = subprocess.run(
        [bo, "project"],
        env=dict(env, BO_PROJECT_NICE="25"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "PROJECT_NICE" in bad.stderr.upper()
    assert "Traceback" not in bad.stderr


def _runs_at(pid: int, nice: int) -> bool:
    import psutil

    return bool(psutil.Process(pid).nice() == nice)
