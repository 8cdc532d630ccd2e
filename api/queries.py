"""Read queries for the API: the serving views, checkpoints, freshness and metric inputs.

The projections own the physical tables (``bo.<table>_v<N>``); the API reads only the
stable views ``bo.ledger_entries``, ``bo.payment_orders`` and ``bo.payment_ledger_pairs``
(columns per docs/contracts.md), typed from the projections' table definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)

from eventlog.schema import checkpoints, consumer_heartbeats, dead_letters, events
from eventlog.timeutil import parse_ts
from projections.ledger_entries import LEDGER_ENTRIES
from projections.pairs import PAIRS
from projections.payment_orders import PAYMENT_ORDERS
from projections.tables import view_table

# The stable views, typed from the projections' own table definitions (one source of columns).
ledger_entries = view_table(LEDGER_ENTRIES)
payment_orders = view_table(PAYMENT_ORDERS)
payment_ledger_pairs = view_table(PAIRS)

Row = dict[str, Any]
PAIR_TYPES = (None, "PAYMENT_ORDER")


def _one(conn: Connection, table: Table, key: str, value: str) -> Row | None:
    row = conn.execute(select(table).where(table.c[key] == value)).first()
    return None if row is None else row._asdict()


def tx_row(conn: Connection, tx_id: str) -> Row | None:
    return _one(conn, ledger_entries, "tx_id", tx_id)


def order_row(conn: Connection, order_id: str) -> Row | None:
    return _one(conn, payment_orders, "order_id", order_id)


def pair_row(conn: Connection, order_id: str) -> Row | None:
    return _one(conn, payment_ledger_pairs, "payment_order_id", order_id)


def order_legs(conn: Connection, order_id: str) -> list[Row]:
    """Ledger entries that point at the order (``related_type`` null or PAYMENT_ORDER)."""
    le = ledger_entries
    rows = conn.execute(
        select(le).where(
            le.c.related_id == order_id,
            or_(le.c.related_type.is_(None), le.c.related_type == "PAYMENT_ORDER"),
        )
    ).all()
    return [r._asdict() for r in rows]


def known_orders(conn: Connection, order_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(order_ids))
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found.update(
            conn.execute(
                select(payment_orders.c.order_id).where(payment_orders.c.order_id.in_(chunk))
            ).scalars()
        )
    return found


@dataclass(frozen=True, slots=True)
class WalletQuery:
    wallet_id: str
    limit: int
    since: str | None = None  # created_at >= since
    until: str | None = None  # created_at < until
    include_deleted: bool = False
    after: tuple[str | None, str] | None = None  # keyset: (created_at, tx_id) of the last item


def wallet_entries(conn: Connection, q: WalletQuery) -> tuple[list[Row], bool]:
    """Entries newest first by (created_at, tx_id), entries without created_at last.

    Returns up to ``q.limit`` rows and whether more exist.
    """
    le = ledger_entries
    base = [le.c.wallet_id == q.wallet_id]
    if not q.include_deleted:
        base.append(or_(le.c.deleted.is_(None), le.c.deleted.is_(False)))
    if q.since is not None:
        base.append(le.c.created_at >= q.since)
    if q.until is not None:
        base.append(le.c.created_at < q.until)
    want = q.limit + 1
    rows: list[Row] = []
    in_null_phase = q.after is not None and q.after[0] is None
    if not in_null_phase:
        dated = [*base, le.c.created_at.is_not(None)]
        if q.after is not None:
            dated.append(tuple_(le.c.created_at, le.c.tx_id) < tuple_(q.after[0], q.after[1]))
        query = (
            select(le)
            .where(and_(*dated))
            .order_by(le.c.created_at.desc(), le.c.tx_id.desc())
            .limit(want)
        )
        rows = [r._asdict() for r in conn.execute(query).all()]
    if len(rows) < want and q.since is None and q.until is None:
        undated = [*base, le.c.created_at.is_(None)]
        if in_null_phase and q.after is not None:
            undated.append(le.c.tx_id < q.after[1])
        query = select(le).where(and_(*undated)).order_by(le.c.tx_id.desc()).limit(want - len(rows))
        rows += [r._asdict() for r in conn.execute(query).all()]
    return rows[: q.limit], len(rows) > q.limit


# ---------------------------------------------------------------- checkpoints and freshness


def checkpoint_rows(conn: Connection) -> list[Row]:
    rows = conn.execute(
        select(checkpoints).order_by(checkpoints.c.projection, checkpoints.c.version)
    ).all()
    return [r._asdict() for r in rows]


def serving_checkpoints(rows: Sequence[Row]) -> list[Row]:
    """Per projection, the version the API reads.

    The ``serving`` row when there is one; else, when the serving version has failed,
    its ``failed`` row (a failed rebuild beside a healthy serving version is not it).
    """
    chosen: list[Row] = []
    for name in sorted({r["projection"] for r in rows}):
        mine = [r for r in rows if r["projection"] == name]
        serving = [r for r in mine if r["state"] == "serving"]
        failed = [r for r in mine if r["state"] == "failed"]
        chosen += serving or failed
    return chosen


def log_head(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one())


@dataclass(frozen=True, slots=True)
class Freshness:
    data_lag_sec: float
    synced_through: str | None
    log_position: int
    projection_lag_sec: float
    consumer_lag_sec: float | None


def with_freshness(detail: Row, fresh: Freshness, *, as_of: str | None = None) -> Row:
    """A lookup's answer with its freshness fields (``as_of``: a point-in-time read)."""
    detail.update(
        data_lag_sec=fresh.data_lag_sec,
        synced_through=fresh.synced_through,
        log_position=fresh.log_position,
        as_of=as_of,
    )
    return detail


LIVE_CONSUMER_SECONDS = 15.0


def serving_position() -> Any:
    """SQL for the lowest position among the serving projections (0 when none).

    Per projection, its ``serving`` checkpoint; a ``failed`` one counts only when the
    projection has no ``serving`` row (i.e. the serving version itself failed), so a failed
    rebuild beside a healthy serving version does not hold the answer back.
    """
    c = checkpoints
    other = checkpoints.alias("other")
    serving_exists = (
        select(other.c.projection)
        .where(other.c.projection == c.c.projection, other.c.state == "serving")
        .exists()
    )
    chosen = or_(c.c.state == "serving", and_(c.c.state == "failed", ~serving_exists))
    return select(func.coalesce(func.min(c.c.position), 0)).where(chosen).scalar_subquery()


def freshness_columns(position: Any) -> list[Any]:
    """``fresh_position``, ``fresh_synced`` (source_ts at it), ``fresh_pending`` (ingested_at
    of the next event: the oldest not yet applied) as labelled scalar subqueries."""
    at = select(events.c.source_ts).where(events.c.position == position).scalar_subquery()
    pending = (
        select(events.c.ingested_at).where(events.c.position == position + 1).scalar_subquery()
    )
    return [
        position.label("fresh_position"),
        at.label("fresh_synced"),
        pending.label("fresh_pending"),
    ]


def freshness_from(
    conn: Connection,
    now: datetime,
    row: Any,
    *,
    kafka_group: str | None,
    pinned: bool = False,
) -> Freshness:
    """Finish :func:`freshness` from a row carrying the ``fresh_*`` columns."""
    synced = None if row.fresh_synced is None else str(row.fresh_synced)
    consumer_lag = consumer_lag_seconds(conn, now, kafka_group, synced) if kafka_group else None
    return freshness_with(now, row, consumer_lag, pinned=pinned)


def freshness_with(
    now: datetime, row: Any, consumer_lag: float | None, *, pinned: bool = False
) -> Freshness:
    """:func:`freshness_from` with the consumer lag already known (``None``: no Kafka)."""
    position = int(row.fresh_position or 0)
    pending = None if pinned else row.fresh_pending  # a replay has applied all up to it
    projection_lag = _age(now, pending) if pending else 0.0
    lag = max(projection_lag, consumer_lag or 0.0)
    synced = None if row.fresh_synced is None else str(row.fresh_synced)
    return Freshness(round(lag, 3), synced, position, projection_lag, consumer_lag)


def freshness(
    conn: Connection, now: datetime, *, kafka_group: str | None, position: int | None = None
) -> Freshness:
    """``data_lag_sec`` and ``synced_through`` as SPEC §6 and docs/contracts.md define them.

    Projection lag: ``now - ingested_at`` of the first event a serving projection has not
    applied (0 when caught up). Consumer lag (only when ``kafka_group`` is given, i.e.
    ``BO_KAFKA_BOOTSTRAP`` is set): ``now - min(caught_up_at)`` over live members, or
    ``now -`` the newest heartbeat ever seen when no member is live. The answer is the
    larger of the two. ``position`` pins the position the answer reflects (as_of): the
    replay has applied everything up to it, so only the consumer's lag remains.
    """
    pinned = position is not None
    at = serving_position() if position is None else literal(position)
    row = conn.execute(select(*freshness_columns(at))).one()
    return freshness_from(conn, now, row, kafka_group=kafka_group, pinned=pinned)


@dataclass(frozen=True, slots=True)
class TxBundle:
    tx: Row | None
    order: Row | None
    pair: Row | None
    fresh: Any


def tx_bundle(conn: Connection, tx_id: str) -> TxBundle:
    """The entry, its order and pair, and the freshness inputs — in one statement.

    One statement is one consistent snapshot on both backends, and one round trip: on a
    busy machine every round trip to PostgreSQL waits for the scheduler.
    """
    row = conn.execute(_tx_bundle_statement(), {"tx_id": tx_id}).one()
    data = row._asdict()

    def part(prefix: str, key: str) -> Row | None:
        if data[f"{prefix}__{key}"] is None:
            return None
        return {k[len(prefix) + 2 :]: v for k, v in data.items() if k.startswith(prefix + "__")}

    return TxBundle(
        part("le", "tx_id"), part("po", "order_id"), part("pr", "payment_order_id"), row
    )


@lru_cache(maxsize=1)
def _tx_bundle_statement() -> Any:
    """Built once: constructing a 50-column select costs more than running it."""
    # short aliases keep the text under psycopg's 4 KB limit for caching a query's parse
    le, po, pr = (
        ledger_entries.alias("le"),
        payment_orders.alias("po"),
        payment_ledger_pairs.alias("pr"),
    )
    anchor = select(literal(1).label("one")).subquery("anchor")
    points = and_(
        le.c.related_id.is_not(None),
        or_(le.c.related_type.is_(None), le.c.related_type == "PAYMENT_ORDER"),
    )
    joined = (
        anchor.outerjoin(le, le.c.tx_id == bindparam("tx_id"))
        .outerjoin(po, and_(points, po.c.order_id == le.c.related_id))
        .outerjoin(pr, and_(points, pr.c.payment_order_id == le.c.related_id))
    )
    columns = [
        *freshness_columns(serving_position()),
        *[c.label(f"le__{c.name}") for c in le.c],
        *[c.label(f"po__{c.name}") for c in po.c],
        *[c.label(f"pr__{c.name}") for c in pr.c],
    ]
    return select(*columns).select_from(joined)


def consumer_lag_seconds(
    conn: Connection, now: datetime, group: str, synced: str | None = None
) -> float:
    """How long the consumer group may have been behind the broker (``synced``: see
    :func:`consumer_lag_from`)."""
    rows = conn.execute(
        select(consumer_heartbeats.c.heartbeat_at, consumer_heartbeats.c.caught_up_at).where(
            consumer_heartbeats.c.group_id == group
        )
    ).all()
    return consumer_lag_from(now, [(r[0], r[1]) for r in rows], synced)


def partition_lags(conn: Connection, now: datetime, group: str) -> dict[tuple[str, int], int]:
    """Records behind per (topic, partition), as the group's live members last reported them
    in their heartbeats (the newest report of a partition wins: after a rebalance the old
    owner's row may still name it). A member silent for ``LIVE_CONSUMER_SECONDS`` reports
    nothing: its numbers no longer say how far behind the group is."""
    from eventlog.kafka import parse_assigned  # kafka-python only where a group is configured

    rows = conn.execute(
        select(consumer_heartbeats.c.heartbeat_at, consumer_heartbeats.c.assigned)
        .where(consumer_heartbeats.c.group_id == group)
        .order_by(consumer_heartbeats.c.heartbeat_at)
    ).all()
    lags: dict[tuple[str, int], int] = {}
    for beat_at, assigned in rows:
        if _age(now, beat_at) <= LIVE_CONSUMER_SECONDS:
            lags.update(parse_assigned(str(assigned or "")))
    return lags


def consumer_lag_from(
    now: datetime, rows: Sequence[tuple[Any, Any]], synced: str | None = None
) -> float:
    """:func:`consumer_lag_seconds` from the group's ``(heartbeat_at, caught_up_at)`` rows.

    A live member that has not caught up yet is behind since the group last was; when the
    group never was (a new group on a backlog), since the newest change the answer holds —
    ``synced``, the source commit time at the serving position (0 when nothing is applied:
    nothing to be stale)."""
    if not rows:
        return 0.0  # no consumer ever ran: only the projections' lag is known
    ever_caught = max((str(r[1]) for r in rows if r[1]), default=None)
    live = [r for r in rows if _age(now, r[0]) <= LIVE_CONSUMER_SECONDS]
    if not live:
        newest = max(max(str(r[0]), str(r[1] or r[0])) for r in rows)
        return _age(now, newest)
    behind_since = ever_caught if ever_caught is not None else synced
    caught = [str(r[1]) if r[1] else behind_since for r in live]
    known = [c for c in caught if c is not None]
    return _age(now, min(known)) if known else 0.0


def _age(now: datetime, stamp: Any) -> float:
    if not stamp:
        return 0.0
    return max(0.0, (now - parse_ts(str(stamp))).total_seconds())


def position_at(conn: Connection, as_of: str) -> tuple[int, str | None]:
    """The newest position with ``ingested_at <= as_of`` and that event's ingest time."""
    row = conn.execute(
        select(events.c.position, events.c.ingested_at)
        .where(events.c.ingested_at <= as_of)
        .order_by(events.c.ingested_at.desc(), events.c.position.desc())
        .limit(1)
    ).first()
    return (0, None) if row is None else (int(row[0]), str(row[1]))


def ingested_at(conn: Connection, position: int) -> str | None:
    value = conn.execute(
        select(events.c.ingested_at).where(events.c.position == position)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def history_rows(
    conn: Connection,
    *,
    entity_keys: Iterable[str] = (),
    group_keys: Iterable[str] = (),
    upto: int,
    ingested_upto: str | None = None,
) -> list[Row]:
    """Stored events of some entities and groups, up to a position (and, for ``as_of``, an
    ingest time: ``ingested_at`` is taken before the log's lock, so it is not strictly
    monotonic in position), in log order."""
    entity_keys, group_keys = sorted(set(entity_keys)), sorted(set(group_keys))
    clauses = []
    if entity_keys:
        clauses.append(events.c.entity_key.in_(entity_keys))
    if group_keys:
        clauses.append(events.c.group_key.in_(group_keys))
    if not clauses:
        return []
    rows = conn.execute(
        select(
            events.c.position,
            events.c.entity_key,
            events.c.payload,
            events.c.ingested_at,
        )
        .where(or_(*clauses), events.c.position <= upto)
        .where(events.c.ingested_at <= ingested_upto if ingested_upto else true())
        .order_by(events.c.position)
    ).all()
    return [r._asdict() for r in rows]


# ---------------------------------------------------------------- metric inputs


@dataclass(frozen=True, slots=True)
class PairStats:
    total: int
    complete: int
    incomplete: int
    oldest_incomplete: str | None


def pair_stats(conn: Connection) -> PairStats:
    p = payment_ledger_pairs
    counts: dict[str, int] = {
        str(status): int(n)
        for status, n in conn.execute(
            select(p.c.pairing_status, func.count()).group_by(p.c.pairing_status)
        ).all()
    }
    oldest = conn.execute(
        select(func.min(p.c.first_seen_at)).where(p.c.pairing_status == "INCOMPLETE")
    ).scalar_one_or_none()
    return PairStats(
        total=int(sum(counts.values())),
        complete=int(counts.get("COMPLETE", 0)),
        incomplete=int(counts.get("INCOMPLETE", 0)),
        oldest_incomplete=None if oldest is None else str(oldest),
    )


def dead_letter_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(dead_letters)).scalar_one())
