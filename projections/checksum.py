"""Canonical rows and the projection checksum (SPEC §4.6).

SHA-256 over the rows of each table of a projection (public table first), sorted by
primary key in code-point order (``COLLATE "C"`` on PostgreSQL, SQLite's binary
collation, Python's ``str`` order — all the same for UTF-8), each row one canonical JSON
object with the columns in their fixed order. Values are already canonical text
(decimals with their source scale, timestamps RFC 3339 UTC with microseconds), ints
and booleans as JSON. ``position`` is left out: it records where the winning change sat
in the log, so it depends on arrival order, while the projected data must not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection, Table, select

from eventlog.db import is_sqlite
from projections.tables import Row, TableDef

EXCLUDED = frozenset({"position"})


@lru_cache(maxsize=32)
def checksum_columns(table: TableDef) -> tuple[str, ...]:
    return tuple(c for c in table.column_names if c not in EXCLUDED)


def canonical(table: TableDef, row: Row) -> bytes:
    """One row as canonical JSON (columns in fixed order, booleans/ints/null as JSON)."""
    return orjson.dumps({c: _value(row[c]) for c in checksum_columns(table)})


def _value(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    return str(value)


class Checksum:
    """Incremental checksum over tables fed in order, each with its rows sorted by key."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.rows = 0

    def begin(self, table: TableDef) -> None:
        self._hash.update(f"#{table.name}\n".encode())

    def add(self, table: TableDef, row: Row) -> None:
        self._hash.update(canonical(table, row))
        self._hash.update(b"\n")
        self.rows += 1

    def table(self, table: TableDef, rows: Iterable[Row]) -> None:
        self.begin(table)
        for row in rows:
            self.add(table, row)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def sorted_rows(conn: Connection, table: TableDef, physical: Table) -> Iterator[Row]:
    """Stream a table's rows in primary-key code-point order."""
    key = physical.c[table.key]
    order = key if is_sqlite(conn) else key.collate("C")
    result = conn.execute(
        select(*[physical.c[c] for c in table.column_names]).order_by(order),
        execution_options={"stream_results": True, "yield_per": 5000},
    )
    for row in result.mappings():
        yield dict(row)


def table_checksum(conn: Connection, tables: Iterable[tuple[TableDef, Table]]) -> str:
    """Checksum of a projection's stored tables."""
    digest = Checksum()
    for table, physical in tables:
        digest.table(table, sorted_rows(conn, table, physical))
    return digest.hexdigest()


def memory_checksum(tables: Iterable[tuple[TableDef, dict[str, Row]]]) -> str:
    """The same checksum over in-memory rows (key → row)."""
    digest = Checksum()
    for table, rows in tables:
        digest.table(table, (rows[k] for k in sorted(rows)))
    return digest.hexdigest()
