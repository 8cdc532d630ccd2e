"""Last-writer-wins for one keyed entity (SPEC §4.1), shared by every projection.

Order key = (version, updated_at, source.lsn, position), compared left to right, null
lowest. A change replaces the current row iff its key is ≥ the current one.

Deletes: the key comes from ``before``.

* A **key-only** ``before`` (Debezium's default replica identity: besides the key only
  nulls and placeholders for required columns such as ``""`` and ``0`` — ``version`` too)
  takes ``version``/``updated_at`` from the current row — a tie — so lsn and position
  decide: the delete wins over the changes committed before it. The row keeps the deleted
  data; a delete of an unknown key stores a tombstone without data.
* A **full** ``before`` image (REPLICA IDENTITY FULL) is the deleted row: its own order
  key (plain last-writer-wins), and its values as they are (nulls too) become the deleted
  row's data.

A winning delete keeps the row (``deleted`` true, ``deleted_at`` = the delete's commit
time; ``key_only_delete`` for the first kind). A change that reaches a row deleted by a
key-only delete but was committed before it (lower lsn/position) and is newer than the
row's data does not bring the row back: it only becomes the deleted row's data — exactly
what the row would hold had the events arrived in commit order. It competes with the
data by the data's own order key (``data_lsn``/``data_position``: the change the data came
from), not by the delete's lsn — so of two such changes with equal versions, the one
committed later is the data whatever their arrival order. So the result does not
depend on arrival order whenever the source's versions follow its commit order (the OLTP
invariant). A change committed after the delete with a higher order key brings the row
back (a re-insert); without ``source.lsn`` the log position stands for commit order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventlog.decode import TABLES
from eventlog.store import LoggedEvent
from projections.base import Reader, State
from projections.tables import Row

KEY_COLUMNS = {name: spec.key for name, spec in TABLES.items()}
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
    """``version``/``updated_at`` of a change; a key-only delete borrows the row's (its own
    values are placeholders: none at all for an unknown key)."""
    if key_only(event):
        return (current["version"], current["updated_at"]) if current is not None else (None, None)
    row = event.change.row
    return row.get("version"), row.get("updated_at")


_EPOCH = "1970-01-01T00:00:00.000000Z"


def _placeholder(value: Any) -> bool:
    """A value Debezium puts in a key-only ``before`` for a column it did not send: null,
    or the type's default for a required column (``""``, ``0``, ``"0.00"``, the epoch)."""
    if value is None or value is False or (type(value) is int and value == 0):
        return True
    return type(value) is str and (value.strip("0.-") == "" or value == _EPOCH)


def key_only(event: LoggedEvent) -> bool:
    """A delete whose ``before`` holds only the key (Debezium's default replica identity):
    every other value a placeholder — a required ``version`` column arrives as ``0``, so
    "no version" alone would not tell (a row of nothing but such values reads as key-only,
    which changes nothing: its data is the current row's)."""
    change = event.change
    if change.op != "d":
        return False
    key = KEY_COLUMNS.get(change.table)
    return all(_placeholder(value) for column, value in change.row.items() if column != key)


# what a deleted row keeps when a change committed before its delete arrives late
_DELETION = ("deleted", "deleted_at", "key_only_delete", "source_ts", "lsn", "position")


def _commit_order(lsn: int | None, position: int) -> tuple[bool, int, int]:
    """Where a change sits in the source's commit order: lsn (null lowest), then position."""
    return (lsn is not None, lsn if lsn is not None else 0, position)


def merge(event: LoggedEvent, current: Row | None, build: Builder) -> Row | None:
    """The new row if ``event`` wins over ``current``, else ``None``."""
    version, updated = effective_version(event, current)
    if current is None:
        return build(event, None, version, updated)
    change = event.change
    incoming = order_key(version, updated, change.lsn, event.position)
    before_delete = current["key_only_delete"] and _commit_order(
        change.lsn, event.position
    ) < _commit_order(current["lsn"], current["position"])
    if before_delete:
        # committed before the key-only delete (a change, or an earlier delete's image):
        # it competes with the deleted row's data (by the data's own order key, not the
        # delete's lsn), and if newer becomes that data — never a re-insert nor that
        # delete's provenance
        if incoming < data_key(current):
            return None
        row = build(event, current, version, updated)
        for column in _DELETION:
            row[column] = current[column]
        return row
    if incoming < row_key(current):
        return None
    return build(event, current, version, updated)


def data_key(row: Row) -> OrderKey:
    """The order key of a row's data: the change it came from (for a row deleted by a
    key-only delete, not the delete; none yet for a delete of an unknown key: lowest)."""
    position = row["data_position"]
    return order_key(
        row["version"], row["updated_at"], row["data_lsn"], position if position is not None else 0
    )


def data_origin(event: LoggedEvent, current: Row | None) -> tuple[int | None, int | None]:
    """``(data_lsn, data_position)`` of the row ``event`` builds: its own, unless it is a
    key-only delete, which keeps the data (and so the origin) of the row it deletes."""
    if key_only(event):
        return (
            (current["data_lsn"], current["data_position"]) if current is not None else (None, None)
        )
    return event.change.lsn, event.position


def data_columns(event: LoggedEvent, current: Row | None, columns: Sequence[str]) -> dict[str, Any]:
    """The data a change carries: ``after`` as is; for a delete see the module docstring
    (a key-only image: the deleted row's data, none for an unknown key; a full image: its
    own values, nulls included)."""
    source = event.change.row
    if key_only(event):  # placeholders: the deleted row's data, if known
        return {c: current.get(c) if current is not None else None for c in columns}
    return {c: source.get(c) for c in columns}


def provenance(
    event: LoggedEvent, current: Row | None, version: int | None, updated_at: str | None
) -> dict[str, Any]:
    """The order-key and provenance columns every entity row carries."""
    deleted = event.change.op == "d"
    data_lsn, data_position = data_origin(event, current)
    return {
        "updated_at": updated_at,
        "version": version,
        "deleted": deleted,
        "deleted_at": event.change.source_ts if deleted else None,
        "key_only_delete": key_only(event),
        "source_ts": event.change.source_ts,
        "lsn": event.change.lsn,
        "position": event.position,
        "data_lsn": data_lsn,
        "data_position": data_position,
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
        missing += version is None and updated is None  # bo_version_missing_total
        current = rows.get(change.key)
        if current is None:  # merge() with nothing to beat: the change's own row
            if change.op == "d":
                version, updated = effective_version(event, None)  # no placeholder version
            rows[change.key] = build(event, None, version, updated)
            continue
        new = merge(event, current, build)
        if new is not None:
            rows[change.key] = new
    return missing
