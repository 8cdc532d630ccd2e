"""Replaying into fresh tables: read the log fast, and skip the I/O that cannot find anything.

A rebuild (and ``verify``'s and ``golden``'s scratch replays) folds the log from position 1
into tables created empty for it, and this process is their only writer. So it knows every
key each table holds — the keys it wrote — and the values of the columns the projection
looks rows up by (:attr:`projections.base.Projection.lookups`). Then:

- a batch's prefetch asks the database only for keys (and lookup values) it has written
  before — in a log whose changes to one entity are close together, a few per batch
  instead of every key of the batch;
- rows with new keys are written with a plain ``COPY`` into the table (SQLite: one
  ``INSERT``) instead of an upsert through a staging table; rows it has written before
  go through the usual upsert.

The fold and its :class:`~projections.base.Changes` are the live runner's, and the
tables end up with the same rows, so the checksum is the same: only reads that could
not find anything and conflict handling that could not conflict are skipped. The sets
are updated after each batch commits, so a failed batch leaves them true.

Reading: :func:`projections.source.read_range` (on PostgreSQL one query per range on the
raw psycopg cursor in binary mode), decoded by :func:`eventlog.decode.decode_stored`.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection

from eventlog.store import LoggedEvent
from projections.base import Changes, Projection
from projections.store import SqlReader, Tables, insert_new, write_changes
from projections.tables import Row


class Written:
    """What this process has written into a projection's fresh tables."""

    def __init__(self, projection: Projection) -> None:
        self.keys: dict[str, set[str]] = {t.name: set() for t in projection.tables}
        self.values: dict[tuple[str, str], set[object]] = {lk: set() for lk in projection.lookups}
        self.key_of = {t.name: t.key for t in projection.tables}

    def remember(self, changes: Changes) -> None:
        """Record a committed batch (deleted keys stay: the sets may hold more, never less)."""
        for name, rows in changes.upserts.items():
            key = self.key_of[name]
            self.keys[name].update([row[key] for row in rows])
            for (table, column), seen in self.values.items():
                if table == name:
                    seen.update([row[column] for row in rows])


class FreshReader:
    """:class:`projections.base.Reader` that asks the database only what it may hold."""

    def __init__(self, conn: Connection, tables: Tables, written: Written) -> None:
        self.sql = SqlReader(conn, tables)
        self.written = written

    def by_key(self, table: str, keys: Collection[str]) -> dict[str, Row]:
        wanted = self.written.keys[table].intersection(keys)
        return self.sql.by_key(table, wanted) if wanted else {}

    def by_column(self, table: str, column: str, values: Collection[str]) -> list[Row]:
        seen = self.written.values.get((table, column))
        wanted = set(values) if seen is None else seen.intersection(values)
        return self.sql.by_column(table, column, wanted) if wanted else []  # type: ignore[arg-type]


def apply_fresh(
    conn: Connection,
    projection: Projection,
    tables: Tables,
    events: list[LoggedEvent],
    written: Written,
) -> Changes:
    """:func:`projections.store.apply_batch` for fresh tables (the caller's transaction);
    call ``written.remember`` with the result once it is committed."""
    changes = projection.apply(events, FreshReader(conn, tables, written))
    new = {
        name: {row[written.key_of[name]] for row in rows} - written.keys[name]
        for name, rows in changes.upserts.items()
    }
    known = insert_new(conn, tables, changes, new)
    known.deletes = {  # others were never written
        name: [k for k in keys if k in written.keys[name]] for name, keys in changes.deletes.items()
    }
    write_changes(conn, tables, known)
    return changes
