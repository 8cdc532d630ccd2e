"""``pairs`` → table ``payment_ledger_pairs``: one row per ``related_id`` (SPEC §4.4).

The projection keeps its own last-writer-wins state of every ledger leg (internal
table ``pair_legs``) and recomputes the pair row of each ``related_id`` a batch touches
(the old and the new one when a leg moves).

Times (SPEC §4.4: ``first_seen_at`` the commit time of the first leg's event,
``completed_at`` that of the event that completed the pair), independent of arrival
order: each leg remembers ``candidate_since`` — per side and ``related_id``
(``PAYMENT:O1``), the earliest commit time of its events (winning or not) whose row made
it a candidate leg on that side of that order. A minimum is the same in any arrival
order. ``first_seen_at`` is the earliest of them over the pair's candidate legs (either
side); ``completed_at`` (only when COMPLETE) the later of its two legs' times on the side
each is on now — the first moment both were the pair's legs as they are — or the later
delete of a leg that was a candidate of the order when deleted (a conflict resolved).
(A leg that stopped being a candidate and became one again counts from its first time;
an event without a commit time counts for nothing.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from eventlog.store import LoggedEvent
from projections.base import Projection, Reader, State
from projections.lww import (
    data_columns,
    data_origin,
    effective_version,
    key_only,
    merge,
    prefetch_entities,
)
from projections.tables import Row, TableDef

SOURCE = "ledger_entries"
LEG_TYPES = ("PAYMENT", "RECEIVE")
CANDIDATE_RELATED_TYPES = (None, "PAYMENT_ORDER")
COMPLETE, INCOMPLETE, CONFLICT = "COMPLETE", "INCOMPLETE", "CONFLICT"

PAIRS = TableDef(
    name="payment_ledger_pairs",
    key="payment_order_id",
    columns=(
        ("payment_order_id", "text"),
        ("payment_tx_id", "text"),
        ("receive_tx_id", "text"),
        ("payer_wallet_id", "text"),
        ("receiver_wallet_id", "text"),
        ("pairing_status", "text"),
        ("leg_count", "int"),
        ("first_seen_at", "text"),
        ("completed_at", "text"),
    ),
    indexes=(("status", ("pairing_status", "first_seen_at")),),
)

PAIR_LEGS = TableDef(
    name="pair_legs",
    key="tx_id",
    columns=(
        ("tx_id", "text"),
        ("wallet_id", "text"),
        ("type", "text"),
        ("related_id", "text"),
        ("related_type", "text"),
        ("updated_at", "text"),
        ("version", "bigint"),
        ("deleted", "bool"),
        ("deleted_at", "text"),
        ("key_only_delete", "bool"),  # deleted by a delete whose before held only the key
        ("source_ts", "text"),
        ("lsn", "bigint"),
        ("position", "bigint"),
        ("data_lsn", "bigint"),  # where the data came from (see projections.lww)
        ("data_position", "bigint"),
        ("candidate_since", "text"),  # JSON: "SIDE:related_id" → earliest time as its leg
    ),
    indexes=(("related", ("related_id",)),),
    public=False,
)

_LEG_COLUMNS = PAIR_LEGS.column_names
_LEG_DATA = ("wallet_id", "type", "related_id", "related_type")


def build_leg(
    event: LoggedEvent, current: Row | None, version: int | None, updated_at: str | None
) -> Row:
    change = event.change
    deleted = change.op == "d"
    source = data_columns(event, current, _LEG_DATA) if deleted else None
    get = (change.row if source is None else source).get
    origin = data_origin(event, current)
    return {  # columns in table order
        "tx_id": change.key,
        "wallet_id": get("wallet_id"),
        "type": get("type"),
        "related_id": get("related_id"),
        "related_type": get("related_type"),
        # provenance()
        "updated_at": updated_at,
        "version": version,
        "deleted": deleted,
        "deleted_at": change.source_ts if deleted else None,
        "key_only_delete": key_only(event),
        "source_ts": change.source_ts,
        "lsn": change.lsn,
        "position": event.position,
        "data_lsn": origin[0],
        "data_position": origin[1],
        "candidate_since": current["candidate_since"] if current is not None else None,
    }


def _earlier(a: str | None, b: str | None) -> str | None:
    """The earlier of two times, ignoring a missing one."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b < a else a


def _later(a: str | None, b: str | None) -> str | None:
    """The later of two times, ignoring a missing one."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b > a else a


def is_candidate(leg: Row) -> bool:
    """Live, paired by ``related_id``, of a payment-order relation, and a PAYMENT/RECEIVE leg."""
    return (
        not leg["deleted"]
        and leg["related_id"] is not None
        and leg["related_type"] in CANDIDATE_RELATED_TYPES
        and leg["type"] in LEG_TYPES
    )


def candidate_for(row: Mapping[str, Any]) -> str | None:
    """The ``related_id`` a leg's row image makes it a candidate leg of (``None``: none)."""
    related = row.get("related_id")
    if (
        related
        and row.get("related_type") in CANDIDATE_RELATED_TYPES
        and row.get("type") in LEG_TYPES
    ):
        return str(related)
    return None


def side_key(side: str, related_id: str) -> str:
    """The ``candidate_since`` key of a leg on ``side`` (PAYMENT/RECEIVE) of ``related_id``."""
    return f"{side}:{related_id}"


def since_with(since: str | None, key: str, ts: str | None) -> str | None:
    """``candidate_since`` with ``ts`` for ``key`` (:func:`side_key`) when it is earlier
    (canonical JSON: keys sorted, so equal maps are equal text)."""
    if ts is None:
        return since
    found: dict[str, str] = orjson.loads(since) if since else {}
    known = found.get(key)
    if known is not None and known <= ts:
        return since
    found[key] = ts
    return orjson.dumps(found, option=orjson.OPT_SORT_KEYS).decode()


def since_of(leg: Row, related_id: str, side: str | None = None) -> str | None:
    """The earliest commit time at which ``leg`` was a candidate leg on ``side`` of
    ``related_id`` (``None``: on either side)."""
    since = leg["candidate_since"]
    if not since:
        return None
    found: dict[str, str] = orjson.loads(since)
    sides = LEG_TYPES if side is None else (side,)
    return min((t for t in (found.get(side_key(x, related_id)) for x in sides) if t), default=None)


def pair_row(related_id: str, legs: Iterable[Row]) -> Row | None:
    """The pair row from every leg currently pointing at ``related_id`` (``None``: no candidate).

    Independent of the order of ``legs``: a side is filled only when it has exactly one leg.
    """
    payments: list[Row] = []
    receives: list[Row] = []
    first: str | None = None
    departed: str | None = None  # the last delete of a leg that was a candidate then
    for leg in legs:
        if not is_candidate(leg):
            side = leg["type"]
            if (
                leg["deleted"]
                and candidate_for(leg) == related_id  # its row at the delete: a leg of it
                and since_of(leg, related_id, side) is not None
            ):
                departed = _later(departed, leg["deleted_at"])
            continue
        (payments if leg["type"] == "PAYMENT" else receives).append(leg)
        first = _earlier(first, since_of(leg, related_id))
    count = len(payments) + len(receives)
    if not count:
        return None
    pay = payments[0] if len(payments) == 1 else None
    rec = receives[0] if len(receives) == 1 else None
    completed = None
    if pay is not None and rec is not None:
        status = COMPLETE
        # completed by the later leg joining, or by the delete of a leg that conflicted
        joined = _later(since_of(pay, related_id, "PAYMENT"), since_of(rec, related_id, "RECEIVE"))
        completed = _later(joined, departed)
    elif len(payments) > 1 or len(receives) > 1:
        status = CONFLICT
    else:
        status = INCOMPLETE
    return {
        "payment_order_id": related_id,
        "payment_tx_id": pay["tx_id"] if pay else None,
        "receive_tx_id": rec["tx_id"] if rec else None,
        "payer_wallet_id": pay["wallet_id"] if pay else None,
        "receiver_wallet_id": rec["wallet_id"] if rec else None,
        "pairing_status": status,
        "leg_count": count,
        "first_seen_at": first,
        "completed_at": completed,
    }


class PairsV1(Projection):
    """Payment ↔ receive pairing per payment order."""

    name = "pairs"
    version = 1
    # 3 (2026-11-30): the pair's times from candidate_since (was: any leg event);
    # 4 (2026-11-30): completed_at counts the delete of a conflicting leg;
    # 5 (2026-11-30): legs carry their data's own order key (data_lsn/data_position);
    # 6 (2026-11-30): candidacy per side; only the delete of a current leg completes
    revision = 6
    tables = (PAIRS, PAIR_LEGS)
    sources = frozenset({SOURCE})
    lookups = ((PAIR_LEGS.name, "related_id"),)

    def prefetch(self, events: Sequence[LoggedEvent], reader: Reader) -> State:
        keys = {e.change.key for e in events if e.change.table == SOURCE}
        if not keys:
            return {PAIRS.name: {}, PAIR_LEGS.name: {}}
        legs: dict[str, Row | None] = dict.fromkeys(keys)
        legs.update(reader.by_key(PAIR_LEGS.name, keys))
        related = {e.change.row.get("related_id") for e in events if e.change.table == SOURCE} | {
            leg["related_id"] for leg in legs.values() if leg is not None
        }
        related.discard(None)
        names = {str(r) for r in related}
        if names:
            for leg in reader.by_column(PAIR_LEGS.name, "related_id", names):
                legs[leg["tx_id"]] = leg
        found = reader.by_key(PAIRS.name, names) if names else {}
        return {PAIRS.name: {r: found.get(r) for r in names}, PAIR_LEGS.name: legs}

    def fold(self, state: State, events: Sequence[LoggedEvent]) -> tuple[State, int]:
        legs = state[PAIR_LEGS.name]
        touched = fold_legs(legs, events)
        by_related: dict[str, list[Row]] = {r: [] for r in touched}
        for leg in legs.values():
            if leg is not None and leg["related_id"] in by_related:
                by_related[leg["related_id"]].append(leg)
        pairs = state[PAIRS.name]
        for related_id, group in by_related.items():
            pairs[related_id] = pair_row(related_id, group)
        return state, 0  # counted once, by ledger_entries

    # A rebuild folds the legs in key partitions (each leg depends only on its own events),
    # then derives every pair row from the final legs: the fold above recomputes the pair
    # of every related_id a changed leg leaves or joins, so each stored pair row is
    # pair_row(related_id, the legs that point at it now), and a related_id that no leg
    # points at any more has none — the same as deriving them all at the end.
    derived_from = (PAIR_LEGS.name, "related_id")

    def per_key_part(self) -> Projection:
        return PairLegsV1()

    def derive_select(self, source: str, where: str) -> str:
        return _DERIVE_SELECT.format(source=source, where=where)


# pair_row over every related_id at once, run by the server (a rebuild's derive step; the
# equality with pair_row is property-tested). Line by line: cand is is_candidate, the WHERE
# the fold's "a leg with a related_id" (an empty one is never touched, so has no pair);
# a side is filled only when it has exactly one leg, whose values min() then returns
# as they are, NULL included; first_seen_at is _earlier over the candidates' since_of
# (min() skips NULL; ->> of a missing key is NULL); completed_at is _later of the two
# sides and of the last delete of a leg that had been a candidate (GREATEST skips NULL);
# a related_id with no candidate leg has no pair. Text is compared in code-point order
# (COLLATE "C"), as Python compares str.
_DERIVE_SELECT = """
SELECT related_id,
       CASE WHEN payments = 1 THEN pay_tx END,
       CASE WHEN receives = 1 THEN rec_tx END,
       CASE WHEN payments = 1 THEN pay_wallet END,
       CASE WHEN receives = 1 THEN rec_wallet END,
       CASE WHEN payments = 1 AND receives = 1 THEN 'COMPLETE'
            WHEN payments > 1 OR receives > 1 THEN 'CONFLICT'
            ELSE 'INCOMPLETE' END,
       payments + receives,
       first_seen,
       CASE WHEN payments = 1 AND receives = 1 THEN GREATEST(pay_first, rec_first, departed) END
FROM (
    SELECT related_id,
           count(*) FILTER (WHERE cand AND type = 'PAYMENT') AS payments,
           count(*) FILTER (WHERE cand AND type = 'RECEIVE') AS receives,
           min(tx_id COLLATE "C") FILTER (WHERE cand AND type = 'PAYMENT') AS pay_tx,
           min(tx_id COLLATE "C") FILTER (WHERE cand AND type = 'RECEIVE') AS rec_tx,
           min(wallet_id COLLATE "C") FILTER (WHERE cand AND type = 'PAYMENT') AS pay_wallet,
           min(wallet_id COLLATE "C") FILTER (WHERE cand AND type = 'RECEIVE') AS rec_wallet,
           min(since COLLATE "C") FILTER (WHERE cand AND type = 'PAYMENT') AS pay_first,
           min(since COLLATE "C") FILTER (WHERE cand AND type = 'RECEIVE') AS rec_first,
           min(either COLLATE "C") FILTER (WHERE cand) AS first_seen,
           max(deleted_at COLLATE "C") FILTER (WHERE deleted AND leg AND since IS NOT NULL)
               AS departed
    FROM (
        SELECT *, deleted IS NOT TRUE AND leg AS cand
        FROM (
            SELECT *,
                   cs ->> (type || ':' || related_id) AS since,
                   LEAST((cs ->> ('PAYMENT:' || related_id)) COLLATE "C",
                         (cs ->> ('RECEIVE:' || related_id)) COLLATE "C") AS either,
                   (related_type IS NULL OR related_type = 'PAYMENT_ORDER')
                       AND type IN ('PAYMENT', 'RECEIVE') AS leg
            FROM (SELECT *, CAST(candidate_since AS jsonb) AS cs FROM {source}) AS j
        ) AS k
    ) AS l
    WHERE related_id <> ''
      AND ({where})
    GROUP BY related_id
) AS grouped
WHERE payments + receives > 0
"""


def fold_legs(legs: dict[str, Row | None], events: Sequence[LoggedEvent]) -> set[str]:
    """Apply every leg change to ``legs`` in place; the related_ids whose pair may change."""
    touched: set[str] = set()
    for event in events:
        change = event.change
        if change.table != SOURCE:
            continue
        key = change.key
        current = legs.get(key)
        # the order (and side) this event's own row made the leg a candidate of, at its
        # commit time
        related = None if change.op == "d" else candidate_for(change.row)
        if related is not None:
            related = side_key(str(change.row["type"]), related)
        if current is None:  # merge() with nothing to beat: the change's own leg
            new = build_leg(event, None, *effective_version(event, None))
            if related is not None:
                new["candidate_since"] = since_with(None, related, change.source_ts)
            legs[key] = new
            if new["related_id"]:
                touched.add(new["related_id"])
            continue
        built = merge(event, current, build_leg)
        if built is not None:  # a row of its own: complete it in place
            new = built
            if related is not None:
                new["candidate_since"] = since_with(
                    new["candidate_since"], related, change.source_ts
                )
        else:
            assert current is not None  # merge always wins over an absent row
            new = current
            if related is not None:
                since = since_with(new["candidate_since"], related, change.source_ts)
                if since != new["candidate_since"]:  # current is shared with the before state
                    new = {**new, "candidate_since": since}
        legs[key] = new
        if current is not None and current["related_id"]:
            touched.add(current["related_id"])
        if new["related_id"]:
            touched.add(new["related_id"])
    return touched


class PairLegsV1(Projection):
    """The ``pair_legs`` table of :class:`PairsV1` alone, folded per leg (``tx_id``): what a
    rebuild folds in key partitions before deriving the pair rows
    (``PairsV1.derive_select``)."""

    name = PairsV1.name
    version = PairsV1.version
    revision = PairsV1.revision
    tables = (PAIR_LEGS,)
    sources = frozenset({SOURCE})
    per_key = True
    reads = frozenset({*_LEG_DATA, "version", "updated_at"})  # build_leg and its order key

    def prefetch(self, events: Sequence[LoggedEvent], reader: Reader) -> State:
        return prefetch_entities(events, reader, SOURCE, PAIR_LEGS.name)

    def fold(self, state: State, events: Sequence[LoggedEvent]) -> tuple[State, int]:
        fold_legs(state[PAIR_LEGS.name], events)
        return state, 0
