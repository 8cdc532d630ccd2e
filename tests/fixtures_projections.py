"""Debezium change events for projection tests, and helpers to append and project them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Engine

from eventlog.store import AppendResult, EventLog, Prepared, SourceRef, prepare

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def ledger_row(
    tx_id: str,
    *,
    wallet: str | None = "W1",
    type: str | None = "PAYMENT",
    amount: str | None = "10.00",
    related_id: str | None = None,
    related_type: str | None = None,
    version: int | None = None,
    updated_at: str | None = None,
    status: str | None = None,
    amount_signed: str | None = None,
    currency: str | None = "KRW",
    created_at: str | None = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "tx_id": tx_id,
        "wallet_id": wallet,
        "type": type,
        "amount": amount,
        "currency": currency,
        "related_id": related_id,
        "related_type": related_type,
        "status": status,
        "created_at": created_at,
    }
    if version is not None:
        row["version"] = version
    if updated_at is not None:
        row["updated_at"] = updated_at
    if amount_signed is not None:
        row["amount_signed"] = amount_signed
    return row


def order_row(
    order_id: str,
    *,
    payer: str | None = "W1",
    receiver: str | None = "W2",
    amount: str | None = "10.00",
    status: str | None = "PENDING",
    version: int | None = None,
    updated_at: str | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_id": order_id,
        "payer_wallet_id": payer,
        "receiver_wallet_id": receiver,
        "amount": amount,
        "currency": "KRW",
        "status": status,
        "created_at": "2026-01-01T00:00:00Z",
    }
    if version is not None:
        row["version"] = version
    if updated_at is not None:
        row["updated_at"] = updated_at
    return row


def event(
    table: str,
    op: str,
    row: dict[str, Any],
    *,
    lsn: int | None = None,
    ts: int = 0,
    before: dict[str, Any] | None = None,
) -> bytes:
    """One bare Debezium envelope; ``ts`` is seconds after 2026-01-01 (source.ts_ms)."""
    source: dict[str, Any] = {"table": table, "ts_ms": BASE_MS + ts * 1000}
    if lsn is not None:
        source["lsn"] = lsn
    envelope = {
        "op": op,
        "before": row if op == "d" else before,
        "after": None if op == "d" else row,
        "source": source,
    }
    try:
        return orjson.dumps(envelope)
    except TypeError:  # integers past 64 bits: the stdlib writes them exactly
        return json.dumps(envelope).encode()


def append(engine: Engine, lines: Iterable[bytes]) -> AppendResult:
    """Append lines through the real path (prepare + EventLog.append)."""
    outcomes = [prepare(line, SourceRef(file="test", line=i)) for i, line in enumerate(lines, 1)]
    return EventLog(engine).append(outcomes)


def append_refused(engine: Engine, line: bytes, stored: bytes) -> AppendResult:
    """Append ``line`` with ``stored`` as its bytes: an event that a log written by an
    earlier, more permissive decoder holds and the current one refuses (a version past
    64 bits, say) — every projection that reads it must fail at its position."""
    outcome = prepare(line, SourceRef(file="test", line=1))
    assert isinstance(outcome, Prepared), outcome
    return EventLog(engine).append([dataclasses.replace(outcome, payload=stored)])


def huge_version(key: str, **envelope: Any) -> tuple[bytes, bytes]:
    """(an event, the same with a version no 64-bit column holds): for :func:`append_refused`."""
    return (
        event("ledger_entries", "c", ledger_row(key, version=1), **envelope),
        event("ledger_entries", "c", ledger_row(key, version=2**70), **envelope),
    )
