"""Event log, dead letters, Kafka offsets, backfill progress, checkpoints, audit; immutability.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")
IMMUTABLE = (("eventlog", "events"), ("audit", "audit_log"))


def _schema(name: str) -> str | None:
    return None if op.get_bind().dialect.name == "sqlite" else name


def upgrade() -> None:
    pg = op.get_bind().dialect.name != "sqlite"
    if pg:
        for name in ("eventlog", "bo", "audit"):
            op.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
    log, bo, audit = _schema("eventlog"), _schema("bo"), _schema("audit")

    op.create_table(
        "events",
        sa.Column("position", BIGINT, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("source_topic", sa.Text),
        sa.Column("source_partition", sa.Integer),
        sa.Column("source_offset", sa.BigInteger),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
        sa.Column("entity_key", sa.Text, nullable=False),
        sa.Column("group_key", sa.Text),
        sa.Column("source_ts", sa.Text),
        sa.Column("ingested_at", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("redacted_paths", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        schema=log,
    )
    op.create_index("ix_events_entity_key", "events", ["entity_key", "position"], schema=log)
    op.create_index("ix_events_group_key", "events", ["group_key", "position"], schema=log)
    op.create_index("ix_events_ingested_at", "events", ["ingested_at", "position"], schema=log)

    op.create_table(
        "dead_letters",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Text, nullable=False),
        sa.Column("source_topic", sa.Text),
        sa.Column("source_partition", sa.Integer),
        sa.Column("source_offset", sa.BigInteger),
        sa.Column("source_file", sa.Text),
        sa.Column("source_line", sa.Integer),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("retried_at", sa.Text),
        sa.Column("resolved_position", sa.BigInteger),
        schema=log,
    )
    op.create_index("ix_dead_letters_status", "dead_letters", ["status", "id"], schema=log)

    op.create_table(
        "kafka_offsets",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        schema=log,
    )
    op.create_table(
        "backfill_progress",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("table_name", sa.Text, primary_key=True),
        sa.Column("last_key", sa.Text),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Text, nullable=False),
        schema=log,
    )
    op.create_table(
        "consumer_heartbeats",
        sa.Column("member", sa.Text, primary_key=True),
        sa.Column("group_id", sa.Text, nullable=False),
        sa.Column("heartbeat_at", sa.Text, nullable=False),
        sa.Column("caught_up_at", sa.Text),
        sa.Column("lag_records", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("assigned", sa.Text, nullable=False, server_default=""),
        schema=log,
    )
    op.create_table(
        "projection_checkpoints",
        sa.Column("projection", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("checksum", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("error_position", sa.BigInteger),
        sa.Column("updated_at", sa.Text, nullable=False),
        schema=bo,
    )
    op.create_table(
        "projection_locks",
        sa.Column("projection", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("acquired_at", sa.Text, nullable=False),
        schema=bo,
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("actor", sa.Text),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("action", sa.Text),
        sa.Column("resource_type", sa.Text),
        sa.Column("resource_id", sa.Text),
        sa.Column("result_count", sa.Integer),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("ip", sa.Text),
        sa.Column("user_agent", sa.Text),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        schema=audit,
    )
    op.create_index("ix_audit_actor", "audit_log", ["actor", "id"], schema=audit)
    op.create_index("ix_audit_resource", "audit_log", ["resource_id", "id"], schema=audit)
    op.create_index("ix_audit_at", "audit_log", ["at", "id"], schema=audit)

    if pg:
        _pg_immutability()
    else:
        _sqlite_immutability()


def _pg_immutability() -> None:
    op.execute(
        """
        CREATE FUNCTION eventlog.reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    for schema, table in IMMUTABLE:
        op.execute(
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {schema}.{table} "
            "FOR EACH ROW EXECUTE FUNCTION eventlog.reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {schema}.{table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION eventlog.reject_change()"
        )


def _sqlite_immutability() -> None:
    for _schema_name, table in IMMUTABLE:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )


def downgrade() -> None:
    raise NotImplementedError("the event log is never downgraded; restore from backup")
