"""The app factory: ``create_app(settings, engine)`` builds the whole admin API.

Nothing happens at import time; the engine and settings are passed in (see
:mod:`bo.wiring`), so a test can point the app at any database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import problems
from api.aio import AsyncAuditSink, AsyncLookups, AsyncPool, conninfo
from api.audit import AuditWriter
from api.auth import make_verifier
from api.authz import Authorizer
from api.console import mount_console
from api.deps import AppState
from api.fastpath import TxFastPath
from api.metrics import MetricsExporter
from api.middleware import AuditMiddleware, RequestContextMiddleware
from api.models import Problem
from api.routes import admin, public
from api.service import Service
from api.tracing import TracingMiddleware, trace_sql, tracer_from_environment
from eventlog.db import is_sqlite
from eventlog.settings import Settings
from eventlog.timeutil import utcnow

API_VERSION = "1.0.0"
ASYNC_POOL_SIZE = 8  # event-loop connections per process for the hot lookups (api/aio.py)


def create_app(
    settings: Settings, engine: Engine, *, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """The admin API over ``engine``; ``clock`` (default: the wall clock) drives lag and audit.

    Raises :class:`eventlog.errors.ConfigError` when tracing is asked for but cannot export.
    """
    now = clock or utcnow
    writer = AuditWriter(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _match_threads_to_pool(engine)
        state: AppState = app.state.bo
        sink: AsyncAuditSink | None = None
        pool: AsyncPool | None = None
        # the hot path on the event loop (api/aio.py); not when tracing, whose SQL spans
        # come from the engine's events
        target = None if is_sqlite(engine) or tracer is not None else conninfo(engine)
        if target is not None:
            dsn, timeout = target
            pool = AsyncPool(dsn, ASYNC_POOL_SIZE, connect_timeout=timeout)
            sink = AsyncAuditSink(dsn, connect_timeout=timeout, on_commit=writer.count_commit)
            sink.start()
            writer.attach(sink)
            state.aio = AsyncLookups(engine, pool, now, state.service.kafka_group)
        try:
            yield
        finally:
            state.aio = None
            writer.attach(None)
            if sink is not None:
                await sink.close()
            if pool is not None:
                await pool.close()
            writer.close()

    app = FastAPI(
        title="Back-office admin API",
        version=API_VERSION,
        description="Ledger, payment-order and wallet lookups over the serving projections.",
        lifespan=lifespan,
        # no 307 to the slash-less path: it would echo the Host header and answer callers
        # without a token; a trailing slash is an unknown path (401 without a valid token)
        redirect_slashes=False,
        # no Swagger UI / ReDoc: they load scripts from a CDN on the console's origin,
        # where the console keeps its token; the schema stays at /openapi.json (SPEC §6)
        docs_url=None,
        redoc_url=None,
    )
    service = Service(settings, engine, now)
    app.state.bo = AppState(
        settings=settings,
        service=service,
        verifier=make_verifier(settings),
        authorizer=Authorizer(),
        writer=writer,
        clock=now,
        metrics=MetricsExporter(engine, now, service.kafka_group),
    )
    app.add_exception_handler(problems.ProblemError, problems.on_problem)
    app.add_exception_handler(StarletteHTTPException, problems.on_http_error)
    app.add_exception_handler(RequestValidationError, problems.on_validation_error)
    app.include_router(admin)
    app.include_router(public)
    app.add_middleware(TxFastPath, api=app)  # innermost: audit and request ids wrap it
    app.add_middleware(
        AuditMiddleware,
        writer=writer,
        clock=now,
        trusted_proxies=settings.trusted_proxy_networks,
        authenticate=app.state.bo.authenticate,
    )
    app.add_middleware(RequestContextMiddleware)  # ids and timing for everything
    tracer = tracer_from_environment()
    if tracer is not None:
        app.add_middleware(TracingMiddleware, tracer=tracer)  # outermost: spans around all
        trace_sql(engine, tracer)
    mount_console(app)
    _document_problems(app)
    return app


def _match_threads_to_pool(engine: Engine) -> None:
    """Run at most as many request threads as the pool keeps connections (less two, for
    the audit writer and /metrics), so connections are reused instead of opened and closed
    per request (a new PostgreSQL connection costs far more than a lookup)."""
    size = getattr(engine.pool, "size", None)
    if callable(size):
        anyio.to_thread.current_default_thread_limiter().total_tokens = max(2, int(size()) - 2)


def _document_problems(app: FastAPI) -> None:
    """Describe every 4xx/5xx answer as ``application/problem+json`` with the Problem schema."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        }
        ref = {"$ref": "#/components/schemas/Problem"}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if path.startswith("/admin"):
                    operation["security"] = [{"bearer": []}]
                    for code in ("401", "403", "404", "422", "503"):
                        responses[code] = {
                            "description": problems.TITLES[int(code)],
                            "content": {problems.PROBLEM_JSON: {"schema": ref}},
                        }
                elif "422" in responses:
                    responses["422"] = {
                        "description": problems.TITLES[422],
                        "content": {problems.PROBLEM_JSON: {"schema": ref}},
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
