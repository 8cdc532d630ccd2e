"""Decode stored events in worker processes while the main process folds and writes.

Decoding the stored bytes is the largest share of a rebuild's CPU time; the log below
the head is immutable, so ranges can be read and decoded ahead, in parallel, then
applied strictly in position order (the fold stays sequential in the main process, so
the result is the same). Workers are spawned (never forked: the caller may run threads).

On PostgreSQL each worker reads its ranges itself, on its own connection (binary
cursor), and sends back compact tuples rather than pickled dataclasses (unpickling a
frozen dataclass costs more than decoding it in the first place); the main process
rebuilds the :class:`~eventlog.store.LoggedEvent` objects. On SQLite the main process
reads the raw rows and ships them to the workers.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import orjson
from sqlalchemy import Engine

from eventlog.db import is_sqlite
from eventlog.decode import Change
from eventlog.store import LoggedEvent
from projections.source import READ_SQL, RawRow, decode_one, read_raw

_AHEAD = 3  # batches decoded ahead of the one being applied
# (position, ingested_at, table, op, key, row, source_ts, lsn, source_tx, snapshot)
Packed = tuple[
    int, str, str, str, str, dict[str, Any], str | None, int | None, str | None, str | None
]

_worker: dict[str, Any] = {}  # the worker process's own connection


def _start_worker(dsn: str | None) -> None:
    if dsn is not None:
        import psycopg

        _worker["conn"] = psycopg.connect(dsn, autocommit=True, connect_timeout=5)


def pack(rows: list[RawRow]) -> bytes:
    """Decode stored rows into plain tuples, serialised for the trip to the main process.

    JSON through orjson (several times cheaper than pickle both ways): every value of a
    decoded change is text, an integer, a boolean or null, which JSON carries exactly —
    except integers past 64 bits and text with lone surrogates, which orjson refuses;
    then the batch goes as a pickle.
    """
    out: list[Packed] = []
    append = out.append
    for position, payload, at in rows:
        c = decode_one(position, payload)
        append(
            (position, at, c.table, c.op, c.key, c.row, c.source_ts, c.lsn, c.source_tx, c.snapshot)
        )
    try:
        return b"j" + orjson.dumps(out)
    except orjson.JSONEncodeError:
        return b"p" + pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)


def read_and_pack(after: int, upto: int, tables: list[str]) -> bytes:
    """In a worker: read ``after < position <= upto`` of ``tables`` and decode it."""
    with _worker["conn"].cursor(binary=True) as cursor:
        cursor.execute(READ_SQL, (after, upto, tables))
        return pack(cursor.fetchall())


# Change and LoggedEvent are frozen dataclasses with slots: their slot descriptors set the
# fields directly, without the frozen ``__init__``'s per-field object.__setattr__ calls
_NEW = object.__new__
_CHANGE_SLOTS = tuple(
    Change.__dict__[f].__set__
    for f in ("table", "op", "key", "row", "source_ts", "lsn", "source_tx", "snapshot")
)
_EVENT_SLOTS = tuple(LoggedEvent.__dict__[f].__set__ for f in ("position", "change", "ingested_at"))


def unpack(blob: bytes) -> list[LoggedEvent]:
    """The events of :func:`pack`'s tuples (equal to decoding them in this process)."""
    if blob[:1] == b"j":
        packed: list[Packed] = orjson.loads(blob[1:])
    else:  # our own worker's pickle
        packed = pickle.loads(blob[1:])  # noqa: S301
    s_table, s_op, s_key, s_row, s_ts, s_lsn, s_tx, s_snap = _CHANGE_SLOTS
    s_position, s_change, s_at = _EVENT_SLOTS
    out: list[LoggedEvent] = []
    append = out.append
    for position, at, table, op, key, row, ts, lsn, tx, snap in packed:
        change = _NEW(Change)
        s_table(change, table)
        s_op(change, op)
        s_key(change, key)
        s_row(change, row)
        s_ts(change, ts)
        s_lsn(change, lsn)
        s_tx(change, tx)
        s_snap(change, snap)
        event = _NEW(LoggedEvent)
        s_position(event, position)
        s_change(event, change)
        s_at(event, at)
        append(event)
    return out


def _dsn(engine: Engine) -> str:
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def parallel_batches(
    engine: Engine, after: int, head: int, batch: int, workers: int, tables: Collection[str]
) -> Iterator[tuple[int, list[LoggedEvent]]]:
    """Like the serial reader: (upto, decoded events of ``tables``) per range, in order."""
    context = multiprocessing.get_context("spawn")
    sqlite = engine.dialect.name == "sqlite"
    names = sorted(tables)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(None if sqlite else _dsn(engine),),
    ) as pool:
        pending: deque[tuple[int, list[Future[bytes]]]] = deque()
        piece = max(1, batch // workers)
        with engine.connect() as conn:
            for start in range(after, head, batch):
                upto = min(start + batch, head)
                if is_sqlite(conn):
                    rows = read_raw(conn, start, upto, names)
                    conn.rollback()  # end the read transaction: nothing held between batches
                    futures = [
                        pool.submit(pack, rows[i : i + piece]) for i in range(0, len(rows), piece)
                    ]
                else:
                    futures = [
                        pool.submit(read_and_pack, low, min(low + piece, upto), names)
                        for low in range(start, upto, piece)
                    ]
                pending.append((upto, futures))
                if len(pending) > _AHEAD:
                    done, ready = pending.popleft()
                    yield done, [e for future in ready for e in unpack(future.result())]
        while pending:
            done, ready = pending.popleft()
            yield done, [e for future in ready for e in unpack(future.result())]
