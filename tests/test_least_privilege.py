"""Least privilege on PostgreSQL (SPEC §7): deploy/postgres/roles.sql applied to a real
database; the API role can read and audit but cannot write a projection or touch the
log; the sync role can append but not rewrite; without INSERT on the audit table the
API fails closed (503, no data)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, func, select

from bo.pgcluster import Cluster
from eventlog.db import make_engine
from eventlog.errors import ConfigError
from eventlog.metrics import AUDIT_WRITE_FAILURES
from eventlog.migrate import upgrade
from eventlog.schema import audit_log
from tests.fixtures_api import ApiEnv, change, client, ledger, make_env, order

pytestmark = pytest.mark.pg

ROLES_SQL = Path(__file__).resolve().parents[1] / "deploy" / "postgres" / "roles.sql"
READ = "ADMIN_READ"


@dataclass
class Roles:
    cluster: Cluster
    database: str
    owner: Engine
    sync: Engine
    api: Engine

    def as_role(self, role: str, sql: str) -> None:
        """Run one statement as ``role``; psycopg errors propagate."""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.cluster.port} user={role} dbname={self.database}",
            autocommit=True,
        ) as conn:
            conn.execute(sql.encode())


_n = iter(range(10**6))


@pytest.fixture
def roles(pg_cluster: Cluster) -> Iterator[Roles]:
    name = f"lp{next(_n)}"
    url = pg_cluster.create_database(name)
    owner = make_engine(url)
    upgrade(owner)
    pg_cluster.psql(ROLES_SQL.read_text(), database=name)
    made = Roles(
        pg_cluster,
        name,
        owner,
        make_engine(pg_cluster.url(name, user="bo_sync")),
        make_engine(pg_cluster.url(name, user="bo_api")),
    )
    yield made
    for engine in (made.owner, made.sync, made.api):
        engine.dispose()


def _world(sync_env: ApiEnv) -> None:
    """Ingest and project as bo_sync: the consumer/projector role."""
    sync_env.ingest(
        change("payment_orders", order("O1")),
        change("ledger_entries", ledger("T1", related_id="O1")),
    )


def test_roles_sql_is_idempotent(roles: Roles) -> None:
    roles.cluster.psql(ROLES_SQL.read_text(), database=roles.database)
    roles.cluster.psql(ROLES_SQL.read_text(), database=roles.database)


def test_api_role_serves_and_audits_but_cannot_write(roles: Roles, tmp_path: Path) -> None:
    _world(make_env(roles.sync, tmp_path / "sync"))
    api = make_env(roles.api, tmp_path / "api")
    with client(api.app()) as c:
        r = c.get("/admin/tx/T1", headers=api.headers(READ))
        assert r.status_code == 200, r.text
        assert r.json()["pairing_status"] == "INCOMPLETE"
        assert c.get("/readyz").status_code == 200
        assert c.get("/metrics").status_code == 200
    with roles.owner.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 1
    refused = [
        "INSERT INTO bo.ledger_entries_v1 (tx_id) VALUES ('X')",
        "UPDATE bo.ledger_entries_v1 SET amount = '0'",
        "DELETE FROM bo.payment_orders_v1",
        "UPDATE bo.projection_checkpoints SET position = 0",
        "DROP VIEW bo.ledger_entries",
        "CREATE TABLE bo.evil (x int)",
        "INSERT INTO eventlog.events SELECT * FROM eventlog.events",
        "UPDATE eventlog.events SET payload = 'x'",
        "DELETE FROM eventlog.events",
        "TRUNCATE eventlog.events",
        "UPDATE eventlog.dead_letters SET status = 'resolved'",
        "UPDATE audit.audit_log SET actor = 'nobody'",
        "DELETE FROM audit.audit_log",
    ]
    for sql in refused:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            roles.as_role("bo_api", sql)


def test_sync_role_appends_but_cannot_rewrite(roles: Roles, tmp_path: Path) -> None:
    _world(make_env(roles.sync, tmp_path / "sync"))
    for sql in (
        "UPDATE eventlog.events SET payload = 'x'",
        "DELETE FROM eventlog.events",
        "TRUNCATE eventlog.events",
        "INSERT INTO audit.audit_log (id, at, roles, method, path, status, request_id, "
        "prev_hash, hash) VALUES (99, 'x', '[]', 'GET', '/', 200, 'r', 'x', 'x')",
        "UPDATE audit.audit_log SET actor = 'x'",
        "DELETE FROM audit.audit_log",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            roles.as_role("bo_sync", sql)
    # what it needs works: projections it owns can be written
    roles.as_role("bo_sync", "UPDATE bo.ledger_entries_v1 SET status = status")


def test_audit_insert_revoked_fails_closed(roles: Roles, tmp_path: Path) -> None:
    _world(make_env(roles.sync, tmp_path / "sync"))
    roles.cluster.psql("REVOKE INSERT ON audit.audit_log FROM bo_api", database=roles.database)
    api = make_env(roles.api, tmp_path / "api")
    before = AUDIT_WRITE_FAILURES._value.get()
    with client(api.app()) as c:
        r = c.get("/admin/tx/T1", headers=api.headers(READ))
        unauth = c.get("/admin/tx/T1")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert "wallet_id" not in r.text
    assert "T1" not in r.text.replace("/admin/tx/T1", "")
    assert unauth.status_code == 503  # even refusals are not answered unaudited
    assert AUDIT_WRITE_FAILURES._value.get() == before + 2
    with roles.owner.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 0


def test_serve_refuses_an_in_process_projector_under_the_api_role(roles: Roles) -> None:
    """`bo serve` with its projector under the API's read-only role: one line at start, not
    a projector that dies at its first write while /readyz keeps saying ready."""
    from bo.cli_api import _check_projector_role

    with pytest.raises(ConfigError, match="--no-projector"):
        _check_projector_role(roles.api)
    _check_projector_role(roles.sync)  # the projector's own role may
