"""Projection tables: one column list per logical table, a physical table per version.

A logical table (``ledger_entries``) is stored as ``bo.ledger_entries_v<N>`` for each
built version N; a rebuild writes into ``bo.<table>_v<N>__new`` and renames it at the
swap. Public tables also have a stable view ``bo.<table>`` over the serving version.
These are created by :mod:`projections.store`, not by Alembic, because versions live
in code. On SQLite the ``bo`` schema is flattened by the engine's schema_translate_map.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

from eventlog.db import is_sqlite
from eventlog.schema import BO_SCHEMA

Kind = Literal["text", "bigint", "int", "bool"]
Row = dict[str, Any]

_TYPES: dict[Kind, Any] = {
    "text": Text,
    "bigint": BigInteger,
    "int": Integer,
    "bool": Boolean,
}


@dataclass(frozen=True, slots=True)
class TableDef:
    """A logical projection table: columns in their fixed (checksum) order, key, indexes."""

    name: str
    key: str
    columns: tuple[tuple[str, Kind], ...]
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    public: bool = True  # has a stable view ``bo.<name>``

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def physical(self, version: int, suffix: str = "") -> str:
        return f"{self.name}_v{version}{suffix}"


# Text columns of projection tables compare byte-wise on PostgreSQL (``COLLATE "C"``), as
# SQLite's default BINARY collation does: keys and ids are opaque, times are canonical
# ISO-8601 text, so code-point order is the meaningful one — the checksum's order, and the
# same on both backends whatever the database's locale. It is also the cheapest: every
# key insert, index build and sort compares with memcmp instead of the locale's strcoll.
_PHYSICAL_TYPES: dict[Kind, Any] = {
    **_TYPES,
    "text": Text(collation="C").with_variant(Text(), "sqlite"),
}


def physical_table(table: TableDef, version: int, suffix: str = "") -> Table:
    """The SQLAlchemy table for one version (``suffix`` ``__new`` while a rebuild runs)."""
    return _physical(table, version, suffix)


@lru_cache(maxsize=256)
def _physical(table: TableDef, version: int, suffix: str) -> Table:
    name = table.physical(version, suffix)
    columns = [
        Column(col, _PHYSICAL_TYPES[kind], nullable=col != table.key) for col, kind in table.columns
    ]
    physical = Table(
        name,
        MetaData(),
        *columns,
        PrimaryKeyConstraint(table.key, name=f"pk_{name}"),
        schema=BO_SCHEMA,
    )
    for label, cols in table.indexes:  # named after the physical table, renamed with it
        Index(index_name(name, label), *[physical.c[c] for c in cols])
    return physical


def index_name(physical_name: str, label: str) -> str:
    return f"ix_{physical_name}_{label}"


@lru_cache(maxsize=16)
def view_table(table: TableDef) -> Table:
    """The stable view ``bo.<name>`` as a table object, for typed reads (api/ uses these)."""
    return Table(
        table.name,
        MetaData(),
        *[Column(col, _TYPES[kind], primary_key=col == table.key) for col, kind in table.columns],
        schema=BO_SCHEMA,
    )


def qualified(conn: Connection, name: str) -> str:
    """``bo.<name>`` on PostgreSQL, ``<name>`` on SQLite (which has no schemas)."""
    return name if is_sqlite(conn) else f"{BO_SCHEMA}.{name}"
