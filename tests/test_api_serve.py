"""`bo serve` end to end: a real process, the projection runner in-process, real HTTP,
a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures_api import change, free_port, ledger, order

BO = str(Path(sys.executable).parent / "bo")


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> httpx.Response:
    """Poll /readyz until ready (bounded): the in-process projector must catch up first."""
    last = None
    for _ in range(600):
        if server.poll() is not None:
            raise AssertionError(f"bo serve exited with {server.returncode}")
        try:
            last = httpx.get(f"{base}/readyz", timeout=2)
            if last.status_code == 200:
                return last
        except httpx.HTTPError:
            pass
        try:
            server.wait(0.1)
        except subprocess.TimeoutExpired:
            continue
    raise AssertionError(f"never ready: {last.text if last else 'no answer'}")


@pytest.mark.parametrize("workers", [1, 2])
def test_bo_serve_runs_projector_and_stops_cleanly(tmp_path: Path, workers: int) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BO_", "OTEL_"))},
        "BO_DATABASE_URL": f"sqlite:///{tmp_path / 'bo.db'}",
        "BO_VAR_DIR": str(tmp_path / "var"),
        "BO_LOG_LEVEL": "WARNING",
    }
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        change("payment_orders", order("O1"))
        + b"\n"
        + change("ledger_entries", ledger("T1", related_id="O1"))
        + b"\n"
    )
    run = {"env": env, "capture_output": True, "text": True, "check": True}
    subprocess.run([BO, "migrate"], **run)  # type: ignore[call-overload]
    subprocess.run([BO, "ingest", "--no-project", str(events)], **run)  # type: ignore[call-overload]
    token = subprocess.run(
        [BO, "token", "--sub", "ops", "--role", "ADMIN_READ"],
        **run,  # type: ignore[call-overload]
    ).stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [BO, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = _wait_ready(base, server)  # projections were caught up by the in-process runner
        assert ready.json()["ready"] is True
        r = httpx.get(f"{base}/admin/tx/T1", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.json()["pairing_status"] == "INCOMPLETE"
        assert r.headers["x-request-id"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    stderr = server.stderr.read().decode() if server.stderr else ""
    assert code == 0, stderr[-2000:]
    assert token not in stderr


def test_bo_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BO_", "OTEL_"))},
        "BO_DATABASE_URL": f"sqlite:///{tmp_path / 'bo.db'}",
        "BO_VAR_DIR": str(tmp_path / "var"),
    }
    out = subprocess.run(
        [BO, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "migrate" in out.stderr
