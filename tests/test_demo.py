"""``bo demo`` (what ``make run`` calls) and the bundled sample it loads."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bo.demo import SAMPLE, pick_ids
from bo.sample.generate import STATUS_MAP, generate
from eventlog.db import make_engine
from eventlog.migrate import upgrade
from eventlog.settings import load_status_map
from eventlog.store import Prepared, Rejected, SourceRef, Tombstone, prepare
from projections.ledger_entries import LEDGER_ENTRIES
from projections.pairs import PAIRS
from projections.tables import view_table

BO = Path(sys.executable).parent / "bo"
README = Path(__file__).resolve().parents[1] / "README.md"


# ---------------------------------------------------------------- the sample


@pytest.fixture(scope="module")
def sample_lines() -> list[bytes]:
    return [line for line in SAMPLE.read_bytes().split(b"\n") if line.strip()]


def test_sample_file_is_what_the_generator_makes(sample_lines: list[bytes]) -> None:
    assert generate() == sample_lines, "run: python -m bo.sample.generate"
    assert 2_000 <= len(sample_lines) <= 6_000


def test_sample_status_map_is_valid() -> None:
    mapping = load_status_map(STATUS_MAP)
    assert {mapping[s] for s in ("SETTLED", "FAILED", "PENDING")} == {
        "SUCCESS",
        "FAIL",
        "IN_PROGRESS",
    }


def test_sample_covers_every_input_case(sample_lines: list[bytes]) -> None:
    outcomes = [
        prepare(line, SourceRef(file="sample", line=n)) for n, line in enumerate(sample_lines)
    ]
    prepared = [o for o in outcomes if isinstance(o, Prepared)]
    reasons = {o.reason.split(":")[0].split(" (")[0] for o in outcomes if isinstance(o, Rejected)}
    assert sum(isinstance(o, Tombstone) for o in outcomes) == 1
    assert reasons >= {
        "not JSON",
        "not an object",
        "unknown op 'x'",
        "unknown table 'users'",
        "truncate event",
        "missing primary key tx_id",
        "undecodable amount",
        "undecodable timestamp created_at",
        "before missing for op d",
    }
    ids = Counter(p.event_id for p in prepared)
    assert sum(n - 1 for n in ids.values()) >= 20, "redelivered duplicates"
    ops = Counter((p.change.table, p.change.op) for p in prepared)
    for key in [("ledger_entries", op) for op in "cudr"] + [("payment_orders", op) for op in "cu"]:
        assert ops[key] > 0, key
    redacted = {path for p in prepared for path in p.redacted_paths}
    assert {"after.payer_card_pan", "after.pg_meta.api_key"} <= redacted
    kinds = Counter(
        p.change.row.get("type") for p in prepared if p.change.table == "ledger_entries"
    )
    assert {"PAYMENT", "RECEIVE", "FEE", "TOPUP", "WITHDRAWAL"} <= set(kinds)
    related = {p.change.row.get("related_type") for p in prepared}
    assert {None, "PAYMENT_ORDER", "REFUND"} <= related
    assert any(p.change.row.get("version") is None and p.change.op == "c" for p in prepared)


def test_sample_uses_every_common_encoding(sample_lines: list[bytes]) -> None:
    text = b"\n".join(sample_lines)
    assert b'"org.apache.kafka.connect.data.Decimal"' in text
    assert b'"io.debezium.time.MicroTimestamp"' in text
    assert re.search(rb'"amount":\d+\.\d\d[,}]', text), "decimal as a JSON number"
    assert re.search(rb'"amount":"\d+\.\d\d"', text), "decimal as a string"
    assert re.search(rb'"created_at":\d{16}[,}]', text), "epoch microseconds without a schema"
    assert re.search(rb'"created_at":"[^"]+\+09:00"', text), "ISO-8601 with an offset"
    assert re.search(rb'"created_at":"[^"Z+]+\.\d{6}"', text), "ISO-8601 without an offset"


# ---------------------------------------------------------------- bo demo


def run_bo(where: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BO), *args],
        cwd=where,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env() -> dict[str, str]:
    """The environment of a fresh clone: no BO_* variables, so every default applies."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("BO_", "OTEL_"))}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def first_run(demo_dir: Path) -> dict[str, Any]:
    proc = run_bo(demo_dir, "demo", "--no-serve", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_demo_creates_var_and_ingests_the_sample(demo_dir: Path, first_run: dict[str, Any]) -> None:
    assert (demo_dir / "var" / "bo.db").is_file()
    assert first_run["database"] == "sqlite:///./var/bo.db"
    ingested = first_run["ingested"]
    assert ingested["appended"] > 3_000
    assert ingested["duplicate"] >= 20
    assert ingested["dead_letter"] >= 9
    assert first_run["head"] == ingested["appended"]
    assert not first_run["projections"]["failed"]


def test_demo_picks_every_kind_of_id_from_the_projections(
    demo_dir: Path, first_run: dict[str, Any]
) -> None:
    ids = first_run["ids"]
    assert all(ids.values()), ids
    pairs, entries = view_table(PAIRS), view_table(LEDGER_ENTRIES)
    engine = make_engine(f"sqlite:///{demo_dir / 'var' / 'bo.db'}")
    try:
        with engine.connect() as conn:
            status = dict(
                conn.execute(
                    select(pairs.c.pairing_status, func.count()).group_by(pairs.c.pairing_status)
                ).all()
            )
            assert status.keys() == {"COMPLETE", "INCOMPLETE", "CONFLICT"}

            def pair_of(tx_id: str) -> str:
                related = conn.execute(
                    select(entries.c.related_id).where(entries.c.tx_id == tx_id)
                ).scalar_one()
                return str(
                    conn.execute(
                        select(pairs.c.pairing_status).where(pairs.c.payment_order_id == related)
                    ).scalar_one()
                )

            assert pair_of(ids["complete_tx"]) == "COMPLETE"
            assert pair_of(ids["incomplete_tx"]) == "INCOMPLETE"
            assert pair_of(ids["conflict_tx"]) == "CONFLICT"
            deleted = conn.execute(
                select(func.count()).select_from(entries).where(entries.c.deleted.is_(True))
            ).scalar_one()
            assert deleted > 0, "the sample deletes some legs"
    finally:
        engine.dispose()


def test_demo_prints_tokens_and_curl_lines(first_run: dict[str, Any]) -> None:
    assert set(first_run["tokens"]) == {"ADMIN_READ", "ADMIN_AUDIT"}
    commands = " ".join(c["command"] for c in first_run["curl"])
    ids = first_run["ids"]
    for path in (
        f"/admin/tx/{ids['complete_tx']}",
        f"/admin/tx/{ids['incomplete_tx']}",
        f"/admin/tx/{ids['conflict_tx']}",
        f"/admin/payment-orders/{ids['complete_order']}",
        f"/admin/wallets/{ids['wallet']}/tx",
        "/admin/audit",
    ):
        assert f"http://127.0.0.1:8000{path}" in commands
    assert first_run["console"] == "http://127.0.0.1:8000/console"


def test_credentials_from_the_sample_never_land(demo_dir: Path, first_run: dict[str, Any]) -> None:
    secrets = set(re.findall(rb'"payer_card_pan":"(\d+)"', SAMPLE.read_bytes()))
    secrets |= set(re.findall(rb'"api_key":"(sk_test_[0-9a-f]+)"', SAMPLE.read_bytes()))
    secrets.add(b"hunter2")  # in a dead letter's raw bytes
    assert len(secrets) > 10
    stored = b"".join(p.read_bytes() for p in (demo_dir / "var").glob("bo.db*"))
    assert stored
    leaked = [s for s in secrets if s in stored]
    assert not leaked


def test_rerunning_reuses_the_database(demo_dir: Path, first_run: dict[str, Any]) -> None:
    proc = run_bo(demo_dir, "demo", "--no-serve", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads(proc.stdout)
    assert again["ingested"] is None
    assert again["head"] == first_run["head"]
    assert again["ids"] == first_run["ids"]
    assert "reusing the existing log" in run_bo(demo_dir, "demo", "--no-serve").stdout


def test_reset_starts_over(tmp_path: Path) -> None:
    assert run_bo(tmp_path, "demo", "--no-serve").returncode == 0
    proc = run_bo(tmp_path, "demo", "--no-serve", "--reset", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["ingested"] is not None, "the sample was ingested again"
    assert data["ingested"]["appended"] == data["head"] > 3_000


def test_reset_refuses_a_database_that_is_not_the_demos(tmp_path: Path) -> None:
    """``--reset`` deleted whatever SQLite file BO_DATABASE_URL named — a working log and
    its audit trail included; now only the demo's own (under BO_VAR_DIR, or ./var)."""
    other = tmp_path / "elsewhere" / "ledger.db"
    other.parent.mkdir()
    env = dict(_env(), BO_DATABASE_URL=f"sqlite:///{other}")
    migrate = subprocess.run(
        [str(BO), "migrate"], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    assert migrate.returncode == 0
    proc = subprocess.run(
        [str(BO), "demo", "--no-serve", "--reset"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "only deletes the demo's database" in proc.stderr
    assert other.exists()


# ---------------------------------------------------------------- serving


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(
    demo_dir: Path, first_run: dict[str, Any]
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = _free_port()
    proc = subprocess.Popen(
        [str(BO), "demo", "--port", str(port)],
        cwd=demo_dir,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def wait_until_healthy(proc: subprocess.Popen[str], base: str, deadline_s: float = 90) -> None:
    """Poll /healthz until it answers (a condition, not a fixed sleep)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, "bo demo exited before serving"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("bo demo did not become healthy")


def test_the_printed_curl_lines_work_and_ctrl_c_exits_cleanly(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    proc, base = served
    banner = read_banner(proc)
    wait_until_healthy(proc, base)
    tokens = {
        role: match.group(1)
        for role in ("READ", "AUDIT")
        if (match := re.search(rf"export {role}='([^']+)'", banner))
    }
    assert tokens.keys() == {"READ", "AUDIT"}
    answers: dict[str, Any] = {}
    for what, (url, role) in curl_urls(banner, base).items():
        auth = {"Authorization": f"Bearer {tokens[role]}"}
        response = httpx.get(url, headers=auth, timeout=10)
        assert response.status_code == 200, (what, url, response.text[:500])
        answers[what] = response.json()
    assert answers["a COMPLETE pair"]["pairing_status"] == "COMPLETE"
    assert answers["a COMPLETE pair"]["paired_tx_id"]
    assert answers["an INCOMPLETE pair"]["pairing_status"] == "INCOMPLETE"
    assert answers["a CONFLICT"]["pairing_status"] == "CONFLICT"
    assert len(answers["all legs of the CONFLICT's order"]["legs"]) >= 3
    assert answers["a payment order"]["pairing_status"] == "COMPLETE"
    assert answers["a wallet history"]["items"]
    assert answers["the audit log"]["items"], "the lookups above were audited"
    assert httpx.get(f"{base}/console", follow_redirects=True, timeout=10).status_code == 200
    assert_readme_example_is_true(answers["a COMPLETE pair"])
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0


def assert_readme_example_is_true(answer: dict[str, Any]) -> None:
    """The README's example response is what the demo really answers (lag aside)."""
    readme = README.read_text(encoding="utf-8")
    api = readme[readme.index("## API") :]
    block = re.search(r"```json\n(.*?)```", api, re.S)
    assert block
    example = json.loads(block.group(1))
    assert f"/admin/tx/{answer['tx_id']}" in api
    for volatile in ("data_lag_sec",):
        example.pop(volatile)
        answer = {k: v for k, v in answer.items() if k != volatile}
    assert example == answer


def read_banner(proc: subprocess.Popen[str]) -> str:
    """The demo's printed banner, up to its last curl line."""
    assert proc.stdout is not None
    text = ""
    while "/admin/audit" not in text:
        line = proc.stdout.readline()
        assert line, f"banner ended early: {text}"
        text += line
    return text


def curl_urls(banner: str, base: str) -> dict[str, tuple[str, str]]:
    """The banner's curl lines as {what: (url, READ|AUDIT)}."""
    out: dict[str, tuple[str, str]] = {}
    what = ""
    for line in banner.splitlines():
        if line.startswith("# "):
            what = line[2:]
        elif line.startswith("curl "):
            url = re.search(r"'(http[^']+)'", line)
            role = re.search(r"Bearer \$(READ|AUDIT)", line)
            assert url
            assert role
            assert url.group(1).startswith(base)
            out[what] = (url.group(1), role.group(1))
    assert len(out) == 8, out
    return out


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_bo(tmp_path, "demo", "--port", str(port))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert f"127.0.0.1:{port}" in proc.stderr
    assert not (tmp_path / "var").exists(), "nothing done before the port check"


def test_pick_ids_without_projections_gives_none_not_a_crash(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        upgrade(engine)  # the log exists, no projection was ever built
        assert all(value is None for value in pick_ids(engine).__dict__.values())
    finally:
        engine.dispose()


@pytest.mark.pg
def test_demo_works_the_same_on_postgresql(
    pg_url: str, tmp_path: Path, first_run: dict[str, Any]
) -> None:
    env = _env() | {"BO_DATABASE_URL": pg_url, "BO_VAR_DIR": str(tmp_path / "var")}
    proc = subprocess.run(
        [str(BO), "demo", "--no-serve", "--json"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["database"].startswith("postgresql+psycopg://")
    assert data["ingested"]["appended"] == data["head"] > 3_000
    assert data["ids"] == first_run["ids"], "the same log gives the same rows on both backends"
    assert not data["projections"]["failed"]


def test_a_fresh_demo_has_no_warnings(first_run: dict[str, Any]) -> None:
    assert first_run["warnings"] == []


def test_status_mapping_runbook_on_the_demo_data(demo_dir: Path, tmp_path: Path) -> None:
    """docs/operations.md, "Change the status mapping and diff the versions", verbatim."""
    (tmp_path / "var").mkdir()
    for path in (demo_dir / "var").glob("bo.db*"):
        shutil.copy(path, tmp_path / "var" / path.name)
    rebuild = str(BO.with_name("rebuild"))
    mapped = _env() | {"BO_STATUS_MAP": str(STATUS_MAP)}

    def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    built = run(
        [rebuild, "--projection", "payment_orders", "--version", "2", "--no-promote"], mapped
    )
    assert built.returncode == 0, built.stderr[-2000:]
    diff = run(
        [rebuild, "diff", "--projection", "payment_orders", "--from", "1", "--to", "2", "--json"],
        mapped,
    )
    assert diff.returncode == 1, diff.stderr[-2000:]
    assert '"UNKNOWN"' in diff.stdout
    assert '"SUCCESS"' in diff.stdout
    promoted = run([rebuild, "promote", "--projection", "payment_orders", "--version", "2"], mapped)
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    same_map = run([str(BO), "demo", "--no-serve", "--json"], mapped)
    assert same_map.returncode == 0, same_map.stderr[-2000:]
    assert json.loads(same_map.stdout)["warnings"] == []
    no_map = run([str(BO), "demo", "--no-serve", "--json"], _env())
    assert no_map.returncode == 0, no_map.stderr[-2000:]
    warnings = json.loads(no_map.stdout)["warnings"]
    assert any("payment_orders v2 is stale" in w for w in warnings), warnings


def test_the_runbook_checks_pass_on_the_demo_data(
    demo_dir: Path, first_run: dict[str, Any]
) -> None:
    """Chains, checksums and dead letters, as docs/operations.md shows them."""
    rebuild = str(BO.with_name("rebuild"))
    for argv in (
        [str(BO), "log", "verify", "--json"],
        [str(BO), "audit", "verify", "--json"],
        [rebuild, "verify", "--json"],
    ):
        proc = subprocess.run(
            argv, cwd=demo_dir, env=_env(), capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, (argv, proc.stdout[-1000:], proc.stderr[-1000:])
    letters = json.loads(run_bo(demo_dir, "dead-letters", "list", "--json").stdout)
    assert letters["count"] == first_run["ingested"]["dead_letter"]
    assert {"undecodable amount: '12,50'", "unknown table 'users'"} <= {
        item["reason"] for item in letters["items"]
    }
    users = next(i for i in letters["items"] if i["reason"] == "unknown table 'users'")
    shown = run_bo(demo_dir, "dead-letters", "show", str(users["id"]), "--json")
    assert shown.returncode == 0
    assert "[REDACTED]" in shown.stdout
    assert "hunter2" not in shown.stdout
