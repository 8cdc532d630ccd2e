"""The row builders (written flat for speed) = their first, step-by-step form, kept here.

Every projected row is built by these functions, so any difference would change tables
and checksums; hypothesis draws changes (creates, updates, key-only and full deletes,
nulls) and current rows, and both forms must give equal rows with the columns in
table order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog.decode import Change
from eventlog.store import LoggedEvent
from projections.ledger_entries import LEDGER_ENTRIES, build_entry, signed_amount
from projections.lww import data_columns, key_only, provenance
from projections.pairs import PAIR_LEGS, build_leg
from projections.payment_orders import PAYMENT_ORDERS, UNKNOWN, order_builder
from projections.tables import Row

# ---------------------------------------------------------------- the reference forms

_LEDGER_DATA = (
    "wallet_id",
    "type",
    "amount",
    "currency",
    "status",
    "related_id",
    "related_type",
    "created_at",
)
_ORDER_DATA = (
    "payer_wallet_id",
    "receiver_wallet_id",
    "amount",
    "currency",
    "status",
    "created_at",
    "settled_at",
    "failed_at",
)
_LEG_DATA = ("wallet_id", "type", "related_id", "related_type")


def reference_entry(
    event: LoggedEvent, current: Row | None, version: int | None, updated_at: str | None
) -> Row:
    change = event.change
    row: Row = {"tx_id": change.key}
    row.update(data_columns(event, current, _LEDGER_DATA))
    source_signed = change.row.get("amount_signed")
    if key_only(event):  # placeholders: the deleted row's value, if known
        signed = current["amount_signed"] if current is not None else None
    elif source_signed is not None:
        signed = source_signed
    else:
        signed = signed_amount(row["type"], row["amount"])
    row["amount_signed"] = signed
    row.update(provenance(event, current, version, updated_at))
    return {name: row[name] for name in LEDGER_ENTRIES.column_names}


def reference_order(
    mapping: Mapping[str, str],
    event: LoggedEvent,
    current: Row | None,
    version: int | None,
    updated_at: str | None,
) -> Row:
    row: Row = {"order_id": event.change.key}
    row.update(data_columns(event, current, _ORDER_DATA))
    row["status_group"] = mapping.get(row["status"] or "", UNKNOWN)
    row.update(provenance(event, current, version, updated_at))
    return {name: row[name] for name in PAYMENT_ORDERS.column_names}


def reference_leg(
    event: LoggedEvent, current: Row | None, version: int | None, updated_at: str | None
) -> Row:
    row: Row = {"tx_id": event.change.key}
    row.update(data_columns(event, current, _LEG_DATA))
    row.update(provenance(event, current, version, updated_at))
    row["candidate_since"] = current["candidate_since"] if current is not None else None
    return {name: row[name] for name in PAIR_LEGS.column_names}


# ---------------------------------------------------------------- strategies

_TEXT = st.sampled_from([None, "", "W1", "PAYMENT", "RECEIVE", "FEE", "SETTLED", "O1"])
_TS = st.sampled_from([None, "2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z"])
_AMOUNT = st.sampled_from([None, "1.00", "-2.50", "0", "10.125"])
_VERSION = st.none() | st.integers(0, 5)


def _row(columns: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    kinds = {
        "amount": _AMOUNT,
        "amount_signed": _AMOUNT,
        "created_at": _TS,
        "updated_at": _TS,
        "settled_at": _TS,
        "failed_at": _TS,
        "candidate_since": st.none() | st.just('{"PAYMENT:O1":"2026-01-01T00:00:00.000000Z"}'),
        "version": _VERSION,
        "deleted": st.booleans(),
        "deleted_at": _TS,
        "source_ts": _TS,
        "lsn": st.none() | st.integers(0, 9),
        "position": st.integers(1, 9),
        "type": st.sampled_from([None, "PAYMENT", "RECEIVE", "FEE"]),
    }
    return st.fixed_dictionaries({c: kinds.get(c, _TEXT) for c in columns})


@st.composite
def cases(draw: st.DrawFn, columns: tuple[str, ...]) -> tuple[LoggedEvent, Row | None]:
    op = draw(st.sampled_from("cudr"))
    row = draw(_row(columns))
    if op == "d" and draw(st.booleans()):  # a key-only before image
        row = {k: (v if k == columns[0] else None) for k, v in row.items()}
    elif draw(st.booleans()):  # a change that does not carry every column
        row = {k: v for k, v in row.items() if draw(st.booleans()) or k == columns[0]}
    change = Change(
        table="t",
        op=op,
        key="K1",
        row=row,
        source_ts=draw(_TS),
        lsn=draw(st.none() | st.integers(0, 9)),
        source_tx=None,
        snapshot=None,
    )
    current = draw(st.none() | _row(columns))
    return LoggedEvent(draw(st.integers(1, 99)), change, "2026-01-01T00:00:00.000000Z"), current


def _check(built: Row, expected: Row, columns: tuple[str, ...]) -> None:
    assert built == expected
    assert tuple(built) == columns


@settings(max_examples=300, deadline=None)
@given(cases(LEDGER_ENTRIES.column_names), _VERSION, _TS)
def test_ledger_entry_rows(case: Any, version: int | None, updated: str | None) -> None:
    event, current = case
    _check(
        build_entry(event, current, version, updated),
        reference_entry(event, current, version, updated),
        LEDGER_ENTRIES.column_names,
    )


@settings(max_examples=300, deadline=None)
@given(cases(PAYMENT_ORDERS.column_names), _VERSION, _TS, st.booleans())
def test_payment_order_rows(
    case: Any, version: int | None, updated: str | None, mapped: bool
) -> None:
    event, current = case
    mapping = {"SETTLED": "SUCCESS", "": "EMPTY"} if mapped else {}
    _check(
        order_builder(mapping)(event, current, version, updated),
        reference_order(mapping, event, current, version, updated),
        PAYMENT_ORDERS.column_names,
    )


@settings(max_examples=300, deadline=None)
@given(cases(PAIR_LEGS.column_names), _VERSION, _TS)
def test_pair_leg_rows(case: Any, version: int | None, updated: str | None) -> None:
    event, current = case
    _check(
        build_leg(event, current, version, updated),
        reference_leg(event, current, version, updated),
        PAIR_LEGS.column_names,
    )


@pytest.mark.parametrize(
    ("entry_type", "amount", "expected"),
    [
        ("PAYMENT", "12345678901234567890.123456789", "-12345678901234567890.123456789"),
        (
            "RECEIVE",
            "99999999999999999999999999999999.999999",
            "99999999999999999999999999999999.999999",
        ),
        ("PAYMENT", "0.00", "0.00"),
        ("PAYMENT", "-5.10", "5.10"),
    ],
)
def test_signed_amount_is_exact_past_28_digits(entry_type: str, amount: str, expected: str) -> None:
    assert signed_amount(entry_type, amount) == expected
