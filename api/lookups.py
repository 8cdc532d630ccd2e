"""Pure derivations of the lookup responses from projection rows (SPEC §6).

The same functions shape answers from the serving views and from an in-memory replay
of the log (``as_of``), so both paths give the same fields by construction.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]

ENTRY_FIELDS = (
    "tx_id",
    "wallet_id",
    "type",
    "amount",
    "amount_signed",
    "currency",
    "status",
    "related_id",
    "related_type",
    "created_at",
    "updated_at",
    "deleted",
    "deleted_at",
)
ORDER_FIELDS = (
    "order_id",
    "payer_wallet_id",
    "receiver_wallet_id",
    "amount",
    "currency",
    "status",
    "status_group",
    "created_at",
    "updated_at",
    "settled_at",
    "failed_at",
)
LEG_TYPES = ("PAYMENT", "RECEIVE")


def points_at_order(row: Row) -> bool:
    """Whether ``related_id`` may name a payment order (``related_type`` null or PAYMENT_ORDER)."""
    return row.get("related_id") is not None and row.get("related_type") in (None, "PAYMENT_ORDER")


def is_candidate(row: Row) -> bool:
    """A pairing candidate (SPEC §4.4): live, points at an order, PAYMENT or RECEIVE."""
    return not row.get("deleted") and points_at_order(row) and row.get("type") in LEG_TYPES


def related_type(row: Row, order_known: bool) -> str | None:
    """The source value; else PAYMENT_ORDER when the order is known, else UNKNOWN."""
    if row.get("related_id") is None:
        return None
    if row.get("related_type") is not None:
        return str(row["related_type"])
    return "PAYMENT_ORDER" if order_known else "UNKNOWN"


def entry(row: Row, order_known: bool) -> Row:
    out = {name: row.get(name) for name in ENTRY_FIELDS}
    out["deleted"] = bool(row.get("deleted"))
    out["related_type"] = related_type(row, order_known)
    return out


def order(row: Row | None) -> Row | None:
    return None if row is None else {name: row.get(name) for name in ORDER_FIELDS}


def tx_detail(tx: Row, order_row: Row | None, pair: Row | None) -> Row:
    """``GET /admin/tx`` fields (freshness added by the caller).

    ``order_row`` and ``pair`` are those keyed by the entry's ``related_id`` (callers pass
    ``None`` when the entry does not point at an order).
    """
    candidate = is_candidate(tx)
    pair = pair if candidate else None
    status = str(pair["pairing_status"]) if pair is not None else "UNKNOWN"
    paired = None
    if pair is not None and status == "COMPLETE":
        legs = (pair.get("payment_tx_id"), pair.get("receive_tx_id"))
        if tx["tx_id"] in legs:
            paired = legs[1] if tx["tx_id"] == legs[0] else legs[0]
    own = tx.get("wallet_id") if candidate else None
    payer = _first(
        pair and pair.get("payer_wallet_id"),
        own if tx.get("type") == "PAYMENT" else None,
        order_row and order_row.get("payer_wallet_id"),
    )
    receiver = _first(
        pair and pair.get("receiver_wallet_id"),
        own if tx.get("type") == "RECEIVE" else None,
        order_row and order_row.get("receiver_wallet_id"),
    )
    out = entry(tx, order_known=order_row is not None)
    out.update(
        pairing_status=status,
        paired_tx_id=paired,
        payer_wallet_id=payer,
        receiver_wallet_id=receiver,
        payment_order=order(order_row),
    )
    return out


def order_detail(order_id: str, order_row: Row | None, legs: list[Row], pair: Row | None) -> Row:
    """``GET /admin/payment-orders`` fields (freshness added by the caller).

    ``legs``: the entries pointing at the order, deleted ones included (flagged).
    Without a pair row the status is INCOMPLETE when the order is known (its legs have
    not arrived) and UNKNOWN otherwise.
    """
    ordered = sorted(legs, key=lambda r: (r.get("created_at") or "", str(r["tx_id"])))
    if pair is not None:
        status = str(pair["pairing_status"])
    else:
        status = "INCOMPLETE" if order_row is not None else "UNKNOWN"
    return {
        "order_id": order_id,
        "order": order(order_row),
        "legs": [entry(r, order_known=order_row is not None) for r in ordered],
        "pairing_status": status,
        "payment_tx_id": pair.get("payment_tx_id") if pair else None,
        "receive_tx_id": pair.get("receive_tx_id") if pair else None,
    }


def _first(*values: Any) -> str | None:
    for value in values:
        if value:
            return str(value)
    return None
