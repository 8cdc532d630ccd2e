"""The same folds without a database: replay events into memory (api/'s ``as_of``, tests).

``replay(events, settings)`` folds the given events (in position order) through the
serving-default version of each projection — or the versions you name — and answers
lookups the way the serving views would.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from eventlog.settings import Settings
from eventlog.store import LoggedEvent
from projections import registry
from projections.base import Changes, Projection
from projections.checksum import memory_checksum
from projections.tables import Row

_BATCH = 10_000


@dataclass(slots=True)
class MemoryTables:
    """:class:`projections.base.Reader` over dicts (logical table → key → row)."""

    rows: dict[str, dict[str, Row]] = field(default_factory=dict)

    def by_key(self, table: str, keys: Collection[str]) -> dict[str, Row]:
        stored = self.rows.get(table, {})
        return {k: stored[k] for k in keys if k in stored}

    def by_column(self, table: str, column: str, values: Collection[str]) -> list[Row]:
        wanted = set(values)
        return [r for r in self.rows.get(table, {}).values() if r[column] in wanted]

    def write(self, projection: Projection, changes: Changes) -> None:
        for name, upserts in changes.upserts.items():
            stored = self.rows.setdefault(name, {})
            key = projection.table(name).key
            for row in upserts:
                stored[row[key]] = row
        for name, keys in changes.deletes.items():
            stored = self.rows.setdefault(name, {})
            for k in keys:
                stored.pop(k, None)


@dataclass(slots=True)
class Replayed:
    """Projection state after a replay; lookups mirror the serving views."""

    position: int
    projections: dict[str, tuple[Projection, MemoryTables]]

    def rows(self, name: str) -> dict[str, Row]:
        """The public table of projection ``name`` (key → row)."""
        projection, store = self.projections[name]
        return store.rows.get(projection.public.name, {})

    def tx(self, tx_id: str) -> Row | None:
        return self.rows("ledger_entries").get(tx_id)

    def order(self, order_id: str) -> Row | None:
        return self.rows("payment_orders").get(order_id)

    def pair(self, related_id: str) -> Row | None:
        return self.rows("pairs").get(related_id)

    def entries_for(self, related_id: str) -> list[Row]:
        """Ledger entries whose ``related_id`` is ``related_id``, by (created_at, tx_id)."""
        found = [r for r in self.rows("ledger_entries").values() if r["related_id"] == related_id]
        return sorted(found, key=lambda r: (r["created_at"] or "", r["tx_id"]))

    def checksum(self, name: str) -> str:
        projection, store = self.projections[name]
        return memory_checksum((t, store.rows.get(t.name, {})) for t in projection.tables)


def replay(
    events: Iterable[LoggedEvent],
    settings: Settings | None = None,
    versions: Mapping[str, int] | None = None,
    *,
    batch: int = _BATCH,
) -> Replayed:
    """Fold ``events`` (ascending positions) into fresh in-memory projections."""
    chosen = {
        name: (versions or {}).get(name, registry.default_version(name, settings))
        for name in registry.NAMES
    }
    state = {
        name: (registry.make(name, version, settings), MemoryTables())
        for name, version in chosen.items()
    }
    position = 0
    pending: list[LoggedEvent] = []
    for event in events:
        pending.append(event)
        position = event.position
        if len(pending) >= batch:
            _apply(state, pending)
            pending = []
    if pending:
        _apply(state, pending)
    return Replayed(position=position, projections=state)


def _apply(state: dict[str, tuple[Projection, MemoryTables]], events: list[LoggedEvent]) -> None:
    for projection, store in state.values():
        store.write(projection, projection.apply(events, store))
