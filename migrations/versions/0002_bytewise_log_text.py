"""Byte-wise (``COLLATE "C"``) text for the indexed columns of the event log and audit log.

The indexed text of both logs — ids, keys and canonical UTC timestamps — is opaque or
fixed-width ASCII, so code-point order is the only meaningful order, the same on SQLite
(BINARY) and on every PostgreSQL database whatever its locale. It is also the cheapest:
each index insert compares with ``memcmp`` instead of the locale's ``strcoll``. Measured
on a C.UTF-8 database, 200,000 appends of the log: 2.6-2.9 s of server CPU against 3.1-3.7
(about 2.5 µs per event; a linguistic locale such as en_US costs more). Projection tables
have been byte-wise from the start (``projections/tables.py``).

Only a column's collation changes: PostgreSQL keeps the table's rows as they are and
rebuilds the indexes on these columns (in this migration's transaction). Equality, and so
every lookup the service makes, is unchanged. SQLite: nothing to do.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BYTEWISE = {
    "eventlog.events": (
        ("event_id", "varchar(64)"),
        ("entity_key", "text"),
        ("group_key", "text"),
        ("ingested_at", "text"),
    ),
    "audit.audit_log": (
        ("actor", "text"),
        ("resource_id", "text"),
        ("at", "text"),
    ),
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, columns in BYTEWISE.items():
        changes = ", ".join(f'ALTER COLUMN {c} TYPE {kind} COLLATE "C"' for c, kind in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def downgrade() -> None:
    raise NotImplementedError("the event log is never downgraded; restore from backup")
