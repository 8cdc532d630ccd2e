"""The foundation commands as an operator runs them: the real ``bo`` script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from eventlog.schema import events
from tests.fixtures_eventlog import event, ledger_row, sample_stream

BO = str(Path(sys.executable).with_name("bo"))
SUMMARY_KEYS = {"appended", "duplicate", "dead_letter", "tombstone"}


def bo(
    url: str, *args: str, stdin: bytes | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    environment = dict(os.environ, BO_DATABASE_URL=url, **env)
    return subprocess.run(
        [BO, *args], env=environment, input=stdin, capture_output=True, timeout=120
    )


def one_json_object(out: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert out.returncode == 0, out.stderr.decode()
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 1, lines
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def test_migrate_then_ingest_then_again(engine_url: str, tmp_path: Path) -> None:
    migrated = one_json_object(bo(engine_url, "migrate", "--json"))
    assert migrated["revision"]
    assert "password" not in migrated["database"]
    assert one_json_object(bo(engine_url, "migrate", "--json")) == migrated  # idempotent

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(sample_stream(12)) + b"\nnull\n\n")
    first = one_json_object(bo(engine_url, "ingest", "--json", "--no-project", str(path)))
    assert set(first) >= SUMMARY_KEYS
    assert first["appended"] == first["head"] > 0
    assert first["duplicate"] > 0
    assert first["dead_letter"] > 0
    assert first["tombstone"] == 1
    assert all(isinstance(first[k], int) for k in SUMMARY_KEYS)

    again = one_json_object(bo(engine_url, "ingest", "--json", "--no-project", str(path)))
    assert again["appended"] == 0
    assert again["duplicate"] == first["appended"] + first["duplicate"]
    assert again["head"] == first["head"]

    human = bo(engine_url, "ingest", "--no-project", str(path))
    assert human.returncode == 0
    assert human.stdout.decode().startswith("appended 0, duplicate")


def test_ingest_reads_stdin(sqlite_url: str, engine_factory: Any) -> None:
    engine: Engine = engine_factory(sqlite_url)
    lines = event(after=ledger_row("T1")) + b"\n" + event(after=ledger_row("T2"), lsn=2) + b"\n"
    out = one_json_object(bo(sqlite_url, "ingest", "--json", "--no-project", "-", stdin=lines))
    assert (out["appended"], out["duplicate"], out["dead_letter"]) == (2, 0, 0)
    with engine.connect() as conn:
        keys = list(conn.execute(select(events.c.entity_key).order_by(events.c.position)).scalars())
    assert keys == ["ledger_entries:T1", "ledger_entries:T2"]


def test_ingest_of_several_files_sums_them(
    sqlite_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    engine_factory(sqlite_url)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(event(after=ledger_row("T1")) + b"\n")
    b.write_bytes(event(after=ledger_row("T2"), lsn=2) + b"\nnot json\n")
    out = one_json_object(bo(sqlite_url, "ingest", "--json", "--no-project", str(a), str(b)))
    assert (out["appended"], out["dead_letter"]) == (2, 1)


def test_credentials_do_not_reach_the_command_output_or_logs(
    sqlite_url: str, engine_factory: Any
) -> None:
    engine_factory(sqlite_url)
    lines = (
        event(after=ledger_row(password="hunter2"))
        + b"\n"
        + event(after=ledger_row(amount="bad", api_key="hunter3"))
        + b'\n{"token": "hunter4", broken\n'
    )
    out = bo(sqlite_url, "ingest", "--json", "--no-project", "-", stdin=lines, BO_LOG_LEVEL="TRACE")
    assert out.returncode == 0
    for secret in (b"hunter2", b"hunter3", b"hunter4"):
        assert secret not in out.stdout
        assert secret not in out.stderr
    shown = bo(sqlite_url, "dead-letters", "list", "--json")
    assert b"hunter" not in shown.stdout


# ---------------------------------------------------------------- bad arguments and config


def _bad_cases(tmp_path: Path) -> list[tuple[str, list[str], dict[str, str], str]]:
    sample = tmp_path / "ok.jsonl"
    sample.write_bytes(event() + b"\n")
    unmigrated = f"sqlite:///{tmp_path / 'empty.db'}"
    return [
        ("unknown auth mode", ["ingest", str(sample)], {"BO_AUTH_MODE": "magic"}, "BO_AUTH_MODE"),
        ("bad database scheme", ["migrate"], {"BO_DATABASE_URL": "mysql://x/y"}, "BO_DATABASE_URL"),
        (
            "unparsable database url",
            ["ingest", str(sample)],
            {"BO_DATABASE_URL": "postgresql://u@h:notaport/db"},
            "BO_DATABASE_URL",
        ),
        (
            "unreachable postgresql",
            ["ingest", str(sample)],
            {"BO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
            "database unreachable",
        ),
        ("not migrated", ["ingest", str(sample)], {"BO_DATABASE_URL": unmigrated}, "bo migrate"),
        ("missing file", ["ingest", str(tmp_path / "nope.jsonl")], {}, "no such file"),
        ("a directory", ["ingest", str(tmp_path)], {}, "not a regular file"),
        ("no files", ["ingest"], {}, "Missing argument"),
    ]


def test_bad_arguments_and_config_are_one_line_exit_2(
    sqlite_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    engine_factory(sqlite_url)
    cases = _bad_cases(tmp_path)

    def run(case: tuple[str, list[str], dict[str, str], str]) -> Any:
        _name, args, env, _message = case
        return bo(env.pop("BO_DATABASE_URL", sqlite_url), *args, **env)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, cases))
    for (name, _args, _env, message), out in zip(cases, results, strict=True):
        err = out.stderr.decode()
        assert out.returncode == 2, (name, err)
        assert message in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert "Traceback" not in err, name
        assert out.stdout == b"", name


@pytest.mark.parametrize("args", [["log", "verify", "--json"], ["dead-letters", "list", "--json"]])
def test_reporting_commands_print_one_json_object(
    engine_url: str, engine_factory: Any, args: list[str]
) -> None:
    engine_factory(engine_url)
    data = one_json_object(bo(engine_url, *args))
    assert data.get("ok", True) is True


def test_ingest_with_worker_processes_from_the_cli(
    pg_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    engine_factory(pg_url)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(sample_stream(300)) + b"\n")
    parallel = one_json_object(
        bo(pg_url, "ingest", "--json", "--no-project", "--workers=2", str(path))
    )
    assert parallel["appended"] > 900
    verified = one_json_object(bo(pg_url, "log", "verify", "--json"))
    assert verified["head"] == parallel["head"]
    bad = bo(pg_url, "ingest", "--json", "--workers=-1", str(path))
    assert bad.returncode == 2
    assert b"--workers" in bad.stderr


def test_sigterm_stops_ingest_and_its_workers(tmp_path: Path) -> None:
    """SIGTERM runs the same clean-up as Ctrl-C: the worker pool is shut down and the
    process exits 143. (Python's default is to die at once; the forked workers were
    left behind, blocked on their pipes, holding the database open.)"""
    import signal
    import time

    import psutil

    from bench.common import debezium_events

    source = tmp_path / "big.jsonl"
    with source.open("wb") as out:
        for raw in debezium_events(60_000, seed=3):
            out.write(raw + b"\n")
    url = f"sqlite:///{tmp_path / 'bo.db'}"
    assert bo(url, "migrate").returncode == 0
    environment = dict(os.environ, BO_DATABASE_URL=url)
    proc = subprocess.Popen(
        [BO, "ingest", str(source), "--workers", "2", "--no-project", "--json"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    workers: list[psutil.Process] = []
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        workers = parent.children()
        time.sleep(0.05)
    assert len(workers) >= 2, "the ingest ended before its workers were seen"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    _gone, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == []
    assert b"Traceback" not in err
