"""Role-based access with casbin; the model and policy live in ``api/rbac/``.

Resources are the names of the admin routes (``tx``, ``payment_order``, ``wallet_tx``,
``audit``, ``projections``); a request is allowed when any of the caller's roles may
``read`` that resource. Deny by default.
"""

from __future__ import annotations

import threading
from pathlib import Path

import casbin

RBAC_DIR = Path(__file__).resolve().parent / "rbac"


class Authorizer:
    """A casbin enforcer with its (static) decisions memoised."""

    def __init__(self, model: Path | None = None, policy: Path | None = None) -> None:
        self._enforcer = casbin.Enforcer(
            str(model or RBAC_DIR / "model.conf"), str(policy or RBAC_DIR / "policy.csv")
        )
        self._cache: dict[tuple[str, str, str], bool] = {}
        self._lock = threading.Lock()

    def allowed(self, roles: tuple[str, ...], resource: str, action: str = "read") -> bool:
        return any(self._decide(role, resource, action) for role in roles)

    def _decide(self, role: str, resource: str, action: str) -> bool:
        key = (role, resource, action)
        decision = self._cache.get(key)
        if decision is None:
            with self._lock:
                decision = bool(self._enforcer.enforce(role, resource, action))
                if len(self._cache) < 10_000:  # roles come from tokens: bound the memo
                    self._cache[key] = decision
        return decision
