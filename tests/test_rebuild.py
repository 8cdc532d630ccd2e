"""The ``rebuild`` tool on both backends (SPEC §5): build, verify, diff, promote, drop, locks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, insert, select, text

from bo.output import run_app
from eventlog.schema import projection_locks
from eventlog.timeutil import now_text
from projections.ledger_entries import LEDGER_ENTRIES
from projections.payment_orders import PAYMENT_ORDERS
from projections.runner import Runner
from projections.status import status
from projections.tables import view_table
from rebuild.build import build
from rebuild.cli import app as rebuild_app
from tests.fixtures_projections import (
    append,
    append_refused,
    event,
    huge_version,
    ledger_row,
    order_row,
)

L, P = "ledger_entries", "payment_orders"
STATUSES = ("CREATED", "SETTLED", "FAILED", "ODD")


@pytest.fixture
def cli(
    migrated: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """Run ``rebuild ARGS`` in-process against the test database: (exit code, JSON or text)."""
    monkeypatch.setenv("BO_DATABASE_URL", migrated.url.render_as_string(hide_password=False))
    monkeypatch.delenv("BO_STATUS_MAP", raising=False)

    def run(*args: str) -> tuple[int, Any]:
        monkeypatch.setattr(sys, "argv", ["rebuild", *args])
        with pytest.raises(SystemExit) as exit_info:
            run_app(rebuild_app)
        captured = capsys.readouterr()
        out = captured.out.strip()
        if "--json" in args and out:
            return int(exit_info.value.code or 0), orjson.loads(out)
        return int(exit_info.value.code or 0), out + captured.err

    return run


def fill(engine: Engine, n: int = 40) -> None:
    lines: list[bytes] = []
    for i in range(n):
        order = f"O{i}"
        lines.append(event(P, "c", order_row(order, status=STATUSES[i % 4], version=1), lsn=i))
        lines.append(
            event(L, "c", ledger_row(f"P{i}", related_id=order, version=1), lsn=1000 + i, ts=i)
        )
        if i % 3:
            leg = ledger_row(f"R{i}", type="RECEIVE", wallet="W2", related_id=order, version=1)
            lines.append(event(L, "c", leg, lsn=2000 + i, ts=i + 1))
    append(engine, lines)


def by_name(engine: Engine) -> dict[str, dict[str, Any]]:
    return {f"{s['projection']}.v{s['version']}": s for s in status(engine, None)}


def test_rebuild_prints_its_summary_and_is_repeatable(migrated: Engine, cli: Any) -> None:
    fill(migrated)
    live = Runner(migrated, None).run_once()
    assert live["failed"] == []
    live_checksum = by_name(migrated)["pairs.v1"]["checksum"]
    code, first = cli("--projection", "pairs", "--json")
    assert code == 0
    assert {
        "projection",
        "version",
        "rows",
        "position",
        "checksum",
        "seconds",
        "events_per_sec",
    } <= set(first)
    assert first["projection"] == "pairs"
    assert first["position"] == 106
    assert first["rows"] == 40
    assert first["checksum"] == live_checksum  # live runner == rebuild
    code, second = cli("--projection", "pairs", "--json", "--batch", "7")
    assert code == 0
    assert second["checksum"] == first["checksum"]
    assert by_name(migrated)["pairs.v1"]["state"] == "serving"


def test_verify_passes_then_names_the_altered_key(migrated: Engine, cli: Any) -> None:
    fill(migrated)
    assert cli("--projection", "ledger_entries")[0] == 0
    Runner(migrated, None).run_once()
    code, report = cli("verify", "--json")
    assert code == 0
    assert report["ok"] is True
    with migrated.begin() as conn:
        table = "ledger_entries_v1" if migrated.dialect.name == "sqlite" else "bo.ledger_entries_v1"
        conn.execute(text(f"UPDATE {table} SET amount = '999.99' WHERE tx_id = 'P7'"))
    code, report = cli("verify", "--projection", "ledger_entries", "--json")
    assert code == 1
    item = report["projections"][0]
    assert item["first_keys"] == ["P7"]
    assert item["details"][0]["fields"]["amount"] == {"old": "999.99", "new": "10.00"}
    code, line = cli("verify", "--projection", "ledger_entries")
    assert code == 1
    assert "P7" in line


def test_diff_after_setting_a_status_map_shows_only_status_groups(
    migrated: Engine, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(migrated)
    Runner(migrated, None).run_once()  # v1 serves: no map yet
    mapping = tmp_path / "map.json"
    mapping.write_text('{"SUCCESS": ["SETTLED"], "FAIL": ["FAILED"], "IN_PROGRESS": ["CREATED"]}')
    monkeypatch.setenv("BO_STATUS_MAP", str(mapping))
    code, result = cli(
        "diff", "--projection", "payment_orders", "--from", "1", "--to", "2", "--json"
    )
    assert code == 1
    assert result["only_in_from"] == 0
    assert result["only_in_to"] == 0
    assert result["changed"] == 30  # every order but the ODD ones
    assert result["sources"] == {"from": "tables", "to": "replay"}
    assert len(result["differences"]) == 20  # default --limit
    for item in result["differences"]:
        assert set(item["fields"]) == {"status_group"}
        assert item["fields"]["status_group"]["old"] == "UNKNOWN"
    code, limited = cli(
        "diff",
        "--projection",
        "payment_orders",
        "--from",
        "1",
        "--to",
        "2",
        "--limit",
        "3",
        "--json",
    )
    assert code == 1
    assert len(limited["differences"]) == 3
    # built as standby: the diff now reads both versions' tables
    code, built = cli("--projection", "payment_orders", "--version", "2", "--no-promote", "--json")
    assert code == 0
    assert built["state"] == "standby"
    code, again = cli(
        "diff", "--projection", "payment_orders", "--from", "1", "--to", "2", "--json"
    )
    assert code == 1
    assert again["sources"] == {"from": "tables", "to": "tables"}
    assert again["changed"] == 30
    code, _text_out = cli("diff", "--projection", "pairs", "--from", "1", "--to", "1")
    assert code == 2


def test_identical_versions_diff_exit_zero(migrated: Engine, cli: Any) -> None:
    fill(migrated, 5)
    code, result = cli(
        "diff", "--projection", "payment_orders", "--from", "1", "--to", "2", "--json"
    )
    assert code == 0
    assert result["identical"] is True


def test_promote_and_drop(
    migrated: Engine, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(migrated, 8)
    Runner(migrated, None).run_once()
    mapping = tmp_path / "map.json"
    mapping.write_text('{"SUCCESS": ["SETTLED"]}')
    monkeypatch.setenv("BO_STATUS_MAP", str(mapping))
    assert cli("promote", "--projection", "payment_orders", "--version", "2")[0] == 2  # not built
    assert cli("--projection", "payment_orders", "--version", "2", "--no-promote")[0] == 0
    states = by_name(migrated)
    assert states["payment_orders.v1"]["serving"] is True
    assert states["payment_orders.v2"]["state"] == "standby"
    append(migrated, [event(P, "c", order_row("O-new", status="SETTLED"))])
    code, promoted = cli("promote", "--projection", "payment_orders", "--version", "2", "--json")
    assert code == 0
    assert promoted["previous"] == 1
    assert promoted["position"] == 22  # caught up inside the swap
    with migrated.connect() as conn:
        view = view_table(PAYMENT_ORDERS)
        group = conn.execute(
            select(view.c.status_group).where(view.c.order_id == "O-new")
        ).scalar_one()
    assert group == "SUCCESS"
    states = by_name(migrated)
    assert states["payment_orders.v2"]["serving"] is True
    assert states["payment_orders.v2"]["state"] == "serving"
    assert states["payment_orders.v1"]["state"] == "standby"
    assert cli("drop", "--projection", "payment_orders", "--version", "2")[0] == 2  # serving
    code, dropped = cli("drop", "--projection", "payment_orders", "--version", "1", "--json")
    assert code == 0
    assert dropped["state"] == "retired"
    assert by_name(migrated)["payment_orders.v1"]["state"] == "retired"
    assert Runner(migrated, None).run_once()["failed"] == []  # retired versions are left alone


def test_second_rebuild_is_refused_and_stale_lock_taken_over(migrated: Engine, cli: Any) -> None:
    fill(migrated, 3)
    host = socket.gethostname()
    with migrated.begin() as conn:
        conn.execute(
            insert(projection_locks).values(
                projection="pairs", owner=f"{host}:{os.getpid()}:other", acquired_at=now_text()
            )
        )
    code, message = cli("--projection", "pairs")
    assert code == 2
    assert "already running" in message
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with migrated.begin() as conn:
        conn.execute(
            projection_locks.update().values(owner=f"{host}:{gone.stdout.strip()}:crashed")
        )
    code, _ = cli("--projection", "pairs")
    assert code == 0
    with migrated.connect() as conn:
        assert conn.execute(select(func.count()).select_from(projection_locks)).scalar_one() == 0


def test_readers_never_see_a_half_built_table(migrated: Engine, cli: Any) -> None:
    fill(migrated, 60)
    Runner(migrated, None).run_once()
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        view = view_table(LEDGER_ENTRIES)
        while not stop.is_set():
            try:
                with migrated.connect() as conn:
                    seen.append(conn.execute(select(func.count()).select_from(view)).scalar_one())
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):
            assert cli("--projection", "ledger_entries", "--batch", "13")[0] == 0
    finally:
        stop.set()
        reader.join(timeout=30)
    assert errors == []
    assert seen
    assert set(seen) == {100}


@pytest.mark.parametrize(
    "args",
    [
        ("--projection", "nope"),
        ("--projection", "pairs", "--version", "9"),
        ("promote", "--projection", "pairs"),
        ("drop", "--projection", "pairs"),
        ("diff", "--projection", "pairs", "--from", "1"),
        ("verify", "--projection", "bogus"),
        ("--batch", "0", "--projection", "pairs"),
        ("no-such-command",),
        ("--json", "status"),
    ],
)
def test_usage_errors_exit_2_with_one_line(cli: Any, args: tuple[str, ...]) -> None:
    code, message = cli(*args)
    assert code == 2
    assert message.startswith("error: ")
    assert len(message.strip().splitlines()) == 1


def test_status_lists_versions(migrated: Engine, cli: Any) -> None:
    fill(migrated, 4)
    code, empty = cli("status", "--json")
    assert code == 0
    assert empty["projections"] == []
    Runner(migrated, None).run_once()
    code, report = cli("status", "--json")
    assert code == 0
    assert report["log_head"] == 10
    assert {(p["projection"], p["version"], p["lag"]) for p in report["projections"]} == {
        ("ledger_entries", 1, 0),
        ("payment_orders", 1, 0),
        ("pairs", 1, 0),
    }
    code, table = cli("status")
    assert "serving" in table


def test_console_script_usage_error(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "rebuild"
    env = {**os.environ, "BO_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    done = subprocess.run(
        [str(script), "--projection", "nope"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unknown projection 'nope' (use ledger_entries, payment_orders, pairs)"
    ]


def test_rebuild_while_ingest_and_the_live_runner_run(migrated: Engine, cli: Any) -> None:
    fill(migrated, 30)
    runner = Runner(migrated, None, poll_interval=0.05)
    stop = threading.Event()
    follower = threading.Thread(target=runner.run_forever, args=(stop,))
    follower.start()
    more = [
        event(
            L, "u", ledger_row(f"P{i}", related_id=f"O{i}", version=2, amount="5.00"), lsn=5000 + i
        )
        for i in range(30)
    ]
    feeder_errors: list[BaseException] = []

    def feed() -> None:
        try:
            for line in more:
                append(migrated, [line])
        except BaseException as exc:  # surfaced below
            feeder_errors.append(exc)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        for name in ("ledger_entries", "pairs"):
            code, out = cli("--projection", name, "--batch", "5")
            assert code == 0, out
    finally:
        feeder.join(timeout=60)
        stop.set()
        follower.join(timeout=30)
    assert feeder_errors == []
    Runner(migrated, None).run_once()
    code, report = cli("verify", "--json")
    assert code == 0, report
    with migrated.connect() as conn:
        found = conn.execute(select(view_table(LEDGER_ENTRIES))).mappings().all()
    rows = {r["tx_id"]: r for r in found}
    assert all(rows[f"P{i}"]["amount"] == "5.00" for i in range(30))


def test_parallel_decoding_gives_the_same_checksum(sqlite_url: str, engine_factory: Any) -> None:
    # decoding workers are backend-independent: SQLite only keeps the file fast
    engine = engine_factory(sqlite_url)
    fill(engine, 20)
    serial = build(engine, None, "pairs", batch=9)
    parallel = build(engine, None, "pairs", batch=9, workers=2)
    assert parallel.checksum == serial.checksum
    assert parallel.position == serial.position == 53


def test_a_builder_error_fails_the_rebuild_cleanly(migrated: Engine, cli: Any) -> None:
    fill(migrated, 3)
    Runner(migrated, None).run_once()
    before = by_name(migrated)["ledger_entries.v1"]
    append(migrated, [event(L, "c", ledger_row("OK1"))])
    append_refused(migrated, *huge_version("BIG"))  # logged, but no longer decodes
    append(migrated, [event(P, "c", order_row("Z"))])
    code, message = cli("--projection", "ledger_entries", "--batch", "4")
    assert code == 1
    assert message.startswith("error: rebuild of ledger_entries.v1 failed at position 10: ")
    after = by_name(migrated)["ledger_entries.v1"]
    assert after["serving"] is True  # the old tables keep serving, untouched
    assert after["rows"] == before["rows"]
    with migrated.connect() as conn:
        leftovers = [
            name
            for name in migrated.dialect.get_table_names(
                conn, schema=None if migrated.dialect.name == "sqlite" else "bo"
            )
            if name.endswith("__new")
        ]
    assert leftovers == []
    code, message = cli("--projection", "payment_orders", "--version", "2", "--no-promote")
    assert code == 0


def test_a_failed_replay_still_prints_one_json_object(migrated: Engine, cli: Any) -> None:
    """With --json a failed build prints its report (exit 1), and verify reports a replay
    that fails on one event as that projection's drift and goes on with the others (it
    printed nothing and stopped at the first)."""
    from projections.store import put_checkpoint

    fill(migrated, 3)
    append(migrated, [event(L, "c", ledger_row("OK1"))])
    append_refused(migrated, *huge_version("BIG"))  # logged, but no longer decodes
    code, report = cli("--projection", "ledger_entries", "--json")
    assert code == 1
    assert report["ok"] is False
    assert report["projection"] == "ledger_entries"
    assert report["error_position"] == 10
    assert "failed at position 10" in report["note"]
    Runner(migrated, None).run_once()  # ledger_entries fails live at 10, the others go on
    with migrated.begin() as conn:  # as if an older build had applied it
        put_checkpoint(conn, "ledger_entries", 1, position=10, state="serving")
    code, report = cli("verify", "--json")
    assert code == 1
    found = {r["projection"]: r for r in report["projections"]}
    assert found["ledger_entries"]["ok"] is False
    assert found["ledger_entries"]["error_position"] == 10
    assert found["payment_orders"]["ok"] is True
    assert found["pairs"]["ok"] is True


def test_verify_without_the_checkpoint_row_is_a_drift_not_a_traceback(
    migrated: Engine, cli: Any
) -> None:
    fill(migrated, 3)
    Runner(migrated, None).run_once()
    table = (
        "projection_checkpoints"
        if migrated.dialect.name == "sqlite"
        else "bo.projection_checkpoints"
    )
    with migrated.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE projection = 'pairs'"))
    code, report = cli("verify", "--projection", "pairs", "--json")
    assert code == 1
    assert report["projections"][0]["ok"] is False
    assert "checkpoint row is missing" in report["projections"][0]["note"]


def test_a_failed_first_build_is_visible_as_failed(migrated: Engine, cli: Any) -> None:
    append(migrated, [event(L, "c", ledger_row("OK"))])
    append_refused(migrated, *huge_version("B"))
    code, _ = cli("--projection", "ledger_entries")
    assert code == 1
    state = by_name(migrated)["ledger_entries.v1"]
    assert state["state"] == "failed"
    assert state["error_position"] == 2
    assert state["serving"] is False


def test_verify_reports_rows_added_or_removed_by_hand(migrated: Engine, cli: Any) -> None:
    fill(migrated, 4)
    Runner(migrated, None).run_once()
    table = "payment_orders_v1" if migrated.dialect.name == "sqlite" else "bo.payment_orders_v1"
    with migrated.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE order_id = 'O2'"))
        conn.execute(
            text(f"INSERT INTO {table} (order_id, deleted, position) VALUES ('ZZ', false, 1)")
        )
    code, report = cli("verify", "--projection", "payment_orders", "--json")
    assert code == 1
    item = report["projections"][0]
    assert item["first_keys"] == ["O2", "ZZ"]
    assert [d["kind"] for d in item["details"]] == ["only_in_replay", "only_in_serving"]
    assert item["differences"] == 2


@pytest.mark.parametrize("dropped", ["view and table", "table"])
def test_verify_fails_when_serving_tables_were_dropped(
    migrated: Engine, cli: Any, dropped: str
) -> None:
    """A serving version whose view or table is gone is drift, not "not built yet"."""
    fill(migrated, 4)
    Runner(migrated, None).run_once()
    pg = migrated.dialect.name != "sqlite"
    schema = "bo." if pg else ""
    with migrated.begin() as conn:
        if dropped == "view and table":
            conn.execute(text(f"DROP VIEW {schema}payment_orders"))
        cascade = " CASCADE" if pg else ""
        conn.execute(text(f"DROP TABLE {schema}payment_orders_v1{cascade}"))
    code, report = cli("verify", "--projection", "payment_orders", "--json")
    assert code == 1
    item = report["projections"][0]
    assert (item["ok"], item["version"]) == (False, 1)
    assert "missing" in item["note"]


def test_rebuilding_another_version_swaps_it_in_and_demotes_the_old(
    migrated: Engine, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(migrated, 4)
    Runner(migrated, None).run_once()
    mapping = tmp_path / "map.json"
    mapping.write_text('{"SUCCESS": ["SETTLED"]}')
    monkeypatch.setenv("BO_STATUS_MAP", str(mapping))
    code, built = cli("--projection", "payment_orders", "--json")  # newest: v2
    assert code == 0
    assert (built["version"], built["state"], built["serving"]) == (2, "serving", True)
    states = by_name(migrated)
    assert states["payment_orders.v1"]["state"] == "standby"
    assert states["payment_orders.v2"]["serving"] is True
    with migrated.connect() as conn:
        view = view_table(PAYMENT_ORDERS)
        groups = dict(conn.execute(select(view.c.order_id, view.c.status_group)).all())
    assert groups["O1"] == "SUCCESS"
    assert groups["O0"] == "UNKNOWN"
