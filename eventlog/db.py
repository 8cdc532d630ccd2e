"""Engine construction and transaction helpers shared by both backends.

One code path serves SQLite and PostgreSQL: schemas are translated away on SQLite,
and :func:`write_tx` takes SQLite's write lock up front (``BEGIN IMMEDIATE``) so a
read-then-write transaction never fails on lock upgrade.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from eventlog.errors import ConfigError, DatabaseUnavailable
from eventlog.schema import SCHEMAS

_WRITE = "bo_write"
_SQLITE_BUSY_SECONDS = 30


def make_engine(url: str, *, pool_size: int = 5, pre_ping: bool = True, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` (``sqlite://`` or ``postgresql+psycopg://``).

    ``pre_ping=False`` skips the round trip that tests each pooled connection at checkout:
    for a loop that retries a failed transaction anyway (``bo consume``, the projection
    runner), where a connection broken by a server restart fails its first statement,
    the pool is invalidated and the retry connects afresh.

    PostgreSQL sessions plan every statement with its actual parameters
    (``plan_cache_mode=force_custom_plan``). psycopg prepares a statement run five times on
    a connection, and the server may then keep a generic plan made while a table was
    small — a projection table just created, say — until the table is next analyzed: the
    runner's ``key = ANY(<thousands of keys>)`` lookups then scanned the whole table,
    comparing every row against every key (seconds per batch during a catch-up, until
    autovacuum's first ANALYZE). Planning a statement costs tens of microseconds.
    """
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url, **kwargs)
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=pre_ping,
            connect_args={"connect_timeout": 5, "options": "-c plan_cache_mode=force_custom_plan"},
            **kwargs,
        )
    except (ArgumentError, ValueError) as exc:  # not even a URL: a configuration error
        text_ = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"database URL cannot be parsed: {without_password(text_, url)}") from exc


_USERINFO = re.compile(r"(://[^:/@?#\s]*:)([^@/?#\s]*)(@)")
_KEYWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)", re.IGNORECASE)


def without_password(message: str, url: str) -> str:
    """``message`` (a driver's error, say: it may quote a malformed URL back) without the
    password ``url`` spells — in its ``user:password@`` or ``password=`` form, and anywhere
    else as a whole token, as written or percent-decoded (SPEC §2.5: no credential in a
    log line or an error)."""
    secrets: set[str] = set()
    for pattern in (_USERINFO, _KEYWORD):
        for match in pattern.finditer(url):
            secret = match.group(2).strip("'")
            if secret:
                secrets |= {secret, unquote(secret)}
    message = _USERINFO.sub(r"\1***\3", message)
    message = _KEYWORD.sub(r"\1***", message)
    for secret in sorted(secrets, key=len, reverse=True):
        token = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
        message = re.sub(token, "***", message)
    return message


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)  # a "file:" URI: as given
    engine = create_engine(
        url,
        execution_options={"schema_translate_map": dict.fromkeys(SCHEMAS)},
        connect_args={"timeout": _SQLITE_BUSY_SECONDS, "check_same_thread": False},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_tx(engine: Engine, *, wait: float | None = None) -> Iterator[Connection]:
    """A write transaction; on SQLite it holds the database write lock from the start.

    ``wait``: seconds the transaction may wait for a lock (SQLite's busy timeout for its
    ``BEGIN IMMEDIATE``; PostgreSQL's ``lock_timeout`` and ``statement_timeout``), after
    which it fails instead of going on later — for a caller that gives up by then.
    """
    with engine.connect() as conn:
        sqlite = is_sqlite(conn)
        if wait is not None and sqlite:
            _busy_timeout(conn, wait)
        try:
            conn = conn.execution_options(**{_WRITE: True})
            with conn.begin():
                if wait is not None and not sqlite:
                    ms = max(1, int(wait * 1000))
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
                yield conn
        finally:
            if wait is not None and sqlite:
                try:
                    _busy_timeout(conn, _SQLITE_BUSY_SECONDS)
                except Exception:  # never pool a connection that keeps the short timeout
                    conn.invalidate()


def _busy_timeout(conn: Connection, seconds: float) -> None:
    """Set SQLite's busy timeout on the connection, outside any transaction."""
    driver = conn.connection.driver_connection
    driver.execute(f"PRAGMA busy_timeout={max(1, int(seconds * 1000))}")  # type: ignore[union-attr]


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """One pooled connection for successive write transactions (``with conn.begin():``
    each; on SQLite each holds the write lock from the start, as in :func:`write_tx`):
    one checkout — and PostgreSQL pre-ping round trip — for all of them."""
    with engine.connect() as conn:
        yield conn.execution_options(**{_WRITE: True})


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read transaction: one consistent snapshot on both backends.

    SQLite's read transaction is a snapshot already (WAL); PostgreSQL needs REPEATABLE READ,
    or each statement would see its own snapshot.
    """
    with engine.connect() as conn:
        if not is_sqlite(conn):
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def check_reachable(engine: Engine) -> None:
    """Raise :class:`DatabaseUnavailable` with one line if the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, DBAPIError) as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(f"database unreachable ({safe_url(engine)}): {detail}") from exc


def safe_url(engine: Engine) -> str:
    """The URL without its password, for messages."""
    return engine.url.render_as_string(hide_password=True)
