"""Reading the log for a projection: position ranges, only the tables it folds.

The log's positions are gapless and committed in order (a reader never sees N+1 before
N), so the range ``after < position <= upto`` with ``upto`` at most the head is complete.
A projection reads only the events of its source tables in that range and then records
``upto`` as its position — the ignored events are recorded without being read or
decoded, which halves the decoding (most of the cost) for each projection.
Decoding is :func:`eventlog.decode.decode_stored`: the same result as ``decode_bytes`` (what
``iter_events`` uses) without re-walking the already-redacted bytes for credentials.

Reading on PostgreSQL is one query per range on the raw psycopg cursor in binary mode:
``bytea`` arrives as bytes, without the server's hex encoding and the client's decoding,
nor SQLAlchemy's per-row processing (~1 against ~3.5 µs of client CPU per event).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, select

from eventlog.db import is_sqlite
from eventlog.decode import Change, decode_stored
from eventlog.errors import DecodeError
from eventlog.schema import LOG_SCHEMA, events
from eventlog.store import LoggedEvent

RawRow = tuple[int, bytes, str]

READ_SQL = (
    f"SELECT position, payload, ingested_at FROM {LOG_SCHEMA}.events "
    "WHERE position > %s AND position <= %s AND table_name = ANY(%s) ORDER BY position"
)


def read_raw(conn: Connection, after: int, upto: int, tables: Collection[str]) -> list[RawRow]:
    """Stored rows of ``tables`` with ``after < position <= upto``, in position order."""
    if not is_sqlite(conn):
        cursor = conn.connection.driver_connection.cursor(binary=True)  # type: ignore[union-attr]
        with cursor:
            cursor.execute(READ_SQL, (after, upto, sorted(tables)))
            return cursor.fetchall()  # type: ignore[no-any-return]
    query = _range_query(tuple(sorted(tables)))
    rows = conn.execute(query, {"after": after, "upto": upto}).all()
    return [(int(r[0]), bytes(r[1]), str(r[2])) for r in rows]


@lru_cache(maxsize=64)
def _range_query(tables: tuple[str, ...]) -> Any:
    """Built once per table set: the live runner runs it for every small batch."""
    return (
        select(events.c.position, events.c.payload, events.c.ingested_at)
        .where(
            events.c.position > bindparam("after"),
            events.c.position <= bindparam("upto"),
            events.c.table_name.in_(tables),
        )
        .order_by(events.c.position)
    )


class UndecodableEvent(Exception):
    """A stored event the current decoder refuses — the log was written by an earlier, more
    permissive one — pinned to its position (a builder error there: the projection fails
    at that event, never skips it)."""

    def __init__(self, position: int, error: str) -> None:
        super().__init__(position, error)  # picklable: a rebuild worker sends it back
        self.position = position
        self.error = error

    def __str__(self) -> str:
        return f"the stored event at position {self.position} does not decode: {self.error}"


def decode_one(position: int, payload: bytes, columns: frozenset[str] | None = None) -> Change:
    """:func:`eventlog.decode.decode_stored`, its failure pinned to ``position``."""
    try:
        return decode_stored(payload, columns)
    except DecodeError as exc:
        raise UndecodableEvent(position, str(exc)) from exc


def decode_rows(
    rows: Iterable[Sequence[Any]], columns: frozenset[str] | None = None
) -> list[LoggedEvent]:
    """Events of stored rows whose first three values are position, payload, ingested_at
    (``columns``: see :func:`eventlog.decode.decode_stored`); :class:`UndecodableEvent`
    for one the decoder refuses."""
    out: list[LoggedEvent] = []
    append = out.append
    for position, payload, at, *_ in rows:
        # LoggedEvent(...) through its slot descriptors: the frozen dataclass's __init__
        # costs a microsecond more per event on this hot path
        event = _new(LoggedEvent)
        _set_position(event, position)
        _set_change(event, decode_one(position, payload, columns))
        _set_at(event, at)
        append(event)
    return out


_new = object.__new__
_set_position, _set_change, _set_at = (
    LoggedEvent.__dict__[name].__set__ for name in ("position", "change", "ingested_at")
)


def read_range(
    conn: Connection, after: int, upto: int, tables: Collection[str]
) -> list[LoggedEvent]:
    """Decoded events of ``tables`` with ``after < position <= upto``."""
    return decode_rows(read_raw(conn, after, upto, tables))
