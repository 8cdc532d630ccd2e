"""What each endpoint does, between the HTTP layer (routes) and the SQL (queries).

Every lookup reads one snapshot: freshness first, then the rows. ``as_of`` answers are
replayed from the log with the projections' own pure folds (``projections.memory``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loguru import logger
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError, SQLAlchemyError

from api import history, lookups, models, queries
from api.audit import AuditFilter, decode_cursor, encode_cursor, list_audit
from api.problems import ProblemError
from eventlog.db import check_reachable, is_sqlite
from eventlog.decode import is_canonical_ts
from eventlog.errors import DatabaseUnavailable, UsageError
from eventlog.migrate import current_revision, head_revision
from eventlog.settings import Settings
from eventlog.timeutil import format_ts
from projections.registry import NAMES
from projections.status import status as projection_status

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AsOf:
    """A point in the log's past: a time (``ingested_at <=``) or a position."""

    at: datetime | None = None
    position: int | None = None

    @property
    def requested(self) -> bool:
        return self.at is not None or self.position is not None


class Service:
    """The API's read operations over one engine."""

    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.kafka_group = settings.kafka_group if settings.kafka_bootstrap else None
        self._head: tuple[str | None] | None = None

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """One consistent read snapshot; missing views or a lost database become 503."""
        try:
            with self.engine.connect() as conn:
                if not is_sqlite(conn):
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except (ProgrammingError, OperationalError, DBAPIError) as exc:
            raise ProblemError(
                503, "serving data unavailable (database down or projections not built yet)"
            ) from exc

    @contextmanager
    def single_statement(self) -> Iterator[Connection]:
        """A connection for reads that are each one statement (a snapshot by itself).

        On PostgreSQL it runs in autocommit: no BEGIN/COMMIT round trips.
        """
        try:
            with self.engine.connect() as conn:
                if not is_sqlite(conn):
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
        except (ProgrammingError, OperationalError, DBAPIError) as exc:
            raise ProblemError(
                503, "serving data unavailable (database down or projections not built yet)"
            ) from exc

    def _freshness(self, conn: Connection, position: int | None = None) -> queries.Freshness:
        return queries.freshness(
            conn, self.clock(), kafka_group=self.kafka_group, position=position
        )

    def _not_found(self, what: str, fresh: queries.Freshness) -> ProblemError:
        return ProblemError(
            404,
            f"{what} not found",
            data_lag_sec=fresh.data_lag_sec,
            synced_through=fresh.synced_through,
        )

    # ------------------------------------------------------------ lookups

    def tx(self, tx_id: str, as_of: AsOf) -> Row:
        if as_of.requested:
            with self.snapshot() as conn:
                return self._tx_as_of(conn, tx_id, as_of)
        with self.single_statement() as conn:
            found = queries.tx_bundle(conn, tx_id)
            fresh = queries.freshness_from(
                conn, self.clock(), found.fresh, kafka_group=self.kafka_group
            )
        if found.tx is None:
            raise self._not_found(f"tx {tx_id}", fresh)
        return queries.with_freshness(lookups.tx_detail(found.tx, found.order, found.pair), fresh)

    def order(self, order_id: str, as_of: AsOf) -> Row:
        with self.snapshot() as conn:
            if as_of.requested:
                return self._order_as_of(conn, order_id, as_of)
            fresh = self._freshness(conn)
            order_row = queries.order_row(conn, order_id)
            legs = queries.order_legs(conn, order_id)
            if order_row is None and not legs:
                raise self._not_found(f"payment order {order_id}", fresh)
            pair = queries.pair_row(conn, order_id)
            return queries.with_freshness(
                lookups.order_detail(order_id, order_row, legs, pair), fresh
            )

    def wallet(self, q: queries.WalletQuery, cursor: str | None) -> Row:
        if cursor is not None:
            created_at, tx_id = _wallet_cursor(cursor)
            q = queries.WalletQuery(
                q.wallet_id, q.limit, q.since, q.until, q.include_deleted, (created_at, tx_id)
            )
        with self.snapshot() as conn:
            rows, more = queries.wallet_entries(conn, q)
            known = queries.known_orders(
                conn, [r["related_id"] for r in rows if r["related_id"] and not r["related_type"]]
            )
        items = [lookups.entry(r, r["related_id"] in known) for r in rows]
        last = rows[-1] if rows else None
        token = encode_cursor([last["created_at"], last["tx_id"]]) if more and last else None
        return {"items": items, "next_cursor": token}

    # ------------------------------------------------------------ as_of

    def _cutoff(self, conn: Connection, as_of: AsOf) -> tuple[history.Cutoff, str | None]:
        """Which events the answer may include, and the ``as_of`` to report.

        ``as_of`` (a time) keeps events with ``ingested_at <=`` it; ``as_of_position`` keeps
        positions up to it; given both, both hold (the earlier point wins).
        """
        position = queries.log_head(conn)
        ingested: str | None = None
        when: str | None = None
        if as_of.at is not None:
            ingested = when = format_ts(as_of.at)
            position = min(position, queries.position_at(conn, ingested)[0])
        if as_of.position is not None and as_of.position < position:
            position = as_of.position
            when = None
        if when is None:
            when = queries.ingested_at(conn, position) if position else None
        return history.Cutoff(position, ingested), when

    @staticmethod
    def _serving_versions(conn: Connection) -> dict[str, int]:
        """Replay with the versions that serve now, so as_of answers in the same terms."""
        serving = queries.serving_checkpoints(queries.checkpoint_rows(conn))
        return {str(r["projection"]): int(r["version"]) for r in serving}

    def _tx_as_of(self, conn: Connection, tx_id: str, as_of: AsOf) -> Row:
        cut, when = self._cutoff(conn, as_of)
        fresh = self._freshness(conn, position=cut.position)
        versions = self._serving_versions(conn)
        state = history.entity_state(conn, self.settings, f"ledger_entries:{tx_id}", cut, versions)
        tx = state.tx(tx_id)
        if tx is None:
            raise self._not_found(f"tx {tx_id} as of position {cut.position}", fresh)
        order_row = pair = None
        if lookups.points_at_order(tx):
            related = str(tx["related_id"])
            group = history.group_state(conn, self.settings, related, cut, versions)
            order_row = group.order(related)
            pair = group.pair(related)
        return queries.with_freshness(lookups.tx_detail(tx, order_row, pair), fresh, as_of=when)

    def _order_as_of(self, conn: Connection, order_id: str, as_of: AsOf) -> Row:
        cut, when = self._cutoff(conn, as_of)
        fresh = self._freshness(conn, position=cut.position)
        versions = self._serving_versions(conn)
        group = history.group_state(conn, self.settings, order_id, cut, versions)
        order_row = group.order(order_id)
        legs = history.legs(group, order_id)
        if order_row is None and not legs:
            raise self._not_found(f"payment order {order_id} as of position {cut.position}", fresh)
        detail = lookups.order_detail(order_id, order_row, legs, group.pair(order_id))
        return queries.with_freshness(detail, fresh, as_of=when)

    # ------------------------------------------------------------ status and audit

    def projections(self) -> Row:
        """Every projection version as ``projections.status`` reports it."""
        try:
            items = projection_status(self.engine, self.settings)
            with self.engine.connect() as conn:
                head = queries.log_head(conn)
        except SQLAlchemyError as exc:
            raise ProblemError(503, "projection status unavailable (database down)") from exc
        fields = models.ProjectionVersion.model_fields
        return {
            "log_head": max([head, *(int(i["log_head"]) for i in items)]),
            "projections": [{k: v for k, v in i.items() if k in fields} for i in items],
        }

    def readiness(self) -> Row:
        """``/readyz``: database reachable, migrations at head, projections serving, none failed."""
        checks = {"database": False, "migrations": False, "projections": False}
        detail: list[str] = []
        try:
            check_reachable(self.engine)
            checks["database"] = True
            checks["migrations"] = current_revision(self.engine) == self._head_revision()
            if not checks["migrations"]:
                detail.append("database is not migrated to head")
            items = projection_status(self.engine, self.settings)
        except (DatabaseUnavailable, SQLAlchemyError) as exc:
            # unauthenticated callers get the check's name only; the server log the error
            # (which names the database, its host and the failing statement)
            logger.warning("readyz: {}", str(exc).splitlines()[0])
            detail.append(
                "database query failed (see the server log)"
                if checks["database"]
                else "database unreachable (see the server log)"
            )
            return {"ready": False, "checks": checks, "detail": detail}
        serving = [i for i in items if i["serving"]]
        failed = [
            f"{i['projection']} v{i['version']} failed at position {i['error_position']}"
            for i in serving
            if i["state"] == "failed"
        ]
        have = {i["projection"] for i in serving}
        missing = [f"{name} has no serving version" for name in NAMES if name not in have]
        detail += failed + missing
        checks["projections"] = not failed and not missing
        if _WORKERS:  # `bo serve` runs a projector or consumer in this process
            stopped = sorted(name for name, alive in _WORKERS.items() if not alive)
            checks["workers"] = not stopped
            detail += [f"the in-process {name} stopped (see the server log)" for name in stopped]
        return {"ready": all(checks.values()), "checks": checks, "detail": detail}

    def _head_revision(self) -> str | None:
        if self._head is None:
            self._head = (head_revision(),)
        return self._head[0]

    def audit(self, where: AuditFilter, limit: int, cursor: str | None) -> Row:
        try:
            with self.snapshot() as conn:
                items, token = list_audit(conn, where, limit=limit, cursor=cursor)
        except UsageError as exc:
            raise ProblemError(422, "cursor: not a cursor this API issued") from exc
        return {"items": items, "next_cursor": token}


# Background workers ``bo serve`` runs in this process (the projector, the consumer) and
# whether each still runs: one that stopped on an error makes /readyz answer 503 — the API
# would otherwise keep answering, ever staler, as "ready".
_WORKERS: dict[str, bool] = {}


def worker_running(name: str, running: bool) -> None:
    """Record that the in-process worker ``name`` started (True) or stopped on an error."""
    _WORKERS[name] = running


def _wallet_cursor(cursor: str) -> tuple[str | None, str]:
    try:
        created_at, tx_id = decode_cursor(cursor, (object, str))
    except UsageError as exc:
        raise ProblemError(422, "cursor: not a cursor this API issued") from exc
    # a value the listing could have given: a stored timestamp (or null) and a stored id
    if created_at is not None and not (isinstance(created_at, str) and is_canonical_ts(created_at)):
        raise ProblemError(422, "cursor: not a cursor this API issued")
    if not tx_id:
        raise ProblemError(422, "cursor: not a cursor this API issued")
    return created_at, tx_id
