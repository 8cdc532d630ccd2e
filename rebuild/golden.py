"""Golden scenarios: ``<dir>/<scenario>/events.jsonl`` + ``expected/<projection>.jsonl``.

Each scenario is ingested through the real path (dead letters and all) into a fresh
database — a temporary SQLite file, or a temporary database on the PostgreSQL server
named by ``database_url`` — and every projection named by an expected file is replayed
twice, one event per batch and in one large batch, both of which must give the
expected rows. ``expected/<projection>.jsonl`` holds the public table's rows in key
order as canonical JSON (the checksum's columns); ``<projection>.v<N>.jsonl`` pins a
version (otherwise the newest). An optional ``status_map.json`` is the scenario's
``BO_STATUS_MAP``.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from eventlog.db import make_engine, without_password, write_tx
from eventlog.errors import ConfigError, UsageError
from eventlog.ingest import ingest_stream, read_lines
from eventlog.migrate import upgrade
from eventlog.settings import Settings, load_settings
from eventlog.store import EventLog
from projections import registry
from projections.base import Projection
from projections.checksum import canonical, sorted_rows
from projections.store import create_tables
from rebuild.build import replay

_EXPECTED = re.compile(r"^(?P<name>[a-z_]+?)(?:\.v(?P<version>\d+))?\.jsonl$")
BATCHES = (1, 10_000)


@dataclass(slots=True)
class ScenarioResult:
    scenario: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    # projections with no expected file: not compared (a scenario may cover only some),
    # named so that a deleted expected file does not pass unnoticed
    unchecked: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "problems": self.problems,
            "updated": self.updated,
            "unchecked": self.unchecked,
        }


def scenarios(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise UsageError(f"no such golden directory: {directory}")
    found = sorted(p for p in directory.iterdir() if (p / "events.jsonl").is_file())
    if not found:
        raise UsageError(f"no scenarios (*/events.jsonl) under {directory}")
    return found


def run_golden(
    directory: Path, *, update: bool = False, database_url: str | None = None
) -> list[ScenarioResult]:
    """Replay every scenario; compare with (or, with ``update``, rewrite) its expected rows."""
    return [
        _scenario(path, update=update, database_url=database_url) for path in scenarios(directory)
    ]


def _targets(path: Path, update: bool) -> list[tuple[str, int | None, Path]]:
    expected = path / "expected"
    out: list[tuple[str, int | None, Path]] = []
    for file in sorted(expected.glob("*.jsonl")) if expected.is_dir() else []:
        match = _EXPECTED.match(file.name)
        if match is None or match["name"] not in registry.VERSIONS:
            raise UsageError(f"{file}: name it <projection>.jsonl or <projection>.v<N>.jsonl")
        out.append((match["name"], int(match["version"]) if match["version"] else None, file))
    if update:
        named = {(n, v) for n, v, _ in out}
        out += [
            (n, None, expected / f"{n}.jsonl") for n in registry.NAMES if (n, None) not in named
        ]
    return out


def _scenario(path: Path, *, update: bool, database_url: str | None) -> ScenarioResult:
    result = ScenarioResult(path.name)
    targets = _targets(path, update)
    result.unchecked = [n for n in registry.NAMES if n not in {name for name, _v, _f in targets}]
    if not targets:
        result.ok = False
        result.problems.append("no expected/*.jsonl files (run with --update to create them)")
        return result
    status_map = path / "status_map.json"
    with fresh_database(database_url) as url:
        settings = load_settings(
            database_url=url, status_map=str(status_map) if status_map.is_file() else None
        )
        engine = make_engine(url)
        try:
            upgrade(engine)
            with (path / "events.jsonl").open("rb") as stream:
                ingest_stream(EventLog(engine), read_lines(stream, "events.jsonl"), "events.jsonl")
            for name, version, file in targets:
                _check(
                    engine, settings, registry.make(name, version, settings), file, update, result
                )
        finally:
            engine.dispose()
    return result


def _check(
    engine: Engine,
    settings: Settings,
    projection: Projection,
    file: Path,
    update: bool,
    result: ScenarioResult,
) -> None:
    outputs = [_replayed(engine, projection, batch, f"__g{batch}") for batch in BATCHES]
    actual = outputs[0]
    if outputs[1] != actual:
        result.ok = False
        result.problems.append(f"{file.name}: batch size changes the result")
    if update:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in actual))
        result.updated.append(file.name)
        return
    expected = _expected_rows(file, projection.public.key)
    problems = readable_diff(projection.public.key, expected, actual)
    if problems:
        result.ok = False
        result.problems += [f"{file.name}: {p}" for p in problems]


def _expected_rows(file: Path, key: str) -> list[Any]:
    """The rows of an expected file: one JSON object with the table's key per line; a
    malformed scenario is a usage error naming the file and line, not a crash."""
    rows: list[Any] = []
    for number, line in enumerate(file.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"{file}: line {number} is not JSON ({exc})") from exc
        if not isinstance(row, dict) or key not in row:
            raise UsageError(f"{file}: line {number} is not a row with its key {key!r}")
        rows.append(row)
    return rows


def _replayed(engine: Engine, projection: Projection, batch: int, suffix: str) -> list[Any]:
    with write_tx(engine) as conn:
        tables = create_tables(conn, projection, suffix)
    replay(engine, projection, tables, batch=batch, fresh=True)
    public = projection.public
    with engine.connect() as conn:
        return [
            orjson.loads(canonical(public, row))
            for row in sorted_rows(conn, public, tables[public.name])
        ]


def readable_diff(key: str, expected: list[Any], actual: list[Any]) -> list[str]:
    """Lines like ``row O1: pairing_status expected 'COMPLETE', got 'INCOMPLETE'``."""
    want = {row[key]: row for row in expected}
    got = {row[key]: row for row in actual}
    lines: list[str] = []
    for k in sorted(want.keys() | got.keys()):
        if k not in got:
            lines.append(f"row {k}: expected but missing")
        elif k not in want:
            lines.append(f"row {k}: unexpected {orjson.dumps(got[k]).decode()}")
        else:
            for column in sorted(want[k].keys() | got[k].keys()):
                if want[k].get(column) != got[k].get(column):
                    lines.append(
                        f"row {k}: {column} expected {want[k].get(column)!r}, "
                        f"got {got[k].get(column)!r}"
                    )
    return lines


@contextmanager
def fresh_database(database_url: str | None) -> Iterator[str]:
    """A temporary SQLite file, or a temporary database on the given PostgreSQL server."""
    if database_url is None or database_url.startswith("sqlite"):
        with tempfile.TemporaryDirectory(prefix="bo-golden-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'golden.db'}"
        return
    import psycopg

    try:
        url = make_url(load_settings(database_url=database_url).database_url)
    except (ArgumentError, ValueError) as exc:
        detail = without_password(str(exc).strip().splitlines()[0], database_url)
        raise ConfigError(f"--database-url cannot be parsed: {detail}") from exc
    name = f"bo_golden_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
