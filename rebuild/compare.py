"""``verify`` (serving tables vs a scratch replay) and ``diff`` (version A vs version B).

Both stream two key-ordered row sets through a merge join, feeding each side's
checksum on the way, so memory stays flat however large the tables are. The serving
side is read in one snapshot (PostgreSQL REPEATABLE READ; an SQLite read transaction
is a WAL snapshot) together with its checkpoint position, while the live runner keeps
writing; the scratch side is replayed from the log to exactly that position.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from eventlog.db import is_sqlite, read_tx, write_tx
from eventlog.errors import UsageError
from eventlog.settings import Settings
from eventlog.store import head_position
from projections import registry
from projections.base import Projection
from projections.checksum import Checksum, sorted_rows
from projections.runner import Runner
from projections.store import (
    ACTIVE,
    SERVING,
    Checkpoint,
    Tables,
    all_checkpoints,
    create_tables,
    drop_tables,
    get_checkpoint,
    serving_version,
    tables_exist,
    tables_for,
)
from projections.tables import Row, TableDef
from rebuild.build import replay

RowSource = Callable[[TableDef], Iterator[Row]]


@dataclass(slots=True)
class Comparison:
    """Counts, the first ``limit`` differences, and both sides' checksums."""

    only_left: int = 0
    only_right: int = 0
    changed: int = 0
    differences: list[dict[str, Any]] = field(default_factory=list)
    left_checksum: str = ""
    right_checksum: str = ""

    @property
    def identical(self) -> bool:
        return not (self.only_left or self.only_right or self.changed)


def compare(
    projection: Projection,
    left: RowSource,
    right: RowSource,
    *,
    limit: int,
    labels: tuple[str, str] = ("only_in_from", "only_in_to"),
) -> Comparison:
    """Merge-join every table of ``projection``; field-level differences for changed rows.

    A listed difference's ``kind`` is ``changed`` or one of ``labels`` (row only on the
    left, only on the right).
    """
    out = Comparison()
    lsum, rsum = Checksum(), Checksum()
    for table in projection.tables:
        lsum.begin(table)
        rsum.begin(table)
        for kind, lrow, rrow in _merge(table.key, left(table), right(table)):
            if lrow is not None:
                lsum.add(table, lrow)
            if rrow is not None:
                rsum.add(table, rrow)
            if kind == "same":
                continue
            if kind == "only_left":
                out.only_left += 1
            elif kind == "only_right":
                out.only_right += 1
            else:
                out.changed += 1
            if len(out.differences) < limit:
                named = {"only_left": labels[0], "only_right": labels[1]}.get(kind, kind)
                out.differences.append(_difference(table, named, lrow, rrow))
    out.left_checksum, out.right_checksum = lsum.hexdigest(), rsum.hexdigest()
    return out


def _merge(
    key: str, left: Iterator[Row], right: Iterator[Row]
) -> Iterator[tuple[str, Row | None, Row | None]]:
    lrow, rrow = next(left, None), next(right, None)
    while lrow is not None or rrow is not None:
        if rrow is None or (lrow is not None and lrow[key] < rrow[key]):
            yield "only_left", lrow, None
            lrow = next(left, None)
        elif lrow is None or rrow[key] < lrow[key]:
            yield "only_right", None, rrow
            rrow = next(right, None)
        else:
            yield ("same" if lrow == rrow else "changed"), lrow, rrow
            lrow, rrow = next(left, None), next(right, None)


def _difference(table: TableDef, kind: str, lrow: Row | None, rrow: Row | None) -> dict[str, Any]:
    row = lrow if lrow is not None else rrow
    assert row is not None
    item: dict[str, Any] = {"table": table.name, "key": row[table.key], "kind": kind}
    if lrow is not None and rrow is not None:
        item["fields"] = {
            c: {"old": lrow[c], "new": rrow[c]} for c in table.column_names if lrow[c] != rrow[c]
        }
    return item


# ---------------------------------------------------------------- snapshots and scratch


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction that sees one consistent state for all its statements."""
    with engine.connect() as conn:
        if not is_sqlite(conn):
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


@contextmanager
def scratch(engine: Engine, projection: Projection, upto: int, label: str) -> Iterator[Tables]:
    """Replay ``projection`` into private tables up to ``upto``; dropped afterwards."""
    suffix = f"__{label}{os.getpid()}"
    with write_tx(engine) as conn:
        drop_tables(conn, projection, suffix)
        tables = create_tables(conn, projection, suffix)
    try:
        replay(engine, projection, tables, upto=upto, fresh=True, workers=None)
        yield tables
    finally:
        with write_tx(engine) as conn:
            drop_tables(conn, projection, suffix)


def _rows(conn: Connection, tables: Tables) -> RowSource:
    return lambda table: sorted_rows(conn, table, tables[table.name])


# ---------------------------------------------------------------- verify


def _drift(name: str, version: int | None, cp: Checkpoint | None, note: str) -> dict[str, Any]:
    """A verify report of drift that no replay was needed to find."""
    return {
        "projection": name,
        "version": version,
        "position": cp.position if cp is not None else None,
        "ok": False,
        "note": note,
        "differences": cp.rows if cp is not None else None,
        "first_keys": [],
        "details": [],
    }


def verify(
    engine: Engine, settings: Settings | None, name: str, *, limit: int = 5
) -> dict[str, Any]:
    """Replay the serving version of ``name`` into scratch tables and compare. A serving
    version whose view or tables are gone (dropped by hand) is drift too, not "not built"."""
    with read_tx(engine) as conn:
        version = serving_version(conn, name)
        cp = next(
            (c for c in all_checkpoints(conn) if c.projection == name and c.state == SERVING), None
        )
        built = version is not None and tables_exist(conn, registry.make(name, version, settings))
    if version is None and cp is None:
        return {"projection": name, "version": None, "ok": True, "note": "not built yet"}
    if not built:
        return _drift(
            name,
            version if version is not None else cp.version if cp else None,
            cp,
            "serving, but its view or tables are missing",
        )
    assert version is not None  # built
    projection = registry.make(name, version, settings)
    with snapshot(engine) as live:
        cp = get_checkpoint(live, name, version)
        if cp is None:  # the view and tables are there, its checkpoint row is not
            return _drift(
                name, version, None, "serving tables present but their checkpoint row is missing"
            )
        with scratch(engine, projection, cp.position, "verify") as tables, engine.connect() as s:
            result = compare(
                projection,
                _rows(live, tables_for(projection)),
                _rows(s, tables),
                limit=limit,
                labels=("only_in_serving", "only_in_replay"),
            )
    return {
        "projection": name,
        "version": version,
        "position": cp.position,
        "ok": result.identical,
        "stale": cp.fingerprint != projection.fingerprint(),
        "checksum_serving": result.left_checksum,
        "checksum_replay": result.right_checksum,
        "stored_checksum": cp.checksum,
        "differences": result.only_left + result.only_right + result.changed,
        "first_keys": [d["key"] for d in result.differences],
        "details": result.differences,
    }


# ---------------------------------------------------------------- diff


def _materialised(conn: Connection, projection: Projection) -> bool:
    """Can the stored tables stand for this version (built, active, config not stale)?"""
    cp = get_checkpoint(conn, projection.name, projection.version)
    return (
        cp is not None
        and cp.state in ACTIVE
        and cp.fingerprint == projection.fingerprint()
        and tables_exist(conn, projection)
    )


def diff(
    engine: Engine,
    settings: Settings | None,
    name: str,
    version_from: int,
    version_to: int,
    *,
    limit: int = 20,
) -> dict[str, Any]:
    """Rows only in A, only in B, and changed rows (field level), at one log position.

    A version whose tables are built, active and not stale is read as stored (caught up
    to the head first); any other is replayed from the log into scratch tables.
    """
    if version_from == version_to:
        raise UsageError("--from and --to must name two different versions")
    left = registry.make(name, version_from, settings)
    right = registry.make(name, version_to, settings)
    Runner(engine, settings).run_once(checksums=False)
    for _attempt in range(5):
        with snapshot(engine) as live:
            stored = {p.version: _materialised(live, p) for p in (left, right)}
            positions = {
                v: get_checkpoint(live, name, v).position  # type: ignore[union-attr]
                for v, ok in stored.items()
                if ok
            }
            if len(set(positions.values())) > 1:
                Runner(engine, settings).run_once(checksums=False)
                continue
            position = next(iter(positions.values()), None)
            if position is None:
                position = head_position(live)
            with (
                _source(engine, live, left, stored, position, "diffa") as a,
                _source(engine, live, right, stored, position, "diffb") as b,
            ):
                result = compare(left, a, b, limit=limit)
            return {
                "projection": name,
                "from": version_from,
                "to": version_to,
                "position": position,
                "identical": result.identical,
                "only_in_from": result.only_left,
                "only_in_to": result.only_right,
                "changed": result.changed,
                "checksum_from": result.left_checksum,
                "checksum_to": result.right_checksum,
                "sources": {
                    "from": "tables" if stored[version_from] else "replay",
                    "to": "tables" if stored[version_to] else "replay",
                },
                "differences": result.differences,
            }
    raise UsageError(f"{name}: versions keep moving apart; try again when ingest is quieter")


@contextmanager
def _source(
    engine: Engine,
    live: Connection,
    projection: Projection,
    stored: dict[int, bool],
    position: int,
    label: str,
) -> Iterator[RowSource]:
    if stored[projection.version]:
        yield _rows(live, tables_for(projection))
        return
    with scratch(engine, projection, position, label) as tables, engine.connect() as conn:
        yield _rows(conn, tables)
