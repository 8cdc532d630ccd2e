"""Response models: every endpoint has one, so ``/openapi.json`` describes the whole API.

Decimals are strings with the source scale; times are RFC 3339 UTC strings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Decimal = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", description="decimal as text")]
PairingStatus = Literal["COMPLETE", "INCOMPLETE", "CONFLICT", "UNKNOWN"]


class Freshness(BaseModel):
    """How stale an answer may be (SPEC §6)."""

    data_lag_sec: float = Field(description="upper bound on staleness, seconds")
    synced_through: Timestamp | None = Field(
        description="commit time of the last event the serving projections have applied"
    )
    log_position: int = Field(description="log position the answer reflects")


class PaymentOrder(BaseModel):
    order_id: str
    payer_wallet_id: str | None
    receiver_wallet_id: str | None
    amount: Decimal | None
    currency: str | None
    status: str | None
    status_group: str | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    settled_at: Timestamp | None
    failed_at: Timestamp | None


class LedgerEntry(BaseModel):
    tx_id: str
    wallet_id: str | None
    type: str | None
    amount: Decimal | None
    amount_signed: Decimal | None
    currency: str | None
    status: str | None
    related_id: str | None
    related_type: str | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    deleted: bool
    deleted_at: Timestamp | None


class TxDetail(LedgerEntry, Freshness):
    """``GET /admin/tx/{tx_id}``."""

    pairing_status: PairingStatus
    paired_tx_id: str | None
    payer_wallet_id: str | None
    receiver_wallet_id: str | None
    payment_order: PaymentOrder | None
    as_of: Timestamp | None = Field(
        default=None, description="set when the answer was replayed from the log (as_of*)"
    )


class OrderDetail(Freshness):
    """``GET /admin/payment-orders/{order_id}``."""

    order_id: str
    order: PaymentOrder | None
    legs: list[LedgerEntry]
    pairing_status: PairingStatus
    payment_tx_id: str | None
    receive_tx_id: str | None
    as_of: Timestamp | None = None


class WalletPage(BaseModel):
    """``GET /admin/wallets/{wallet_id}/tx``: newest first, keyset pagination."""

    items: list[LedgerEntry]
    next_cursor: str | None


class AuditRecord(BaseModel):
    id: int
    at: Timestamp
    actor: str | None
    roles: list[str]
    method: str
    path: str
    action: str | None
    resource_type: str | None
    resource_id: str | None
    result_count: int | None
    status: int
    ip: str | None
    user_agent: str | None
    request_id: str
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditRecord]
    next_cursor: str | None


class ProjectionVersion(BaseModel):
    projection: str
    version: int
    state: str
    serving: bool
    stale: bool
    fingerprint: str
    position: int
    log_head: int
    lag: int
    rows: int
    checksum: str | None
    last_error: str | None
    error_position: int | None


class Projections(BaseModel):
    log_head: int
    projections: list[ProjectionVersion]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]
    detail: list[str]


class Problem(BaseModel):
    """RFC 9457 problem details; extra members (``data_lag_sec``, ``errors``) may appear."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
