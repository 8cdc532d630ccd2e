"""``ledger_entries`` → table ``ledger_entries``: one row per ``tx_id`` (SPEC §4.2)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from eventlog.decode import format_decimal
from eventlog.store import LoggedEvent
from projections.base import Projection, Reader, State
from projections.lww import data_columns, data_origin, fold_entity, key_only, prefetch_entities
from projections.tables import Row, TableDef

SOURCE = "ledger_entries"
SIGNS = {"PAYMENT": -1, "RECEIVE": 1}  # amount_signed when the source does not send it

LEDGER_ENTRIES = TableDef(
    name="ledger_entries",
    key="tx_id",
    columns=(
        ("tx_id", "text"),
        ("wallet_id", "text"),
        ("type", "text"),
        ("amount", "text"),
        ("amount_signed", "text"),
        ("currency", "text"),
        ("status", "text"),
        ("related_id", "text"),
        ("related_type", "text"),
        ("created_at", "text"),
        ("updated_at", "text"),
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
    indexes=(("wallet", ("wallet_id", "created_at", "tx_id")), ("related", ("related_id",))),
)

_COLUMNS = LEDGER_ENTRIES.column_names
_DATA = (
    "wallet_id",
    "type",
    "amount",
    "currency",
    "status",
    "related_id",
    "related_type",
    "created_at",
)


def signed_amount(entry_type: str | None, amount: str | None) -> str | None:
    """``-amount`` for PAYMENT, ``+amount`` for RECEIVE, keeping the scale; else ``None``."""
    sign = SIGNS.get(entry_type or "")
    if sign is None or amount is None:
        return None
    number = Decimal(amount)
    # copy_negate is exact; arithmetic would round to the context's 28 significant digits
    return format_decimal(number.copy_negate() if sign < 0 else number, "amount_signed")


def build_entry(
    event: LoggedEvent, current: Row | None, version: int | None, updated_at: str | None
) -> Row:
    """The winning change as a ``ledger_entries`` row (columns in table order)."""
    change = event.change
    source = change.row
    deleted = change.op == "d"
    # the data columns: ``data_columns`` (which is the change's own row unless it deletes one)
    get = (data_columns(event, current, _DATA) if deleted else source).get
    if key_only(event):  # placeholders: the deleted row's own value, if known
        signed = current["amount_signed"] if current is not None else None
    else:
        source_signed = source.get("amount_signed")
        signed = (
            source_signed
            if source_signed is not None
            else signed_amount(get("type"), get("amount"))
        )
    origin = data_origin(event, current)
    return {
        "tx_id": change.key,
        "wallet_id": get("wallet_id"),
        "type": get("type"),
        "amount": get("amount"),
        "amount_signed": signed,
        "currency": get("currency"),
        "status": get("status"),
        "related_id": get("related_id"),
        "related_type": get("related_type"),
        "created_at": get("created_at"),
        # provenance()
        "updated_at": updated_at,
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


class LedgerEntriesV1(Projection):
    """Ledger entries, last-writer-wins per ``tx_id``."""

    name = "ledger_entries"
    version = 1
    tables = (LEDGER_ENTRIES,)
    sources = frozenset({SOURCE})
    per_key = True

    def prefetch(self, events: Sequence[LoggedEvent], reader: Reader) -> State:
        return prefetch_entities(events, reader, SOURCE, LEDGER_ENTRIES.name)

    def fold(self, state: State, events: Sequence[LoggedEvent]) -> tuple[State, int]:
        missing = fold_entity(state[LEDGER_ENTRIES.name], events, SOURCE, build_entry)
        return state, missing
