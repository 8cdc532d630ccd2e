"""Rebuild benchmark: replay the event log into each projection on PostgreSQL.

Run: ``python -m bench.rebuild [--events N] [--batch B]`` (``make bench`` runs it).

1. start a throwaway PostgreSQL cluster, create and migrate a database;
2. append N realistic Debezium events (about 5% redeliveries, deduplicated by the log)
   through the real path (``prepare`` + ``EventLog.append``);
3. for each projection, run the real ``rebuild --projection P --json`` as a child process:
   its own events/s (whole replay + indexes + swap), the child's peak RSS and its CPU time
   with its decoding workers' (``wait4``; not the server's);
4. physical reference in the same run: ``COPY`` the rows each rebuild produced into a
   plain table with no index or constraint (what writing those rows costs at least);
5. write ``bench/out/rebuild.md``.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench.common import append_generated, machine_info, markdown_table, write_section
from bo.pgcluster import Cluster, throwaway_cluster
from eventlog.db import make_engine
from eventlog.migrate import upgrade
from eventlog.store import EventLog

ROOT = Path(__file__).resolve().parent.parent
REBUILD = str(Path(sys.executable).with_name("rebuild"))
PROJECTIONS = {  # projection → its public table
    "ledger_entries": "ledger_entries",
    "payment_orders": "payment_orders",
    "pairs": "payment_ledger_pairs",
}
TARGET_EVENTS_PER_SEC = 100_000
TARGET_RSS_MB = 500


def load_log(url: str, count: int, admin_dsn: str) -> tuple[int, float]:
    """Append ``count`` generated events through the real path; (log head, seconds).

    Then ``VACUUM (ANALYZE)`` the log and ``CHECKPOINT``: the state autovacuum keeps an
    append-only table in (PostgreSQL ≥ 13 vacuums on inserts) and that a rebuild in
    production reads. Without it the first rebuild also pays for setting the hint bits
    of a million rows just written (their first read writes every page) and competes
    with the checkpoint and the autovacuum the load itself set off; seconds that belong
    to the load, not to the replay. Not counted in the load's seconds either.
    """
    engine = make_engine(url)
    upgrade(engine)
    log = EventLog(engine)
    started = time.perf_counter()
    append_generated(log, count)
    head = log.head()
    seconds = time.perf_counter() - started
    engine.dispose()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:  # CHECKPOINT: a superuser
        conn.execute(b"VACUUM (ANALYZE) eventlog.events")
        conn.execute(b"CHECKPOINT")
    return head, seconds


def settle() -> None:
    """Write the page cache's dirty pages out before a timed step (``sync``).

    The throwaway cluster runs with fsync off, so what a step wrote — the load's 1.7 GB,
    a rebuild's new tables — stays dirty in memory and the kernel writes it back over the
    next half minute, on the same CPUs as the next step: a ledger rebuild right after the
    load measured 73k to 87k events/s over three runs, after a ``sync`` 92k to 103k. Each rebuild
    is timed with its own writes, not its predecessor's.
    """
    os.sync()


def run_rebuild(url: str, projection: str, batch: int) -> tuple[dict[str, Any], float, float]:
    """Run the real ``rebuild`` CLI: its JSON summary, peak RSS (MiB) and CPU seconds (the
    child's and its reaped workers', start-up included)."""
    env = dict(os.environ, BO_DATABASE_URL=url, BO_LOG_LEVEL="ERROR")
    env.pop("BO_STATUS_MAP", None)
    with subprocess.Popen(
        [REBUILD, "--projection", projection, "--batch", str(batch), "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as child:
        stdout = child.stdout.read() if child.stdout else b""
        stderr = child.stderr.read() if child.stderr else b""
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"rebuild {projection} failed: {stderr.decode()[-800:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return orjson.loads(stdout.splitlines()[-1]), usage.ru_maxrss / 1024, cpu


def copy_reference(cluster: Cluster, database: str, table: str) -> tuple[int, float]:
    """COPY a projection's rows out and into a plain table; (rows, seconds for both copies)."""
    with psycopg.connect(cluster.dsn(database), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE copy_ref (LIKE bo.{table})".encode())
        started = time.perf_counter()
        buffer = io.BytesIO()
        with conn.cursor().copy(f"COPY bo.{table} TO STDOUT".encode()) as out:
            for chunk in out:
                buffer.write(chunk)
        with conn.cursor().copy(b"COPY copy_ref FROM STDIN") as into:
            into.write(buffer.getvalue())
        seconds = time.perf_counter() - started
        rows = conn.execute(b"SELECT count(*) FROM copy_ref").fetchone()
        conn.execute(b"DROP TABLE copy_ref")
    return int(rows[0]) if rows else 0, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    args = parser.parse_args()
    results: list[list[str]] = []
    verdicts: list[str] = []
    with throwaway_cluster() as cluster:
        database = "bench_rebuild"
        url = cluster.create_database(database)
        head, load_seconds = load_log(url, args.events, cluster.dsn(database))
        print(f"log loaded: {head:,} events in {load_seconds:.1f} s", file=sys.stderr)
        for projection, table in PROJECTIONS.items():
            settle()
            summary, rss, cpu = run_rebuild(url, projection, args.batch)
            physical = f"{table}_v{summary['version']}"
            rows, copy_seconds = copy_reference(cluster, database, physical)
            rate = float(summary["events_per_sec"])
            print(f"{projection}: {summary}", file=sys.stderr)
            results.append(
                [
                    f"{projection} v{summary['version']}",
                    f"{summary['position']:,}",
                    f"{summary['rows']:,}",
                    f"{summary['seconds']:.1f}",
                    f"{rate:,.0f}",
                    f"{rss:,.0f}",
                    f"{cpu / max(summary['position'], 1) * 1e6:.1f}",
                    f"{copy_seconds:.2f} ({rows / max(copy_seconds, 1e-9):,.0f} rows/s)",
                    summary["checksum"][:12],
                ]
            )
            ok_rate = "meets" if rate >= TARGET_EVENTS_PER_SEC else "is BELOW"
            ok_rss = "within" if rss <= TARGET_RSS_MB else "ABOVE"
            verdicts.append(
                f"- {projection}: {rate:,.0f} events/s {ok_rate} the {TARGET_EVENTS_PER_SEC:,}/s "
                f"target; peak RSS {rss:,.0f} MiB {ok_rss} the {TARGET_RSS_MB} MiB limit."
            )
    load = os.getloadavg()[0]
    info = ", ".join(f"{k} {v}" for k, v in machine_info().items())
    text = "\n".join(
        [
            "## Rebuild: event log → projections (PostgreSQL)",
            "",
            f"{head:,} events in the log ({args.events:,} generated, about 5% redeliveries "
            "deduplicated on append; each payment = order create, two ledger legs, order "
            "update), vacuumed and checkpointed after loading (the state autovacuum keeps an "
            "append-only log in); the page cache's dirty pages are written out (`sync`) "
            "before each rebuild, so none pays for its predecessor's writes (the cluster "
            "runs with fsync off). Each row is the real `rebuild --projection P --json` as a "
            "child process with its default `--workers` (key partitions, one forked process "
            "per CPU: each "
            "reads, decodes, folds and COPYs the events of its keys in batches of "
            f"{args.batch:,} positions; pairs then has PostgreSQL derive its pair rows, one "
            "statement per related_id partition), then builds the secondary indexes, "
            "checksums and swaps atomically. "
            "Peak RSS and CPU (rebuild process and its workers, "
            "start-up included, not the server's) from `wait4`. The COPY column copies the "
            "rows that rebuild produced out of and back into a plain table (no index, no "
            "constraint) in the same run: the physical floor for writing those rows. "
            "Throwaway PostgreSQL 15 cluster on loopback "
            "(fsync off, synchronous_commit off), same machine.",
            "",
            markdown_table(
                [
                    "projection",
                    "events",
                    "rows",
                    "seconds",
                    "events/s",
                    "peak RSS (MiB)",
                    "CPU µs/event",
                    "COPY of the rows, s",
                    "checksum",
                ],
                results,
            ),
            "",
            *verdicts,
            "",
            f"Loading the log itself (prepare + append, not part of the rebuild): {head:,} "
            f"events in {load_seconds:.1f} s.",
            "",
            f"Machine: {info}; load average at the end {load:.2f} (the machine is shared).",
        ]
    )
    path = write_section("rebuild", text)
    print(text)
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
