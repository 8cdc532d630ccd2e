"""The HTTP surface (SPEC §6). Each route validates its inputs and calls the service.

Access control is attached to the admin router as one dependency
(:func:`api.deps.require_access`); the audit record is written by the audit middleware.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AfterValidator, BeforeValidator
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from api import models
from api.audit import AuditFilter
from api.deps import State, require_access
from api.queries import WalletQuery
from api.service import AsOf
from eventlog.timeutil import format_ts

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class _AnyId(Convertor[str]):
    """A path id as the client sent it, empty or with ``/`` (``%2F``) or line breaks
    included: the route matches, and the id's validation answers 422 (SPEC §6: an id
    that is not 1-128 of ``[A-Za-z0-9._:-]`` is a 422, not an unknown path)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anyid", _AnyId())
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
MAX_POSITION = 2**63 - 1
NO_NUL = r"^[^\x00]*$"  # text the database can hold (PostgreSQL text has no NUL)


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("expected an RFC 3339 timestamp with offset, e.g. 2026-01-01T00:00:00Z")
    if not isinstance(value, str | datetime):
        raise ValueError("expected an RFC 3339 timestamp")
    return value


def _aware(value: datetime) -> datetime:
    """The instant in UTC; one whose offset carries it outside years 1-9999 there
    (``0001-01-01T00:00:00+01:00``) is invalid input, like any other malformed time."""
    if value.tzinfo is None:
        raise ValueError("timestamp needs an offset")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("timestamp out of range: years 1-9999 in UTC") from exc


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_aware)]


def Id(description: str) -> object:
    return Path(min_length=1, max_length=128, pattern=ID_PATTERN, description=description)


TxId = Annotated[str, Id("ledger entry id")]
OrderId = Annotated[str, Id("payment order id")]
WalletId = Annotated[str, Id("wallet id")]
AsOfTime = Annotated[
    Rfc3339 | None, Query(description="answer as the back office knew it then (ingested_at <=)")
]
AsOfPosition = Annotated[
    int | None, Query(ge=1, le=MAX_POSITION, description="answer as of this log position")
]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=512)]
Since = Annotated[Rfc3339 | None, Query(description="inclusive lower bound")]
Until = Annotated[Rfc3339 | None, Query(description="exclusive upper bound")]


admin = APIRouter(prefix="/admin", dependencies=[Depends(require_access)])
public = APIRouter()


def _as_of(at: datetime | None, position: int | None) -> AsOf:
    """Both may be given: the answer is then as of the earlier of the two points."""
    return AsOf(at=at, position=position)


def _text(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)


@admin.get("/tx/{tx_id:anyid}", name="tx", response_model=models.TxDetail)
async def get_tx(
    tx_id: TxId, state: State, as_of: AsOfTime = None, as_of_position: AsOfPosition = None
) -> Any:
    """One ledger entry with its pairing, order and freshness (ADMIN_READ)."""
    if state.aio is not None and as_of is None and as_of_position is None:
        return await state.aio.tx_response(tx_id)  # PostgreSQL, on the event loop
    return await run_in_threadpool(state.service.tx, tx_id, _as_of(as_of, as_of_position))


@admin.get(
    "/payment-orders/{order_id:anyid}",
    name="payment_order",
    response_model=models.OrderDetail,
)
def get_payment_order(
    order_id: OrderId, state: State, as_of: AsOfTime = None, as_of_position: AsOfPosition = None
) -> dict[str, object]:
    """A payment order with its legs and pairing (ADMIN_READ)."""
    return state.service.order(order_id, _as_of(as_of, as_of_position))


@admin.get(
    "/wallets/{wallet_id:anyid}/tx",
    name="wallet_tx",
    response_model=models.WalletPage,
)
def get_wallet_tx(
    wallet_id: WalletId,
    state: State,
    limit: Limit = 50,
    cursor: Cursor = None,
    since: Since = None,
    until: Until = None,
    include_deleted: bool = False,
) -> dict[str, object]:
    """A wallet's entries, newest first by (created_at, tx_id), keyset-paginated (ADMIN_READ)."""
    query = WalletQuery(wallet_id, limit, _text(since), _text(until), include_deleted)
    return state.service.wallet(query, cursor)


@admin.get("/audit", name="audit", response_model=models.AuditPage)
def get_audit(
    state: State,
    actor: Annotated[str | None, Query(min_length=1, max_length=256, pattern=NO_NUL)] = None,
    resource_id: Annotated[str | None, Query(min_length=1, max_length=256, pattern=NO_NUL)] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, object]:
    """Audit records, newest first (ADMIN_AUDIT)."""
    where = AuditFilter(actor, resource_id, _text(since), _text(until))
    return state.service.audit(where, limit, cursor)


@admin.get("/projections", name="projections", response_model=models.Projections)
def get_projections(state: State) -> dict[str, object]:
    """Every projection version: state, position, lag, rows, checksum (ADMIN_READ/AUDIT)."""
    return state.service.projections()


@public.get("/healthz", response_model=models.Health)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@public.get(
    "/readyz",
    response_model=models.Readiness,
    responses={503: {"model": models.Readiness, "description": "not ready"}},
)
def readyz(state: State, response: Response) -> dict[str, object]:
    """Database reachable, migrations at head, every projection serving and none failed."""
    report = state.service.readiness()
    if not report["ready"]:
        response.status_code = 503
    return report


@public.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(state: State) -> Response:
    """Prometheus text exposition."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
