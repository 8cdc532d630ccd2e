-- Least-privilege roles for the back-office serving layer on PostgreSQL (SPEC §7).
--
--   owner    runs `bo migrate` (Alembic) and owns the schemas eventlog, bo, audit;
--            the only role that may UPDATE/DELETE the log or the audit table (and the
--            append-only triggers refuse even the owner).
--   bo_sync  the Kafka consumer / `bo ingest` / `bo backfill`, the projection runner and
--            `rebuild`: INSERT/SELECT the log, keep its bookkeeping, create and write the
--            projection tables in schema bo (it owns the versions it creates).
--   bo_api   `bo serve`: reads eventlog and bo, and may only INSERT/SELECT the audit log.
--
-- Run as the owner, in the service database, after `bo migrate` (idempotent, re-run it
-- after every migration):
--   psql "$OWNER_DSN" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
-- then give the login roles passwords (never in this file):
--   ALTER ROLE bo_api PASSWORD '...';  ALTER ROLE bo_sync PASSWORD '...';
-- and point each process at its role: BO_DATABASE_URL=postgresql://bo_api:...@host/db

DO $$
BEGIN
  BEGIN
    CREATE ROLE bo_api LOGIN;
  EXCEPTION WHEN duplicate_object THEN NULL;
  END;
  BEGIN
    CREATE ROLE bo_sync LOGIN;
  EXCEPTION WHEN duplicate_object THEN NULL;
  END;
END $$;

-- The owner must be able to act for bo_sync (default privileges, ownership transfer).
GRANT bo_sync TO CURRENT_USER;

-- Nobody else gets anything by default.
REVOKE ALL ON SCHEMA eventlog, bo, audit FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA eventlog, bo, audit FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA eventlog, bo, audit FROM bo_api, bo_sync;

GRANT USAGE ON SCHEMA eventlog, bo, audit TO bo_api, bo_sync;
GRANT SELECT ON public.alembic_version TO bo_api, bo_sync;  -- "migrations at head" checks

-- bo_api: read the log and the projections; append to and read the audit log. Nothing else.
GRANT SELECT ON ALL TABLES IN SCHEMA eventlog TO bo_api;
GRANT SELECT ON ALL TABLES IN SCHEMA bo TO bo_api;
GRANT SELECT, INSERT ON audit.audit_log TO bo_api;

-- bo_sync: append to the log (never UPDATE/DELETE it) and keep the ingest bookkeeping.
GRANT SELECT, INSERT ON eventlog.events TO bo_sync;
GRANT SELECT, INSERT, UPDATE ON eventlog.dead_letters TO bo_sync;  -- retry marks them resolved
GRANT SELECT, INSERT, UPDATE, DELETE
  ON eventlog.kafka_offsets, eventlog.backfill_progress, eventlog.consumer_heartbeats TO bo_sync;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA eventlog TO bo_sync;

-- bo_sync: projections. Versions are created at run time, so bo_sync may create in bo;
-- checkpoints and locks (created by the migrations) are written, not owned.
GRANT CREATE ON SCHEMA bo TO bo_sync;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA bo TO bo_sync;
ALTER DEFAULT PRIVILEGES FOR ROLE bo_sync IN SCHEMA bo GRANT SELECT ON TABLES TO bo_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA bo GRANT SELECT ON TABLES TO bo_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA bo GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bo_sync;

-- Projection tables and views created before this script ran (e.g. by `bo ingest` as the
-- owner) move to bo_sync, which must be able to swap and drop them.
DO $$
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'bo' AND c.relkind IN ('r', 'v')
      AND c.relname NOT IN ('projection_checkpoints', 'projection_locks')
  LOOP
    EXECUTE format('ALTER %s bo.%I OWNER TO bo_sync',
                   CASE item.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, item.relname);
  END LOOP;
END $$;
