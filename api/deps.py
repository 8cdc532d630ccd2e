"""FastAPI dependencies: the app's services, and access (authentication + casbin RBAC).

:func:`require_access` is attached to the admin router once; routes never check
permissions themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.aio import AsyncLookups
from api.audit import AuditWriter
from api.auth import AuthError, KeysUnavailable, Principal, Verifier
from api.authz import Authorizer
from api.metrics import MetricsExporter
from api.middleware import AuditContext
from api.problems import REALM, ProblemError
from api.service import Service
from eventlog.settings import Settings


@dataclass
class AppState:
    """Everything a request needs, built once by :func:`api.app.create_app`."""

    settings: Settings
    service: Service
    verifier: Verifier
    authorizer: Authorizer
    writer: AuditWriter
    clock: Callable[[], datetime]
    metrics: MetricsExporter
    aio: AsyncLookups | None = None  # set while the app runs on PostgreSQL (api/aio.py)

    def authenticate(self, header: str | None) -> Principal:
        """The principal of an ``Authorization`` header, or the :class:`ProblemError` (401,
        or 503 without keys) a route would answer with — for requests no route took (the
        audit middleware calls it off the event loop: OIDC may fetch the JWKS)."""
        token = _bearer(header)
        try:
            return self.verifier.verify(token)
        except AuthError as exc:
            raise _unauthorized(str(exc)) from exc
        except KeysUnavailable as exc:
            raise ProblemError(503, str(exc)) from exc


async def app_state(request: Request) -> AppState:
    """``async`` on purpose: a plain ``def`` dependency costs a thread-pool hop per request."""
    state: AppState = request.app.state.bo
    return state


State = Annotated[AppState, Depends(app_state)]


def _unauthorized(reason: str) -> ProblemError:
    challenge = f'{REALM}, error="invalid_token", error_description="{reason}"'
    return ProblemError(401, reason, headers={"WWW-Authenticate": challenge})


def bearer_token(request: Request) -> str:
    return _bearer(request.headers.get("authorization"))


def _bearer(header: str | None) -> str:
    if not header:
        raise ProblemError(401, "bearer token required", headers={"WWW-Authenticate": REALM})
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 16_384:
        raise _unauthorized("malformed Authorization header")
    return token


async def require_access(request: Request, state: State) -> Principal:
    """Verify the bearer token, then ask casbin whether a role may use this route."""
    token = bearer_token(request)
    try:
        if state.settings.auth_mode == "oidc":  # may fetch the JWKS: off the event loop
            principal = await run_in_threadpool(state.verifier.verify, token)
        else:
            principal = state.verifier.verify(token)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from exc
    except KeysUnavailable as exc:
        raise ProblemError(503, str(exc)) from exc
    context = request.scope.get("bo.audit")
    if isinstance(context, AuditContext):
        context.actor = principal.sub
        context.roles = list(principal.roles)
    resource = getattr(request.scope.get("route"), "name", "")
    if not state.authorizer.allowed(principal.roles, str(resource)):
        raise ProblemError(403, f"none of the token's roles may read {resource}")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_access)]
