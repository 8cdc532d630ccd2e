"""Reading the log for a projection: position ranges, only the tables it folds.

The log's positions are gapless and committed in order (a reader never sees N+1 before
N), so the range ``after < position <= upto`` with ``upto`` at most the head is complete.
A projection reads only the events of its source tables in that range and then records
``upto`` as its position — the ignored events are recorded without being read or
decoded, which halves the decoding (most of the cost) for each projection.
Decoding is :func:`eventlog.decode.decode_stored`: the same result as ``decode_bytes`` (what
``iter_events`` uses) without re-walking the already-redacted bytes for credentials.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, select

from eventlog.decode import decode_stored
from eventlog.schema import events
from eventlog.store import LoggedEvent

RawRow = tuple[int, bytes, str]


def read_raw(conn: Connection, after: int, upto: int, tables: Collection[str]) -> list[RawRow]:
    """Stored rows of ``tables`` with ``after < position <= upto``, in position order."""
    query = (
        select(events.c.position, events.c.payload, events.c.ingested_at)
        .where(
            events.c.position > after,
            events.c.position <= upto,
            events.c.table_name.in_(sorted(tables)),
        )
        .order_by(events.c.position)
    )
    return [(int(r[0]), bytes(r[1]), str(r[2])) for r in conn.execute(query).all()]


def decode_rows(rows: list[RawRow]) -> list[LoggedEvent]:
    return [LoggedEvent(position, decode_stored(payload), at) for position, payload, at in rows]


def read_range(
    conn: Connection, after: int, upto: int, tables: Collection[str]
) -> list[LoggedEvent]:
    """Decoded events of ``tables`` with ``after < position <= upto``."""
    return decode_rows(read_raw(conn, after, upto, tables))
