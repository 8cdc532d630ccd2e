"""Recompute the log's hash chain and its derived columns (``bo log verify``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from eventlog.decode import parse, to_change
from eventlog.errors import ChainBroken, DecodeError
from eventlog.identity import GENESIS, chain_hash, event_id
from eventlog.schema import checkpoints, events


@dataclass(frozen=True, slots=True)
class ChainReport:
    events: int
    head: int
    head_hash: str


def verify_log(engine: Engine, *, batch: int = 5000) -> ChainReport:
    """Walk the chain from position 1; raise :class:`ChainBroken` at the first bad position.

    Checks: positions are gapless; ``prev_hash`` links; ``hash`` recomputes; and the
    columns derived from the bytes (``event_id``, table, op, entity key, commit time,
    redacted paths) match what the bytes say now.
    """
    expected_pos, prev, count = 0, GENESIS, 0
    cols = [
        events.c.position,
        events.c.event_id,
        events.c.payload,
        events.c.prev_hash,
        events.c.hash,
        events.c.table_name,
        events.c.op,
        events.c.entity_key,
        events.c.group_key,
        events.c.source_ts,
        events.c.redacted_paths,
    ]
    with engine.connect() as conn:
        while True:
            rows = conn.execute(
                select(*cols)
                .where(events.c.position > expected_pos)
                .order_by(events.c.position)
                .limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                expected_pos += 1
                position = int(row.position)
                if position != expected_pos:
                    raise ChainBroken(expected_pos, f"position missing (next stored is {position})")
                if row.prev_hash != prev:
                    raise ChainBroken(position, "prev_hash does not link to the previous event")
                try:
                    _check_row(position, prev, row)
                except (TypeError, ValueError) as exc:  # a value rewritten with another type
                    raise ChainBroken(
                        position, f"a stored value has the wrong type ({exc})"
                    ) from exc
                prev = row.hash
                count += 1
        _check_tail(conn, expected_pos)
    return ChainReport(events=count, head=expected_pos, head_hash=prev)


def _check_row(position: int, prev: str, row: Any) -> None:
    """The row's hash and derived columns; a value of the wrong type (TEXT where the log
    wrote bytes, bytes where it wrote hex) raises ``TypeError``/``ValueError``."""
    payload = row.payload
    if not isinstance(payload, bytes | memoryview):
        raise TypeError(f"payload is {type(payload).__name__}, not bytes")
    payload = bytes(payload)
    if chain_hash(prev, position, row.event_id, payload) != row.hash:
        raise ChainBroken(position, "hash does not match the stored bytes")
    _check_derived(position, row, payload)


def _check_tail(conn: Connection, head: int) -> None:
    """A chain cannot show that events were cut from its end; the projections' checkpoints
    can: none may have applied a position past the head (events deleted at the tail)."""
    cp = conn.execute(
        select(checkpoints.c.projection, checkpoints.c.version, checkpoints.c.position)
        .where(checkpoints.c.position > head)
        .order_by(checkpoints.c.position.desc())
        .limit(1)
    ).first()
    if cp is not None:
        raise ChainBroken(
            head + 1,
            f"position missing: the log ends at {head}, but {cp.projection}.v{cp.version} "
            f"has applied up to {cp.position} (events cut from the end)",
        )


def _check_derived(position: int, row: Any, payload: bytes) -> None:
    try:
        parsed = parse(payload)
        if parsed is None:
            raise DecodeError("tombstone")
        change = to_change(parsed)
    except DecodeError as exc:
        raise ChainBroken(position, f"stored bytes no longer decode: {exc}") from exc
    derived = {
        "event_id": event_id(parsed, change),
        "table_name": change.table,
        "op": change.op,
        "entity_key": change.entity_key,
        "group_key": change.group_key,
        "source_ts": change.source_ts,
    }
    for column, value in derived.items():
        if getattr(row, column) != value:
            raise ChainBroken(position, f"{column} does not match the stored bytes")
    try:
        stored_paths = orjson.loads(row.redacted_paths)
    except orjson.JSONDecodeError:
        stored_paths = None
    if not isinstance(stored_paths, list) or not all(isinstance(p, str) for p in stored_paths):
        raise ChainBroken(position, "redacted_paths is not a JSON list of paths")
    if set(parsed.redacted_paths) - set(stored_paths):
        raise ChainBroken(position, "stored bytes hold an unredacted credential key")
