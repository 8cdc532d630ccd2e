"""OpenTelemetry spans for each request and its SQL, only when ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set (SPEC §8, slow-query correlation); off otherwise, at no cost.

Exporting needs ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http``, which
are not among the pinned dependencies: with the endpoint set and them missing, the app
refuses to start with one clear line instead of silently tracing nothing.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, event
from starlette.types import ASGIApp, Receive, Scope, Send

from api.middleware import route_label
from eventlog.errors import ConfigError

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"


def tracer_from_environment() -> Any | None:
    """A tracer exporting over OTLP/HTTP, or ``None`` when tracing is off."""
    if not os.environ.get(ENDPOINT_VARIABLE):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # type: ignore[import-not-found]
        from opentelemetry.sdk.trace import TracerProvider  # type: ignore[import-not-found]
        from opentelemetry.sdk.trace.export import (  # type: ignore[import-not-found]
            BatchSpanProcessor,
        )
    except ImportError as exc:
        raise ConfigError(
            f"{ENDPOINT_VARIABLE} is set but OpenTelemetry export is not installed "
            "(pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http)"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": "bo-admin-api"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("bo.api")


class TracingMiddleware:
    """One server span per HTTP request, named by the route template (no ids in names)."""

    def __init__(self, app: ASGIApp, *, tracer: Any) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.tracer.start_as_current_span(f"{scope['method']} request") as span:
            span.set_attribute("http.request.method", scope["method"])
            try:
                await self.app(scope, receive, send)
            finally:
                route = route_label(scope)
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("bo.request_id", str(scope.get("bo.request_id", "")))


def trace_sql(engine: Engine, tracer: Any) -> None:
    """A child span per SQL statement (the statement text, never its parameters)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _start(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        span = tracer.start_span("sql", attributes={"db.statement": statement[:4096]})
        _conn.info.setdefault("bo.spans", []).append(span)

    @event.listens_for(engine, "after_cursor_execute")
    def _end(_conn: Any, *_args: Any) -> None:
        spans = _conn.info.get("bo.spans")
        if spans:
            spans.pop().end()

    @event.listens_for(engine, "handle_error")
    def _error(context: Any) -> None:
        spans = context.connection.info.get("bo.spans") if context.connection else None
        if spans:
            spans.pop().end()
