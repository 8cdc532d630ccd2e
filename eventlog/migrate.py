"""Run Alembic migrations and ask whether the database is at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

import migrations
from eventlog.errors import ConfigError

SCRIPTS = Path(migrations.__file__).resolve().parent


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    return config


def upgrade(engine: Engine) -> str | None:
    """Upgrade to head on ``engine``; return the revision now current."""
    config = alembic_config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except CommandError as exc:  # e.g. a revision this build does not know (a rollback)
        raise ConfigError(
            f"cannot migrate: {str(exc).splitlines()[0]} — the database was migrated by a "
            "newer build of bo; run that build (or restore a matching backup)"
        ) from exc
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def at_head(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
