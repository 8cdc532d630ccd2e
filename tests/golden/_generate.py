"""Regenerate the golden scenarios' events.jsonl (expected/ comes from `rebuild golden --update`,
then is reviewed by hand: every expected row below is explained in the scenario's README line).

Run: .venv/bin/python tests/golden/_generate.py
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def env(
    table: str,
    op: str,
    row: dict[str, Any],
    *,
    ts: int,
    lsn: int | None = None,
    before: dict[str, Any] | None = None,
    top_ts: int | None = None,
) -> dict[str, Any]:
    source: dict[str, Any] = {
        "version": "2.7.3.Final",
        "connector": "postgresql",
        "name": "oltp",
        "db": "oltp",
        "schema": "public",
        "table": table,
        "ts_ms": BASE_MS + ts * 1000,
    }
    if lsn is not None:
        source["lsn"] = lsn
    out = {
        "before": row if op == "d" else before,
        "after": None if op == "d" else row,
        "source": source,
        "op": op,
    }
    if top_ts is not None:
        out["ts_ms"] = BASE_MS + top_ts * 1000
    return out


def leg(
    tx: str,
    typ: str,
    related: str | None,
    *,
    wallet: str = "W1",
    amount: str = "100.50",
    version: int | None = None,
    updated_at: str | None = None,
    related_type: str | None = None,
    status: str | None = "POSTED",
    **extra: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "tx_id": tx,
        "wallet_id": wallet,
        "type": typ,
        "amount": amount,
        "currency": "KRW",
        "related_id": related,
        "related_type": related_type,
        "status": status,
        "created_at": "2026-01-01T00:00:00Z",
    }
    if version is not None:
        row["version"] = version
    if updated_at is not None:
        row["updated_at"] = updated_at
    row.update(extra)
    return row


def order(
    oid: str,
    status: str = "CREATED",
    *,
    version: int | None = None,
    updated_at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_id": oid,
        "payer_wallet_id": "W1",
        "receiver_wallet_id": "W2",
        "amount": "100.50",
        "currency": "KRW",
        "status": status,
        "created_at": "2026-01-01T00:00:00Z",
    }
    if version is not None:
        row["version"] = version
    if updated_at is not None:
        row["updated_at"] = updated_at
    row.update(extra)
    return row


L, P = "ledger_entries", "payment_orders"
PAY = leg("T1", "PAYMENT", "O1", wallet="W1", version=1)
REC = leg("T2", "RECEIVE", "O1", wallet="W2", version=1)

SCENARIOS: dict[str, list[Any]] = {
    # COMPLETE pair; first_seen_at = 00:00:01, completed_at = 00:00:02 in both orders
    "pair_payment_then_receive": [env(L, "c", PAY, ts=1, lsn=10), env(L, "c", REC, ts=2, lsn=11)],
    "pair_receive_then_payment": [env(L, "c", REC, ts=2, lsn=11), env(L, "c", PAY, ts=1, lsn=10)],
    # the order arrives after both legs; the pair is unaffected by the order event
    "order_after_legs": [
        env(L, "c", PAY, ts=1, lsn=10),
        env(L, "c", REC, ts=2, lsn=11),
        env(P, "c", order("O1", version=1), ts=3, lsn=12),
    ],
    # redelivered events (same change, different connector ts_ms) are deduplicated by the log
    "redeliveries": [
        env(L, "c", PAY, ts=1, lsn=10, top_ts=5),
        env(L, "c", PAY, ts=1, lsn=10, top_ts=9),
        env(P, "c", order("O1", version=1), ts=3, lsn=12),
        env(P, "c", order("O1", version=1), ts=3, lsn=12, top_ts=20),
        env(L, "c", REC, ts=2, lsn=11),
        env(L, "c", REC, ts=2, lsn=11),
    ],
    # v3 arrives first; the older v1/v2 lose; T1 ends as v3 (amount 300.00)
    "versioned_out_of_order": [
        env(L, "u", leg("T1", "PAYMENT", "O1", version=3, amount="300.00"), ts=3, lsn=30),
        env(L, "c", leg("T1", "PAYMENT", "O1", version=1, amount="100.00"), ts=1, lsn=10),
        env(L, "u", leg("T1", "PAYMENT", "O1", version=2, amount="200.00"), ts=2, lsn=20),
        env(P, "u", order("O1", "SETTLED", version=2), ts=5, lsn=50),
        env(P, "c", order("O1", "CREATED", version=1), ts=4, lsn=40),
    ],
    # no version: updated_at decides; the newest updated_at (12:00) wins although it came first
    "updated_at_only_out_of_order": [
        env(
            L,
            "u",
            leg("T1", "PAYMENT", "O1", updated_at="2026-01-01T12:00:00Z", status="SETTLED"),
            ts=3,
        ),
        env(
            L,
            "c",
            leg("T1", "PAYMENT", "O1", updated_at="2026-01-01T10:00:00Z", status="PENDING"),
            ts=1,
        ),
        env(P, "u", order("O1", "SETTLED", updated_at="2026-01-01T12:00:00Z"), ts=4),
        env(P, "c", order("O1", "CREATED", updated_at="2026-01-01T10:00:00Z"), ts=2),
    ],
    # neither version nor updated_at: lsn decides (lsn 30 beats lsn 10 that arrives later)
    "lsn_only_out_of_order": [
        env(L, "u", leg("T1", "PAYMENT", "O1", status="SETTLED"), ts=3, lsn=30),
        env(L, "c", leg("T1", "PAYMENT", "O1", status="PENDING"), ts=1, lsn=10),
        env(P, "u", order("O1", "SETTLED"), ts=3, lsn=31),
        env(P, "c", order("O1", "CREATED"), ts=1, lsn=11),
    ],
    # delete of the RECEIVE leg with a key-only `before` (default replica identity):
    # T2 stays deleted with its data and deleted_at 00:00:05; pair O1 becomes INCOMPLETE
    "delete_of_a_leg": [
        env(L, "c", PAY, ts=1, lsn=10),
        env(L, "c", REC, ts=2, lsn=11),
        env(L, "d", {"tx_id": "T2"}, ts=5, lsn=50),
    ],
    # a key-only delete (lsn 50) that arrives before the update it follows (v2, lsn 30):
    # T2 stays deleted — v2's data (wallet W3), deleted_at 00:00:05 — exactly as in commit
    # order; pair O1 has only T1 left: INCOMPLETE
    "key_only_delete_before_its_update": [
        env(L, "c", leg("T1", "PAYMENT", "O1", version=1), ts=1, lsn=10),
        env(L, "c", leg("T2", "RECEIVE", "O1", wallet="W2", version=1), ts=2, lsn=11),
        env(L, "d", {"tx_id": "T2"}, ts=5, lsn=50),
        env(L, "u", leg("T2", "RECEIVE", "O1", wallet="W3", version=2), ts=3, lsn=30),
    ],
    # delete of a never-seen row leaves a tombstone; the older create (lower lsn) arriving
    # later does not resurrect it; an order deleted with a full `before` image
    "delete_of_an_unknown_row": [
        env(L, "d", {"tx_id": "T9", "wallet_id": "W9"}, ts=5, lsn=50),
        env(L, "c", leg("T9", "PAYMENT", "O9", wallet="W9"), ts=1, lsn=10),
        env(P, "d", order("O9", "CANCELLED"), ts=6, lsn=60),
    ],
    # two PAYMENT legs and one RECEIVE: CONFLICT, leg_count 3, no single payment leg
    "conflict": [
        env(L, "c", PAY, ts=1, lsn=10),
        env(L, "c", REC, ts=2, lsn=11),
        env(L, "c", leg("T3", "PAYMENT", "O1", wallet="W3", version=1), ts=3, lsn=12),
    ],
    # related_type REFUND and type FEE are not candidates; explicit PAYMENT_ORDER is
    "non_candidate_related_types": [
        env(L, "c", leg("T1", "PAYMENT", "O1", related_type="PAYMENT_ORDER"), ts=1, lsn=10),
        env(L, "c", leg("T2", "RECEIVE", "O1", related_type="REFUND", wallet="W2"), ts=2, lsn=11),
        env(L, "c", leg("T3", "FEE", "O1", wallet="W3"), ts=3, lsn=12),
        env(L, "c", leg("T4", "RECEIVE", "O4", related_type="REFUND"), ts=4, lsn=13),
    ],
    # entries without related_id never make a pair row
    "null_related_id": [
        env(L, "c", leg("T1", "PAYMENT", None), ts=1, lsn=10),
        env(L, "c", leg("T2", "RECEIVE", None, wallet="W2"), ts=2, lsn=11),
    ],
    # snapshot reads (op r) then a live update
    "snapshot_reads": [
        env(L, "r", leg("T1", "PAYMENT", "O1", version=1), ts=1, lsn=10),
        env(L, "r", leg("T2", "RECEIVE", "O1", wallet="W2", version=1), ts=1, lsn=10),
        env(P, "r", order("O1", version=1), ts=1, lsn=10),
        env(
            P,
            "u",
            order("O1", "SETTLED", version=2, settled_at="2026-01-01T00:00:09Z"),
            ts=9,
            lsn=90,
        ),
    ],
    # the pair completes by an update, delivered before the events it follows: T2 is a
    # REFUND receive at 00:00:01 (no candidate), T1 pays at 00:00:02, T2 becomes the
    # order's receive at 00:00:03 — first_seen_at 00:00:02 (T1, the first leg), completed_at
    # 00:00:03 (the event that completed it), whatever the arrival order
    "completed_by_an_update": [
        env(L, "u", leg("T2", "RECEIVE", "O1", wallet="W2", version=2), ts=3, lsn=12),
        env(L, "c", leg("T2", "RECEIVE", "O1", related_type="REFUND", wallet="W2"), ts=1, lsn=10),
        env(L, "c", PAY, ts=2, lsn=11),
    ],
    # a leg moves from O1 to O2: O1 keeps only T2 (INCOMPLETE), O2 gets T1 — first seen
    # at 00:00:03, when T1 moved there (not at its creation, when it belonged to O1)
    "leg_moves_between_orders": [
        env(L, "c", PAY, ts=1, lsn=10),
        env(L, "c", REC, ts=2, lsn=11),
        env(L, "u", leg("T1", "PAYMENT", "O2", version=2), ts=3, lsn=12),
    ],
    # the only leg of O1 is deleted: the pair row disappears
    "pair_row_removed": [
        env(L, "c", PAY, ts=1, lsn=10),
        env(L, "d", {"tx_id": "T1", "version": 1}, ts=2, lsn=11),
    ],
    # a second PAYMENT makes O1 a CONFLICT; the key-only delete of it (00:00:04) completes
    # the pair: completed_at = 00:00:04, not when the last leg joined (00:00:03). Delivered
    # out of order — the delete before the create it deletes — with the same result.
    "completed_by_a_delete": [
        env(L, "c", REC, ts=3, lsn=12),
        env(L, "d", {"tx_id": "T3"}, ts=4, lsn=13),
        env(L, "c", PAY, ts=1, lsn=10),
        env(L, "c", leg("T3", "PAYMENT", "O1", wallet="W3", version=1), ts=2, lsn=11),
    ],
    # T2 is a second PAYMENT of O1 (a CONFLICT from 00:00:02) until its update to RECEIVE at
    # 00:00:05 completes the pair: completed_at = 00:00:05 — T2's time on the side it is
    # on now, not its first time as a leg of O1 (first_seen_at stays T1's 00:00:01).
    # Delivered out of order.
    "leg_switches_side": [
        env(L, "u", leg("T2", "RECEIVE", "O1", wallet="W2", version=2), ts=5, lsn=14),
        env(L, "c", PAY, ts=1, lsn=10),
        env(L, "c", leg("T2", "PAYMENT", "O1", wallet="W2", version=1), ts=2, lsn=11),
    ],
    # T3 stopped being a leg of O1 at 00:00:02 (type FEE); O1 is COMPLETE at 00:00:04 when
    # T2 joins; deleting the FEE entry T3 at 00:00:09 changes nothing: completed_at stays
    # 00:00:04 (only the delete of a leg that is one when deleted resolves a conflict)
    "delete_of_a_former_leg": [
        env(L, "d", {"tx_id": "T3"}, ts=9, lsn=19),
        env(L, "c", leg("T3", "PAYMENT", "O1", wallet="W3", version=1), ts=1, lsn=10),
        env(L, "u", leg("T3", "FEE", "O1", wallet="W3", version=2), ts=2, lsn=11),
        env(L, "c", leg("T1", "PAYMENT", "O1", version=1), ts=3, lsn=12),
        env(L, "c", leg("T2", "RECEIVE", "O1", wallet="W2", version=1), ts=4, lsn=13),
    ],
    # two changes of equal version before a key-only delete, the later one (lsn 11, status
    # SETTLED) arriving after the delete: the deleted row keeps SETTLED — commit order's
    # data — because it competes with the data (lsn 10), not with the delete (lsn 12)
    "equal_versions_before_a_key_only_delete": [
        env(L, "c", leg("T1", "PAYMENT", None, version=1, status="POSTED"), ts=1, lsn=10),
        env(L, "d", {"tx_id": "T1"}, ts=3, lsn=12),
        env(L, "u", leg("T1", "PAYMENT", None, version=1, status="SETTLED"), ts=2, lsn=11),
    ],
    # no versions at all: a key-only delete arrives before the create it deletes; the
    # deleted row gets the create's data, as in commit order (was: no data)
    "unversioned_create_after_its_key_only_delete": [
        env(L, "d", {"tx_id": "T1"}, ts=2, lsn=11),
        env(L, "c", leg("T1", "PAYMENT", None, status="POSTED"), ts=1, lsn=10),
    ],
    # amount_signed: source value kept; derived for PAYMENT/RECEIVE; null for other types
    "amount_signed": [
        env(L, "c", leg("T1", "PAYMENT", None, amount="100.50"), ts=1, lsn=10),
        env(L, "c", leg("T2", "RECEIVE", None, amount="0.00"), ts=2, lsn=11),
        env(L, "c", leg("T3", "FEE", None, amount="5.5"), ts=3, lsn=12),
        env(L, "c", leg("T4", "PAYMENT", None, amount="7.00", amount_signed="-7.25"), ts=4, lsn=13),
    ],
}


def schema_wrapped() -> list[Any]:
    """JsonConverter with schemas: Decimal as base64 bytes, MicroTimestamp as integers."""

    def unscaled(value: int) -> str:
        return base64.b64encode(
            value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
        ).decode()

    fields = [
        {"field": "tx_id", "type": "string"},
        {
            "field": "amount",
            "type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2"},
        },
        {"field": "created_at", "type": "int64", "name": "io.debezium.time.MicroTimestamp"},
        {"field": "updated_at", "type": "int64", "name": "io.debezium.time.Timestamp"},
    ]
    schema = {
        "type": "struct",
        "fields": [
            {"field": "before", "type": "struct", "optional": True, "fields": fields},
            {"field": "after", "type": "struct", "optional": True, "fields": fields},
            {"field": "source", "type": "struct", "fields": []},
            {"field": "op", "type": "string"},
        ],
    }
    out = []
    for tx, typ, wallet, cents, ts in (
        ("T1", "PAYMENT", "W1", 10050, 1),
        ("T2", "RECEIVE", "W2", 10050, 2),
    ):
        row = {
            "tx_id": tx,
            "wallet_id": wallet,
            "type": typ,
            "amount": unscaled(cents),
            "currency": "KRW",
            "related_id": "O1",
            "related_type": None,
            "status": None,
            "created_at": 1_767_225_600_000_000 + ts * 1_000_000,
            "updated_at": BASE_MS + ts * 1000,
            "version": 1,
        }
        out.append({"schema": schema, "payload": env(L, "c", row, ts=ts, lsn=10 + ts)})
    return out


def main() -> None:
    SCENARIOS["schema_wrapped"] = schema_wrapped()
    for name, events in SCENARIOS.items():
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    folder = HERE / "status_mapping"
    folder.mkdir(exist_ok=True)
    (folder / "status_map.json").write_text(
        json.dumps(
            {"SUCCESS": ["SETTLED"], "FAIL": ["FAILED", "CANCELLED"], "IN_PROGRESS": ["CREATED"]}
        )
    )
    (folder / "events.jsonl").write_text(
        "".join(
            json.dumps(e) + "\n"
            for e in [
                env(P, "c", order("O1", "CREATED", version=1), ts=1, lsn=10),
                env(P, "c", order("O2", "SETTLED", version=1), ts=2, lsn=11),
                env(P, "c", order("O3", "FAILED", version=1), ts=3, lsn=12),
                env(P, "c", order("O4", "WEIRD", version=1), ts=4, lsn=13),
            ]
        )
    )


if __name__ == "__main__":
    main()
