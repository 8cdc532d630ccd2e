"""Browser fixtures: headless Chromium (installed when missing), Playwright, a live API.

Import the fixtures from a test module with
``from tests.fixtures_browser import *  # noqa: F403``.

- ``chromium_executable`` (session): ``/usr/bin/chromium``; when it is missing and we are
  root (as on CI) it runs ``apt-get update && apt-get install -y chromium`` once; a
  non-root machine without Chromium skips with the command to run.
- ``browser`` (session): Playwright's Chromium driving that executable, headless.
- ``console_site`` (module): the real app (``api.app.create_app``) on a free port, served
  by uvicorn in a thread, over a SQLite database filled through the real path — Debezium
  events → ``prepare`` → ``EventLog.append`` → projections caught up.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Playwright, ViewportSize, sync_playwright
from sqlalchemy import Engine, text

from eventlog.store import EventLog, SourceRef, prepare

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "install it with: sudo apt-get update && sudo apt-get install -y chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

# ---------------------------------------------------------------- the data

BASE = datetime(2026, 1, 1, tzinfo=UTC)
WALLET_ID = "W-1"
WALLET_ENTRIES = 12  # with 5 per page: pages of 5, 5 and 2
PAIR_ORDER = "O-100"
PAYMENT_TX = "T-100"
RECEIVE_TX = "T-101"
CONFLICT_ORDER = "O-300"
CONFLICT_WALLET = "W-3"
DELETED_TX = "D-1"
# A raw status that is markup: the page must show it as text, never run it.
MARKUP_TX = "H-005"
MARKUP_STATUS = '<img src=x onerror="window.__pwned=1"><b>DONE</b>'
# A raw status with a right-to-left override: drawn, it would read "DONE-DENIED" backwards
BIDI_TX = "H-006"
BIDI_STATUS = "DONE\u202eDEIRTER"


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _event(table: str, row: dict[str, Any], at: datetime, lsn: int, op: str = "c") -> bytes:
    return json.dumps(
        {
            "before": row if op == "d" else None,
            "after": None if op == "d" else row,
            "source": {"table": table, "ts_ms": _ms(at), "lsn": lsn, "txId": lsn},
            "op": op,
            "ts_ms": _ms(at) + 50,
        }
    ).encode()


def _leg(tx_id: str, wallet: str, kind: str, related: str, at: datetime) -> dict[str, Any]:
    return {
        "tx_id": tx_id,
        "wallet_id": wallet,
        "type": kind,
        "amount": "7.00",
        "currency": "KRW",
        "related_id": related,
        "status": "DONE",
        "created_at": _iso(at),
        "updated_at": _iso(at),
        "version": 1,
    }


def sample_events() -> list[bytes]:
    """A COMPLETE pair (order O-100: T-100 PAYMENT from W-1, T-101 RECEIVE to W-2),
    a history of 12 entries for wallet W-1, one hour apart, and in wallet W-3 a
    CONFLICT (order O-300: two PAYMENT legs and one RECEIVE) plus a deleted entry."""
    events: list[bytes] = []
    lsn = 1000
    paid = BASE + timedelta(hours=3, minutes=25, seconds=7)
    events.append(
        _event(
            "payment_orders",
            {
                "order_id": PAIR_ORDER,
                "payer_wallet_id": WALLET_ID,
                "receiver_wallet_id": "W-2",
                "amount": "100.50",
                "currency": "KRW",
                "status": "SETTLED",
                "created_at": _iso(paid),
                "updated_at": _iso(paid),
                "settled_at": _iso(paid + timedelta(seconds=2)),
                "version": 1,
            },
            paid,
            lsn,
        )
    )
    for tx_id, wallet, kind, offset in (
        (PAYMENT_TX, WALLET_ID, "PAYMENT", 0),
        (RECEIVE_TX, "W-2", "RECEIVE", 1),
    ):
        lsn += 1
        at = paid + timedelta(seconds=offset)
        events.append(
            _event(
                "ledger_entries",
                {
                    "tx_id": tx_id,
                    "wallet_id": wallet,
                    "type": kind,
                    "amount": "100.50",
                    "currency": "KRW",
                    "related_id": PAIR_ORDER,
                    "related_type": "PAYMENT_ORDER",
                    "status": "DONE",
                    "created_at": _iso(at),
                    "updated_at": _iso(at),
                    "version": 1,
                },
                at,
                lsn,
            )
        )
    # The pair's PAYMENT leg is one of W-1's entries; eleven more make 12.
    for n in range(1, WALLET_ENTRIES):
        lsn += 1
        at = BASE + timedelta(days=1, hours=n)
        events.append(
            _event(
                "ledger_entries",
                {
                    "tx_id": f"H-{n:03d}",
                    "wallet_id": WALLET_ID,
                    "type": "PAYMENT" if n % 2 else "RECEIVE",
                    "amount": f"{n}.00",
                    "currency": "KRW",
                    "related_id": f"O-{200 + n}",
                    "status": {5: MARKUP_STATUS, 6: BIDI_STATUS}.get(n, "DONE"),
                    "created_at": _iso(at),
                    "updated_at": _iso(at),
                    "version": 1,
                },
                at,
                lsn,
            )
        )
    lsn += 1
    at = BASE + timedelta(days=2)
    for n, kind in enumerate(("PAYMENT", "PAYMENT", "RECEIVE"), start=1):
        lsn += 1
        events.append(
            _event(
                "ledger_entries",
                _leg(f"C-{n}", CONFLICT_WALLET, kind, CONFLICT_ORDER, at + timedelta(minutes=n)),
                at,
                lsn,
            )
        )
    gone = _leg(DELETED_TX, CONFLICT_WALLET, "PAYMENT", "O-400", at + timedelta(minutes=10))
    events.append(_event("ledger_entries", gone, at, lsn + 1))
    events.append(
        _event("ledger_entries", {**gone, "version": 2}, at + timedelta(hours=1), lsn + 2, op="d")
    )
    return events


# ---------------------------------------------------------------- Chromium + Playwright


def _install_chromium() -> None:
    """``apt-get update && apt-get install -y chromium`` (a minute or two); fail clearly."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            pytest.fail(f"`{' '.join(command)}` failed ({done.returncode}): {' | '.join(tail)}")


def find_or_install_chromium(
    path: Path = CHROMIUM,
    *,
    can_install: Callable[[], bool] = lambda: os.geteuid() == 0 and bool(shutil.which("apt-get")),
    install: Callable[[], None] = _install_chromium,
) -> Path:
    """The Chromium binary: as found; else installed when we are root with apt-get (as
    on CI); else the test is skipped with the command that installs it."""
    if path.exists():
        return path
    if not can_install():
        pytest.skip(f"headless Chromium not found at {path}; {INSTALL_HINT}")
    install()
    if not path.exists():
        pytest.fail(f"apt-get installed chromium but {path} is still missing")
    return path


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    return find_or_install_chromium()


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(chromium_executable: Path, playwright_driver: Playwright) -> Iterator[Browser]:
    instance = playwright_driver.chromium.launch(
        executable_path=str(chromium_executable), headless=True, args=CHROMIUM_ARGS
    )
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ---------------------------------------------------------------- a live server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn serving ``app`` in a thread on a free local port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="console-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:  # a condition, polled: uvicorn offers no event
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Site:
    """The running console: its URL, its database and a way to mint tokens for it."""

    url: str
    settings: Any
    engine: Engine

    def token(self, sub: str, *roles: str, ttl: int = 3600) -> str:
        from api.auth import dev_token

        return dev_token(self.settings, sub, list(roles), ttl)

    @property
    def console(self) -> str:
        return f"{self.url}/console/"


@contextmanager
def audit_store_down(site: Site) -> Iterator[None]:
    """Make every audit write fail for real (a SQLite trigger), so /admin answers 503."""
    with site.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER console_test_audit_down BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit store unavailable (test)'); END"
            )
        )
    try:
        yield
    finally:
        with site.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER console_test_audit_down"))


def build_site_app(tmp: Path) -> tuple[FastAPI, Any]:
    """The real app over a SQLite database holding :func:`sample_events`, caught up."""
    from api.app import create_app
    from bo.cli_projections import catch_up
    from bo.wiring import bootstrap
    from eventlog.migrate import upgrade

    container = bootstrap(
        log_json=True,
        database_url=f"sqlite:///{tmp / 'bo.db'}",
        var_dir=tmp / "var",
        auth_mode="dev",
        log_level="WARNING",
    )
    upgrade(container.engine)
    result = EventLog(container.engine).append(
        [
            prepare(raw, SourceRef(file="console-fixture", line=n))
            for n, raw in enumerate(sample_events(), 1)
        ]
    )
    assert result.appended == len(sample_events()), result
    catch_up(container)
    return create_app(container.settings, container.engine), container


@pytest.fixture(scope="module")
def console_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("console")
    app, container = build_site_app(tmp)
    with LiveServer(app) as live:
        yield Site(url=live.url, settings=container.settings, engine=container.engine)
    container.close()
