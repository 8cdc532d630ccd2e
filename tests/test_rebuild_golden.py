"""``rebuild golden`` over tests/golden on SQLite and PostgreSQL, and its failure report."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bo.output import run_app
from bo.pgcluster import Cluster
from rebuild.cli import app as rebuild_app

GOLDEN = Path(__file__).parent / "golden"


def run(monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["rebuild", *args])
    monkeypatch.delenv("BO_STATUS_MAP", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_app(rebuild_app)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def test_at_least_twelve_scenarios() -> None:
    found = [p for p in GOLDEN.iterdir() if (p / "events.jsonl").is_file()]
    assert len(found) >= 12
    for scenario in found:
        assert list((scenario / "expected").glob("*.jsonl")), scenario.name


def test_golden_on_sqlite(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, out = run(monkeypatch, capsys, "golden", str(GOLDEN), "--json")
    report = orjson.loads(out)
    assert [s for s in report["scenarios"] if not s["ok"]] == []
    assert code == 0


def test_golden_on_postgresql(
    pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    code, out = run(
        monkeypatch, capsys, "golden", str(GOLDEN), "--database-url", pg_cluster.url(), "--json"
    )
    report = orjson.loads(out)
    assert [s for s in report["scenarios"] if not s["ok"]] == []
    assert code == 0


def test_mismatch_gives_a_readable_diff_and_update_rewrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    shutil.copytree(GOLDEN / "conflict", tmp_path / "conflict")
    expected = tmp_path / "conflict" / "expected" / "pairs.jsonl"
    row = orjson.loads(expected.read_bytes())
    row["pairing_status"] = "COMPLETE"
    expected.write_bytes(orjson.dumps(row) + b"\n")
    code, out = run(monkeypatch, capsys, "golden", str(tmp_path))
    assert code == 1
    assert "conflict: FAILED" in out
    assert "pairs.jsonl: row O1: pairing_status expected 'COMPLETE', got 'CONFLICT'" in out
    code, out = run(monkeypatch, capsys, "golden", str(tmp_path), "--update")
    assert code == 0
    assert expected.read_bytes() == (GOLDEN / "conflict" / "expected" / "pairs.jsonl").read_bytes()


def test_missing_directory_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    code, out = run(monkeypatch, capsys, "golden", str(tmp_path / "nowhere"))
    assert code == 2
    assert out.startswith("error: no such golden directory")


def test_a_projection_without_an_expected_file_is_named_as_not_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A scenario may cover some projections only; the others are named as not compared,
    so an expected file deleted by mistake does not pass unnoticed."""
    shutil.copytree(GOLDEN / "conflict", tmp_path / "conflict")
    (tmp_path / "conflict" / "expected" / "payment_orders.jsonl").unlink()
    code, out = run(monkeypatch, capsys, "golden", str(tmp_path), "--json")
    assert code == 0
    assert orjson.loads(out)["scenarios"][0]["unchecked"] == ["payment_orders"]
    code, out = run(monkeypatch, capsys, "golden", str(tmp_path))
    assert "conflict: ok (no expected file, not compared: payment_orders)" in out
