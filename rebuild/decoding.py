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

from sqlalchemy import Engine

from eventlog.store import LoggedEvent
from rebuild.fresh import decode_rows, read_rows

_AHEAD = 3  # batches decoded ahead of the one being applied


def parallel_batches(
    engine: Engine, after: int, head: int, batch: int, workers: int, tables: frozenset[str]
) -> Iterator[tuple[int, list[LoggedEvent]]]:
    """Like the serial reader: (upto, decoded events of ``tables``) per range, in order."""
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
        engine.connect() as conn,
    ):
        pending: deque[tuple[int, list[Future[list[LoggedEvent]]]]] = deque()
        for start in range(after, head, batch):
            upto = min(start + batch, head)
            rows = read_rows(conn, start, upto, tables)
            conn.rollback()  # end the read transaction: nothing is held between batches
            piece = max(1, len(rows) // workers)
            pending.append(
                (
                    upto,
                    [
                        pool.submit(decode_rows, rows[i : i + piece])
                        for i in range(0, len(rows), piece)
                    ],
                )
            )
            if len(pending) > _AHEAD:
                done, futures = pending.popleft()
                yield done, [e for future in futures for e in future.result()]
        while pending:
            done, futures = pending.popleft()
            yield done, [e for future in futures for e in future.result()]
