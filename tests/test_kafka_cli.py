"""`bo consume` as operators run it: config errors, SIGTERM, an unreachable broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from loguru import logger
from sqlalchemy import Engine

from bo import cli
from bo.broker import Broker, free_port, throwaway_broker
from tests.fixtures_kafka import (
    create_topics,
    kafka_broker,
    ledger_event,
    log_count,
    produce,
    unique,
    wait_for,
)

pytestmark = pytest.mark.kafka
__all__ = ["kafka_broker"]
BO = [sys.executable, "-m", "bo.cli"]


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BO_")}
    return {**env, "BO_DATABASE_URL": url, "BO_LOG_LEVEL": "WARNING", **extra}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "error: BO_KAFKA_BOOTSTRAP is not set"),
        ({"BO_KAFKA_BOOTSTRAP": "nonsense"}, "error: BO_KAFKA_BOOTSTRAP: expected host:port"),
        ({"BO_KAFKA_BOOTSTRAP": "h:99999"}, "error: BO_KAFKA_BOOTSTRAP: expected host:port"),
        (
            {"BO_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "BO_KAFKA_TOPICS": " , "},
            "error: BO_KAFKA_TOPICS is empty",
        ),
        (
            {"BO_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "BO_KAFKA_TOPICS": "a,b", "BO_DLQ_TOPIC": "b"},
            "error: BO_DLQ_TOPIC must not be one of BO_KAFKA_TOPICS",
        ),
        (  # kafka-python would raise its ValueError (a traceback) at subscribe
            {"BO_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "BO_KAFKA_TOPICS": "bad topic name!"},
            "error: BO_KAFKA_TOPICS: 'bad topic name!' is not a legal Kafka topic name",
        ),
        (
            {"BO_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "BO_KAFKA_TOPICS": "a", "BO_DLQ_TOPIC": "d q"},
            "error: BO_DLQ_TOPIC: 'd q' is not a legal Kafka topic name",
        ),
        (
            {"BO_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "BO_KAFKA_TOPICS": "a", "BO_KAFKA_GROUP": " "},
            "error: BO_KAFKA_GROUP is empty",
        ),
    ],
)
def test_bad_config_is_one_line_and_exit_2(
    sqlite_url: str,
    engine_factory: Any,
    extra: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine_factory(sqlite_url)
    for name in [k for k in os.environ if k.startswith("BO_")]:
        monkeypatch.delenv(name)
    for name, value in _env(sqlite_url, **extra).items():
        if name.startswith("BO_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["bo", "consume"])
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main()
    finally:  # `bo` pointed loguru at the captured stderr: give it the real one back
        logger.remove()
        logger.add(sys.__stderr__)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1


def test_unmigrated_database_is_refused(tmp_path: Path, kafka_broker: Broker) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    done = subprocess.run(
        [*BO, "consume"],
        env=_env(url, BO_KAFKA_BOOTSTRAP=kafka_broker.bootstrap),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "bo migrate" in done.stderr


def test_sigterm_finishes_commits_and_exits_0(kafka_broker: Broker, migrated: Engine) -> None:
    ledger = unique("ledger-")
    create_topics(kafka_broker.bootstrap, [ledger], partitions=2)
    produce(kafka_broker.bootstrap, [(ledger, None, ledger_event(f"S{i}")) for i in range(40)])
    url = migrated.url.render_as_string(hide_password=False)
    env = _env(
        url,
        BO_KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
        BO_KAFKA_TOPICS=ledger,
        BO_KAFKA_GROUP=unique("g-"),
    )
    proc = subprocess.Popen(
        [*BO, "consume", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: log_count(migrated) == 40 or proc.poll() is not None, 60, "40 events")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.decode().strip().splitlines()
    assert len(lines) == 1
    summary = orjson.loads(lines[0])
    assert summary["appended"] == 40
    assert summary["records"] == 40


def _lines_with(path: Path, needle: bytes) -> int:
    return sum(needle in line for line in path.read_bytes().splitlines())


def test_unreachable_broker_backs_off_and_never_crashes(
    sqlite_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    engine_factory(sqlite_url)
    env = _env(sqlite_url, BO_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", BO_KAFKA_GROUP="g")
    err_path = tmp_path / "err.log"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [*BO, "consume", "--json"], env=env, stdout=subprocess.PIPE, stderr=err
        )
    try:
        wait_for(
            lambda: _lines_with(err_path, b"broker unreachable") >= 2 or proc.poll() is not None,
            60,
            "two reconnect attempts",
        )
        assert proc.poll() is None, err_path.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert orjson.loads(out.decode().strip())["broker_retries"] >= 2


@pytest.mark.parametrize("value", ["-1", "60001", "soon"])
def test_bad_linger_is_a_usage_error(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["bo", "consume", "--linger-ms", value])
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main()
    finally:
        logger.remove()
        logger.add(sys.__stderr__)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "linger-ms" in err, err
    assert len(err.splitlines()) == 1


def test_the_test_broker_leaves_no_directory_behind() -> None:
    """Every Kafka test starts one: their log directories must not pile up in /tmp."""
    with throwaway_broker() as broker:
        folder = broker.log_path.parent
        assert folder.is_dir()
    assert not folder.exists()
