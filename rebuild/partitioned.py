"""Rebuild a per-entity projection with one process per key partition (PostgreSQL).

A projection whose fold is per entity (:attr:`projections.base.Projection.per_key`: a row
depends only on the events whose change key is its key) gives the same rows when disjoint
key partitions are folded independently. A rebuild into fresh tables then starts
``parts`` worker processes; worker *i* reads the events whose ``entity_key`` hashes to
*i* (``hashtext``, filtered by the server), decodes, folds and writes them on its own
connection — batch by batch, each batch its own transaction, exactly as the in-process
replay does (:func:`rebuild.batches.apply_events` into fresh tables, with its own
:class:`~rebuild.fresh.Written`). Only progress messages cross between processes, so
every step of every event (read, decode, fold, COPY) runs on all CPUs at once, and
nothing is decoded twice or shipped between processes.

``entity_key`` (``<table>:<key>``) is what the decoder made of the change when the event
was appended. A worker checks it against the one it decodes now and stops at the first
difference (the decoder changed since): :class:`KeyMismatch`, and the caller empties the
tables and replays in one process instead.

A projection whose public table derives from a per-key table (``pairs``: one pair row per
``related_id`` from the final legs, :attr:`~projections.base.Projection.derived_from`)
folds that table in key partitions (:meth:`~projections.base.Projection.per_key_part`),
then :func:`derive` has the server compute the public rows from it (one statement per
partition of the group column, concurrently).

A builder error is reported as a single process would report it: at the earliest failing
position. When a partition fails at position *p*, the others go on until each has failed
or passed *p*, and the smallest failing position wins.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.queues import Queue
from typing import Any

from sqlalchemy import Engine

from eventlog.db import make_engine, read_tx, write_tx
from eventlog.errors import BoError
from eventlog.gcpause import gc_paused
from eventlog.schema import LOG_SCHEMA
from eventlog.store import LoggedEvent
from projections.base import Projection
from projections.source import UndecodableEvent, decode_rows
from projections.store import tables_for
from projections.tables import qualified
from rebuild.batches import RebuildFailed, apply_events, describe
from rebuild.fresh import Written

Progress = Callable[[int, int], None]  # (position every partition has reached, head)

_READ_SQL = (
    f"SELECT position, payload, ingested_at, entity_key FROM {LOG_SCHEMA}.events "
    "WHERE position > %s AND position <= %s AND table_name = ANY(%s) "
    "AND (hashtext(entity_key) & 2147483647) %% %s = %s ORDER BY position"
)
_POLL_SECONDS = 1.0


class KeyMismatch(Exception):
    """A stored ``entity_key`` differs from the key decoded now: partitions are not safe."""


class WorkerFailed(BoError):
    """A partition worker stopped on something other than a builder error (exit code 2)."""


def partitioned_replay(
    engine: Engine,
    projection: Projection,
    head: int,
    *,
    suffix: str,
    parts: int,
    batch: int,
    progress: Progress | None = None,
) -> int:
    """Fold positions ``1..head`` into the projection's fresh tables (``suffix``) in
    ``parts`` processes; the rows added to the public table. Raises :class:`RebuildFailed`,
    :class:`KeyMismatch` or :class:`WorkerFailed`; the tables are then half-written."""
    if not projection.per_key:
        raise ValueError(f"{projection.name} is not folded per entity")
    url = engine.url.render_as_string(hide_password=False)
    args = (url, projection, suffix, parts, head, batch)
    with _processes(_work, args, parts, f"rebuild-{projection.name}") as (workers, messages):
        return _collect(projection, workers, messages, head, progress)


@contextmanager
def _processes(
    target: Callable[..., None], args: tuple[Any, ...], parts: int, name: str
) -> Iterator[tuple[list[Any], Queue[tuple[Any, ...]]]]:
    """Start ``target(*args, part, messages, parent pid)`` in ``parts`` processes; yield
    them and their message queue; terminate whatever still runs on the way out."""
    context = _context()
    messages: Queue[tuple[Any, ...]] = context.Queue()
    workers = [
        context.Process(
            target=target,
            args=(*args, part, messages, os.getpid()),
            name=f"{name}-{part}",
            daemon=True,
        )
        for part in range(parts)
    ]
    for worker in workers:
        worker.start()
    try:
        yield workers, messages
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
        messages.close()


def _collect(
    projection: Projection,
    workers: Sequence[Any],
    messages: Queue[tuple[Any, ...]],
    head: int,
    progress: Progress | None,
) -> int:
    """Wait for every worker's last message ("done" with its rows, "failed" at a position,
    "mismatch", "error"); the rows they added. Progress messages report the position a
    worker has passed."""
    parts = len(workers)
    reached = [0] * parts
    ended: set[int] = set()
    failures: dict[int, tuple[int, str]] = {}
    rows = 0
    while len(ended) < parts:
        if failures:
            first = min(position for position, _ in failures.values())
            if all(part in ended or reached[part] >= first for part in range(parts)):
                break
        try:
            kind, part, *rest = messages.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            _check_alive(workers, ended)
            continue
        if kind == "progress":
            reached[part] = rest[0]
            if progress is not None:
                progress(min(reached), head)
        elif kind == "done":
            ended.add(part)
            reached[part] = head
            rows += rest[0]
        elif kind == "failed":
            ended.add(part)
            failures[part] = (rest[0], rest[1])
        elif kind == "mismatch":
            raise KeyMismatch(rest[0])
        else:
            raise WorkerFailed(f"rebuild worker {part} of {projection.name} failed: {rest[0]}")
    if failures:
        position, error = min(failures.values())
        raise RebuildFailed(projection, position, error)
    return rows


def derive(engine: Engine, projection: Projection, *, suffix: str, parts: int) -> int:
    """Fill the public table (``suffix``) from the final ``derived_from`` table: the
    projection's :meth:`~projections.base.Projection.derive_select`, run by the server as
    one ``INSERT … SELECT`` per partition of the group column, concurrently on ``parts``
    connections; the rows written. (The rows never travel to this process: grouping and
    writing them in the server costs about half the CPU of reading them out, deriving
    in Python and copying them back.)"""
    assert projection.derived_from is not None
    name, column = projection.derived_from
    tables = tables_for(projection, suffix)
    public = tables[projection.public.name]

    def part(index: int) -> int:
        with write_tx(engine) as conn:
            where = f"(hashtext({column}) & 2147483647) % {parts} = {index}"
            select = projection.derive_select(qualified(conn, tables[name].name), where)
            columns = ", ".join(public.columns.keys())
            insert = f"INSERT INTO {qualified(conn, public.name)} ({columns}) {select}"
            driver = conn.connection.driver_connection
            with driver.cursor() as cursor:  # type: ignore[union-attr]
                cursor.execute(insert.encode())  # no parameters: % is the operator
                return int(cursor.rowcount)

    with ThreadPoolExecutor(parts, thread_name_prefix=f"rebuild-{projection.name}-derive") as pool:
        return sum(pool.map(part, range(parts)))


def _context() -> Any:
    """Fork when this process runs no other thread (no import, no pickling: about half a
    second less per rebuild); otherwise spawn — a fork copies locks other threads hold
    (a progress bar's refresh thread on a terminal, for one)."""
    forkable = "fork" in multiprocessing.get_all_start_methods()
    single = threading.active_count() == 1
    return multiprocessing.get_context("fork" if forkable and single else "spawn")


def _check_alive(workers: Sequence[Any], ended: set[int]) -> None:
    """A worker that died without its last message (killed, out of memory) fails the rebuild;
    one that exited cleanly has sent it already (the queue flushes before the process ends)."""
    for part, worker in enumerate(workers):
        if part not in ended and worker.exitcode not in (None, 0):
            raise WorkerFailed(f"rebuild worker {part} exited with code {worker.exitcode}")


def _work(
    url: str,
    projection: Projection,
    suffix: str,
    parts: int,
    head: int,
    batch: int,
    part: int,
    messages: Queue[tuple[Any, ...]],
    parent: int,
) -> None:
    """In a worker: fold partition ``part`` batch by batch, reporting after each one; stop
    when the rebuild process is gone (killed: nobody would swap these tables in)."""
    engine = make_engine(url, pool_size=1)
    try:
        tables = tables_for(projection, suffix)
        written = Written(projection)
        public = projection.public.name
        sources = sorted(projection.sources)
        rows = 0
        with gc_paused():
            for start in range(0, head, batch):
                if os.getppid() != parent:
                    return
                upto = min(start + batch, head)
                events = _read(engine, start, upto, sources, part, parts, projection.reads)
                if events:
                    changes = apply_events(engine, projection, tables, events, written)
                    rows += changes.rows_delta.get(public, 0)
                messages.put(("progress", part, upto))
        messages.put(("done", part, rows))
    except KeyMismatch as exc:
        messages.put(("mismatch", part, str(exc)))
    except RebuildFailed as exc:
        messages.put(("failed", part, exc.position, exc.error))
    except UndecodableEvent as exc:
        messages.put(("failed", part, exc.position, describe(exc)))
    except BaseException as exc:  # reported, then this process ends
        messages.put(("error", part, describe(exc)))
    finally:
        engine.dispose()


def _read(
    engine: Engine,
    after: int,
    upto: int,
    sources: list[str],
    part: int,
    parts: int,
    columns: frozenset[str] | None,
) -> list[LoggedEvent]:
    """The partition's events in ``after < position <= upto``, decoded (the ``columns`` the
    fold reads: :attr:`~projections.base.Projection.reads`) and key-checked."""
    with read_tx(engine) as conn:
        driver = conn.connection.driver_connection
        with driver.cursor(binary=True) as cursor:  # type: ignore[union-attr]
            cursor.execute(_READ_SQL, (after, upto, sources, parts, part))
            stored = cursor.fetchall()
    events = decode_rows(stored, columns)
    for event, (_, _, _, key) in zip(events, stored, strict=True):
        if event.change.entity_key != key:
            raise KeyMismatch(
                f"position {event.position}: stored entity_key {key!r}, "
                f"decoded {event.change.entity_key!r}"
            )
    return events
