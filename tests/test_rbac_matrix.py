"""Authorization with casbin (SPEC §7): the role-by-endpoint matrix, deny by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.authz import RBAC_DIR, Authorizer
from tests.fixtures_api import (
    ApiEnv,
    change,
    client,
    env_fixture,  # noqa: F401
    ledger,
    order,
)

ENDPOINTS = {
    "tx": "/admin/tx/T1",
    "payment_order": "/admin/payment-orders/O1",
    "wallet_tx": "/admin/wallets/W1/tx",
    "audit": "/admin/audit",
    "projections": "/admin/projections",
}
ALLOWED = {
    ("ADMIN_READ",): {"tx", "payment_order", "wallet_tx", "projections"},
    ("ADMIN_AUDIT",): {"audit", "projections"},
    ("ADMIN_READ", "ADMIN_AUDIT"): set(ENDPOINTS),
    ("admin_read",): set(),  # roles are case-sensitive
    ("SUPERUSER",): set(),
    (): set(),
}


def test_role_endpoint_matrix(env: ApiEnv) -> None:
    env.ingest(
        change("payment_orders", order("O1")),
        change("ledger_entries", ledger("T1", related_id="O1")),
    )
    with client(env.app()) as c:
        for roles, allowed in ALLOWED.items():
            headers = env.headers(*roles, sub="matrix")
            for name, path in ENDPOINTS.items():
                r = c.get(path, headers=headers)
                expected = 200 if name in allowed else 403
                assert r.status_code == expected, (roles, name, r.text)
                if expected == 403:
                    assert r.headers["content-type"] == "application/problem+json"
                    assert "wallet_id" not in r.text  # no data leaks with a refusal


@pytest.mark.parametrize("resource", ["tx", "audit", "anything", ""])
def test_unknown_roles_and_resources_are_denied(resource: str) -> None:
    authz = Authorizer()
    assert not authz.allowed(("NOBODY",), resource)
    assert not authz.allowed((), resource)
    assert not authz.allowed(("ADMIN_READ",), resource, action="write")


def test_policy_file_is_the_source_of_truth(tmp_path: Path) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text("p, AUDITOR_LITE, audit, read\n")
    authz = Authorizer(RBAC_DIR / "model.conf", policy)
    assert authz.allowed(("AUDITOR_LITE",), "audit")
    assert not authz.allowed(("ADMIN_READ",), "tx")
