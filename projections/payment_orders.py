"""``payment_orders`` → table ``payment_orders``: one row per ``order_id`` (SPEC §4.3).

Version 1 always says ``status_group`` UNKNOWN; version 2 maps the raw status through
``BO_STATUS_MAP`` (its hash is part of v2's fingerprint, so a mapping change is stale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eventlog.store import LoggedEvent
from projections.base import Projection, Reader, State
from projections.lww import (
    Builder,
    data_columns,
    data_origin,
    fold_entity,
    key_only,
    prefetch_entities,
)
from projections.tables import Row, TableDef

SOURCE = "payment_orders"
UNKNOWN = "UNKNOWN"

PAYMENT_ORDERS = TableDef(
    name="payment_orders",
    key="order_id",
    columns=(
        ("order_id", "text"),
        ("payer_wallet_id", "text"),
        ("receiver_wallet_id", "text"),
        ("amount", "text"),
        ("currency", "text"),
        ("status", "text"),
        ("status_group", "text"),
        ("created_at", "text"),
        ("updated_at", "text"),
        ("settled_at", "text"),
        ("failed_at", "text"),
        ("version", "bigint"),
        ("deleted", "bool"),
        ("deleted_at", "text"),
        ("key_only_delete", "bool"),  # deleted by a delete whose before held only the key
        ("source_ts", "text"),
        ("lsn", "bigint"),
        ("position", "bigint"),
        ("data_lsn", "bigint"),  # where the data came from (see projections.lww)
        ("data_position", "bigint"),
    ),
)

_COLUMNS = PAYMENT_ORDERS.column_names
_DATA = (
    "payer_wallet_id",
    "receiver_wallet_id",
    "amount",
    "currency",
    "status",
    "created_at",
    "settled_at",
    "failed_at",
)


def order_builder(mapping: Mapping[str, str]) -> Builder:
    """A row builder that groups statuses with ``mapping`` (empty: every status UNKNOWN)."""

    def build(
        event: LoggedEvent, current: Row | None, version: int | None, updated_at: str | None
    ) -> Row:
        change = event.change
        deleted = change.op == "d"
        source = data_columns(event, current, _DATA) if deleted else None
        get = (change.row if source is None else source).get
        status = get("status")
        origin = data_origin(event, current)
        return {  # columns in table order
            "order_id": change.key,
            "payer_wallet_id": get("payer_wallet_id"),
            "receiver_wallet_id": get("receiver_wallet_id"),
            "amount": get("amount"),
            "currency": get("currency"),
            "status": status,
            "status_group": mapping.get(status or "", UNKNOWN),
            "created_at": get("created_at"),
            # provenance()
            "updated_at": updated_at,
            "settled_at": get("settled_at"),
            "failed_at": get("failed_at"),
            "version": version,
            "deleted": deleted,
            "deleted_at": change.source_ts if deleted else None,
            "key_only_delete": key_only(event),
            "source_ts": change.source_ts,
            "lsn": change.lsn,
            "position": event.position,
            "data_lsn": origin[0],
            "data_position": origin[1],
        }

    return build


class _PaymentOrders(Projection):
    name = "payment_orders"
    tables = (PAYMENT_ORDERS,)
    sources = frozenset({SOURCE})
    per_key = True

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        self.mapping: dict[str, str] = dict(mapping or {})
        self._build = order_builder(self.mapping)

    def __reduce__(self) -> tuple[type[_PaymentOrders], tuple[dict[str, str]]]:
        """Pickled as its class and mapping (a rebuild's worker processes get a copy)."""
        return type(self), (self.mapping,)

    def prefetch(self, events: Sequence[LoggedEvent], reader: Reader) -> State:
        return prefetch_entities(events, reader, SOURCE, PAYMENT_ORDERS.name)

    def fold(self, state: State, events: Sequence[LoggedEvent]) -> tuple[State, int]:
        missing = fold_entity(state[PAYMENT_ORDERS.name], events, SOURCE, self._build)
        return state, missing


class PaymentOrdersV1(_PaymentOrders):
    """Orders with ``status_group`` always UNKNOWN (no mapping)."""

    version = 1

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        super().__init__(None)  # v1 ignores any mapping by definition


class PaymentOrdersV2(_PaymentOrders):
    """Orders with ``status_group`` from ``BO_STATUS_MAP``."""

    version = 2

    def config(self) -> dict[str, Any]:
        return {"status_map": dict(sorted(self.mapping.items()))}
