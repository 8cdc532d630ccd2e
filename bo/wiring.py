"""The one place that turns settings into live objects (engine, log, registry, app).

Nothing here runs at import time; every entry point calls :func:`bootstrap`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from eventlog.db import check_reachable, make_engine
from eventlog.errors import DatabaseUnavailable, UsageError
from eventlog.logs import configure_logging
from eventlog.migrate import at_head
from eventlog.settings import Settings, load_settings
from eventlog.store import EventLog


@dataclass
class Container:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    @cached_property
    def log(self) -> EventLog:
        return EventLog(self.engine)

    def require_database(self, *, migrated: bool = True) -> Engine:
        """The engine, after checking it answers (and is migrated, unless ``migrated=False``).

        A SQLite file that does not exist is reported without connecting: connecting would
        leave an empty file behind at a mistyped path."""
        if migrated and self.settings.is_sqlite:
            database = make_url(self.settings.database_url).database or ""
            plain = database and not database.startswith("file:") and database != ":memory:"
            if plain and not Path(database).exists():
                raise DatabaseUnavailable(
                    f"no database at {database}: run `bo migrate` (or check BO_DATABASE_URL)"
                )
        check_reachable(self.engine)
        if migrated and not at_head(self.engine):
            raise DatabaseUnavailable("database is not migrated to head: run `bo migrate`")
        return self.engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def bootstrap(**overrides: object) -> Container:
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)  # one JSON object a line, on stderr (SPEC §8)
    return Container(settings)


def check_port_free(host: str, port: int) -> None:
    """Fail with one line (exit 2) before serving, or printing anything, when the address
    cannot be listened on: taken, not this host's, or not resolvable."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (try --port)"
            ) from exc
