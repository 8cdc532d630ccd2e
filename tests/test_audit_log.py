"""The fail-closed, hash-chained audit log (SPEC §7): one record per /admin request of
any outcome, before the response; chain verification; CR/LF safety; no credentials;
trusted-proxy client addresses; group commit; 503 when the store is read-only."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from loguru import logger
from sqlalchemy import select

from api.audit import AuditChainBroken, verify_audit
from api.middleware import client_ip
from eventlog.db import make_engine
from eventlog.metrics import AUDIT_WRITE_FAILURES
from eventlog.schema import audit_log
from tests.fixtures_api import (  # noqa: F401
    ApiEnv,
    change,
    client,
    env_fixture,
    ledger,
    live_server,
    make_env,
    order,
    sqlite_env_fixture,
)

READ, AUDIT = "ADMIN_READ", "ADMIN_AUDIT"


def _records(env: ApiEnv) -> list[dict[str, Any]]:
    with env.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    return [r._asdict() for r in rows]


def test_every_outcome_is_audited_before_the_response(env: ApiEnv) -> None:
    env.ingest(
        change("payment_orders", order("O1")),
        change("ledger_entries", ledger("T1", related_id="O1")),
    )
    token = env.token(READ, sub="alice")
    auth = {"Authorization": f"Bearer {token}"}
    calls = [
        ("GET", "/admin/tx/T1", {}, 401),
        ("GET", "/admin/tx/T1", {"Authorization": "Bearer forged.token.here"}, 401),
        ("GET", "/admin/audit", auth, 403),
        ("GET", "/admin/tx/NOPE", auth, 404),
        ("GET", "/admin/tx/bad%20id", auth, 422),
        ("GET", "/admin/wallets/W1/tx?limit=0", auth, 422),
        ("GET", "/admin/tx/T1", auth, 200),
        ("GET", "/admin/wallets/W1/tx", auth, 200),
        ("POST", "/admin/tx/T1", auth, 405),
        ("GET", "/admin/no-such-thing", auth, 404),
    ]
    request_ids = []
    with client(env.app()) as c:
        for method, path, headers, status in calls:
            r = c.request(method, path, headers={**headers, "User-Agent": "audit-test"})
            assert r.status_code == status, (path, r.text)
            assert r.headers["cache-control"] == "no-store"
            request_ids.append(r.headers["x-request-id"])
            # the record exists by the time the response is received
            assert len(_records(env)) == len(request_ids)
        assert c.get("/healthz").status_code == 200  # not /admin: not audited
    records = _records(env)
    assert [r["id"] for r in records] == list(range(1, len(calls) + 1))
    assert [r["status"] for r in records] == [s for *_, s in calls]
    assert [r["request_id"] for r in records] == request_ids
    assert [r["actor"] for r in records[:2]] == [None, None]  # unverified claims are not trusted
    assert {r["actor"] for r in records[2:]} == {"alice"}
    assert json.loads(records[3]["roles"]) == [READ]
    lookup = records[6]
    assert lookup["action"] == "tx.lookup"
    assert lookup["resource_type"] == "ledger_entry"
    assert lookup["resource_id"] == "T1"
    assert lookup["result_count"] == 1
    assert records[3]["result_count"] == 0  # 404
    assert records[7]["result_count"] == 1  # one entry in the wallet
    assert records[7]["resource_id"] == "W1"
    assert records[4]["resource_id"] == "bad id"  # the raw attempt is kept for the auditor
    assert records[9]["action"] is None
    assert {r["method"] for r in records} == {"GET", "POST"}
    assert {r["user_agent"] for r in records} == {"audit-test"}
    # never recorded: the token or the Authorization header
    dump = json.dumps(records)
    assert token not in dump
    assert token.split(".")[1] not in dump
    assert "Bearer" not in dump
    assert "forged" not in dump
    assert verify_audit(env.engine).records == len(calls)


def test_audit_listing_filters_and_pages(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    env.ingest(change("ledger_entries", ledger("T1")))
    with client(env.app()) as c:
        for who in ("ann", "bob", "ann"):
            c.get("/admin/tx/T1", headers=env.headers(READ, sub=who))
        c.get("/admin/tx/T2", headers=env.headers(READ, sub="bob"))
        auditor = env.headers(AUDIT, sub="carol")
        mine = c.get("/admin/audit", params={"actor": "ann"}, headers=auditor).json()
        t2 = c.get("/admin/audit", params={"resource_id": "T2"}, headers=auditor).json()
        pages, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/admin/audit", params=params, headers=auditor).json()
            pages.append([i["id"] for i in page["items"]])
            cursor = page["next_cursor"]
            if not cursor:
                break
        future = c.get(
            "/admin/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=auditor
        ).json()
        bad = c.get("/admin/audit", params={"cursor": "!!"}, headers=auditor)
    assert [i["actor"] for i in mine["items"]] == ["ann", "ann"]
    assert [i["resource_id"] for i in t2["items"]] == ["T2"]
    assert t2["items"][0]["status"] == 404
    assert t2["items"][0]["roles"] == [READ]
    flat = [i for p in pages for i in p]
    assert flat == sorted(flat, reverse=True)
    assert len(flat) == len(set(flat)) >= 6
    assert future["items"] == []
    assert bad.status_code == 422


def test_crlf_cannot_forge_a_record(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    forged = '{"id": 99, "actor": "root", "status": 200}'
    with client(env.app()) as c:
        path = "/admin/tx/x%0D%0A" + forged.replace(" ", "%20").replace('"', "%22")
        r = c.get(path, headers=env.headers(READ))
        assert r.status_code == 422
    records = _records(env)
    assert len(records) == 1
    assert "\r\n" in records[0]["path"]  # kept verbatim inside its own field
    assert records[0]["actor"] == "alice"
    assert verify_audit(env.engine).records == 1


# An owner's edit of a record (any column): the hash no longer matches; SQLite stores any
# value in any column, so a value of another type must be reported too, not crash the walk.
AUDIT_TAMPERS = {
    "an edited actor": (
        "UPDATE audit_log SET actor = 'mallory' WHERE id = 2",
        "hash does not match the record",
    ),
    "a value of another type": (
        "UPDATE audit_log SET roles = X'00FF' WHERE id = 2",
        "a stored value has the wrong type",
    ),
}


def _bo_audit_verify(database: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bo = str(Path(sys.executable).parent / "bo")
    run_env = {
        **os.environ,
        "BO_DATABASE_URL": f"sqlite:///{database}",
        "BO_VAR_DIR": str(tmp_path),
    }
    return subprocess.run(
        [bo, "audit", "verify", "--json"], capture_output=True, text=True, env=run_env, check=False
    )


@pytest.mark.parametrize("tamper", sorted(AUDIT_TAMPERS))
def test_tampering_is_found_and_named(sqlite_env: ApiEnv, tmp_path: Path, tamper: str) -> None:
    sql, reason = AUDIT_TAMPERS[tamper]
    env = sqlite_env
    with client(env.app()) as c:
        for _ in range(3):
            c.get("/admin/tx/T1", headers=env.headers(READ))
    database = env.engine.url.database
    assert database
    raw = sqlite3.connect(database)
    raw.execute("DROP TRIGGER audit_log_no_update")  # only the owner of the file can do this
    raw.execute(sql)
    raw.commit()
    raw.close()
    with pytest.raises(AuditChainBroken) as caught:
        verify_audit(env.engine)
    assert caught.value.record_id == 2
    out = _bo_audit_verify(database, tmp_path)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    report = json.loads(out.stdout)
    assert (report["ok"], report["id"]) == (False, 2)
    assert report["reason"].startswith(reason)


def test_bo_audit_verify_ok(sqlite_env: ApiEnv, tmp_path: Path) -> None:
    env = sqlite_env
    with client(env.app()) as c:
        c.get("/admin/tx/T1")
    database = env.engine.url.database
    assert database
    out = _bo_audit_verify(database, tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["records"] == 1


def test_read_only_audit_store_fails_closed(sqlite_env: ApiEnv, tmp_path: Path) -> None:
    env = sqlite_env
    env.ingest(change("ledger_entries", ledger("T1")))
    database = env.engine.url.database
    read_only = make_engine(f"sqlite:///file:{database}?mode=ro&uri=true")
    try:
        app_env = make_env(read_only, tmp_path)
        app_env.settings = env.settings
        before = AUDIT_WRITE_FAILURES._value.get()
        with client(app_env.app()) as c:
            r = c.get("/admin/tx/T1", headers=env.headers(READ))
            health = c.get("/healthz")
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert "wallet_id" not in r.text
        assert "audit" in r.json()["detail"]
        assert AUDIT_WRITE_FAILURES._value.get() == before + 1
        assert health.status_code == 200  # only /admin is gated
    finally:
        read_only.dispose()
    assert _records(env) == []


def test_client_ip_trusts_forwarded_for_only_from_proxies() -> None:
    import ipaddress

    proxies = [ipaddress.ip_network("10.0.0.0/8")]

    def scope(peer: str, xff: str | None) -> dict[str, Any]:
        headers = [(b"x-forwarded-for", xff.encode())] if xff else []
        return {"client": (peer, 5000), "headers": headers}

    assert client_ip(scope("203.0.113.7", "1.2.3.4"), proxies) == "203.0.113.7"
    assert client_ip(scope("203.0.113.7", "1.2.3.4"), []) == "203.0.113.7"
    assert client_ip(scope("10.0.0.5", "198.51.100.9"), proxies) == "198.51.100.9"
    # a client cannot choose its address by prepending entries: rightmost untrusted wins
    assert (
        client_ip(scope("10.0.0.5", "6.6.6.6, 198.51.100.9, 10.0.0.7"), proxies) == "198.51.100.9"
    )
    assert client_ip(scope("10.0.0.5", "not-an-ip"), proxies) == "10.0.0.5"
    assert client_ip(scope("10.0.0.5", None), proxies) == "10.0.0.5"


def test_client_ip_reads_every_forwarded_for_line() -> None:
    """A proxy may add its own X-Forwarded-For line instead of extending the client's:
    the lines form one chain, so a forged first line cannot choose the address."""
    import ipaddress

    proxies = [ipaddress.ip_network("127.0.0.1/32")]
    scope = {
        "client": ("127.0.0.1", 5000),
        "headers": [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")],
    }
    assert client_ip(scope, proxies) == "2.2.2.2"
    for hop, ip in (("2.2.2.2:5678", "2.2.2.2"), ("[2001:db8::1]:443", "2001:db8::1")):
        with_port = {**scope, "headers": [(b"x-forwarded-for", hop.encode())]}
        assert client_ip(with_port, proxies) == ip


def test_a_request_that_gave_up_leaves_no_record(sqlite_env: ApiEnv) -> None:
    """Fail closed means no data AND no record claiming data: a record whose request has
    answered 503 (the store was locked past the writer's timeout) is never written later."""
    env = sqlite_env
    env.ingest(change("ledger_entries", ledger("T1")))
    app = env.app()
    writer = app.state.bo.writer
    writer.timeout = 1.0  # lock waits end at half of it
    database = env.engine.url.database
    assert database
    blocker = sqlite3.connect(database, isolation_level=None, timeout=30)
    headers = {**env.headers(READ), "X-Request-ID": "gave-up"}
    with live_server(app) as base:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            refused = httpx.get(f"{base}/admin/tx/T1", headers=headers, timeout=30)
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        served = httpx.get(f"{base}/admin/tx/T1", headers=env.headers(READ), timeout=30)
    assert refused.status_code == 503
    assert "wallet_id" not in refused.text
    assert served.status_code == 200
    records = _records(env)
    assert [r["request_id"] for r in records if r["request_id"] == "gave-up"] == []
    assert [r["status"] for r in records] == [200]


def test_forwarded_for_over_real_http(sqlite_url: str, engine_factory: Any, tmp_path: Path) -> None:
    trusted = make_env(engine_factory(sqlite_url), tmp_path, trusted_proxies="127.0.0.1/32")
    with live_server(trusted.app()) as base:
        httpx.get(f"{base}/admin/tx/T1", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9"})
    untrusted = make_env(trusted.engine, tmp_path)
    with live_server(untrusted.app()) as base:
        httpx.get(f"{base}/admin/tx/T1", headers={"X-Forwarded-For": "198.51.100.9"})
    assert [r["ip"] for r in _records(trusted)] == ["198.51.100.9", "127.0.0.1"]


def test_concurrent_requests_share_commits(sqlite_env: ApiEnv) -> None:
    """Group commit: while one batch waits for the database, the next ones queue and go
    together; each request still answers only after its own record is durable."""
    env = sqlite_env
    env.ingest(change("ledger_entries", ledger("T1")))
    app = env.app()
    writer = app.state.bo.writer
    n = 24
    database = env.engine.url.database
    assert database
    blocker = sqlite3.connect(database, isolation_level=None, timeout=30)
    statuses: list[int] = []
    with live_server(app) as base:
        headers = env.headers(READ)
        blocker.execute("BEGIN IMMEDIATE")  # hold the write lock: the first batch must wait
        threads = [
            threading.Thread(
                target=lambda: statuses.append(
                    httpx.get(
                        f"{base}/admin/tx/T{threading.get_ident()}", headers=headers
                    ).status_code
                )
            )
            for _ in range(n)
        ]
        for t in threads:
            t.start()
        waited = threading.Event()
        for _ in range(2000):  # wait (bounded) until every request has handed in its record
            if writer.submitted >= n or waited.wait(0.01):
                break
        assert writer.submitted == n
        assert statuses == []  # nobody answered while their records were not durable
        blocker.execute("COMMIT")
        for t in threads:
            t.join(30)
    blocker.close()
    assert statuses.count(503) == 0
    assert len(statuses) == n
    records = _records(env)
    assert [r["id"] for r in records] == list(range(1, n + 1))
    assert writer.commits <= 3 < n
    assert verify_audit(env.engine).records == n


def test_logs_are_json_lines_with_request_id_and_no_token(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    lines: list[str] = []
    sink = logger.add(lines.append, serialize=True, level="INFO")
    token = env.token(READ)
    try:
        with client(env.app()) as c:
            r = c.get(
                "/admin/tx/T1",
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-123"},
            )
            generated = c.get("/healthz", headers={"X-Request-ID": "bad id\twith tab"})
    finally:
        logger.remove(sink)
    assert r.headers["x-request-id"] == "req-123"
    assert generated.headers["x-request-id"] != "bad id\twith tab"
    records = [json.loads(line) for line in lines]
    mine = [rec for rec in records if rec["record"]["extra"].get("request_id") == "req-123"]
    assert mine
    assert all(token not in line and "Bearer" not in line for line in lines)
    assert _records(env)[0]["request_id"] == "req-123"


def test_the_query_string_is_audited_with_credentials_redacted(sqlite_env: ApiEnv) -> None:
    """Which page, point in time or filter a read was is part of what was read: the
    record's path carries the parameters the route takes, with their values; any other
    parameter by name only, and no value shaped like a JWT — never a credential."""
    env = sqlite_env
    token = env.headers(READ)["Authorization"].split()[1]
    with client(env.app()) as c:
        c.get("/admin/tx/T1?as_of_position=1", headers=env.headers(READ))
        c.get(
            f"/admin/tx/T1?access_token=SECRET-1&as_of_position=2&x={token}&sig=SECRET-2",
            headers=env.headers(READ),
        )
        c.get(f"/admin/audit?actor={token}", headers=env.headers(AUDIT))
        c.get("/admin/nope?as_of_position=3", headers=env.headers(READ))
        c.get("/admin/tx/T1", headers=env.headers(READ))
    paths = [r["path"] for r in _records(env)]
    assert paths[0] == "/admin/tx/T1?as_of_position=1"
    assert paths[1] == (
        "/admin/tx/T1?access_token=[REDACTED]&as_of_position=2&x=[REDACTED]&sig=[REDACTED]"
    )
    assert paths[2] == "/admin/audit?actor=[REDACTED]"  # a JWT even where a value is taken
    assert paths[3] == "/admin/nope?as_of_position=[REDACTED]"  # no route: names only
    assert paths[4] == "/admin/tx/T1"
    assert not any(token in p or "SECRET" in p for p in paths)
    assert verify_audit(env.engine).records == 5


def test_a_utf8_user_agent_is_recorded_as_sent(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    agent = "Mozilla/5.0 \u202egnp.exe 한국어"
    headers = {**env.headers(READ), "User-Agent": agent.encode()}
    with client(env.app()) as c:
        c.get("/admin/tx/T1", headers=headers)
    assert _records(env)[0]["user_agent"] == agent  # not its UTF-8 bytes read as Latin-1
