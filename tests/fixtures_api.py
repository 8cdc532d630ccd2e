"""Fixtures for the admin API tests: an app over a real migrated database, tokens,
Debezium events appended through the real path, and a real uvicorn server in a thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.auth import dev_token
from eventlog.settings import Settings, load_settings
from eventlog.store import AppendResult, EventLog, SourceRef, prepare
from projections.runner import Runner

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def ledger(
    tx_id: str,
    *,
    wallet: str = "W1",
    type: str = "PAYMENT",
    amount: str = "10.00",
    related_id: str | None = None,
    related_type: str | None = None,
    created_at: str = "2026-01-01T00:00:00Z",
    version: int = 1,
    status: str | None = "POSTED",
) -> dict[str, Any]:
    return {
        "tx_id": tx_id,
        "wallet_id": wallet,
        "type": type,
        "amount": amount,
        "currency": "KRW",
        "related_id": related_id,
        "related_type": related_type,
        "status": status,
        "created_at": created_at,
        "version": version,
    }


def order(
    order_id: str,
    *,
    payer: str | None = "W1",
    receiver: str | None = "W2",
    amount: str = "10.00",
    status: str = "PENDING",
    version: int = 1,
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "payer_wallet_id": payer,
        "receiver_wallet_id": receiver,
        "amount": amount,
        "currency": "KRW",
        "status": status,
        "created_at": "2026-01-01T00:00:00Z",
        "version": version,
    }


_lsn = iter(range(1000, 10**9))


def change(table: str, row: dict[str, Any], *, op: str = "c", ts: int = 0) -> bytes:
    """A bare Debezium envelope; ``ts`` = seconds after 2026-01-01 (the commit time)."""
    return orjson.dumps(
        {
            "op": op,
            "before": row if op == "d" else None,
            "after": None if op == "d" else row,
            "source": {"table": table, "ts_ms": BASE_MS + ts * 1000, "lsn": next(_lsn)},
        }
    )


@dataclass
class ApiEnv:
    settings: Settings
    engine: Engine
    clock: Callable[[], datetime] | None = None

    def app(self, **overrides: Any) -> FastAPI:
        return create_app(self.settings, self.engine, clock=overrides.get("clock", self.clock))

    def token(self, *roles: str, sub: str = "alice", ttl: int = 600) -> str:
        return dev_token(self.settings, sub, list(roles), ttl)

    def headers(self, *roles: str, sub: str = "alice", ttl: int = 3600) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*roles, sub=sub, ttl=ttl)}"}

    def append(self, *lines: bytes) -> AppendResult:
        outcomes = [prepare(line, SourceRef(file="t", line=i)) for i, line in enumerate(lines, 1)]
        return EventLog(self.engine).append(outcomes)

    def project(self) -> dict[str, Any]:
        return Runner(self.engine, self.settings).run_once(checksums=False)

    def ingest(self, *lines: bytes) -> None:
        self.append(*lines)
        self.project()


def make_env(engine: Engine, tmp_path: Path, **overrides: Any) -> ApiEnv:
    url = engine.url.render_as_string(hide_password=False)
    settings = load_settings(database_url=url, var_dir=tmp_path / "var", **overrides)
    return ApiEnv(settings, engine)


@pytest.fixture(name="env")
def env_fixture(migrated: Engine, tmp_path: Path) -> ApiEnv:
    """An API environment on each backend in turn (SQLite and PostgreSQL)."""
    return make_env(migrated, tmp_path)


@pytest.fixture(name="sqlite_env")
def sqlite_env_fixture(sqlite_url: str, engine_factory: Any, tmp_path: Path) -> ApiEnv:
    return make_env(engine_factory(sqlite_url), tmp_path)


@contextmanager
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            proxy_headers=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ready = threading.Event()
    while not ready.wait(0.01):
        if server.started:
            ready.set()
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def pair_world(env: ApiEnv) -> None:
    """An order with both legs, a leg of an unknown order, a non-candidate, a leg without
    related_id (the lookups' shared world)."""
    env.ingest(
        change("payment_orders", order("O1", payer="WP", receiver="WR", status="SETTLED")),
        change("ledger_entries", ledger("T1", wallet="WP", type="PAYMENT", related_id="O1")),
        change("ledger_entries", ledger("T2", wallet="WR", type="RECEIVE", related_id="O1"), ts=1),
        # a leg whose order is unknown, no related_type → UNKNOWN
        change("ledger_entries", ledger("T3", wallet="WX", type="PAYMENT", related_id="O9"), ts=2),
        # a non-candidate: explicit other related_type
        change(
            "ledger_entries",
            ledger("T4", wallet="WP", type="FEE", related_id="R1", related_type="REFUND"),
            ts=3,
        ),
        # no related_id at all
        change("ledger_entries", ledger("T5", wallet="WP", type="PAYMENT"), ts=4),
    )
