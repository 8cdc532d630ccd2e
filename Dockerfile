# syntax=docker/dockerfile:1.7
# Multi-stage image for every process of the service: `bo migrate`, `bo consume`,
# `bo project`, `bo serve` (the default) and the `rebuild` tool. Build: docker build -t bo .

# ---- build: a virtualenv with the package and its pinned dependencies --------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/bo
COPY pyproject.toml README.md alembic.ini ./
COPY eventlog ./eventlog
COPY projections ./projections
COPY api ./api
COPY rebuild ./rebuild
COPY bo ./bo
COPY migrations ./migrations
# The `tracing` extra lets OTEL_EXPORTER_OTLP_ENDPOINT turn on OpenTelemetry export.
RUN /opt/bo/bin/pip install ".[tracing]"

# ---- runtime: the virtualenv only, run as an unprivileged user ---------------------
FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 bo \
 && useradd --system --uid 10001 --gid bo --home-dir /app --shell /usr/sbin/nologin bo \
 && mkdir -p /app/var && chown bo:bo /app/var
COPY --from=build /opt/bo /opt/bo
COPY --chown=bo:bo alembic.ini /app/alembic.ini
WORKDIR /app
ENV PATH=/opt/bo/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BO_VAR_DIR=/app/var \
    BO_LOG_LEVEL=INFO
USER bo:bo
EXPOSE 8000
# /healthz answers while the process is up; /readyz (database, migrations, projections)
# is for the orchestrator's readiness probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
CMD ["bo", "serve", "--host", "0.0.0.0", "--port", "8000"]
