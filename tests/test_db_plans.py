"""PostgreSQL sessions plan each statement with its actual parameters (eventlog.db)."""

from __future__ import annotations

from sqlalchemy import text

from eventlog.db import make_engine


def test_repeated_lookups_never_run_a_generic_plan(pg_url: str) -> None:
    """psycopg prepares a statement run five times; the server would then switch to a
    generic plan made while the table was small and keep it as the table grows (a fresh
    projection table during a catch-up: every lookup a full scan)."""
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE lookup_t (k text PRIMARY KEY, v text)"))
            conn.execute(
                text("INSERT INTO lookup_t SELECT 'k' || i, 'v' FROM generate_series(1, 5) i")
            )
            for _ in range(12):
                conn.exec_driver_sql(
                    "SELECT k, v FROM lookup_t WHERE k = ANY(%(keys)s)", {"keys": ["k1", "k2", "x"]}
                ).all()
            plans = conn.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE '%FROM lookup_t WHERE k = ANY%'"
                )
            ).one()
            conn.rollback()
    finally:
        engine.dispose()
    assert plans.generic_plans == 0
    assert plans.custom_plans >= 7  # prepared after the fifth run, then planned every time
