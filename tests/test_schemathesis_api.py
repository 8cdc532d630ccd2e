"""Property-based conformance of the API to its own OpenAPI document (schemathesis,
default checks, bounded examples), with real auth, RBAC and audit switched on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from eventlog.db import make_engine
from eventlog.migrate import upgrade
from tests.fixtures_api import ApiEnv, change, ledger, make_env, order

READ, AUDIT = "ADMIN_READ", "ADMIN_AUDIT"


@pytest.fixture(scope="module")
def api_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    engine = make_engine(f"sqlite:///{tmp / 'bo.db'}")
    upgrade(engine)
    env = make_env(engine, tmp)
    env.ingest(
        change("payment_orders", order("O1")),
        change("ledger_entries", ledger("T1", related_id="O1")),
        change("ledger_entries", ledger("T2", type="RECEIVE", wallet="W2", related_id="O1")),
    )
    yield env
    engine.dispose()


def test_api_conforms_to_its_schema(api_env: ApiEnv) -> None:
    """Every operation, default checks, ``max_examples`` bounded so the file stays fast."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_env.app())
    headers = api_env.headers(READ, AUDIT, sub="schemathesis")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case: Any) -> None:
            # A cursor is opaque: a schema-valid string we never issued is rightly refused
            # (422), so "valid data is accepted" cannot apply to requests that carry one.
            excluded = [positive_data_acceptance] if "cursor" in (case.query or {}) else []
            case.call_and_validate(headers=headers, excluded_checks=excluded)

        conforms()


def test_openapi_document_is_complete(api_env: ApiEnv) -> None:
    from fastapi.testclient import TestClient

    with TestClient(api_env.app()) as c:
        document = c.get("/openapi.json").json()
    paths = document["paths"]
    assert set(paths) >= {
        "/admin/tx/{tx_id}",
        "/admin/payment-orders/{order_id}",
        "/admin/wallets/{wallet_id}/tx",
        "/admin/audit",
        "/admin/projections",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    for path, operations in paths.items():
        for operation in operations.values():
            ok = operation["responses"]["200"]
            assert ok.get("content"), path
            if path.startswith("/admin"):
                for code in ("401", "403", "404", "422", "503"):
                    content = operation["responses"][code]["content"]
                    assert list(content) == ["application/problem+json"], (path, code)
                assert operation["security"] == [{"bearer": []}]
    schemas = document["components"]["schemas"]
    assert {"TxDetail", "OrderDetail", "WalletPage", "AuditPage", "Projections", "Problem"} <= set(
        schemas
    )
