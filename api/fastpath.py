"""``GET /admin/tx/{id}`` without FastAPI's per-request machinery, when nothing can go wrong.

At the target rates FastAPI's routing, dependency solving and exception plumbing cost
more CPU than the lookup itself. :class:`TxFastPath` sits inside the audit and
request-context middleware (which still wrap every request) and answers a request
itself only when it is the plain, valid, authorised case:

- ``GET /admin/tx/<id>`` with no query string and an id the route's pattern accepts;
- a bearer token that verified recently (:meth:`api.auth.Verifier.cached`; a first
  sighting is verified by the normal path, which remembers it) whose roles casbin
  allows on ``tx``;
- the event-loop lookup is available (PostgreSQL, :mod:`api.aio`).

It then does what the route would: records the caller for the audit record, sets the
route and path parameters in the scope (the same route object FastAPI matched, learned
from the first request the normal path served), and sends the same bytes — the body
from :func:`api.aio.tx_json`, a not-found or unavailable answer through the app's own
problem handler. Anything else goes to the app unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.aio import tx_json
from api.deps import AppState
from api.middleware import AuditContext
from api.problems import ProblemError, on_problem
from api.routes import ID_PATTERN

PREFIX = "/admin/tx/"
ROUTE_NAME = "tx"
_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))  # used with fullmatch
_MAX_TOKEN = 16_384


class TxFastPath:
    def __init__(self, app: ASGIApp, *, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.route: Any = None  # FastAPI's route object for "tx", once seen
        self.served = 0  # requests answered here (for tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                if self.route is not None and await self._serve(scope, receive, send, path):
                    return
                await self.app(scope, receive, send)
                if self.route is None:
                    self._learn(scope)
                return
        await self.app(scope, receive, send)

    def _learn(self, scope: Scope) -> None:
        route = scope.get("route")
        if getattr(route, "name", None) == ROUTE_NAME and getattr(route, "path", "") == (
            PREFIX + "{tx_id:anyid}"
        ):
            self.route = route

    async def _serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> bool:
        """Answer the request and return True, or return False having sent nothing."""
        tx_id = path[len(PREFIX) :]
        if scope.get("query_string") or not _ID.fullmatch(tx_id):
            return False
        state: AppState = self.api.state.bo
        aio = state.aio
        if aio is None:
            return False
        header = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
            return False
        principal = state.verifier.cached(token)
        if principal is None or not state.authorizer.allowed(principal.roles, ROUTE_NAME):
            return False
        detail: dict[str, Any] | None = None
        problem: ProblemError | None = None
        try:
            detail = await aio.tx(tx_id)
        except ProblemError as exc:
            problem = exc
        body = None if detail is None else tx_json(detail)
        if problem is None and body is None:
            return False  # the response model would reject it: let FastAPI say so
        context = scope.get("bo.audit")
        if isinstance(context, AuditContext):
            context.actor = principal.sub
            context.roles = list(principal.roles)
        scope["route"] = self.route
        scope["path_params"] = {"tx_id": tx_id}
        self.served += 1
        if problem is not None:
            response = await on_problem(Request(scope, receive), problem)
            await response(scope, receive, send)
            return True
        assert body is not None
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True
