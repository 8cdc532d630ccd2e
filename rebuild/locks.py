"""One rebuild per projection at a time: a row in ``bo.projection_locks``.

The owner is ``host:pid:token``. A lock whose owner process is gone from this host is
taken over (a crashed rebuild must not block the next one forever); a lock held by a
live process, or by another host, refuses the second rebuild.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
from loguru import logger
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from eventlog.db import write_tx
from eventlog.errors import BoError
from eventlog.schema import projection_locks
from eventlog.timeutil import now_text


class RebuildRefused(BoError):
    """Another rebuild of the same projection holds its lock (exit code 2)."""


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_gone(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid != os.getpid() and not psutil.pid_exists(pid)


@contextmanager
def projection_lock(engine: Engine, projection: str) -> Iterator[str]:
    """Hold the rebuild lock of ``projection`` for the ``with`` block."""
    me = owner_id()
    try:
        with write_tx(engine) as conn:
            row = conn.execute(
                select(projection_locks).where(projection_locks.c.projection == projection)
            ).first()
            if row is None:
                conn.execute(
                    insert(projection_locks).values(
                        projection=projection, owner=me, acquired_at=now_text()
                    )
                )
            elif _owner_gone(row.owner):
                logger.warning(
                    "taking over the stale rebuild lock of {} from {}", projection, row.owner
                )
                conn.execute(
                    update(projection_locks)
                    .where(projection_locks.c.projection == projection)
                    .values(owner=me, acquired_at=now_text())
                )
            else:
                raise RebuildRefused(
                    f"a rebuild of {projection} is already running "
                    f"(owner {row.owner} since {row.acquired_at})"
                )
    except IntegrityError as exc:  # a concurrent rebuild inserted first
        raise RebuildRefused(f"a rebuild of {projection} is already running") from exc
    try:
        yield me
    finally:
        with write_tx(engine) as conn:
            conn.execute(
                delete(projection_locks).where(
                    projection_locks.c.projection == projection, projection_locks.c.owner == me
                )
            )
