"""RFC 9457 problem details (``application/problem+json``) for every error the API returns."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
REALM = 'Bearer realm="bo-admin"'  # the WWW-Authenticate challenge of every 401

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """Raised anywhere below a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


MAX_INSTANCE = 2048  # as the audit record keeps a path: a 60 kB id is not echoed back whole


def problem_body(status: int, detail: str, instance: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance if len(instance) <= MAX_INSTANCE else instance[:MAX_INSTANCE]
    body.update(extra)
    return orjson.dumps(body, default=str)


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    return Response(
        problem_body(status, detail, instance, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status, exc.detail, instance=request.url.path, headers=exc.headers, **exc.extra
    )


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (unknown route) and 405 (wrong method), as problems."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
    if exc.status_code == 404:
        detail = "no such resource"
    return problem_response(
        exc.status_code,
        detail,
        instance=request.url.path,
        headers=dict(exc.headers or {}),
    )


async def on_validation_error(request: Request, exc: Exception) -> Response:
    """422 with one entry per invalid input; the input values themselves are not echoed."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "value_error")),
        }
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid input"}
    where = ".".join(first["loc"]) if first["loc"] else "request"
    return problem_response(
        422, f"{where}: {first['msg']}", instance=request.url.path, errors=errors
    )
