"""Answers "as of" a past point of the log, replayed with the projections' own folds.

To answer for one entity we load only the events that can affect it, through the
indexed columns ``entity_key`` and ``group_key``:

1. the events of the entity itself (``ledger_entries:T1``);
2. for an order (or a tx's related order) the events of its group (``pair:O1``) — the
   order and every leg that ever pointed at it;
3. every event of each entity found in step 2, so a leg that later moved to another
   order (its later events are in another group) is folded with its whole history.

The events are folded in log order by ``projections.memory`` — the same pure code the
live runner uses — so the answer equals replaying the whole log to that position.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection

from api import queries
from eventlog.decode import decode_bytes
from eventlog.settings import Settings
from eventlog.store import LoggedEvent
from projections.memory import replay

Row = dict[str, Any]


class State(Protocol):
    def tx(self, tx_id: str) -> Row | None: ...
    def order(self, order_id: str) -> Row | None: ...
    def pair(self, related_id: str) -> Row | None: ...
    def entries_for(self, related_id: str) -> list[Row]: ...


def legs(state: State, order_id: str) -> list[Row]:
    """Entries that point at the order, as :func:`api.queries.order_legs` selects them."""
    return [
        r for r in state.entries_for(order_id) if r.get("related_type") in (None, "PAYMENT_ORDER")
    ]


def _events(rows: Iterable[Row]) -> list[LoggedEvent]:
    return [
        LoggedEvent(int(r["position"]), decode_bytes(bytes(r["payload"])), str(r["ingested_at"]))
        for r in rows
    ]


def _replay(settings: Settings, rows: list[Row], versions: dict[str, int]) -> State:
    return replay(_events(rows), settings, versions)


@dataclass(frozen=True, slots=True)
class Cutoff:
    """Which events a replay may see: positions up to ``position`` and, for ``as_of``,
    ``ingested_at`` up to ``ingested``."""

    position: int
    ingested: str | None = None


def entity_state(
    conn: Connection, settings: Settings, entity_key: str, cut: Cutoff, versions: dict[str, int]
) -> State:
    """Replay the events of one entity (step 1)."""
    rows = queries.history_rows(
        conn, entity_keys=[entity_key], upto=cut.position, ingested_upto=cut.ingested
    )
    return _replay(settings, rows, versions)


def group_state(
    conn: Connection, settings: Settings, order_id: str, cut: Cutoff, versions: dict[str, int]
) -> State:
    """Replay an order, every leg that ever pointed at it, and those legs' histories."""
    group = queries.history_rows(
        conn,
        entity_keys=[f"payment_orders:{order_id}"],
        group_keys=[f"pair:{order_id}"],
        upto=cut.position,
        ingested_upto=cut.ingested,
    )
    keys = {str(r["entity_key"]) for r in group}
    rows = queries.history_rows(
        conn, entity_keys=keys, upto=cut.position, ingested_upto=cut.ingested
    )
    return _replay(settings, rows, versions)
