"""``bo serve``, ``bo token`` and ``bo audit verify`` (registered by :mod:`bo.cli`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from loguru import logger
from sqlalchemy import Engine

from bo.output import EXIT_CHECK, EXIT_OK, emit
from bo.wiring import Container, bootstrap, check_port_free
from eventlog.db import is_sqlite, make_engine
from eventlog.errors import ConfigError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("serve")(serve_command)
    app.command("token")(token_command)
    app.add_typer(audit_app, name="audit")
    audit_app.command("verify")(audit_verify_command)


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    no_projector: Annotated[
        bool, typer.Option("--no-projector", help="Do not run the projection runner in-process.")
    ] = False,
    with_consumer: Annotated[
        bool, typer.Option("--with-consumer", help="Also run the Kafka consumer in-process.")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API worker processes (stateless replicas).")
    ] = 1,
) -> int:
    """Serve the admin API (uvicorn), with the projection runner in-process by default."""
    c = bootstrap()
    check_port_free(host, port)
    c.require_database()
    if with_consumer:
        from eventlog.kafka import check_kafka_settings

        check_kafka_settings(c.settings)
    serve(
        c,
        host=host,
        port=port,
        projector=not no_projector,
        consumer=with_consumer,
        workers=workers,
    )
    return EXIT_OK


API_POOL_SIZE = 16  # connections kept per API process; request threads are matched to it


def api_engine(c: Container) -> Engine:
    """The API's own engine: a pool as large as its request concurrency (no connection churn)."""
    if c.settings.is_sqlite:
        return c.engine
    return make_engine(c.settings.database_url, pool_size=API_POOL_SIZE)


def app_factory() -> Any:
    """The app for one uvicorn worker process (``--workers N``): settings from the environment."""
    from api.app import create_app

    c = bootstrap()
    return create_app(c.settings, api_engine(c))


def serve(
    c: Container, *, host: str, port: int, projector: bool, consumer: bool, workers: int = 1
) -> None:
    """Run uvicorn until Ctrl-C/SIGTERM; background workers get the same stop event.

    With ``workers > 1`` uvicorn forks worker processes that each build the app from the
    environment (the API is stateless; the audit chain is serialised in the database);
    the projector and consumer still run once, in this process.
    """
    import uvicorn

    from api.app import create_app

    stop = threading.Event()
    threads: list[threading.Thread] = []
    if projector:
        from projections.runner import Runner

        _check_projector_role(c.engine)
        runner = Runner(c.engine, c.settings)
        threads.append(_worker("projector", lambda: runner.run_forever(stop)))
    if consumer:
        from eventlog.kafka import run_consumer

        threads.append(_worker("consumer", lambda: run_consumer(c.settings, c.engine, stop)))
    # proxy_headers off: X-Forwarded-For is honoured only from BO_TRUSTED_PROXIES, by the
    # app itself (uvicorn would otherwise trust it from 127.0.0.1 and rewrite the peer).
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_config": None,
        "proxy_headers": False,
        "server_header": False,
    }
    for thread in threads:
        thread.start()
    logger.info(
        "serving on http://{}:{} (workers={}, projector={}, consumer={})",
        host,
        port,
        workers,
        projector,
        consumer,
    )
    try:
        if workers > 1:
            uvicorn.run("bo.cli_api:app_factory", factory=True, workers=workers, **options)
        else:
            engine = api_engine(c)
            app = create_app(c.settings, engine)
            try:
                _graceful_server(uvicorn.Config(app, lifespan="on", **options)).run()
            finally:
                if engine is not c.engine:
                    engine.dispose()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        c.close()


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown, which would kill the
        process before the projector and consumer threads are stopped and joined. Here the
        signal only stops the server; ``serve`` then stops the threads and returns."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _graceful_server(config: Any) -> Any:
    """A uvicorn server whose stop signals return from ``run`` instead of killing us."""
    return _server_class()(config)


def _check_projector_role(engine: Engine) -> None:
    """The in-process projector writes the projections: refuse to start it, with one line,
    under a role that cannot (the API's least-privilege role, say) instead of letting it
    die at its first write."""
    from eventlog.schema import checkpoints

    if is_sqlite(engine):
        return
    table = f"{checkpoints.schema}.{checkpoints.name}"
    with engine.connect() as conn:
        allowed = conn.exec_driver_sql(
            "SELECT has_table_privilege(current_user, %(t)s, 'UPDATE')", {"t": table}
        ).scalar()
    if not allowed:
        raise ConfigError(
            f"the in-process projector cannot write the projections ({table} is read-only "
            "for this role): run `bo serve --no-projector` and `bo project` under the "
            "projector's role (docs/operations.md)"
        )


def _worker(name: str, target: Callable[[], None]) -> threading.Thread:
    from api.service import worker_running

    def run() -> None:
        worker_running(name, True)
        try:
            target()
        except Exception:  # a dead worker must be loud: logged, and /readyz answers 503
            worker_running(name, False)
            logger.exception("{} stopped with an error", name)

    return threading.Thread(target=run, name=name, daemon=True)


def token_command(
    sub: Annotated[str, typer.Option("--sub", help="Subject (who the token is for).")],
    role: Annotated[list[str], typer.Option("--role", help="Role; repeat for several.")],
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds.")] = 3600,
    as_json: JsonOpt = False,
) -> int:
    """Print a dev-mode token (refused in OIDC mode: tokens come from the IdP there)."""
    from api.auth import dev_token

    c = bootstrap()
    token = dev_token(c.settings, sub, list(role), ttl)
    emit(
        {"token": token, "sub": sub, "roles": list(role), "ttl": ttl}, as_json, lambda d: d["token"]
    )
    return EXIT_OK


def audit_verify_command(as_json: JsonOpt = False) -> int:
    """Recompute the audit log's hash chain; exit 1 naming the first bad record."""
    from api.audit import AuditChainBroken, verify_audit

    c = bootstrap()
    c.require_database()
    try:
        report = verify_audit(c.engine)
    except AuditChainBroken as exc:
        emit(
            {"ok": False, "id": exc.record_id, "reason": exc.reason},
            as_json,
            lambda d: f"FAILED at audit record {d['id']}: {d['reason']}",
        )
        return EXIT_CHECK
    emit(
        {"ok": True, "records": report.records, "head_hash": report.head_hash},
        as_json,
        lambda d: f"ok: {d['records']} audit records, head hash {d['head_hash']}",
    )
    return EXIT_OK
