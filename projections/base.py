"""What every projection version is: tables, a prefetch through a reader, and a pure fold.

A batch is applied in three steps, the first and last being I/O and the middle pure:

1. ``prefetch(events, reader)`` loads the current rows the batch can touch (by key, or
   by a column such as ``related_id``) into a :data:`State`;
2. ``fold(state, events)`` returns the new state of those rows (``None`` = row gone) —
   no database, no wall clock, no ``ingested_at``;
3. :func:`changes` turns the before/after states into upserts and deletes, which the
   SQL writer (:mod:`projections.store`) or the in-memory store (:mod:`projections.memory`)
   applies together with the checkpoint.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson

from eventlog.store import LoggedEvent
from projections.tables import Row, TableDef

State = dict[str, dict[str, Row | None]]  # table name → key → row (None: absent / deleted)


class Reader(Protocol):
    """Where ``prefetch`` reads current rows from (SQL tables or memory)."""

    def by_key(self, table: str, keys: Collection[str]) -> dict[str, Row]: ...

    def by_column(self, table: str, column: str, values: Collection[str]) -> list[Row]: ...


@dataclass(slots=True)
class Changes:
    """Row changes of one batch, per logical table."""

    upserts: dict[str, list[Row]] = field(default_factory=dict)
    deletes: dict[str, list[str]] = field(default_factory=dict)
    rows_delta: dict[str, int] = field(default_factory=dict)
    version_missing: int = 0

    @property
    def empty(self) -> bool:
        return not any(self.upserts.values()) and not any(self.deletes.values())


class Projection(ABC):
    """One version of one projection. Instances carry their config (e.g. a status map)."""

    name: ClassVar[str]
    version: ClassVar[int]
    tables: ClassVar[tuple[TableDef, ...]]  # the public table first
    sources: ClassVar[frozenset[str]]  # the log tables it folds (others are skipped unread)
    # bump when the fold's output changes for the same config (2: key-only deletes; 3: the
    # data's own order key, data_lsn/data_position — both 2026-11-30)
    revision: ClassVar[int] = 3
    # (table, column) pairs ``prefetch`` reads through ``Reader.by_column``: a rebuild into
    # fresh tables remembers which values those columns hold, to skip lookups that cannot
    # find anything (one that is not declared is always looked up: correct, only slower)
    lookups: ClassVar[tuple[tuple[str, str], ...]] = ()
    # True when the fold is per entity: every row depends only on the events whose change
    # key is its key (last-writer-wins over one source table). A rebuild may then fold
    # disjoint key partitions in parallel processes (:mod:`rebuild.partitioned`).
    per_key: ClassVar[bool] = False
    # The source columns the fold reads (None: any). A rebuild's key-partition workers
    # decode only these (and each table's key and group column); the live runner decodes
    # every column once for all the projections that share a source.
    reads: ClassVar[frozenset[str] | None] = None
    # (table, column) when the public table derives from the rows of a per-key table grouped
    # by ``column``: at most one public row per group, ``derive_select`` (pairs from legs)
    derived_from: ClassVar[tuple[str, str] | None] = None

    def config(self) -> dict[str, Any]:
        """The configuration the fold depends on (hashed into the fingerprint)."""
        return {}

    @property
    def public(self) -> TableDef:
        return self.tables[0]

    def fingerprint(self) -> str:
        """``<name>.v<N>.<hash of revision + config>``: changes when a rebuild is needed."""
        blob = orjson.dumps(
            {"revision": self.revision, "config": self.config()}, option=orjson.OPT_SORT_KEYS
        )
        return f"{self.name}.v{self.version}.{hashlib.sha256(blob).hexdigest()[:16]}"

    def per_key_part(self) -> Projection | None:
        """What a rebuild may fold in key partitions: the projection itself when it is
        ``per_key``; for one with ``derived_from``, the projection of that table alone."""
        return self if self.per_key else None

    def derive_select(self, source: str, where: str) -> str:
        """PostgreSQL: a ``SELECT`` of the public table's columns, in table order, giving the
        public row of every group of the ``derived_from`` table ``source`` (a qualified
        name) among its rows matching the SQL condition ``where`` — what the fold leaves in
        the public table once those rows are final."""
        raise NotImplementedError(f"{self.name} derives no table")

    def table(self, name: str) -> TableDef:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    @abstractmethod
    def prefetch(self, events: Sequence[LoggedEvent], reader: Reader) -> State:
        """Load the rows this batch can touch."""

    @abstractmethod
    def fold(self, state: State, events: Sequence[LoggedEvent]) -> tuple[State, int]:
        """Pure: the new state of the prefetched rows, and how many changes lacked an order key."""

    def apply(self, events: Sequence[LoggedEvent], reader: Reader) -> Changes:
        """Prefetch, fold, and diff one batch."""
        before = self.prefetch(events, reader)
        after, missing = self.fold({t: dict(rows) for t, rows in before.items()}, events)
        result = changes(before, after)
        result.version_missing = missing
        return result


def changes(before: State, after: State) -> Changes:
    """Upserts for rows that are new or differ, deletes for rows that are gone."""
    out = Changes()
    for table, rows in after.items():
        old = before.get(table, {})
        upserts: list[Row] = []
        deletes: list[str] = []
        delta = 0
        for key, row in rows.items():
            previous = old.get(key)
            if row is None:
                if previous is not None:
                    deletes.append(key)
                    delta -= 1
            elif row != previous:
                upserts.append(row)
                delta += previous is None
        out.upserts[table] = upserts
        out.deletes[table] = deletes
        out.rows_delta[table] = delta
    return out
