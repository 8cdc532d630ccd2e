"""Table definitions (SQLAlchemy Core) for the log, dead letters, offsets, checkpoints and audit.

On PostgreSQL the tables live in schemas ``eventlog``, ``bo`` and ``audit``; on SQLite,
which has no schemas, :func:`eventlog.db.make_engine` maps every schema to the main
database (``schema_translate_map``), so table names are unique across schemas.
Projection tables are versioned in code and created by ``projections``, not here.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

# Indexed text of the logs compares byte-wise on PostgreSQL (migration 0002: why), as
# SQLite's BINARY collation does; projection tables do the same (projections/tables.py).
BYTEWISE_TEXT = Text(collation="C").with_variant(Text(), "sqlite")
BYTEWISE_ID = String(64, collation="C").with_variant(String(64), "sqlite")

LOG_SCHEMA = "eventlog"
BO_SCHEMA = "bo"
AUDIT_SCHEMA = "audit"
SCHEMAS = (LOG_SCHEMA, BO_SCHEMA, AUDIT_SCHEMA)

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column(
        "position",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("event_id", BYTEWISE_ID, nullable=False, unique=True),
    Column("source_topic", Text),
    Column("source_partition", Integer),
    Column("source_offset", BigInteger),
    Column("table_name", Text, nullable=False),
    Column("op", String(1), nullable=False),
    Column("entity_key", BYTEWISE_TEXT, nullable=False),
    Column("group_key", BYTEWISE_TEXT),
    Column("source_ts", Text),
    Column("ingested_at", BYTEWISE_TEXT, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("redacted_paths", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_events_entity_key", "entity_key", "position"),
    Index("ix_events_group_key", "group_key", "position"),
    Index("ix_events_ingested_at", "ingested_at", "position"),
    schema=LOG_SCHEMA,
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("received_at", Text, nullable=False),
    Column("source_topic", Text),
    Column("source_partition", Integer),
    Column("source_offset", BigInteger),
    Column("source_file", Text),
    Column("source_line", Integer),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("retried_at", Text),
    Column("resolved_position", BigInteger),
    Index("ix_dead_letters_status", "status", "id"),
    schema=LOG_SCHEMA,
)

kafka_offsets = Table(
    "kafka_offsets",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", Text, nullable=False),
    schema=LOG_SCHEMA,
)

backfill_progress = Table(
    "backfill_progress",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("table_name", Text, primary_key=True),
    Column("last_key", Text),
    Column("done", Integer, nullable=False, server_default="0"),
    Column("rows", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", Text, nullable=False),
    schema=LOG_SCHEMA,
)

consumer_heartbeats = Table(
    "consumer_heartbeats",
    metadata,
    Column("member", Text, primary_key=True),
    Column("group_id", Text, nullable=False),
    Column("heartbeat_at", Text, nullable=False),
    Column("caught_up_at", Text),
    Column("lag_records", BigInteger, nullable=False, server_default="0"),
    Column("assigned", Text, nullable=False, server_default=""),
    schema=LOG_SCHEMA,
)

checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("projection", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("position", BigInteger, nullable=False, server_default="0"),
    Column("fingerprint", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("rows", BigInteger, nullable=False, server_default="0"),
    Column("checksum", Text),
    Column("last_error", Text),
    Column("error_position", BigInteger),
    Column("updated_at", Text, nullable=False),
    schema=BO_SCHEMA,
)

projection_locks = Table(
    "projection_locks",
    metadata,
    Column("projection", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("acquired_at", Text, nullable=False),
    schema=BO_SCHEMA,
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("at", BYTEWISE_TEXT, nullable=False),
    Column("actor", BYTEWISE_TEXT),
    Column("roles", Text, nullable=False),
    Column("method", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("action", Text),
    Column("resource_type", Text),
    Column("resource_id", BYTEWISE_TEXT),
    Column("result_count", Integer),
    Column("status", Integer, nullable=False),
    Column("ip", Text),
    Column("user_agent", Text),
    Column("request_id", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_actor", "actor", "id"),
    Index("ix_audit_resource", "resource_id", "id"),
    Index("ix_audit_at", "at", "id"),
    schema=AUDIT_SCHEMA,
)
