"""Pure ASGI middleware: request ids, JSON access logs and latency metrics; the audit gate.

The audit gate wraps every ``/admin`` request. It holds the response back, writes the
audit record (through the group-commit writer) and only then sends the response; if
the record cannot be made durable the client gets 503 and none of the data.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from loguru import logger
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import AuditEntry, AuditUnavailable, AuditWriter
from api.auth import Principal
from api.problems import PROBLEM_JSON, REALM, ProblemError, problem_body
from eventlog.metrics import AUDIT_WRITE_FAILURES, HTTP_DURATION
from eventlog.redact import REDACTED
from eventlog.timeutil import format_ts

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_UNROUTED = (404, 405)  # answers given before any route ran auth (unknown path or method)

# route name → (audit action, resource type)
ACTIONS: dict[str, tuple[str, str]] = {
    "tx": ("tx.lookup", "ledger_entry"),
    "payment_order": ("payment_order.lookup", "payment_order"),
    "wallet_tx": ("wallet_tx.list", "wallet"),
    "audit": ("audit.list", "audit_log"),
    "projections": ("projections.list", "projection"),
}


def is_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def route_label(scope: Scope) -> str:
    """The route template (``/admin/tx/{tx_id}``), never the raw path: no ids in metrics."""
    route = scope.get("route")
    path = getattr(route, "path_format", None)  # "{tx_id}", not "{tx_id:anyid}"
    return path if isinstance(path, str) else "unmatched"


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header as text: UTF-8 when it is (what clients send), else Latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            raw = bytes(value)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
    return None


_DURATIONS: dict[tuple[str, str, int], Any] = {}


def _duration(route: str, method: str, status: int) -> Any:
    """``HTTP_DURATION`` for these labels (``labels()`` validates and locks on every call;
    route templates, methods and statuses are few, and the child never changes)."""
    key = (route, method, status)
    child = _DURATIONS.get(key)
    if child is None:
        child = HTTP_DURATION.labels(route=route, method=method, status=status)
        if len(_DURATIONS) < 10_000:  # methods come from clients: bound the memo
            _DURATIONS[key] = child
    return child


class RequestContextMiddleware:
    """Request id (``X-Request-ID`` echoed when sane, else generated), access log, metric."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope["bo.request_id"] = request_id
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if not any(k.lower() == b"x-content-type-options" for k, _v in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        started = time.perf_counter()
        with logger.contextualize(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                route = route_label(scope)
                _duration(route, scope["method"], status[0]).observe(seconds)
                logger.info(
                    "{method} {route} {status} {ms:.1f}ms",
                    method=scope["method"],
                    route=route,
                    status=status[0],
                    ms=seconds * 1000,
                )


@dataclass(slots=True)
class AuditContext:
    """What the auth dependency learned about the caller, for the audit record."""

    actor: str | None = None
    roles: list[str] = field(default_factory=list)


class AuditMiddleware:
    """One durable audit record per ``/admin`` request, before its response (fail closed)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        writer: AuditWriter,
        clock: Callable[[], datetime],
        trusted_proxies: list[Network],
        authenticate: Callable[[str | None], Principal] | None = None,
    ) -> None:
        self.app = app
        self.writer = writer
        self.clock = clock
        self.trusted = trusted_proxies
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_admin(scope["path"]):
            await self.app(scope, receive, send)
            return
        context = AuditContext()
        scope["bo.audit"] = context
        at = format_ts(self.clock())
        start: MutableMapping[str, Any] | None = None
        chunks: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await self.app(scope, receive, hold)
        except Exception:
            logger.exception("unhandled error in {}", scope["path"])
            start, chunks = None, []
        if start is None:
            start = _start(500, PROBLEM_JSON)
            chunks = [problem_body(500, "internal error", scope["path"])]
        body = b"".join(chunks)
        status = int(start["status"])
        if context.actor is None and status not in (401, 503):
            refused = await self._attribute(scope, context)
            if refused is not None and status in _UNROUTED:
                # no route ran auth: answer as a route would (SPEC §7: 401 for a missing or
                # invalid token), so a caller without a valid one learns nothing about which
                # paths or methods exist — not even from the 401's wording
                start = _start(refused.status, PROBLEM_JSON)
                start["headers"] += [
                    (k.lower().encode(), v.encode()) for k, v in refused.headers.items()
                ]
                body = problem_body(refused.status, refused.detail, scope["path"])
                status = refused.status
        entry = self._entry(scope, context, at, status, body)
        try:
            await self.writer.awrite(entry)
        except AuditUnavailable as exc:
            AUDIT_WRITE_FAILURES.inc()
            logger.error("audit record not written, answering 503: {}", exc)
            start = _start(503, PROBLEM_JSON)
            body = problem_body(503, "audit log unavailable; request refused", scope["path"])
        headers = [
            (k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length",)
        ]
        headers += [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _attribute(self, scope: Scope, context: AuditContext) -> ProblemError | None:
        """Name the caller of a request that never reached auth (unknown route, 405), or
        return what a route would have refused it with.

        Only a token that verifies names anyone (verified in a worker thread: in OIDC mode
        it may fetch the JWKS).
        """
        if self.authenticate is None:
            return None
        header = _header(scope, b"authorization")
        try:
            principal = await run_in_threadpool(self.authenticate, header)
        except ProblemError as exc:
            return exc
        except Exception:  # naming the caller must never cost the request its record
            logger.exception("identifying the caller of {} failed", scope["path"])
            return ProblemError(401, "token invalid", headers={"WWW-Authenticate": REALM})
        context.actor, context.roles = principal.sub, list(principal.roles)
        return None

    def _entry(
        self, scope: Scope, context: AuditContext, at: str, status: int, body: bytes
    ) -> AuditEntry:
        route = scope.get("route")
        name = getattr(route, "name", None)
        action, resource_type = (
            ACTIONS.get(name, (None, None))
            if isinstance(name, str)
            else (
                None,
                None,
            )
        )
        params = scope.get("path_params") or {}
        resource_id = next((str(v) for v in params.values()), None) if action else None
        return AuditEntry(
            at=at,
            actor=context.actor,
            roles=list(context.roles),
            method=str(scope["method"]),
            path=_audited_path(scope),
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            result_count=_result_count(status, body),
            status=status,
            ip=client_ip(scope, self.trusted),
            user_agent=_header(scope, b"user-agent"),
            request_id=str(scope.get("bo.request_id") or uuid.uuid4().hex),
        )


def _audited_path(scope: Scope) -> str:
    """The request's path and, when it has one, its query parameters (an auditor must be
    able to tell which page, point in time or filter a read was): the values of the
    parameters the route takes, the others' names only — a token or signature pasted into
    a URL is never recorded — and no value that looks like a JWT."""
    query = scope.get("query_string") or b""
    if not query:
        return str(scope["path"])
    known = _query_names(scope.get("route"))
    pairs = parse_qsl(bytes(query).decode("latin-1"), keep_blank_values=True, errors="replace")
    shown = [
        f"{quote(name, safe='')}="
        + (quote(value, safe=":") if name in known and not _JWT.search(value) else REDACTED)
        for name, value in pairs
    ]
    return f"{scope['path']}?{'&'.join(shown)}"


_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.")


def _query_names(route: Any) -> set[str]:
    """The query parameters ``route`` declares (none for an unknown route): a walk of a
    few dependency nodes, only for requests that carry a query string."""
    found: set[str] = set()
    todo = [getattr(route, "dependant", None)]
    while todo:  # the route's own parameters and its dependencies'
        current = todo.pop()
        if current is not None:
            found.update(str(p.alias) for p in getattr(current, "query_params", ()))
            todo.extend(getattr(current, "dependencies", ()))
    return found


def _start(status: int, media_type: str) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", media_type.encode())],
    }


def _result_count(status: int, body: bytes) -> int | None:
    if status == 404:
        return 0
    if status != 200:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, dict):
        for key in ("items", "projections"):
            if isinstance(document.get(key), list):
                return len(document[key])
    return 1


def client_ip(scope: Scope, trusted: list[Network]) -> str | None:
    """The peer address; ``X-Forwarded-For`` only when the peer is a trusted proxy.

    Walk the forwarded chain from the right, skipping trusted proxies: the first
    address that is not one of ours is the client (left entries can be forged).
    """
    client = scope.get("client")
    peer = str(client[0]) if client else None
    if peer is None or not trusted or not _in(peer, trusted):
        return peer
    # every X-Forwarded-For line, in order: a proxy may add its own line rather than
    # extend the client's, and the rightmost hops are the trusted ones
    lines = [
        bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"
    ]
    forwarded = ",".join(lines)
    if not forwarded:
        return peer
    hops = [_without_port(h.strip()) for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain is not trusted at all
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _without_port(hop: str) -> str:
    """``1.2.3.4:5678`` → ``1.2.3.4``, ``[2001:db8::1]:443`` → ``2001:db8::1`` (proxies
    such as Azure Application Gateway add the client's port); anything else unchanged."""
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def _in(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)
