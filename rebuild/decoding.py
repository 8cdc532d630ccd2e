"""Decode stored events in worker processes while the main process folds and writes.

Decoding the stored bytes is most of a rebuild's CPU time; the log below the head is
immutable, so raw rows can be read ahead on their own connection and decoded in
parallel, then applied strictly in position order. Workers are spawned (never forked:
the caller may run threads).

Opt-in (``rebuild --workers N``): on the shared 2-core development machine two workers
made a 57k-event rebuild slower (4.5 s vs 2.9 s in-process: spawn start-up and the
cores are already busy with PostgreSQL); it is meant for machines with spare cores.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from sqlalchemy import Engine, select

from eventlog.decode import decode_bytes
from eventlog.schema import events
from eventlog.store import LoggedEvent

_AHEAD = 3  # batches decoded ahead of the one being applied

RawRow = tuple[int, bytes, str]


def decode_rows(rows: list[RawRow]) -> list[LoggedEvent]:
    """Decode raw event rows exactly as :func:`eventlog.store.iter_events` does."""
    return [LoggedEvent(position, decode_bytes(payload), str(at)) for position, payload, at in rows]


def _raw_batches(engine: Engine, after: int, upto: int, batch: int) -> Iterator[list[RawRow]]:
    with engine.connect() as conn:
        result = conn.execute(
            select(events.c.position, events.c.payload, events.c.ingested_at)
            .where(events.c.position > after, events.c.position <= upto)
            .order_by(events.c.position),
            execution_options={"stream_results": True, "yield_per": batch},
        )
        for chunk in result.partitions(batch):
            yield [(int(r[0]), bytes(r[1]), str(r[2])) for r in chunk]


def parallel_batches(
    engine: Engine, after: int, upto: int, batch: int, workers: int
) -> Iterator[list[LoggedEvent]]:
    """Batches of decoded events ``after < position <= upto``, in order, decoded by workers."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[list[Future[list[LoggedEvent]]]] = deque()
        piece = max(1, batch // workers)
        for rows in _raw_batches(engine, after, upto, batch):
            pending.append(
                [pool.submit(decode_rows, rows[i : i + piece]) for i in range(0, len(rows), piece)]
            )
            if len(pending) > _AHEAD:
                yield [e for future in pending.popleft() for e in future.result()]
        while pending:
            yield [e for future in pending.popleft() for e in future.result()]
