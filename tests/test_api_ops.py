"""Operations endpoints and freshness (SPEC §6, §8): /healthz, /readyz, /metrics, and
``data_lag_sec`` / ``synced_through`` while projections or the consumer fall behind."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import insert, select, update

from eventlog.schema import checkpoints, consumer_heartbeats, events
from eventlog.timeutil import format_ts, parse_ts
from tests.fixtures_api import (  # noqa: F401
    ApiEnv,
    change,
    client,
    env_fixture,
    ledger,
    make_env,
    order,
    sqlite_env_fixture,
)

READ = "ADMIN_READ"


def test_healthz_and_readyz(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    with client(env.app()) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        cold = c.get("/readyz")
        assert cold.status_code == 503
        assert cold.json()["checks"] == {"database": True, "migrations": True, "projections": False}
        env.ingest(change("ledger_entries", ledger("T1")))
        warm = c.get("/readyz")
        assert warm.status_code == 200, warm.text
        assert warm.json()["ready"] is True
        with env.engine.begin() as conn:
            conn.execute(
                update(checkpoints)
                .where(checkpoints.c.projection == "pairs")
                .values(state="failed", last_error="boom", error_position=1)
            )
        failed = c.get("/readyz")
    assert failed.status_code == 503
    assert failed.json()["checks"]["projections"] is False
    assert any("pairs" in line for line in failed.json()["detail"])


def test_readyz_unreachable_and_unmigrated(tmp_path: Path, sqlite_url: str) -> None:
    from eventlog.db import make_engine

    fresh = make_engine(sqlite_url)  # reachable but never migrated
    try:
        env = make_env(fresh, tmp_path)
        with client(env.app()) as c:
            r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["migrations"] is False
        assert "no such table" not in r.text  # the statement's error stays in the server log
    finally:
        fresh.dispose()
    gone = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        env = make_env(gone, tmp_path)
        with client(env.app()) as c:
            r = c.get("/readyz")
            lookup = c.get("/admin/tx/T1", headers=env.headers(READ))
            scrape = c.get("/metrics")
        assert r.status_code == 503
        assert r.json()["checks"]["database"] is False
        # no database name, host or driver text for an unauthenticated caller
        assert r.json()["detail"] == ["database unreachable (see the server log)"]
        assert "127.0.0.1" not in r.text
        assert "nobody" not in r.text
        assert scrape.status_code == 200  # a scrape never fails: it says the database is down
        assert _metric(scrape.text, "bo_metrics_database_up") == 0
        assert lookup.status_code == 503  # audit store unreachable: fail closed
        assert lookup.headers["content-type"] == "application/problem+json"
    finally:
        gone.dispose()


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_metrics(env: ApiEnv) -> None:
    env.append(b"not json at all")  # a dead letter
    env.ingest(
        change("payment_orders", order("O1")),
        change("ledger_entries", ledger("SECRET-TX-1", wallet="SECRET-WALLET", related_id="O1")),
        change("ledger_entries", ledger("T2", type="RECEIVE", wallet="W2", related_id="O1")),
        change("ledger_entries", ledger("T3", related_id="O2", created_at="2026-01-01T00:00:00Z")),
    )
    with client(env.app()) as c:
        c.get("/admin/tx/SECRET-TX-1", headers=env.headers(READ))
        c.get("/admin/wallets/SECRET-WALLET/tx", headers=env.headers(READ))
        text = c.get("/metrics").text
    assert _metric(text, "bo_log_head_position") == 4
    assert _metric(text, "bo_projection_position", projection="ledger_entries", version="1") == 4
    assert _metric(text, "bo_projection_failed", projection="pairs", version="1") == 0
    assert _metric(text, "bo_pairs_incomplete") == 1
    assert _metric(text, "bo_pair_completion_ratio") == 0.5
    age = _metric(text, "bo_pairs_incomplete_oldest_age_seconds")
    assert age is not None
    assert age > 0
    assert _metric(text, "bo_dead_letters_total") == 1
    assert _metric(text, "bo_metrics_database_up") == 1
    assert _metric(text, "bo_audit_write_failures_total") is not None
    assert _metric(text, "bo_ingest_events_total", result="appended") is not None
    assert (
        _metric(
            text,
            "bo_http_request_duration_seconds_count",
            route="/admin/tx/{tx_id}",
            method="GET",
            status="200",
        )
        or 0
    ) >= 1
    assert "SECRET" not in text  # no ids or wallets in labels


def _ingested_at(env: ApiEnv, position: int) -> datetime:
    with env.engine.connect() as conn:
        value = conn.execute(
            select(events.c.ingested_at).where(events.c.position == position)
        ).scalar_one()
    return parse_ts(str(value))


def test_data_lag_grows_while_projections_are_behind(env: ApiEnv) -> None:
    env.ingest(change("ledger_entries", ledger("T1"), ts=10))
    env.append(change("ledger_entries", ledger("T2"), ts=20))  # logged, not yet projected
    pending_since = _ingested_at(env, 2)
    headers = env.headers(READ)
    app = env.app()
    lags = []
    with client(app) as c:
        for seconds in (5, 60, 300):
            with freeze_time(pending_since + timedelta(seconds=seconds)):
                body = c.get("/admin/tx/T1", headers=headers).json()
            lags.append(body["data_lag_sec"])
            assert body["log_position"] == 1
            assert body["synced_through"] == "2026-01-01T00:00:10.000000Z"
        with freeze_time(pending_since + timedelta(seconds=300)):
            missing = c.get("/admin/tx/T2", headers=headers)
        env.project()
        with freeze_time(pending_since + timedelta(seconds=900)):
            caught_up = c.get("/admin/tx/T2", headers=headers).json()
    assert lags == [5.0, 60.0, 300.0]
    assert missing.status_code == 404
    assert missing.json()["data_lag_sec"] == 300.0  # "not found" says how stale it may be
    assert caught_up["data_lag_sec"] == 0.0
    assert caught_up["synced_through"] == "2026-01-01T00:00:20.000000Z"


def _beat(
    env: ApiEnv,
    member: str,
    heartbeat: datetime,
    caught_up: datetime | None,
    assigned: str = "oltp.public.ledger_entries[0]",
) -> None:
    with env.engine.begin() as conn:
        conn.execute(
            insert(consumer_heartbeats).values(
                member=member,
                group_id=env.settings.kafka_group,
                heartbeat_at=format_ts(heartbeat),
                caught_up_at=None if caught_up is None else format_ts(caught_up),
                lag_records=0,
                assigned=assigned,
            )
        )


def test_metrics_report_each_partitions_lag_from_the_live_members_heartbeats(
    sqlite_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    """``bo consume`` serves no HTTP: the API reports ``bo_consumer_lag_records`` per
    partition from the members' heartbeats — the newest report of a partition wins, a
    silent member reports nothing, an unknown lag (no ``=``) is left out."""
    env = make_env(engine_factory(sqlite_url), tmp_path, kafka_bootstrap="127.0.0.1:9")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    topic = "oltp.public.ledger_entries"
    _beat(env, "old-owner", now - timedelta(seconds=5), None, f"{topic}[0]=900,{topic}[1]=7")
    _beat(env, "new-owner", now - timedelta(seconds=1), None, f"{topic}[0]=12,{topic}[2]")
    _beat(env, "gone", now - timedelta(seconds=600), None, f"{topic}[3]=5")
    with client(env.app(clock=lambda: now)) as c:
        text_ = c.get("/metrics").text

    def sample(partition: str) -> str | None:
        prefix = f'bo_consumer_lag_records{{partition="{partition}",topic="{topic}"}} '
        return next(
            (line[len(prefix) :] for line in text_.splitlines() if line.startswith(prefix)), None
        )

    assert (sample("0"), sample("1"), sample("2"), sample("3")) == ("12.0", "7.0", None, None)


def test_consumer_lag_counts_when_kafka_is_configured(
    sqlite_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    env = make_env(engine_factory(sqlite_url), tmp_path, kafka_bootstrap="127.0.0.1:9")
    env.ingest(change("ledger_entries", ledger("T1")))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    clock = [now]
    app = env.app(clock=lambda: clock[0])
    headers = env.headers(READ)
    with client(app) as c:
        assert (
            c.get("/admin/tx/T1", headers=headers).json()["data_lag_sec"] == 0.0
        )  # no consumer yet
        _beat(env, "host:1", now - timedelta(seconds=1), now - timedelta(seconds=2))
        live = c.get("/admin/tx/T1", headers=headers).json()["data_lag_sec"]
        clock[0] = now + timedelta(seconds=60)  # the consumer stopped: no heartbeat since
        stopped = c.get("/admin/tx/T1", headers=headers).json()["data_lag_sec"]
    assert live == 2.0
    assert stopped >= 60.0
    plain = make_env(env.engine, tmp_path)  # without BO_KAFKA_BOOTSTRAP the consumer is ignored
    with client(plain.app(clock=lambda: clock[0])) as c:
        assert c.get("/admin/tx/T1", headers=headers).json()["data_lag_sec"] == 0.0


def test_a_group_that_never_caught_up_is_behind_since_the_newest_applied_change(
    sqlite_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    """A new group on a backlog has no ``caught_up_at`` anywhere: the answer is stale since
    the newest change it holds (its source commit time), and grows while that lasts."""
    env = make_env(engine_factory(sqlite_url), tmp_path, kafka_bootstrap="127.0.0.1:9")
    env.ingest(change("ledger_entries", ledger("T1"), ts=20))
    synced = parse_ts("2026-01-01T00:00:20.000000Z")
    now = synced + timedelta(seconds=100)
    clock = [now]
    headers = env.headers(READ)
    with client(env.app(clock=lambda: clock[0])) as c:
        _beat(env, "host:1", now - timedelta(seconds=1), None, "oltp.public.ledger_entries[0]=9")
        first = c.get("/admin/tx/T1", headers=headers).json()
        clock[0] = now + timedelta(seconds=5)
        _beat(env, "host:2", clock[0], None)  # still live, still behind
        later = c.get("/admin/tx/T1", headers=headers).json()
        absent = c.get("/admin/tx/T-none", headers=headers).json()
        _beat(env, "host:3", clock[0], clock[0] - timedelta(seconds=3))  # one caught up
        caught = c.get("/admin/tx/T1", headers=headers).json()
    assert first["synced_through"] == "2026-01-01T00:00:20.000000Z"
    assert (first["data_lag_sec"], later["data_lag_sec"]) == (100.0, 105.0)
    assert absent["data_lag_sec"] == 105.0
    assert caught["data_lag_sec"] == 3.0  # the group caught up 3 s ago: behind since then


class _Span:
    def __init__(self, log: list[tuple[str, str]], name: str, attributes: dict[str, Any]) -> None:
        self.log, self.name, self.attributes = log, name, dict(attributes)

    def __enter__(self) -> _Span:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.end()

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def update_name(self, name: str) -> None:
        self.name = name

    def end(self) -> None:
        self.log.append((self.name, str(self.attributes.get("db.statement", ""))))


class _Tracer:
    """Records spans the way an OpenTelemetry tracer would be called."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []

    def start_as_current_span(self, name: str) -> _Span:
        return _Span(self.ended, name, {})

    def start_span(self, name: str, attributes: dict[str, Any] | None = None) -> _Span:
        return _Span(self.ended, name, attributes or {})


def test_tracing_spans_requests_and_sql(sqlite_env: ApiEnv, monkeypatch: Any) -> None:
    from api import app as app_module

    env = sqlite_env
    env.ingest(change("ledger_entries", ledger("T1")))
    tracer = _Tracer()
    monkeypatch.setattr(app_module, "tracer_from_environment", lambda: tracer)
    with client(env.app()) as c:
        assert c.get("/admin/tx/T1", headers=env.headers(READ)).status_code == 200
    names = [name for name, _ in tracer.ended]
    assert "GET /admin/tx/{tx_id}" in names  # the route template, never the id
    statements = [sql for name, sql in tracer.ended if name == "sql"]
    assert any("ledger_entries" in sql for sql in statements)
    assert any("audit_log" in sql for sql in statements)
    assert all("T1" not in sql for sql in statements)  # parameters are not recorded


def test_tracing_is_off_without_endpoint_and_refuses_without_exporter(
    sqlite_env: ApiEnv, monkeypatch: Any
) -> None:
    from api.tracing import tracer_from_environment
    from eventlog.errors import ConfigError

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert tracer_from_environment() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    try:
        import opentelemetry.sdk  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
            sqlite_env.app()
    else:
        assert tracer_from_environment() is not None


def test_no_third_party_docs_pages_and_nosniff_everywhere(sqlite_env: ApiEnv) -> None:
    """Swagger UI and ReDoc would load CDN scripts on the console's origin (where it keeps
    its token): not served; the schema is. Every answer says nosniff."""
    with client(sqlite_env.app()) as c:
        answers = [
            c.get("/docs"),
            c.get("/redoc"),
            c.get("/openapi.json"),
            c.get("/healthz"),
            c.get("/admin/tx/T1", headers=sqlite_env.headers(READ)),
            c.get("/<script>x</script>"),
        ]
    assert [a.status_code for a in answers[:3]] == [404, 404, 200]
    assert all(a.headers["x-content-type-options"] == "nosniff" for a in answers)


def test_a_dead_in_process_worker_makes_readyz_503(sqlite_env: ApiEnv) -> None:
    from api import service

    with client(sqlite_env.app()) as c:
        sqlite_env.ingest(change("ledger_entries", ledger("T1")))
        service.worker_running("projector", True)
        try:
            running = c.get("/readyz")
            service.worker_running("projector", False)
            stopped = c.get("/readyz")
        finally:
            service._WORKERS.clear()
    assert running.json()["checks"]["workers"] is True
    assert stopped.status_code == 503
    assert stopped.json()["checks"]["workers"] is False
    assert "the in-process projector stopped (see the server log)" in stopped.json()["detail"]
