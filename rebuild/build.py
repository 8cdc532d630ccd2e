"""Build a projection version from position 1 into fresh tables and swap it in atomically.

Protocol of ``build`` (under the projection's rebuild lock):

1. create empty ``<table>_v<N>__new`` tables (key only: loading is faster without
   secondary indexes) and a ``building`` checkpoint if the version has none;
2. replay the log in large batches, each its own transaction (the live runner and the
   API carry on against the serving version meanwhile) — on PostgreSQL, for a large log,
   in key partitions by parallel processes (:mod:`rebuild.partitioned`); a replay in this
   process first adds the internal tables' indexes its lookups read;
3. create the secondary indexes, then catch up the tail that arrived meanwhile;
4. in ONE transaction: lock the projection's checkpoint rows, apply the last events,
   compute the checksum, drop the view, drop the old tables of version N, rename the
   new ones, recreate the view, write the checkpoint. Readers see the old version or
   the new one, never a half-built table; the live runner resumes from the new
   checkpoint.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from loguru import logger
from sqlalchemy import Connection, Engine, select

from eventlog.db import is_sqlite, read_tx, write_tx
from eventlog.errors import UsageError
from eventlog.gcpause import gc_paused
from eventlog.schema import checkpoints
from eventlog.settings import Settings
from eventlog.store import LoggedEvent, head_position
from projections import registry
from projections.base import Projection
from projections.checksum import table_checksum
from projections.runner import TRANSIENT
from projections.source import UndecodableEvent, read_range
from projections.store import (
    ACTIVE,
    BUILDING,
    FAILED,
    NEW,
    RETIRED,
    SERVING,
    STANDBY,
    Tables,
    apply_batch,
    create_indexes,
    create_tables,
    drop_tables,
    drop_view,
    get_checkpoint,
    pairs_of,
    point_views,
    put_checkpoint,
    rename_new,
    serving_version,
    setup_lock,
    suffix_of,
    tables_exist,
    tables_for,
)
from rebuild.batches import RebuildFailed, apply_events, describe
from rebuild.decoding import parallel_batches
from rebuild.fresh import Written
from rebuild.locks import projection_lock
from rebuild.partitioned import KeyMismatch, derive, partitioned_replay

BATCH = 20_000
AUTO_WORKERS_FROM = 200_000  # positions to replay from which ``workers=None`` uses workers
Progress = Callable[[int, int], None]  # (position, head)


@dataclass(frozen=True, slots=True)
class BuildResult:
    projection: str
    version: int
    rows: int
    position: int
    checksum: str
    seconds: float
    events_per_sec: float
    state: str
    serving: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "version": self.version,
            "rows": self.rows,
            "position": self.position,
            "checksum": self.checksum,
            "seconds": self.seconds,
            "events_per_sec": self.events_per_sec,
            "state": self.state,
            "serving": self.serving,
        }


def lock_projection(conn: Connection, name: str) -> None:
    """Serialise with first-start setup and the live runner: the setup lock, then every
    checkpoint row of ``name`` (PostgreSQL; SQLite's write transaction already does it)."""
    setup_lock(conn)
    if not is_sqlite(conn):
        conn.execute(
            select(checkpoints.c.version).where(checkpoints.c.projection == name).with_for_update()
        )


def replay(
    engine: Engine,
    projection: Projection,
    tables: Tables,
    *,
    after: int = 0,
    upto: int | None = None,
    batch: int = BATCH,
    progress: Progress | None = None,
    workers: int | None = 0,
    fresh: bool = False,
) -> tuple[int, int]:
    """Apply events ``after < position <= upto`` (default: the head) in batches.

    Each batch is its own transaction. With ``workers`` > 0 the events are decoded in
    that many processes (:mod:`rebuild.decoding`); ``None`` chooses (:func:`auto_workers`).
    ``fresh``: the tables were created
    empty for this replay and nothing else writes them (:mod:`rebuild.fresh`).
    Returns (last position, rows added to the public table).
    """
    if fresh and after != 0:
        raise ValueError("a replay into fresh tables starts at position 0")
    with read_tx(engine) as conn:
        head = head_position(conn) if upto is None else upto
    position, rows = after, 0
    public = projection.public.name
    written = Written(projection) if fresh else None
    keyed = projection.per_key_part() if fresh and engine.dialect.name != "sqlite" else None
    if workers is None:
        workers = auto_workers(engine, head - after, partitioned=keyed is not None)
    if keyed is not None and workers > 0:
        try:
            suffix = suffix_of(projection, tables)
            rows = partitioned_replay(
                engine, keyed, head, suffix=suffix, parts=workers, batch=batch, progress=progress
            )
            if keyed is not projection:  # the public table derives from the keyed one
                rows = derive(engine, projection, suffix=suffix, parts=workers)
            return head, rows
        except KeyMismatch as exc:
            logger.warning("rebuild {}: {}; replaying in one process", projection.name, exc)
            _empty(engine, tables)
            workers = auto_workers(engine, head - after)
    if fresh:  # the fold looks rows up through the internal tables' indexes
        with write_tx(engine) as conn:
            create_indexes(conn, projection, suffix_of(projection, tables), public=False)
    if workers > 0:
        ranges = parallel_batches(engine, after, head, batch, workers, projection.sources)
    else:
        ranges = _serial_batches(engine, after, head, batch, projection.sources)
    with gc_paused(), _pinned(projection):
        for upto, events in ranges:
            if events:
                changes = apply_events(engine, projection, tables, events, written)
                rows += changes.rows_delta.get(public, 0)
            position = upto
            if progress is not None:
                progress(position, head)
    return position, rows


@contextmanager
def _pinned(projection: Projection) -> Iterator[None]:
    """A stored event the decoder refuses fails the rebuild at its position (exit 1)."""
    try:
        yield
    except UndecodableEvent as exc:
        raise RebuildFailed(projection, exc.position, describe(exc)) from exc


def auto_workers(engine: Engine, positions: int, *, partitioned: bool = False) -> int:
    """Worker processes for a replay of ``positions`` events: none for a small one (the
    spawn start-up would cost more than it saves) or on SQLite. ``partitioned`` (key
    partitions, :mod:`rebuild.partitioned`): one per CPU, at most four (the server needs
    CPU too). Otherwise decoding processes: one per spare CPU, at most two (two keep the
    main process — the fold and the writes — busy)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if positions < AUTO_WORKERS_FROM or engine.dialect.name == "sqlite" or not cpus:
        return 0
    if partitioned:
        return min(cpus, 4)
    return max(0, min(cpus - 1, 2))


def _empty(engine: Engine, tables: Tables) -> None:
    """Delete every row of fresh tables (a partitioned replay that had to stop)."""
    with write_tx(engine) as conn:
        for physical in tables.values():
            conn.execute(physical.delete())


def _serial_batches(
    engine: Engine, after: int, head: int, batch: int, tables: frozenset[str]
) -> Iterator[tuple[int, list[LoggedEvent]]]:
    """(upto, events of ``tables`` in the range) for consecutive ranges of ``batch`` positions."""
    for start in range(after, head, batch):
        upto = min(start + batch, head)
        with read_tx(engine) as conn:
            yield upto, read_range(conn, start, upto, tables)


def _tail(conn: Connection, projection: Projection, tables: Tables, after: int) -> tuple[int, int]:
    """Apply everything after ``after`` inside the caller's transaction."""
    position, rows = after, 0
    head = head_position(conn)
    for start in range(after, head, BATCH):
        position = min(start + BATCH, head)
        with _pinned(projection):
            events = read_range(conn, start, position, projection.sources)
        if not events:
            continue
        try:
            changes = apply_batch(conn, projection, tables, events)
        except TRANSIENT:
            raise
        except Exception as exc:  # the batch starting there (the transaction is lost)
            raise RebuildFailed(projection, events[0].position, exc) from exc
        rows += changes.rows_delta.get(projection.public.name, 0)
    return position, rows


def build(
    engine: Engine,
    settings: Settings | None,
    name: str,
    version: int | None = None,
    *,
    promote: bool = True,
    batch: int = BATCH,
    progress: Progress | None = None,
    workers: int | None = None,
) -> BuildResult:
    """Rebuild ``name`` version ``version`` (default newest) from position 1 and swap it in."""
    projection = registry.make(name, version, settings)
    started = time.monotonic()
    with projection_lock(engine, name):
        new = _prepare(engine, projection)
        try:
            position, rows = replay(
                engine,
                projection,
                new,
                batch=batch,
                progress=progress,
                workers=workers,
                fresh=True,
            )
            early = EarlyChecksum(engine, projection, new, position)
            try:
                with write_tx(engine) as conn:
                    create_indexes(conn, projection, NEW)
                position, more = replay(engine, projection, new, after=position, batch=batch)
                rows += more
                state, serving, rows, position, checksum = _swap(
                    engine, projection, new, position, rows, promote=promote, early=early
                )
            finally:
                early.join()
        except BaseException as exc:
            _abandon(engine, projection, exc)
            raise
    seconds = time.monotonic() - started
    return BuildResult(
        projection=name,
        version=projection.version,
        rows=rows,
        position=position,
        checksum=checksum,
        seconds=round(seconds, 3),
        events_per_sec=round(position / seconds, 1) if seconds > 0 else 0.0,
        state=state,
        serving=serving,
    )


class EarlyChecksum:
    """The new tables' checksum, computed in a thread while the indexes are built.

    Started once the replay's last batch has committed (at ``position``), on its own
    read transaction. Reading the rows and building the indexes are both mostly the
    server's work, and the thread's Python work runs while the main thread waits on
    ``CREATE INDEX``. The swap uses it only if nothing was applied since (its position is
    still ``position``), so it is the checksum of exactly the tables that are swapped in;
    otherwise (or if the thread failed) the swap computes it itself, as before.
    PostgreSQL only (SQLite has no useful concurrency here).
    """

    def __init__(self, engine: Engine, projection: Projection, tables: Tables, position: int):
        self.position = position
        self.checksum: str | None = None
        self._thread: threading.Thread | None = None
        if engine.dialect.name == "sqlite":
            return
        pairs = pairs_of(projection, tables)

        def run() -> None:
            try:
                with read_tx(engine) as conn:
                    self.checksum = table_checksum(conn, pairs)
            except Exception:  # the swap computes it instead
                self.checksum = None

        self._thread = threading.Thread(target=run, name="rebuild-checksum", daemon=True)
        self._thread.start()

    def result(self, position: int) -> str | None:
        """The checksum if the tables are still those of ``self.position``, else None."""
        self.join()
        return self.checksum if position == self.position else None

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def _prepare(engine: Engine, projection: Projection) -> Tables:
    with write_tx(engine) as conn:
        setup_lock(conn)
        drop_tables(conn, projection, NEW)  # leftovers of a crashed rebuild
        new = create_tables(conn, projection, NEW, indexes=False)
        cp = get_checkpoint(conn, projection.name, projection.version)
        if cp is None or cp.state in (RETIRED, BUILDING):
            put_checkpoint(
                conn,
                projection.name,
                projection.version,
                position=0,
                rows=0,
                fingerprint=projection.fingerprint(),
                state=BUILDING,
                checksum=None,
                last_error=None,
                error_position=None,
            )
    return new


def _abandon(engine: Engine, projection: Projection, exc: BaseException) -> None:
    """Drop the half-built tables; a version that only existed as this build is ``failed``."""
    with write_tx(engine) as conn:
        drop_tables(conn, projection, NEW)
        cp = get_checkpoint(conn, projection.name, projection.version, lock=True)
        if cp is not None and cp.state == BUILDING:
            failed = isinstance(exc, RebuildFailed)
            put_checkpoint(
                conn,
                projection.name,
                projection.version,
                state=FAILED if failed else RETIRED,
                last_error=exc.error if isinstance(exc, RebuildFailed) else None,
                error_position=exc.position if isinstance(exc, RebuildFailed) else None,
            )


def _swap(
    engine: Engine,
    projection: Projection,
    new: Tables,
    position: int,
    rows: int,
    *,
    promote: bool,
    early: EarlyChecksum | None = None,
) -> tuple[str, bool, int, int, str]:
    name, version = projection.name, projection.version
    with write_tx(engine) as conn:
        lock_projection(conn, name)
        position, more = _tail(conn, projection, new, position)
        rows += more
        found = early.result(position) if early is not None else None
        checksum = found or table_checksum(conn, pairs_of(projection, new))
        current = serving_version(conn, name)
        serve = promote or current == version
        if serve:
            for table in projection.tables:
                if table.public:
                    drop_view(conn, table)
        drop_tables(conn, projection)
        rename_new(conn, projection)
        if serve:
            point_views(conn, projection)
            if current is not None and current != version:
                _demote(conn, name, current)
        state = SERVING if serve else STANDBY
        put_checkpoint(
            conn,
            name,
            version,
            position=position,
            rows=rows,
            fingerprint=projection.fingerprint(),
            state=state,
            checksum=checksum,
            last_error=None,
            error_position=None,
        )
    return state, serve, rows, position, checksum


def _demote(conn: Connection, name: str, version: int) -> None:
    cp = get_checkpoint(conn, name, version)
    if cp is not None and cp.state == SERVING:
        put_checkpoint(conn, name, version, state=STANDBY)


def promote(engine: Engine, settings: Settings | None, name: str, version: int) -> dict[str, Any]:
    """Make ``version`` serve: catch it up to the head and repoint the views, atomically."""
    projection = registry.make(name, version, settings)
    with write_tx(engine) as conn:
        lock_projection(conn, name)
        cp = get_checkpoint(conn, name, version)
        if cp is None or cp.state not in ACTIVE or not tables_exist(conn, projection):
            state = cp.state if cp else "not built"
            raise UsageError(
                f"{name} version {version} is {state}: build it first "
                f"(rebuild --projection {name} --version {version})"
            )
        current = serving_version(conn, name)
        tables = tables_for(projection)
        position, more = _tail(conn, projection, tables, cp.position)
        point_views(conn, projection)
        if current is not None and current != version:
            _demote(conn, name, current)
        put_checkpoint(
            conn,
            name,
            version,
            position=position,
            rows=cp.rows + more,
            state=SERVING,
            checksum=cp.checksum if position == cp.position else None,
        )
    return {"projection": name, "version": version, "previous": current, "position": position}


def drop(engine: Engine, settings: Settings | None, name: str, version: int) -> dict[str, Any]:
    """Retire a non-serving version: drop its tables, mark it ``retired``."""
    projection = registry.make(name, version, settings)
    with write_tx(engine) as conn:
        lock_projection(conn, name)
        if serving_version(conn, name) == version:
            raise UsageError(
                f"{name} version {version} is serving: promote another version before dropping it"
            )
        cp = get_checkpoint(conn, name, version)
        if cp is None and not tables_exist(conn, projection):
            raise UsageError(f"{name} version {version} was never built")
        if cp is not None and cp.state == BUILDING:
            raise UsageError(f"{name} version {version} is being built")
        drop_tables(conn, projection)
        if cp is not None:
            put_checkpoint(conn, name, version, state=RETIRED, rows=0, checksum=None)
    return {"projection": name, "version": version, "state": RETIRED}
