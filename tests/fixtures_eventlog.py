"""Builders of Debezium change events for the event-log tests (imported by tests/test_*.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from eventlog.store import Prepared, Rejected, prepare

DEBEZIUM = Path(__file__).resolve().parent / "fixtures" / "debezium"
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def fixture(name: str) -> bytes:
    """The bytes of ``tests/fixtures/debezium/<name>`` (a received Kafka record value)."""
    return (DEBEZIUM / name).read_bytes()


def connect_decimal(text: str) -> str:
    """``org.apache.kafka.connect.data.Decimal`` bytes (base64, big-endian two's complement)."""
    unscaled = int(text.replace(".", ""))
    size = (unscaled.bit_length() + 8) // 8
    return base64.b64encode(unscaled.to_bytes(size, "big", signed=True)).decode()


def ledger_row(tx_id: Any = "T1", **columns: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "tx_id": tx_id,
        "wallet_id": "W1",
        "type": "PAYMENT",
        "amount": "100.50",
        "currency": "KRW",
        "related_id": "O1",
        "related_type": None,
        "status": "POSTED",
        "created_at": "2026-01-01T00:00:00Z",
        "version": 1,
    }
    row.update(columns)
    return row


def order_row(order_id: Any = "O1", **columns: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_id": order_id,
        "payer_wallet_id": "W1",
        "receiver_wallet_id": "W2",
        "amount": "100.50",
        "currency": "KRW",
        "status": "PENDING",
        "created_at": "2026-01-01T00:00:00Z",
        "version": 1,
    }
    row.update(columns)
    return row


def envelope(
    table: str = "ledger_entries",
    op: str = "c",
    *,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    lsn: int = 100,
    tx: int = 5,
    ts_ms: int = BASE_MS,
    top_ts_ms: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A bare (schemas disabled) Debezium envelope."""
    doc: dict[str, Any] = {
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.3.Final",
            "connector": "postgresql",
            "name": "oltp",
            "ts_ms": ts_ms,
            "snapshot": "false",
            "db": "payments",
            "schema": "public",
            "table": table,
            "txId": tx,
            "lsn": lsn,
        },
        "op": op,
        "ts_ms": ts_ms + 50 if top_ts_ms is None else top_ts_ms,
    }
    doc.update(extra)
    return doc


def event(table: str = "ledger_entries", op: str = "c", **kwargs: Any) -> bytes:
    """A bare event as bytes; ``after`` defaults to a valid row of ``table``."""
    if "after" not in kwargs and op != "d":
        kwargs["after"] = ledger_row() if table == "ledger_entries" else order_row()
    doc = envelope(table, op, **kwargs)
    return json.dumps(doc, separators=(",", ":")).encode()  # stdlib: ints of any size


def wrapped(payload: dict[str, Any], columns: dict[str, dict[str, Any]]) -> bytes:
    """A JsonConverter (schemas on) event: ``columns`` maps column → its field schema."""
    fields = [{"field": name, "type": "string", **spec} for name, spec in columns.items()]
    schema = {
        "type": "struct",
        "fields": [
            {"type": "struct", "fields": fields, "optional": True, "field": "before"},
            {"type": "struct", "fields": fields, "optional": True, "field": "after"},
            {"type": "struct", "fields": [], "optional": False, "field": "source"},
            {"type": "string", "optional": False, "field": "op"},
        ],
        "optional": False,
        "name": "oltp.public.ledger_entries.Envelope",
    }
    return json.dumps({"schema": schema, "payload": payload}).encode()


def sample_stream(count: int = 40) -> list[bytes]:
    """A small mixed stream: orders, legs, updates, a delete, redeliveries, bad lines."""
    lines: list[bytes] = []
    for n in range(count):
        oid, lsn = f"O{n}", 1000 + n * 10
        lines.append(event("payment_orders", after=order_row(oid), lsn=lsn, tx=n))
        lines.append(
            event(after=ledger_row(f"T{n}a", related_id=oid, password=f"pw-{n}"), lsn=lsn + 1)
        )
        lines.append(event(after=ledger_row(n * 1000 + 7, type="RECEIVE"), lsn=lsn + 2))
        if n % 5 == 0:  # a redelivery: the same change, another connector time
            lines.append(event("payment_orders", after=order_row(oid), lsn=lsn, tx=n, top_ts_ms=1))
        if n % 7 == 0:
            lines.append(b"{not json")
    lines.append(event(op="d", before={"tx_id": "T0a"}, after=None, lsn=99_999))
    return lines


GOLDEN = Path(__file__).resolve().parent / "golden"


def golden_lines() -> list[bytes]:
    """Every event line of every golden scenario (tests/golden/*/events.jsonl)."""
    return [
        line
        for path in sorted(GOLDEN.glob("*/events.jsonl"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]


def change_of(raw: bytes) -> Any:
    """The change ``prepare`` makes of ``raw`` (which must be a valid change)."""
    outcome = prepare(raw)
    assert isinstance(outcome, Prepared), outcome
    return outcome.change


def reason_of(raw: bytes) -> str:
    """The dead-letter reason ``prepare`` gives ``raw`` (which must be refused)."""
    outcome = prepare(raw)
    assert isinstance(outcome, Rejected), outcome
    return outcome.reason
