"""Shared fixtures: a real PostgreSQL cluster per session, a fresh database per test.

Tests that take ``engine_url`` run on both backends (SQLite and PostgreSQL).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bo.pgcluster import Cluster, throwaway_cluster
from eventlog.db import make_engine
from eventlog.migrate import upgrade

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, empty PostgreSQL database for this test."""
    return pg_cluster.create_database(f"t{next(_counter)}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bo.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bo.db'}"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{next(_counter)}")


@pytest.fixture
def migrated(engine_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend in turn."""
    engine = make_engine(engine_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine_factory() -> Iterator[object]:
    """Make migrated engines for given URLs; all disposed at the end."""
    made: list[Engine] = []

    def factory(url: str) -> Engine:
        engine = make_engine(url)
        upgrade(engine)
        made.append(engine)
        return engine

    yield factory
    for engine in made:
        engine.dispose()
