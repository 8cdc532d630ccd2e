"""The live runner (SPEC §4.5): keep every active projection version up to the log head.

One step of one projection version, in one transaction:

1. lock its checkpoint row (PostgreSQL ``SELECT … FOR UPDATE``; SQLite holds the
   database write lock from ``BEGIN IMMEDIATE``), so concurrent runners (N API replicas,
   ``bo project``, a rebuild's swap) take turns and never apply an event twice;
2. take the next range of positions after the checkpoint (at most ``batch``, at most the
   head) and read the events of the projection's source tables in it;
3. fold them (pure) against the stored rows and write the row changes;
4. move the checkpoint to the range's end — so events the projection ignores are
   recorded too — and commit.

A builder exception rolls the batch back, replays it one event at a time to find the
failing event, commits the good ones, and marks that version ``failed`` with the error
and the failing position; the checkpoint stays before that event (never skipped).
Other versions and ingest carry on. A stale version (its checkpoint's fingerprint is not
what the code and config give now) is not advanced: it serves what it holds until rebuilt.
Database outages (``OperationalError``) are not builder errors: they propagate
(``run_once``) or are retried (``run_forever``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from eventlog.db import is_sqlite, read_tx, write_connection, write_tx
from eventlog.gcpause import gc_paused
from eventlog.metrics import FRESHNESS, VERSION_MISSING
from eventlog.settings import Settings
from eventlog.store import NOTIFY_CHANNEL, LoggedEvent, head_position
from eventlog.timeutil import epoch_seconds
from projections import registry
from projections.base import Changes, Projection
from projections.checksum import table_checksum
from projections.source import read_range
from projections.store import (
    ACTIVE,
    FAILED,
    SERVING,
    STANDBY,
    Checkpoint,
    all_checkpoints,
    apply_batch,
    count_rows,
    ensure_projections,
    get_checkpoint,
    pairs_of,
    put_checkpoint,
    serving_version,
    tables_for,
)

TRANSIENT = (OperationalError, InterfaceError)
ENTITY_SOURCES = {"ledger_entries": "ledger_entries", "payment_orders": "payment_orders"}


@dataclass(slots=True)
class Progress:
    projection: str
    version: int
    state: str
    position: int
    applied: int = 0
    last_error: str | None = None
    error_position: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "version": self.version,
            "state": self.state,
            "position": self.position,
            "applied": self.applied,
            "last_error": self.last_error,
            "error_position": self.error_position,
        }


class Runner:
    """Applies the log to every active (serving or standby) projection version.

    ``run_once()`` catches up to the head seen at its start and returns a summary;
    ``run_forever(stop)`` keeps doing so, woken by NOTIFY on PostgreSQL or by polling.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings | None,
        *,
        batch: int = 5000,
        poll_interval: float | None = None,
        checksum_limit: int = 200_000,
        checksum_every: float = 60.0,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.batch = batch
        self.poll_interval = poll_interval or (0.25 if is_sqlite(engine) else 1.0)
        self.checksum_limit = checksum_limit
        self.checksum_every = checksum_every
        self._ensured = False
        self._checksummed: dict[tuple[str, int], float] = {}
        self._warned_stale: set[tuple[str, int, str]] = set()

    # ------------------------------------------------------------ one pass

    def run_once(
        self, *, checksums: bool = True, force_checksums: bool = False, throttle: bool = False
    ) -> dict[str, Any]:
        """Catch every active version up to the current head; return a JSON-able summary.

        Afterwards the checksum of each caught-up version is stored when it is unknown and
        the table is small (``checksum_limit`` rows; any size with ``force_checksums``);
        ``throttle`` (the forever loop) recomputes one at most every ``checksum_every`` s.
        """
        if not self._ensured:
            ensure_projections(self.engine, self.settings)
            self._ensured = True
        with read_tx(self.engine) as conn:
            head = head_position(conn)
            found = all_checkpoints(conn)
        progress: list[Progress] = []
        work: list[tuple[Projection, Progress, Checkpoint]] = []
        for cp in found:
            item = Progress(cp.projection, cp.version, cp.state, cp.position)
            item.last_error, item.error_position = cp.last_error, cp.error_position
            progress.append(item)
            if cp.state in ACTIVE and cp.version in registry.VERSIONS.get(cp.projection, {}):
                work.append((registry.make(cp.projection, cp.version, self.settings), item, cp))
        self._catch_up([(p, item) for p, item, _cp in work], head)
        for projection, item, cp in work:
            unknown = cp.checksum is None or item.applied > 0
            if checksums and item.state in ACTIVE and unknown:
                self._refresh_checksum(projection, force=force_checksums, throttle=throttle)
        return {
            "head": head,
            "applied": sum(p.applied for p in progress),
            "failed": [f"{p.projection}.v{p.version}" for p in progress if p.state == FAILED],
            "projections": [p.as_dict() for p in progress],
        }

    def _catch_up(self, work: list[tuple[Projection, Progress]], head: int) -> None:
        """Advance the versions round-robin, one batch each, so they share decoded batches;
        serving versions first in each round (what the API reads is fresh soonest)."""
        careful: dict[tuple[str, int], int] = {}
        pending = [(p, item) for p, item in work if item.position < head]
        pending.sort(key=lambda w: w[1].state != SERVING)  # stable: registry order otherwise
        if not pending:
            return
        cache = _BatchCache()
        # The pass's steps are transactions of their own on one connection: one pool
        # checkout (and pre-ping) per pass, not per step — most of a small pass's cost.
        # No cyclic collection during the pass (it ends at the head it started with): its
        # decoded batches are freed by reference counting, and the collector walking them
        # cost ~3 µs per event during a catch-up.
        with gc_paused(), write_connection(self.engine) as conn:
            while pending:
                for projection, item in list(pending):
                    going = self._advance_one(conn, projection, item, head, careful, cache)
                    if not going or item.position >= head:
                        pending.remove((projection, item))
                cache.forget_before(min((item.position for _p, item in pending), default=head))

    def _advance_one(
        self,
        conn: Connection,
        projection: Projection,
        item: Progress,
        head: int,
        careful: dict[tuple[str, int], int],
        cache: _BatchCache,
    ) -> bool:
        """One batch; on a builder error replay it event by event, then fail the version.

        Returns whether the version can go on.
        """
        key = (projection.name, projection.version)
        single = item.position < careful.get(key, 0)
        size = 1 if single else self.batch
        try:
            return self._step(conn, projection, size, head, item, None if single else cache)
        except TRANSIENT:
            raise
        except Exception as exc:
            if not single:
                careful[key] = item.position + size  # replay this batch one by one
                return True
            self._fail(projection, item, exc)
            return False

    def _step(
        self,
        conn: Connection,
        projection: Projection,
        size: int,
        head: int,
        item: Progress,
        cache: _BatchCache | None,
    ) -> bool:
        """One batch of one version in one write transaction on ``conn``."""
        tables = tables_for(projection)
        with conn.begin():
            cp = get_checkpoint(conn, projection.name, projection.version, lock=True)
            if cp is None or cp.state not in ACTIVE:
                item.state = cp.state if cp else item.state
                return False
            if cp.fingerprint != projection.fingerprint():
                self._frozen(projection, cp.fingerprint)
                item.position = cp.position
                return False
            upto = min(cp.position + size, head)  # the pass's head: the log below is immutable
            if upto <= cp.position:
                item.position = cp.position
                return False
            if cache is None:
                events = read_range(conn, cp.position, upto, projection.sources)
            else:
                events = cache.get(conn, cp.position, upto, projection.sources)
            changes = apply_batch(conn, projection, tables, events) if events else Changes()
            public = projection.public.name
            put_checkpoint(
                conn,
                projection.name,
                projection.version,
                position=upto,  # ignored events are recorded too
                rows=cp.rows + changes.rows_delta.get(public, 0),
                checksum=None if events else cp.checksum,
            )
        item.applied += upto - cp.position
        item.position = upto
        item.state = cp.state
        if cp.state == SERVING:
            _observe(projection, events, changes)
        return True

    def _frozen(self, projection: Projection, stored: str) -> None:
        """A stale version (built under other code or config: SPEC §4.5) keeps serving what
        it holds but is not advanced: rows folded under two configurations (a status map
        changed midway, say) could not be reproduced by any replay of the log. Said once per
        version and fingerprint; ``rebuild --projection P`` brings it back."""
        key = (projection.name, projection.version, stored)
        if key in self._warned_stale:
            return
        self._warned_stale.add(key)
        logger.warning(
            "projection {}.v{} is stale (built as {}, the code and config now give {}): "
            "serving as built and not advanced until `rebuild --projection {}`",
            projection.name,
            projection.version,
            stored,
            projection.fingerprint(),
            projection.name,
        )

    def _fail(self, projection: Projection, item: Progress, exc: Exception) -> None:
        detail = str(exc).strip().splitlines()
        message = f"{type(exc).__name__}: {detail[0] if detail else ''}"
        with write_tx(self.engine) as conn:
            cp = get_checkpoint(conn, projection.name, projection.version, lock=True)
            position = (cp.position if cp else item.position) + 1
            put_checkpoint(
                conn,
                projection.name,
                projection.version,
                state=FAILED,
                last_error=message[:2000],
                error_position=position,
            )
        item.state, item.last_error, item.error_position = FAILED, message[:2000], position
        logger.error(
            "projection {}.v{} failed at position {}: {}",
            projection.name,
            projection.version,
            position,
            message,
        )

    def _refresh_checksum(self, projection: Projection, *, force: bool, throttle: bool) -> None:
        """Store the checksum of a caught-up version (small tables, or when forced).

        The rows are read in one snapshot without blocking writers; the checksum is stored
        only if the version has not moved since (otherwise the next idle pass does it).
        """
        key = (projection.name, projection.version)
        now = time.monotonic()
        if throttle and now - self._checksummed.get(key, -1e9) < self.checksum_every:
            return
        self._checksummed[key] = now
        with read_tx(self.engine) as conn:
            cp = get_checkpoint(conn, projection.name, projection.version)
            if cp is None or cp.state not in ACTIVE or cp.checksum is not None:
                return
            if not force and cp.rows > self.checksum_limit:
                return
            tables = tables_for(projection)
            digest = table_checksum(conn, pairs_of(projection, tables))
            rows = count_rows(conn, tables[projection.public.name])
        with write_tx(self.engine) as conn:
            now_cp = get_checkpoint(conn, projection.name, projection.version, lock=True)
            if now_cp is None or now_cp.position != cp.position or now_cp.checksum is not None:
                return
            put_checkpoint(conn, projection.name, projection.version, checksum=digest, rows=rows)

    # ------------------------------------------------------------ recovery

    def retry_failed(self) -> list[str]:
        """Put failed versions back to work (serving if their view serves them, else standby)."""
        retried: list[str] = []
        with write_tx(self.engine) as conn:
            for cp in all_checkpoints(conn):
                if cp.state != FAILED:
                    continue
                state = SERVING if serving_version(conn, cp.projection) == cp.version else STANDBY
                put_checkpoint(
                    conn,
                    cp.projection,
                    cp.version,
                    state=state,
                    last_error=None,
                    error_position=None,
                )
                retried.append(f"{cp.projection}.v{cp.version}")
        return retried

    # ------------------------------------------------------------ forever

    def run_forever(self, stop: threading.Event) -> None:
        """Follow the log until ``stop`` is set (used in-process by ``bo serve``)."""
        listener = None if is_sqlite(self.engine) else _Listener(self.engine)
        backoff = self.poll_interval
        quiet = True  # no commit woke the last wait (polling: every wait is quiet)
        try:
            while not stop.is_set():
                try:
                    summary = self.run_once(checksums=False)
                    # Checksums only when idle: a full-table read must not delay fresh
                    # events, and one that a commit overtakes is not stored anyway.
                    if not summary["applied"] and quiet:
                        self.run_once(throttle=True)
                except TRANSIENT as exc:
                    logger.warning("projection runner: database unavailable: {}", exc.orig)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = self.poll_interval
                if summary["applied"] and listener is None:
                    continue  # polling: look again at once, more may have come meanwhile
                # With LISTEN no second look is needed: a commit after this pass's head
                # read has queued a notification, so the wait returns at once for it.
                if listener is not None:
                    quiet = not listener.wait(self.poll_interval, stop)
                else:
                    stop.wait(self.poll_interval)
        finally:
            if listener is not None:
                listener.close()


class _BatchCache:
    """Decoded batches by start position, shared by the versions of one catch-up pass.

    Safe because the log below the head is immutable: the same range always reads the
    same events. Decoding is most of a batch's cost.
    """

    LIMIT = 4  # batches kept: versions in lockstep need one; a lagging one must not hoard

    def __init__(self) -> None:
        self._batches: dict[tuple[int, int, frozenset[str]], list[LoggedEvent]] = {}

    def get(
        self, conn: Connection, after: int, upto: int, tables: frozenset[str]
    ) -> list[LoggedEvent]:
        key = (after, upto, tables)
        found = self._batches.get(key)
        if found is None:
            found = read_range(conn, after, upto, tables)
            if len(self._batches) < self.LIMIT:
                self._batches[key] = found
        return found

    def forget_before(self, position: int) -> None:
        for key in [k for k in self._batches if k[0] < position]:
            del self._batches[key]


def _observe(projection: Projection, events: Sequence[LoggedEvent], changes: Changes) -> None:
    """Metrics for a serving version: freshness (the one wall-clock read) and key-less changes."""
    source = ENTITY_SOURCES.get(projection.name)
    if source is None:
        return
    if changes.version_missing:
        VERSION_MISSING.inc(changes.version_missing)
    now = time.time()
    # snapshot (op r / backfill) events carry old commit times: not a freshness sample
    changes_ = (event.change for event in events)
    FRESHNESS.observe_many(
        max(0.0, now - epoch_seconds(change.source_ts))
        for change in changes_
        if change.table == source and change.source_ts is not None and change.op != "r"
    )


class _Listener:
    """LISTEN on the log's NOTIFY channel; any failure falls back to polling."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        url = self.engine.url.set(drivername="postgresql")
        conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Return on a notification (True), on ``stop`` or after ``timeout`` seconds.

        The notifications already queued behind the first are consumed too: the pass
        that follows reads the head after them, so it covers their commits (one pass,
        not one per queued commit).
        """
        deadline = time.monotonic() + timeout
        try:
            if self._conn is None:
                self._conn = self._connect()
                return True  # commits before LISTEN started sent no notification here
            while not stop.is_set() and time.monotonic() < deadline:
                slice_ = min(0.5, max(0.0, deadline - time.monotonic()))
                if any(True for _ in self._conn.notifies(timeout=slice_, stop_after=1)):
                    for _ in self._conn.notifies(timeout=0):
                        pass
                    return True
        except Exception as exc:  # any listener trouble: poll instead, reconnect next time
            logger.debug("projection runner: LISTEN unavailable ({}), polling", exc)
            self.close()
            stop.wait(timeout)
        return False

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception as exc:  # closing a broken connection
                logger.debug("closing listener: {}", exc)
            self._conn = None
