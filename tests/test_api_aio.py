"""The PostgreSQL hot path on the event loop (api/aio.py) gives exactly the answers of the
synchronous reference path: same status, headers and body bytes; the audit records it
writes form the same chain, fail closed the same way, and survive dead connections."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import create_engine, insert, select, text

from api import aio as api_aio
from api import models
from api.aio import conninfo, tx_json
from api.audit import verify_audit
from api.fastpath import TxFastPath
from eventlog.schema import audit_log, consumer_heartbeats
from eventlog.timeutil import format_ts
from tests.fixtures_api import (
    ApiEnv,
    change,
    client,
    ledger,
    live_server,
    make_env,
    order,
    pair_world,
)

READ = "ADMIN_READ"
NOW = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
IDS = ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "TU", "missing", "bad id!", "x" * 129]


@pytest.fixture
def pg_env(pg_url: str, engine_factory: Any, tmp_path: Path) -> ApiEnv:
    return make_env(engine_factory(pg_url), tmp_path)


def _world(env: ApiEnv) -> None:
    pair_world(env)
    env.ingest(
        change("payment_orders", order("O2", payer=None, receiver=None), ts=5),
        change("ledger_entries", ledger("T6", type="PAYMENT", related_id="O2"), ts=6),
        change("ledger_entries", ledger("T6", type="PAYMENT", related_id="O2"), op="d", ts=7),
        change(
            "ledger_entries",
            ledger("T7", wallet='W\u00e9\u4e2d\U0001f600"\\\n', related_id="O2", status=None),
            ts=8,
        ),
        change("ledger_entries", ledger("TU", wallet="W1", amount="-0.000001"), ts=9),
    )


def _answers(env: ApiEnv, app: Any, fast: bool) -> list[tuple[int, dict[str, str], bytes]]:
    """Every id, twice per token (a token's first use is verified by the normal path; the
    fast path answers once it is remembered), for a reader, an auditor (403) and nobody."""
    out = []
    tokens = [env.token(READ), env.token("ADMIN_AUDIT"), None, "not-a-jwt"]
    paths = [f"/admin/tx/{tx_id}" for tx_id in IDS] + [
        "/admin/tx/T1?as_of_position=2",
        "/admin/tx/T1?unknown=1",
        "/admin/tx/T1/",
        "/admin/tx/",
    ]
    with client(app) as c:
        state = app.state.bo
        assert state.aio is not None  # PostgreSQL: the lifespan set up the event-loop path
        if not fast:
            state.aio = None  # the synchronous reference path (SQLAlchemy in the thread pool)
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for path in paths + paths:
                r = c.get(path, headers=headers)
                kept = {k: v for k, v in r.headers.items() if k not in ("x-request-id", "date")}
                out.append((r.status_code, kept, r.content))
    return out


def _fast_path(app: Any) -> Any:
    layer = app.middleware_stack
    while not isinstance(layer, TxFastPath):
        layer = layer.app
    return layer


def test_event_loop_path_answers_byte_for_byte_like_the_reference(pg_env: ApiEnv) -> None:
    _world(pg_env)
    fast_app = pg_env.app(clock=lambda: NOW)
    fast = _answers(pg_env, fast_app, fast=True)
    served = _fast_path(fast_app).served
    reference_app = pg_env.app(clock=lambda: NOW)
    reference = _answers(pg_env, reference_app, fast=False)
    assert _fast_path(reference_app).served == 0
    # per round, for the reader: 8 found + 1 missing (/T1/ is an unknown path, no redirect);
    # the very first request (T1, and the token's first use) goes the normal way
    assert served == 2 * 9 - 1
    statuses = [a[0] for a in fast]
    assert statuses[: len(IDS)] == [200] * 8 + [404, 422, 422]
    assert set(statuses) == {200, 401, 403, 404, 422}
    assert fast == reference
    records = _records(pg_env)  # one per request
    half = len(records) // 2
    assert len(records) == 2 * half == 2 * len(fast)
    first, second = records[:half], records[half:]
    keep = (
        *("actor", "roles", "method", "path", "action", "resource_type", "resource_id"),
        *("result_count", "status", "ip", "user_agent"),
    )
    assert [{k: r[k] for k in keep} for r in first] == [{k: r[k] for k in keep} for r in second]
    assert verify_audit(pg_env.engine).records == 2 * half


@pytest.mark.parametrize("caught_up", [True, False])
def test_consumer_lag_on_the_event_loop_path(
    pg_url: str, engine_factory: Any, tmp_path: Path, caught_up: bool
) -> None:
    env = make_env(engine_factory(pg_url), tmp_path, kafka_bootstrap="127.0.0.1:9")
    env.ingest(change("ledger_entries", ledger("T1")))
    with env.engine.begin() as conn:
        conn.execute(
            insert(consumer_heartbeats).values(
                member="host:1",
                group_id=env.settings.kafka_group,
                heartbeat_at=format_ts(NOW - timedelta(seconds=1)),
                caught_up_at=format_ts(NOW - timedelta(seconds=2)) if caught_up else None,
                lag_records=0 if caught_up else 500,
                assigned="oltp.public.ledger_entries[0]",
            )
        )
    fast = _answers(env, env.app(clock=lambda: NOW), fast=True)
    reference = _answers(env, env.app(clock=lambda: NOW), fast=False)
    assert fast == reference
    # never caught up: behind since the newest applied change's commit (T1's source ts)
    synced = datetime(2026, 1, 1, tzinfo=UTC)
    lag = 2.0 if caught_up else round((NOW - synced).total_seconds(), 3)
    assert f'"data_lag_sec":{lag}'.encode() in fast[0][2]


def test_as_of_still_replays_through_the_reference_path(pg_env: ApiEnv) -> None:
    _world(pg_env)
    with client(pg_env.app()) as c:
        r = c.get("/admin/tx/T1?as_of_position=2", headers=pg_env.headers(READ))
    assert r.status_code == 200, r.text
    assert r.json()["log_position"] == 2


def _records(env: ApiEnv) -> list[dict[str, Any]]:
    with env.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    return [r._asdict() for r in rows]


def test_concurrent_requests_share_commits_on_the_event_loop(pg_env: ApiEnv) -> None:
    _world(pg_env)
    app = pg_env.app()
    writer = app.state.bo.writer
    headers = pg_env.headers(READ)
    n = 40
    statuses: list[int] = []
    with live_server(app) as base:
        with httpx.Client(base_url=base, headers=headers) as warm:
            assert warm.get("/admin/tx/T1").status_code == 200
        threads = [
            threading.Thread(
                target=lambda k=k: statuses.append(
                    httpx.get(f"{base}/admin/tx/T{k % 8}", headers=headers).status_code
                )
            )
            for k in range(n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(statuses) == n
    assert set(statuses) <= {200, 404}
    assert writer.submitted == n + 1
    assert writer.commits <= n + 1
    assert [r["id"] for r in _records(pg_env)] == list(range(1, n + 2))
    assert verify_audit(pg_env.engine).records == n + 1


def test_audit_failure_on_the_event_loop_fails_closed(pg_env: ApiEnv) -> None:
    _world(pg_env)
    app = pg_env.app()
    headers = pg_env.headers(READ)
    with client(app) as c:
        assert c.get("/admin/tx/T1", headers=headers).status_code == 200
        with pg_env.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit.audit_log RENAME TO audit_log_away"))
        refused = c.get("/admin/tx/T1", headers=headers)
        with pg_env.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit.audit_log_away RENAME TO audit_log"))
        again = c.get("/admin/tx/T1", headers=headers)
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == "audit log unavailable; request refused"
    assert "T1" not in refused.text.replace("/admin/tx/T1", "")
    assert again.status_code == 200
    assert verify_audit(pg_env.engine).records == 2


def test_dead_connections_are_replaced(pg_env: ApiEnv) -> None:
    """Backends killed while idle (a server restart): the next request still answers."""
    _world(pg_env)
    app = pg_env.app()
    headers = pg_env.headers(READ)
    with client(app) as c:
        assert c.get("/admin/tx/T1", headers=headers).status_code == 200
        with pg_env.engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        assert killed >= 2  # the lookup pool's connection and the audit writer's
        after = c.get("/admin/tx/T1", headers=headers)
    assert after.status_code == 200, after.text
    assert verify_audit(pg_env.engine).records == 2


def test_database_down_is_503_on_the_event_loop_path(pg_env: ApiEnv) -> None:
    _world(pg_env)
    app = pg_env.app()
    with client(app) as c:
        app.state.bo.aio.pool.dsn = "postgresql://nobody@127.0.0.1:1/none"
        app.state.bo.aio.pool.discard_idle = lambda: None  # keep nothing to reuse either
        while app.state.bo.aio.pool._idle:
            app.state.bo.aio.pool._idle.pop()
            app.state.bo.aio.pool._count -= 1
        r = c.get("/admin/tx/T1", headers=pg_env.headers(READ))
    assert r.status_code == 503
    assert r.json()["detail"].startswith("serving data unavailable")


# ---------------------------------------------------------------- serialisation

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_opt = st.none() | _text
_decimal = st.none() | st.from_regex(r"\A-?[0-9]{1,6}(\.[0-9]{1,6})?\Z") | _text
_order = st.fixed_dictionaries(dict.fromkeys(models.PaymentOrder.model_fields, _opt)).map(
    lambda d: {**d, "order_id": d["order_id"] or "O"}
)
_detail = st.fixed_dictionaries(
    {
        "data_lag_sec": st.floats(min_value=0, max_value=1e12, allow_nan=False)
        | st.integers(0, 10**6).map(lambda n: n / 1000)
        | st.integers(0, 10**6),
        "synced_through": _opt,
        "log_position": st.integers(0, 2**63 - 1),
        "tx_id": _text,
        "wallet_id": _opt,
        "type": _opt,
        "amount": _decimal,
        "amount_signed": _decimal,
        "currency": _opt,
        "status": _opt,
        "related_id": _opt,
        "related_type": _opt,
        "created_at": _opt,
        "updated_at": _opt,
        "deleted": st.booleans(),
        "deleted_at": _opt,
        "pairing_status": st.sampled_from(["COMPLETE", "INCOMPLETE", "CONFLICT", "UNKNOWN", "X"]),
        "paired_tx_id": _opt,
        "payer_wallet_id": _opt,
        "receiver_wallet_id": _opt,
        "payment_order": st.none() | _order.map(lambda d: {**d, "amount": "1.00"}) | _order,
        "as_of": st.none(),
    }
)
_ADAPTER = TypeAdapter(models.TxDetail)


_EXAMPLE = {
    **dict.fromkeys(models.TxDetail.model_fields),
    "data_lag_sec": 0,
    "log_position": 1,
    "tx_id": "T1",
    "deleted": False,
    "pairing_status": "UNKNOWN",
    "amount": "1.00\n",  # Python's $ would accept the newline; the model's pattern does not
}


@settings(max_examples=300, deadline=None)
@given(_detail)
@example(_EXAMPLE)
@example({**_EXAMPLE, "amount": "-12.50", "amount_signed": "\u0661"})
@example({**_EXAMPLE, "amount": None, "data_lag_sec": 1e16, "wallet_id": "\x7f\x1f\u2028"})
def test_tx_json_is_what_the_response_model_writes(detail: dict[str, Any]) -> None:
    body = tx_json(detail)
    try:
        validated = _ADAPTER.validate_python(detail)
    except ValidationError:
        assert body is None  # FastAPI then validates (and fails) exactly as before
        return
    assert body == _ADAPTER.dump_json(validated)


def test_hot_statement_is_short_enough_for_psycopgs_parse_cache() -> None:
    """psycopg re-parses (regex) every execution of a query longer than this: keep it under."""
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH
    from sqlalchemy import create_engine

    from api.queries import _tx_bundle_statement

    dialect = create_engine("postgresql+psycopg://u@127.0.0.1/d").dialect  # never connects
    compiled = _tx_bundle_statement().compile(dialect=dialect)
    assert len(compiled.string.encode()) <= MAX_CACHED_STATEMENT_LENGTH


def test_audit_values_survive_the_batched_insert_exactly(pg_env: ApiEnv) -> None:
    _world(pg_env)
    agent = "Mozilla \"q\" \\ 'x' {json} [1] \t%41 $bo$ $$"  # $bo$: the batch's quote tag
    headers = {**pg_env.headers(READ), "User-Agent": agent, "X-Request-ID": "r-1"}
    with client(pg_env.app()) as c:
        odd = "/admin/tx/%C3%A9%E4%B8%AD%F0%9F%98%80%22'%5C"
        for path in ("/admin/tx/T1", odd, "/admin/x%00y"):
            c.get(path, headers=headers)
    records = _records(pg_env)
    assert [r["path"] for r in records] == [
        "/admin/tx/T1",
        "/admin/tx/\u00e9\u4e2d\U0001f600\"'\\",
        "/admin/x\ufffdy",  # NUL cannot be stored in PostgreSQL text
    ]
    assert {r["user_agent"] for r in records} == {agent}
    assert [r["result_count"] for r in records] == [1, None, 0]  # 200, 422, 404
    assert records[0]["roles"] == '["ADMIN_READ"]'
    assert verify_audit(pg_env.engine).records == 3


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ("", 5.0)),
        ("?connect_timeout=3", ("", 3.0)),
        ("?connect_timeout=0&sslmode=disable", ("?sslmode=disable", 5.0)),
        ("?application_name=bo-api", ("?application_name=bo-api", 5.0)),
        ("?options=-c%20statement_timeout%3D5s", None),
        ("?connect_timeout=soon", None),
    ],
)
def test_conninfo_takes_only_what_asyncpg_understands(
    query: str, expected: tuple[str, float] | None
) -> None:
    engine = create_engine(f"postgresql+psycopg://u:p%40ss@db.example:5433/bo{query}")
    got = conninfo(engine)
    if expected is None:
        assert got is None  # the synchronous path serves such a URL
    else:
        suffix, timeout = expected
        assert got == (f"postgresql://u:p%40ss@db.example:5433/bo{suffix}", timeout)


def test_a_libpq_only_url_option_keeps_the_synchronous_path_working(
    pg_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    env = make_env(engine_factory(pg_url + "?options=-c%20statement_timeout%3D5000"), tmp_path)
    _world(env)
    with client(env.app(clock=lambda: NOW)) as c:
        assert c.app.state.bo.aio is None  # type: ignore[attr-defined]
        r = c.get("/admin/tx/T1", headers={"Authorization": f"Bearer {env.token(READ)}"})
    assert r.status_code == 200
    assert r.json()["tx_id"] == "T1"


def test_connect_timeout_in_the_url_still_takes_the_event_loop_path(
    pg_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    env = make_env(engine_factory(pg_url + "?connect_timeout=7"), tmp_path)
    _world(env)
    with client(env.app(clock=lambda: NOW)) as c:
        state = c.app.state.bo  # type: ignore[attr-defined]
        assert state.aio is not None
        assert state.aio.pool.connect_timeout == 7.0
        r = c.get("/admin/tx/T1", headers={"Authorization": f"Bearer {env.token(READ)}"})
    assert r.status_code == 200
    assert r.json()["tx_id"] == "T1"


class _Broken:
    """A pooled connection whose protocol is stuck (what asyncpg hands back when the server
    terminated it while idle): every query raises asyncpg's InternalClientError."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def fetchrow(self, *_args: Any) -> Any:
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )

    fetch = fetchrow


def test_a_stuck_pooled_connection_is_replaced_not_a_500(pg_env: ApiEnv) -> None:
    _world(pg_env)
    app = pg_env.app()
    headers = pg_env.headers(READ)
    with client(app) as c:
        assert c.get("/admin/tx/T1", headers=headers).status_code == 200
        pool = app.state.bo.aio.pool
        assert pool._idle  # the lookup's connection went back to the pool
        pool._idle[0] = _Broken(pool._idle[0])
        after = c.get("/admin/tx/T1", headers=headers)
        assert not any(isinstance(conn, _Broken) for conn in pool._idle)
    assert after.status_code == 200, after.text
    assert verify_audit(pg_env.engine).records == 2


def test_a_connection_stuck_again_after_the_retry_is_503(
    pg_env: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(pg_env)
    app = pg_env.app()
    headers = pg_env.headers(READ)
    real_connect = api_aio.connect

    async def stuck(*args: Any, **kwargs: Any) -> Any:
        return _Broken(await real_connect(*args, **kwargs))

    with client(app) as c:
        assert c.get("/admin/tx/T1", headers=headers).status_code == 200
        pool = app.state.bo.aio.pool
        pool._idle[0] = _Broken(pool._idle[0])
        monkeypatch.setattr(api_aio, "connect", stuck)
        refused = c.get("/admin/tx/T1", headers=headers)
    assert refused.status_code == 503
    assert refused.json()["detail"].startswith("serving data unavailable")
