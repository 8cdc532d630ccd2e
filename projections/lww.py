"""Last-writer-wins for one keyed entity (SPEC §4.1), shared by every projection.

Order key = (version, updated_at, source.lsn, position), compared left to right, null
lowest. A change replaces the current row iff its key is ≥ the current one.

Deletes: the key comes from ``before``. Debezium's default replica identity sends only
the primary key in ``before``; then ``version`` and ``updated_at`` are taken from the
current row (a tie), so lsn and position decide — a delete wins ties by lsn/position.
A winning delete keeps the row (``deleted`` true, ``deleted_at`` = the delete's commit
time). Its data: when ``before`` is a row image (it carries version or updated_at),
``before``'s non-null values over the previous row's; when it is key-only, the previous
row's — the other values of a key-only image are placeholders (Debezium fills required
columns with defaults such as ``""`` and ``0``) and must not overwrite what was deleted.
A delete of an
unknown key stores a tombstone, so an older create arriving late does not resurrect it
when version/lsn say it is older.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventlog.store import LoggedEvent
from projections.base import Reader, State
from projections.tables import Row

OrderKey = tuple[tuple[bool, Any], tuple[bool, Any], tuple[bool, Any], int]
# build(event, current row or None, version, updated_at) -> the new row
Builder = Callable[[LoggedEvent, Row | None, int | None, str | None], Row]


def order_key(
    version: int | None, updated_at: str | None, lsn: int | None, position: int
) -> OrderKey:
    """Comparable key with nulls lowest (timestamps are fixed-width UTC text)."""
    return (
        (version is not None, version if version is not None else 0),
        (updated_at is not None, updated_at or ""),
        (lsn is not None, lsn if lsn is not None else 0),
        position,
    )


def row_key(row: Row) -> OrderKey:
    return order_key(row["version"], row["updated_at"], row["lsn"], row["position"])


def effective_version(event: LoggedEvent, current: Row | None) -> tuple[int | None, str | None]:
    """``version``/``updated_at`` of a change; a delete borrows missing ones from the row."""
    row = event.change.row
    version, updated = row.get("version"), row.get("updated_at")
    if event.change.op == "d" and current is not None:
        if version is None:
            version = current["version"]
        if updated is None:
            updated = current["updated_at"]
    return version, updated


def lacks_order(event: LoggedEvent) -> bool:
    """True when a change carries neither ``version`` nor ``updated_at`` (metric)."""
    row = event.change.row
    return row.get("version") is None and row.get("updated_at") is None


def merge(event: LoggedEvent, current: Row | None, build: Builder) -> Row | None:
    """The new row if ``event`` wins over ``current``, else ``None``."""
    version, updated = effective_version(event, current)
    if current is not None:
        incoming = order_key(version, updated, event.change.lsn, event.position)
        if incoming < row_key(current):
            return None
    return build(event, current, version, updated)


def data_columns(event: LoggedEvent, current: Row | None, columns: Sequence[str]) -> dict[str, Any]:
    """The data a change carries: ``after`` as is; for a delete see the module docstring."""
    source = event.change.row
    if event.change.op != "d" or current is None:
        return {c: source.get(c) for c in columns}
    if lacks_order(event):  # key-only image: keep the deleted row's data
        return {c: current.get(c) for c in columns}
    return {c: source.get(c) if source.get(c) is not None else current.get(c) for c in columns}


def provenance(event: LoggedEvent, version: int | None, updated_at: str | None) -> dict[str, Any]:
    """The order-key and provenance columns every entity row carries."""
    deleted = event.change.op == "d"
    return {
        "updated_at": updated_at,
        "version": version,
        "deleted": deleted,
        "deleted_at": event.change.source_ts if deleted else None,
        "source_ts": event.change.source_ts,
        "lsn": event.change.lsn,
        "position": event.position,
    }


def prefetch_entities(
    events: Sequence[LoggedEvent], reader: Reader, source: str, table: str
) -> State:
    """The stored rows of ``table`` (or ``None``) for every key the changes of ``source`` name."""
    keys = {e.change.key for e in events if e.change.table == source}
    found = reader.by_key(table, keys) if keys else {}
    return {table: {k: found.get(k) for k in keys}}


def fold_entity(
    rows: dict[str, Row | None],
    events: Sequence[LoggedEvent],
    table: str,
    build: Builder,
) -> int:
    """Apply every change of source ``table`` to ``rows`` in place; return the key-less count."""
    missing = 0
    for event in events:
        change = event.change
        if change.table != table:
            continue
        data = change.row
        version, updated = data.get("version"), data.get("updated_at")
        missing += version is None and updated is None  # lacks_order
        current = rows.get(change.key)
        if current is None:  # merge() with nothing to beat: the change's own row
            rows[change.key] = build(event, None, version, updated)
            continue
        new = merge(event, current, build)
        if new is not None:
            rows[change.key] = new
    return missing
