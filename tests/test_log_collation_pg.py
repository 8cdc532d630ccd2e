"""Migration 0002 on PostgreSQL: the logs' indexed text becomes byte-wise, and a log written
before it stays whole — chain, dedupe, lookups by key and time."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from eventlog.db import make_engine
from eventlog.migrate import alembic_config, current_revision, head_revision, upgrade
from eventlog.store import EventLog, prepare
from eventlog.verify import verify_log
from tests.fixtures_eventlog import event, ledger_row

# keys whose code-point order differs from a linguistic one (case, accents, punctuation)
AWKWARD = ["a", "B", "b", "É", "e", "z", "_x", "-y", "10", "9"]

COLUMNS = {
    ("events", "event_id"),
    ("events", "entity_key"),
    ("events", "group_key"),
    ("events", "ingested_at"),
    ("audit_log", "actor"),
    ("audit_log", "resource_id"),
    ("audit_log", "at"),
}


def _append(engine: Engine, keys: list[str], lsn: int) -> dict[str, int]:
    outcomes = [
        prepare(event(after=ledger_row(k, related_id=f"O{k}"), lsn=lsn + i))
        for i, k in enumerate(keys)
    ]
    return EventLog(engine).append(outcomes).summary()


def _collations(engine: Engine) -> dict[tuple[str, str], str | None]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema IN ('eventlog', 'audit') AND data_type IN "
                "('text', 'character varying')"
            )
        ).all()
    return {(t, c): coll for t, c, coll in rows}


def test_migration_makes_log_text_bytewise_and_keeps_an_existing_log(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
        before = _collations(engine)
        first = _append(engine, AWKWARD, lsn=100)

        assert upgrade(engine) == head_revision() == current_revision(engine)
        after = _collations(engine)
        again = _append(engine, AWKWARD, lsn=100)  # the same events: duplicates
        more = _append(engine, ["Z2", "é2"], lsn=500)
        report = verify_log(engine)
        with engine.connect() as conn:
            by_key = conn.execute(
                text(
                    "SELECT entity_key FROM eventlog.events WHERE entity_key = ANY(:k) "
                    "ORDER BY entity_key"
                ),
                {"k": [f"ledger_entries:{k}" for k in AWKWARD]},
            ).scalars()
            keys = [str(k).split(":", 1)[1] for k in by_key]
            recent = conn.execute(
                text("SELECT count(*) FROM eventlog.events WHERE ingested_at >= '2000-01-01'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert all(before[c] != "C" for c in COLUMNS), before
    assert all(after[c] == "C" for c in COLUMNS), after
    assert first["appended"] == len(AWKWARD)
    assert again["appended"] == 0
    assert again["duplicate"] == len(AWKWARD)
    assert more["appended"] == 2
    assert report.events == report.head == len(AWKWARD) + 2
    assert keys == sorted(AWKWARD)  # code-point order, as Python sorts str
    assert recent == len(AWKWARD) + 2
