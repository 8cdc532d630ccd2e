"""The pure folds, through the in-memory replay (no database): SPEC §4.1 to §4.4."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from eventlog.decode import decode_bytes
from eventlog.errors import UsageError
from eventlog.settings import Settings
from eventlog.store import LoggedEvent
from projections import registry
from projections.lww import order_key
from projections.memory import replay
from projections.pairs import pair_row
from tests.fixtures_projections import event, ledger_row, order_row

L, P = "ledger_entries", "payment_orders"

POSITIONS = {"position", "data_position"}  # where changes sat in the log: arrival order


def logged(*lines: bytes) -> list[LoggedEvent]:
    return [
        LoggedEvent(i, decode_bytes(line), "2026-06-01T00:00:00.000000Z")
        for i, line in enumerate(lines, 1)
    ]


def settings_with_map(tmp_path: Any, mapping: dict[str, list[str]]) -> Settings:
    path = tmp_path / "map.json"
    path.write_text(__import__("json").dumps(mapping))
    return Settings(status_map=str(path))


# ---------------------------------------------------------------- order key


def test_order_key_nulls_lowest_left_to_right() -> None:
    assert order_key(None, None, None, 9) < order_key(1, None, None, 1)
    assert order_key(1, None, 5, 1) < order_key(1, "2026-01-01T00:00:00.000000Z", None, 1)
    assert order_key(2, None, None, 1) > order_key(1, "2027-01-01T00:00:00.000000Z", 99, 9)
    assert order_key(1, "a", 5, 1) < order_key(1, "a", 6, 0)
    assert order_key(-5, None, None, 1) > order_key(None, None, None, 2)


# ---------------------------------------------------------------- ledger entries


def test_versioned_updates_in_any_order_keep_the_newest() -> None:
    v = [event(L, "u", ledger_row("T1", version=n, amount=f"{n}.00"), lsn=n) for n in (1, 2, 3)]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        row = replay(logged(*[v[i] for i in order])).tx("T1")
        assert row is not None
        assert (row["version"], row["amount"], row["amount_signed"]) == (3, "3.00", "-3.00")


def test_equal_order_key_later_position_wins() -> None:
    first = event(L, "u", ledger_row("T1", version=1, status="A"), lsn=5)
    second = event(L, "u", ledger_row("T1", version=1, status="B"), lsn=5, ts=1)
    row = replay(logged(first, second)).tx("T1")
    assert row is not None
    assert row["status"] == "B"


def test_key_only_delete_wins_tie_by_lsn_and_keeps_data() -> None:
    out = replay(
        logged(
            event(L, "c", ledger_row("T1", version=4, related_id="O1"), lsn=10, ts=1),
            event(L, "d", {"tx_id": "T1"}, lsn=11, ts=7),
        )
    )
    row = out.tx("T1")
    assert row is not None
    assert row["deleted"] is True
    assert row["deleted_at"] == "2026-01-01T00:00:07.000000Z"
    assert (row["version"], row["wallet_id"], row["related_id"]) == (4, "W1", "O1")
    assert row["amount_signed"] == "-10.00"


def test_key_only_delete_with_placeholder_values_keeps_the_deleted_data() -> None:
    # Debezium's default replica identity: ``before`` holds the key, and required columns
    # come as defaults ("" and 0). They must not overwrite what was deleted.
    placeholders = {"tx_id": "T1", "wallet_id": "", "type": "", "amount": "0.00", "currency": ""}
    out = replay(
        logged(
            event(L, "c", ledger_row("T1", version=4, related_id="O1"), lsn=10, ts=1),
            event(L, "d", placeholders, lsn=11, ts=7),
        )
    )
    row = out.tx("T1")
    assert row is not None
    assert row["deleted"] is True
    assert (row["wallet_id"], row["type"], row["amount"]) == ("W1", "PAYMENT", "10.00")
    assert row["amount_signed"] == "-10.00"


def test_delete_with_older_lsn_loses() -> None:
    out = replay(
        logged(
            event(L, "c", ledger_row("T1"), lsn=20),
            event(L, "d", {"tx_id": "T1"}, lsn=11),
        )
    )
    row = out.tx("T1")
    assert row is not None
    assert row["deleted"] is False


def test_recreate_after_delete_with_newer_version_is_live_again() -> None:
    out = replay(
        logged(
            event(L, "c", ledger_row("T1", version=1), lsn=1),
            event(L, "d", ledger_row("T1", version=1), lsn=2),
            event(L, "c", ledger_row("T1", version=2), lsn=3),
        )
    )
    row = out.tx("T1")
    assert row is not None
    assert row["deleted"] is False
    assert row["deleted_at"] is None


def test_delete_of_unknown_key_keeps_tombstone_against_older_create() -> None:
    """The create committed before the delete (lsn) arrives late: it becomes the deleted
    row's data, never a live row — the same row as in commit order."""
    # Debezium's key-only image: the key, and placeholders for required columns
    before = {"tx_id": "T9", "wallet_id": "", "amount": "0", "version": 0}
    delete = event(L, "d", before, lsn=50, ts=5)
    create = event(L, "c", ledger_row("T9", wallet="W1", version=3), lsn=10, ts=1)
    late = replay(logged(delete, create)).tx("T9")
    in_order = replay(logged(create, delete)).tx("T9")
    assert late is not None
    assert in_order is not None
    assert late["deleted"] is True
    assert late["wallet_id"] == "W1"  # a key-only image's other values are placeholders
    assert late["deleted_at"] == in_order["deleted_at"] == "2026-01-01T00:00:05.000000Z"
    assert {k: v for k, v in late.items() if k not in POSITIONS} == {
        k: v for k, v in in_order.items() if k not in POSITIONS
    }
    alone = replay(logged(delete)).tx("T9")  # a tombstone: the key, no data
    assert alone is not None
    assert (alone["deleted"], alone["wallet_id"], alone["amount"], alone["version"]) == (
        True,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("delete_before", [{"tx_id": "T5"}, "full"])
def test_a_delete_wins_in_every_arrival_order(delete_before: Any) -> None:
    """create v1, update v2, delete (key-only or full image, nulls included): every arrival
    order gives the row of commit order (SPEC §4.1: reordering changes nothing)."""
    v1 = ledger_row("T5", version=1, related_id="O1", status="POSTED")
    v2 = ledger_row("T5", version=2, related_id=None, status=None, amount="7.00")
    image = v2 if delete_before == "full" else delete_before
    history = [
        event(L, "c", v1, lsn=11, ts=1),
        event(L, "u", v2, lsn=21, ts=2),
        event(L, "d", image, lsn=31, ts=3),
    ]
    rows = []
    for order in itertools.permutations(history):
        row = replay(logged(*order)).tx("T5")
        assert row is not None
        rows.append({k: v for k, v in row.items() if k not in POSITIONS})
    assert all(row == rows[0] for row in rows)
    assert rows[0]["deleted"] is True
    assert (rows[0]["version"], rows[0]["related_id"], rows[0]["amount"]) == (2, None, "7.00")
    assert rows[0]["amount_signed"] == "-7.00"


@pytest.mark.parametrize("version", [1, None])
def test_changes_of_equal_version_before_a_key_only_delete_in_every_order(
    version: int | None,
) -> None:
    """Two changes with the same version (or none), decided by lsn, then a key-only delete:
    the late one competes with the deleted row's data by the data's own lsn, not the
    delete's — every arrival order keeps the data of commit order (a review found the
    delete's lsn hiding it)."""
    history = [
        event(L, "c", ledger_row("T6", version=version, status="POSTED"), lsn=10, ts=1),
        event(L, "u", ledger_row("T6", version=version, status="SETTLED"), lsn=20, ts=2),
        event(L, "d", {"tx_id": "T6"}, lsn=30, ts=3),
    ]
    rows = []
    for order in itertools.permutations(history):
        row = replay(logged(*order)).tx("T6")
        assert row is not None
        rows.append({k: v for k, v in row.items() if k not in POSITIONS})
    assert all(row == rows[0] for row in rows), rows
    assert (rows[0]["deleted"], rows[0]["status"], rows[0]["data_lsn"]) == (True, "SETTLED", 20)


@pytest.mark.parametrize(
    ("entry_type", "amount", "source", "expected"),
    [
        ("PAYMENT", "100.50", None, "-100.50"),
        ("RECEIVE", "100.50", None, "100.50"),
        ("PAYMENT", "0.00", None, "0.00"),
        ("FEE", "1.00", None, None),
        ("PAYMENT", None, None, None),
        ("PAYMENT", "7.00", "-7.25", "-7.25"),
        (None, "1.0", None, None),
    ],
)
def test_amount_signed(
    entry_type: str | None, amount: str | None, source: str | None, expected: str | None
) -> None:
    line = event(L, "c", ledger_row("T1", type=entry_type, amount=amount, amount_signed=source))
    row = replay(logged(line)).tx("T1")
    assert row is not None
    assert row["amount_signed"] == expected


def test_changes_without_version_or_updated_at_are_counted() -> None:
    out = replay(logged(event(L, "c", ledger_row("T1")), event(P, "c", order_row("O1"))))
    projection, store = out.projections["ledger_entries"]
    changes = projection.apply(
        logged(event(L, "c", ledger_row("T2")), event(L, "c", ledger_row("T3", version=1))),
        store,
    )
    assert changes.version_missing == 1


# ---------------------------------------------------------------- payment orders


def test_v1_always_unknown_v2_maps(tmp_path: Any) -> None:
    settings = settings_with_map(tmp_path, {"SUCCESS": ["SETTLED"], "FAIL": ["FAILED"]})
    lines = logged(
        event(P, "c", order_row("O1", status="SETTLED")),
        event(P, "c", order_row("O2", status="FAILED")),
        event(P, "c", order_row("O3", status="ODD")),
        event(P, "c", order_row("O4", status=None)),
    )
    v1 = replay(lines, settings, {"payment_orders": 1})
    v2 = replay(lines, settings, {"payment_orders": 2})
    assert {k: r["status_group"] for k, r in v1.rows("payment_orders").items()} == dict.fromkeys(
        ["O1", "O2", "O3", "O4"], "UNKNOWN"
    )
    assert {k: r["status_group"] for k, r in v2.rows("payment_orders").items()} == {
        "O1": "SUCCESS",
        "O2": "FAIL",
        "O3": "UNKNOWN",
        "O4": "UNKNOWN",
    }


def test_fingerprint_follows_the_mapping(tmp_path: Any) -> None:
    a = settings_with_map(tmp_path, {"SUCCESS": ["SETTLED"]})
    b = Settings(status_map=None)
    assert (
        registry.make("payment_orders", 2, a).fingerprint()
        != registry.make("payment_orders", 2, b).fingerprint()
    )
    assert (
        registry.make("payment_orders", 1, a).fingerprint()
        == registry.make("payment_orders", 1, b).fingerprint()
    )
    assert registry.make("pairs", 1, a).fingerprint().startswith("pairs.v1.")


def test_default_versions(tmp_path: Any) -> None:
    assert registry.default_version("payment_orders", Settings(status_map=None)) == 1
    mapped = settings_with_map(tmp_path, {"SUCCESS": ["OK"]})
    assert registry.default_version("payment_orders", mapped) == 2
    assert registry.default_version("ledger_entries", mapped) == 1


def test_unknown_projection_or_version_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown projection"):
        registry.make("nope", None, None)
    with pytest.raises(UsageError, match="no version 7"):
        registry.make("pairs", 7, None)


# ---------------------------------------------------------------- pairs


def leg(tx: str, kind: str, related: str | None = "O1", **kw: Any) -> bytes:
    wallet = kw.pop("wallet", "W-" + tx)
    ts = kw.pop("ts", 0)
    lsn = kw.pop("lsn", None)
    return event(
        L, "c", ledger_row(tx, type=kind, related_id=related, wallet=wallet, **kw), ts=ts, lsn=lsn
    )


def test_complete_pair_and_wallets() -> None:
    out = replay(logged(leg("T1", "PAYMENT", ts=3), leg("T2", "RECEIVE", ts=5)))
    pair = out.pair("O1")
    assert pair is not None
    assert pair["pairing_status"] == "COMPLETE"
    assert (pair["payment_tx_id"], pair["receive_tx_id"]) == ("T1", "T2")
    assert (pair["payer_wallet_id"], pair["receiver_wallet_id"]) == ("W-T1", "W-T2")
    assert pair["first_seen_at"] == "2026-01-01T00:00:03.000000Z"
    assert pair["completed_at"] == "2026-01-01T00:00:05.000000Z"
    assert pair["leg_count"] == 2


def test_pair_times_do_not_depend_on_arrival_order() -> None:
    a = replay(logged(leg("T1", "PAYMENT", ts=3), leg("T2", "RECEIVE", ts=5))).pair("O1")
    b = replay(logged(leg("T2", "RECEIVE", ts=5), leg("T1", "PAYMENT", ts=3))).pair("O1")
    assert a == b


def test_conflict_and_incomplete() -> None:
    out = replay(
        logged(
            leg("T1", "RECEIVE"),
            leg("T2", "RECEIVE"),
            leg("T3", "PAYMENT"),
            leg("T4", "PAYMENT", related="O2"),
        )
    )
    conflict, single = out.pair("O1"), out.pair("O2")
    assert conflict is not None
    assert single is not None
    assert conflict["pairing_status"] == "CONFLICT"
    assert conflict["leg_count"] == 3
    assert conflict["receive_tx_id"] is None
    assert conflict["payment_tx_id"] == "T3"
    assert conflict["completed_at"] is None
    assert single["pairing_status"] == "INCOMPLETE"


@pytest.mark.parametrize(
    ("kind", "related_type", "candidate"),
    [
        ("PAYMENT", None, True),
        ("PAYMENT", "PAYMENT_ORDER", True),
        ("PAYMENT", "REFUND", False),
        ("FEE", None, False),
        (None, None, False),
    ],
)
def test_candidates(kind: str | None, related_type: str | None, candidate: bool) -> None:
    out = replay(
        logged(
            leg("T1", kind or "", related_type=related_type)
            if kind
            else event(L, "c", ledger_row("T1", type=None, related_id="O1"))
        )
    )
    assert (out.pair("O1") is not None) is candidate


def test_leg_moving_between_orders_updates_both_pairs() -> None:
    out = replay(
        logged(
            leg("T1", "PAYMENT", version=1, lsn=1),
            leg("T2", "RECEIVE", version=1, lsn=2),
            event(L, "u", ledger_row("T1", related_id="O2", wallet="W-T1", version=2), lsn=3),
        )
    )
    old, new = out.pair("O1"), out.pair("O2")
    assert old is not None
    assert new is not None
    assert old["pairing_status"] == "INCOMPLETE"
    assert old["payment_tx_id"] is None
    assert new["payment_tx_id"] == "T1"


def test_deleting_the_last_leg_removes_the_pair_row() -> None:
    out = replay(logged(leg("T1", "PAYMENT", lsn=1), event(L, "d", {"tx_id": "T1"}, lsn=2)))
    assert out.pair("O1") is None
    assert out.tx("T1") is not None


def test_pair_row_helper_ignores_deleted_legs() -> None:
    legs = [
        {
            "tx_id": "A",
            "type": "PAYMENT",
            "related_id": "O",
            "related_type": None,
            "deleted": True,
            "deleted_at": "2026-01-02T00:00:00.000000Z",
            "wallet_id": "W",
            "candidate_since": '{"PAYMENT:O":"2026-01-01T00:00:00.000000Z"}',
        },
    ]
    assert pair_row("O", legs) is None


def test_order_events_do_not_touch_pairs_and_entries_for() -> None:
    out = replay(
        logged(
            leg("T2", "RECEIVE", created_at="2026-01-02T00:00:00Z"),
            leg("T1", "PAYMENT", created_at="2026-01-03T00:00:00Z"),
            event(P, "c", order_row("O1")),
        )
    )
    assert [r["tx_id"] for r in out.entries_for("O1")] == ["T2", "T1"]
    assert out.order("O1") is not None
    assert out.position == 3
    assert out.checksum("pairs") == replay(
        logged(
            leg("T2", "RECEIVE", created_at="2026-01-02T00:00:00Z"),
            leg("T1", "PAYMENT", created_at="2026-01-03T00:00:00Z"),
        )
    ).checksum("pairs")
