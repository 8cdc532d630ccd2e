"""Canonical rows and the projection checksum (SPEC §4.6).

SHA-256 over the rows of each table of a projection (public table first), sorted by
primary key in code-point order (``COLLATE "C"`` on PostgreSQL, SQLite's binary
collation, Python's ``str`` order — all the same for UTF-8), each row one canonical JSON
object with the columns in their fixed order. Values are already canonical text
(decimals with their source scale, timestamps RFC 3339 UTC with microseconds), ints
and booleans as JSON. ``position`` and ``data_position`` are left out: they record where
a change sat in the log, so they depend on arrival order, while the projected data must
not.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection, Table, select

from eventlog.db import is_sqlite
from eventlog.gcpause import gc_paused
from projections.tables import Row, TableDef

EXCLUDED = frozenset({"position", "data_position"})
_CHUNK = 5000


@lru_cache(maxsize=32)
def checksum_columns(table: TableDef) -> tuple[str, ...]:
    return tuple(c for c in table.column_names if c not in EXCLUDED)


def canonical(table: TableDef, row: Row) -> bytes:
    """One row as canonical JSON (columns in fixed order, booleans/ints/null as JSON)."""
    columns = checksum_columns(table)
    return _dump(columns, tuple(row[c] for c in columns))


def _dump(columns: tuple[str, ...], values: Sequence[Any]) -> bytes:
    # every stored value is text, int, bool or null; anything else would be its str()
    return orjson.dumps(_as_dict(columns)(values), default=str)


@lru_cache(maxsize=64)
def _as_dict(columns: tuple[str, ...]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """``values`` → ``{column: value}`` in ``columns`` order, as a dict display compiled once
    per column list (the technique of ``dataclasses``' generated ``__init__``): about half
    the CPU of ``dict(zip(columns, values))`` per row, which is most of a checksum's Python
    work. The names are the code's own column names, written as literals (``repr``)."""
    if not all(type(name) is str and name.isidentifier() for name in columns):
        raise ValueError(f"not column names: {columns!r}")
    body = ", ".join(f"{name!r}: v[{i}]" for i, name in enumerate(columns))
    built: Callable[[Sequence[Any]], dict[str, Any]] = eval(f"lambda v: {{{body}}}", {})  # noqa: S307
    return built


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
    """Checksum of a projection's stored tables (the same bytes as :class:`Checksum`)."""
    digest = hashlib.sha256()
    with gc_paused():  # a row and its dict per row, all freed by reference counting
        for table, physical in tables:
            digest.update(f"#{table.name}\n".encode())
            columns = checksum_columns(table)
            as_dict, dumps = _as_dict(columns), orjson.dumps
            for chunk in _chunks(conn, table, physical, columns):
                digest.update(b"".join([dumps(as_dict(row), default=str) + b"\n" for row in chunk]))
    return digest.hexdigest()


def _chunks(
    conn: Connection, table: TableDef, physical: Table, columns: tuple[str, ...]
) -> Iterator[Sequence[Sequence[Any]]]:
    """The table's rows (``columns``, in key order) in chunks; on PostgreSQL through a
    server-side cursor in binary mode (text, integers and booleans arrive as the same
    Python values as through SQLAlchemy, without its per-row overhead)."""
    key = physical.c[table.key]
    if is_sqlite(conn):
        result = conn.execute(
            select(*[physical.c[c] for c in columns]).order_by(key),
            execution_options={"stream_results": True, "yield_per": _CHUNK},
        )
        yield from result.partitions()
        return
    names = ", ".join(f'"{c}"' for c in columns)
    source = f'{physical.schema}."{physical.name}"'
    driver = conn.connection.driver_connection
    with driver.cursor(name="bo_checksum", binary=True) as cursor:  # type: ignore[union-attr]
        cursor.execute(f'SELECT {names} FROM {source} ORDER BY "{table.key}" COLLATE "C"')
        yield from _read_ahead(lambda: cursor.fetchmany(_CHUNK))


def _read_ahead(fetch: Callable[[], list[Any]]) -> Generator[list[Any], None, None]:
    """``fetch()``'s chunks until an empty one, fetched by a thread one chunk ahead.

    The server's time to produce the next chunk overlaps with the serialisation of this
    one (psycopg waits on the socket without the GIL). The thread is always joined before
    this returns or raises, so the cursor is never used by two threads at once.
    """
    ready: queue.Queue[list[Any] | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                chunk = fetch()
                _put(ready, chunk or None, stop)
                if not chunk:
                    return
        except BaseException as exc:  # handed to the consumer
            _put(ready, exc, stop)

    thread = threading.Thread(target=run, name="checksum-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _put(ready: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def memory_checksum(tables: Iterable[tuple[TableDef, dict[str, Row]]]) -> str:
    """The same checksum over in-memory rows (key → row)."""
    digest = Checksum()
    for table, rows in tables:
        digest.table(table, (rows[k] for k in sorted(rows)))
    return digest.hexdigest()
