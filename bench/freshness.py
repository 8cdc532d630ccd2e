"""Freshness benchmark: OLTP commit → visible in the admin API, through Kafka.

Run: ``python -m bench.freshness [--rate 1000] [--seconds 60] [--backlog 200000]``.

Production-shaped: a Tansu broker and a throwaway PostgreSQL cluster on loopback,
``bo consume``, ``bo project`` and ``bo serve --no-projector`` as child processes — the
production deployment (docs/operations.md, compose.yaml), where the projection runner does
not share the API process's interpreter lock.

1. live: produce ``rate`` Debezium events/s for ``seconds`` s, each with ``source.ts_ms``
   = its produce time (the OLTP commit, as Debezium would stamp it);
   * every event: commit → applied to the serving ``ledger_entries`` projection (a watcher
     polls the serving checkpoint every 5 ms and reads the newly covered events' source
     times);
   * a sample (5 per second): commit → ``GET /admin/tx/{id}`` answers 200 (polled every 5 ms
     over HTTP with a dev token);
2. catch-up: stop the consumer, produce a ``backlog`` of events, start ``bo consume`` again
   and time it until the log holds every record (consumer events/s), then until the
   serving projections have applied them;
3. write ``bench/out/freshness.md``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from sqlalchemy import Engine, func, select, text

from bench.common import (
    debezium_events,
    machine_info,
    markdown_table,
    tree_cpu_seconds,
    write_section,
)
from bo.broker import free_port, throwaway_broker
from bo.pgcluster import throwaway_cluster
from eventlog.db import make_engine
from eventlog.migrate import upgrade
from eventlog.schema import checkpoints, events, kafka_offsets
from eventlog.settings import load_settings
from eventlog.timeutil import epoch_seconds, parse_ts

ROOT = Path(__file__).resolve().parent.parent
BO = str(Path(sys.executable).with_name("bo"))
LEDGER, ORDERS = "oltp.public.ledger_entries", "oltp.public.payment_orders"


def _event(n: int, ts_ms: int) -> bytes:
    row = {
        "tx_id": f"F{n:08d}",
        "wallet_id": f"W{n % 997}",
        "type": "PAYMENT" if n % 2 else "RECEIVE",
        "amount": f"{n % 100000}.{n % 100:02d}",
        "currency": "KRW",
        "related_id": f"FO{n // 2:08d}",
        "related_type": "PAYMENT_ORDER",
        "status": "POSTED",
        "created_at": "2026-03-01T23:00:00.000000Z",
        "updated_at": "2026-03-01T23:00:00.000000Z",
        "version": 1,
    }
    return orjson.dumps(
        {
            "before": None,
            "after": row,
            "source": {
                "ts_ms": ts_ms,
                "db": "payments",
                "schema": "public",
                "table": "ledger_entries",
                "txId": n,
                "lsn": 10_000 + n,
                "snapshot": "false",
            },
            "op": "c",
            "ts_ms": ts_ms,
        }
    )


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


@dataclass
class Live:
    log_ms: list[float] = field(default_factory=list)
    view_ms: list[float] = field(default_factory=list)
    api_ms: list[float] = field(default_factory=list)
    produced: int = 0
    last: tuple[str, float] | None = None  # newest (tx_id, produce time)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [BO, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait(predicate: Any, timeout: float, what: str, every: float = 0.005) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"freshness bench: timed out waiting for {what}")
        time.sleep(every)
    return time.monotonic()


# A catch-up is timed between two times the database holds: the first backlog batch's
# append (``events.ingested_at``) and the last offsets move (``kafka_offsets.updated_at``),
# both set inside their batch's transaction just before its commit. The records counted
# are those committed after the first batch was seen (polled every 25 ms while the members
# start and join; a second batch committed before that poll is left out of the count but
# not of the time, so the rate can only err low). In between the polling is slow (every
# 250 ms): the instrument's own queries stay off the CPUs the consumers and the projector
# compete for.
_CATCH_UP_POLL = 0.025
_CATCH_UP_SLOW_POLL = 0.25
_SERVED_POLL = 0.1  # the projections' catch-up is timed by polling: ±1% over ~15 s


def _ingested_at(engine: Engine, position: int) -> float:
    """Wall-clock time (epoch seconds) the batch holding ``position`` was appended."""
    with engine.connect() as conn:
        value = conn.execute(
            select(events.c.ingested_at).where(events.c.position == position)
        ).scalar_one()
    return epoch_seconds(str(value))


def _last_offsets_commit(engine: Engine) -> float:
    """Wall-clock time (epoch seconds) of the latest offsets move stored by a consumer."""
    with engine.connect() as conn:
        value = conn.execute(select(func.max(kafka_offsets.c.updated_at))).scalar_one()
    return epoch_seconds(str(value))


def _serving_position(engine: Engine) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            select(func.min(checkpoints.c.position)).where(checkpoints.c.state == "serving")
        ).scalar_one()
    return int(value or 0)


def _ledger_position(conn: Any) -> int:
    value = conn.execute(
        select(checkpoints.c.position).where(
            checkpoints.c.projection == "ledger_entries", checkpoints.c.state == "serving"
        )
    ).scalar_one_or_none()
    return int(value or 0)


def _watch_view(engine: Engine, live: Live, stop: threading.Event) -> None:
    """Every 5 ms: events newly covered by the serving ledger projection → latency."""
    seen = 0
    with engine.connect() as conn:
        while not stop.is_set():
            position = _ledger_position(conn)
            conn.commit()
            if position > seen:
                now = time.time()
                rows = conn.execute(
                    select(events.c.source_ts, events.c.ingested_at).where(
                        events.c.position > seen,
                        events.c.position <= position,
                        events.c.table_name == "ledger_entries",
                    )
                ).all()
                for source_ts, ingested in rows:
                    committed = parse_ts(str(source_ts)).timestamp()
                    live.view_ms.append((now - committed) * 1000)
                    live.log_ms.append((parse_ts(str(ingested)).timestamp() - committed) * 1000)
                conn.commit()
                seen = position
            stop.wait(0.005)


def _probe_api(base: str, token: str, live: Live, stop: threading.Event) -> None:
    """Five times a second: the newest produced tx, polled until the API returns it."""
    headers = {"Authorization": f"Bearer {token}"}
    probed: tuple[str, float] | None = None
    with httpx.Client(base_url=base, headers=headers, timeout=5) as http:
        while not stop.is_set():
            target = live.last
            if target is None or target == probed:  # one sample per event: once the
                stop.wait(0.01)  # producer stops, the newest stays the same
                continue
            probed = target
            tx_id, produced_at = target
            deadline = time.time() + 30
            while not stop.is_set() and time.time() < deadline:
                if http.get(f"/admin/tx/{tx_id}").status_code == 200:
                    live.api_ms.append((time.time() - produced_at) * 1000)
                    break
                time.sleep(0.005)
            stop.wait(max(0.0, 0.2 - (time.time() - produced_at)))


def _produce_live(bootstrap: str, rate: int, seconds: int, live: Live) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        for _ in range(per_tick):
            now = time.time()
            producer.send(LEDGER, key=f"F{n:08d}".encode(), value=_event(n, int(now * 1000)))
            live.last = (f"F{n:08d}", now)
            n += 1
        ahead = started + (n / rate) - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    producer.flush()
    producer.close()
    live.produced = n


def _produce_backlog(bootstrap: str, count: int, seed: int = 13) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    started = time.monotonic()
    for raw in debezium_events(count, redelivery=0.05, seed=seed):
        table = b"ledger_entries" if b'"table":"ledger_entries"' in raw else b"payment_orders"
        producer.send(LEDGER if table == b"ledger_entries" else ORDERS, value=raw)
    producer.flush(timeout=300)
    producer.close()
    return time.monotonic() - started


def _offsets_total(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(kafka_offsets.c.next_offset), 0))
            ).scalar_one()
        )


def _head(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT coalesce(max(position), 0) FROM eventlog.events")
            ).scalar_one()
        )


@contextmanager
def _stack(tmp: Path) -> Iterator[tuple[str, str, Engine, dict[str, str]]]:
    with throwaway_broker() as broker, throwaway_cluster() as cluster:
        url = cluster.create_database("fresh")
        engine = make_engine(url)
        upgrade(engine)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(LEDGER, 3, 1), NewTopic(ORDERS, 3, 1)])
        admin.close()
        env = dict(
            os.environ,
            BO_DATABASE_URL=url,
            BO_KAFKA_BOOTSTRAP=broker.bootstrap,
            BO_KAFKA_TOPICS=f"{LEDGER},{ORDERS}",
            BO_KAFKA_GROUP="bench",
            BO_VAR_DIR=str(tmp / "var"),
            BO_AUTH_MODE="dev",
            BO_LOG_LEVEL="WARNING",
        )
        try:
            yield broker.bootstrap, url, engine, env
        finally:
            engine.dispose()


def run(rate: int, seconds: int, backlog: int, members: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """The benchmark in a temporary directory of its own (the processes' logs and keys),
    removed when it succeeds and kept, with its path logged, when it fails."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="bo-fresh-"))
    try:
        result = _run(tmp, rate, seconds, backlog, members)
    except BaseException:
        print(f"freshness benchmark failed; its logs are in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def _run(
    tmp: Path, rate: int, seconds: int, backlog: int, members: tuple[int, ...]
) -> dict[str, Any]:
    from api.auth import dev_token

    result: dict[str, Any] = {
        "rate": rate,
        "seconds": seconds,
        "backlog": backlog,
        "members": members,
    }
    with _stack(tmp) as (bootstrap, url, engine, env):
        settings = load_settings(database_url=url, var_dir=tmp / "var", auth_mode="dev")
        token = dev_token(settings, "bench", ["ADMIN_READ"], 3600)
        port = free_port()
        serve = _spawn(["serve", "--port", str(port), "--no-projector"], env, tmp / "serve.log")
        project = _spawn(["project"], env, tmp / "project.log")
        consumers = [_spawn(["consume"], env, tmp / "consume.log")]
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: _up(base), 60, "bo serve")
            # warm-up: the group join and the first batch are not part of steady state
            warm = KafkaProducer(bootstrap_servers=bootstrap)
            warm.send(LEDGER, value=_event(10**7, int(time.time() * 1000)))
            warm.flush()
            warm.close()
            _wait(lambda: _serving_position(engine) >= 1, 120, "the warm-up event to be served")

            live = Live()
            cpu_before = [_cpu(serve), _cpu(consumers[0]), _cpu(project)]
            stop = threading.Event()
            watchers = [
                threading.Thread(target=_watch_view, args=(engine, live, stop), daemon=True),
                threading.Thread(target=_probe_api, args=(base, token, live, stop), daemon=True),
            ]
            for w in watchers:
                w.start()
            _produce_live(bootstrap, rate, seconds, live)
            _wait(lambda: _offsets_total(engine) >= live.produced + 1, 120, "live events consumed")
            _wait(lambda: _serving_position(engine) >= _head(engine), 120, "projections caught up")
            time.sleep(0.2)  # let the watcher read the last covered positions
            stop.set()
            for w in watchers:
                w.join(10)
            serve_cpu, consume_cpu = _cpu(serve) - cpu_before[0], _cpu(consumers[0]) - cpu_before[1]
            project_cpu = _cpu(project) - cpu_before[2]
            result["live"] = {
                "produced": live.produced,
                "consume_cpu_us": round(consume_cpu / max(live.produced, 1) * 1e6, 1),
                "serve_cpu_us": round(serve_cpu / max(live.produced, 1) * 1e6, 1),
                "project_cpu_us": round(project_cpu / max(live.produced, 1) * 1e6, 1),
                "log": percentiles(live.log_ms),
                "view": percentiles(live.view_ms),
                "api": percentiles(live.api_ms),
            }

            if backlog <= 0:
                return result
            for proc in consumers:
                _stop(proc)
            consumers = []
            result["catchups"] = []
            # A new backlog each run (another seed). `bo project` runs at its default
            # niceness (BO_PROJECT_NICE), except in one run at equal priority (restarted
            # with 0) and one where it is paused until the backlog is in the log (the
            # CPUs a separate projector host would leave the member). The single-member
            # runs come first: Tansu left a lone member's join unanswered for minutes
            # after a group of two had left (seen 2026-11-30), so several members go last.
            runs = [(members[0], NICED), (1, EQUAL), (1, PAUSED)]
            runs += [(n, NICED) for n in members[1:]]
            for run_no, (n, mode) in enumerate(runs):
                if mode == EQUAL:
                    project = _respawn_projector(project, dict(env, BO_PROJECT_NICE="0"), tmp)
                result["catchups"].append(
                    _catch_up(
                        bootstrap,
                        engine,
                        env,
                        tmp,
                        backlog,
                        n,
                        consumers,
                        13 + run_no,
                        project,
                        mode=mode,
                    )
                )
                for proc in consumers:
                    _stop(proc)
                consumers.clear()
                if mode == EQUAL:
                    project = _respawn_projector(project, env, tmp)
            result["catchup"] = result["catchups"][0]
        finally:
            for proc in consumers:
                _stop(proc)
            _stop(project)
            _stop(serve)
    return result


NICED, EQUAL, PAUSED = "niced", "equal priority", "paused"


def _respawn_projector(
    project: subprocess.Popen[bytes], env: dict[str, str], tmp: Path
) -> subprocess.Popen[bytes]:
    """Stop ``bo project`` and start it again under ``env``, once it is past its start-up
    (imports and wiring: CPU that is not the catch-up's)."""
    _stop(project)
    fresh = _spawn(["project"], env, tmp / "project.log")
    time.sleep(5)
    return fresh


def _catch_up(
    bootstrap: str,
    engine: Engine,
    env: dict[str, str],
    tmp: Path,
    backlog: int,
    members: int,
    consumers: list[subprocess.Popen[bytes]],
    seed: int,
    project: subprocess.Popen[bytes],
    *,
    mode: str = NICED,
) -> dict[str, Any]:
    """Produce ``backlog`` records while no consumer runs, start ``members`` consumers
    (appended to ``consumers`` for the caller to stop) and time them through it.

    ``mode``: how ``bo project`` runs meanwhile — at its niceness (``NICED``, or
    ``EQUAL`` when started with ``BO_PROJECT_NICE=0``), or ``PAUSED``: stopped (SIGSTOP)
    from the first backlog event until the backlog is in the log, so the members have the
    CPUs that a separate projector host would leave them; the projections' time is then
    counted from its resumption."""
    paused = mode == PAUSED
    before_offsets = _offsets_total(engine)
    produced_in = _produce_backlog(bootstrap, backlog, seed)
    head_before = _head(engine)
    started = time.monotonic()
    consumers.extend(_spawn(["consume"], env, tmp / "consume.log") for _ in range(members))
    consume_cpu0 = sum(_cpu(p) for p in consumers)
    project_cpu0 = _cpu(project)
    first = _wait(
        lambda: _head(engine) > head_before, 300, "the first backlog event", _CATCH_UP_POLL
    )
    if paused:
        os.kill(project.pid, signal.SIGSTOP)
    first_wall = _ingested_at(engine, head_before + 1)
    at_first = _offsets_total(engine)
    _wait(
        lambda: _offsets_total(engine) >= before_offsets + backlog,
        900,
        "the backlog",
        _CATCH_UP_SLOW_POLL,
    )
    consumed = _last_offsets_commit(engine) - first_wall
    if paused:
        first = time.monotonic()
        os.kill(project.pid, signal.SIGCONT)
    served = _wait(
        lambda: _serving_position(engine) >= _head(engine),
        900,
        "projections on backlog",
        _SERVED_POLL,
    )
    consume_cpu = sum(_cpu(p) for p in consumers) - consume_cpu0
    project_cpu = _cpu(project) - project_cpu0  # applying the same backlog meanwhile
    return {
        "members": members,
        "projector": mode,
        "projector_paused": paused,
        "records": backlog,
        "appended": _head(engine) - head_before,
        "consume_cpu_us": round(consume_cpu / max(backlog, 1) * 1e6, 1),
        "project_cpu_us": round(project_cpu / max(backlog, 1) * 1e6, 1),
        "produce_seconds": round(produced_in, 2),
        "startup_seconds": round(first - started, 2),
        "consume_seconds": round(consumed, 2),
        "consume_eps": round((before_offsets + backlog - at_first) / max(consumed, 1e-9)),
        "served_seconds": round(served - first, 2),
        # paused: the projector found the whole backlog in the log when it resumed
        "served_eps": round(
            (backlog if paused else before_offsets + backlog - at_first) / max(served - first, 1e-9)
        ),
    }


def _cpu(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds of a child process and its own children (0 once gone)."""
    return tree_cpu_seconds(proc.pid)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def render(result: dict[str, Any]) -> str:
    live = result["live"]
    empty = dict.fromkeys(
        ("records", "startup_seconds", "consume_seconds", "consume_eps", "served_seconds"), 0
    ) | {"served_eps": 0, "members": 1, "consume_cpu_us": 0, "project_cpu_us": 0}
    catches = result.get("catchups") or [empty]
    catch = catches[0]
    niced = [c for c in catches if c.get("projector", NICED) == NICED] or [empty]
    groups = [c for c in niced if c["members"] > 1]
    best = max(groups, key=lambda c: c["consume_eps"]) if groups else None
    equal = next((c for c in catches if c.get("projector") == EQUAL), None)
    alone = next((c for c in catches if c.get("projector_paused")), None)

    def row(name: str, p: dict[str, float]) -> list[str]:
        return [name, f"{p['n']:,}", f"{p['p50']:.0f}", f"{p['p95']:.0f}", f"{p['p99']:.0f}"]

    def verdict_of(eps: int) -> str:
        return "meets" if eps >= 20_000 else "is BELOW"

    p95 = live["api"]["p95"]
    verdict = "meets" if p95 <= 250 else "MISSES"
    eps = catch["consume_eps"]
    group_line = (
        ""
        if best is None
        else f"; {best['members']} members: **{best['consume_eps']:,} records/s**"
    )
    equal_line = (
        ""
        if equal is None
        else f" With `bo project` at equal priority (`BO_PROJECT_NICE=0`): "
        f"**{equal['consume_eps']:,} records/s** ({verdict_of(equal['consume_eps'])} the "
        f"target), the projections done {equal['served_seconds']} s after the first backlog "
        f"event (niced: {catch['served_seconds']} s)."
    )
    alone_line = (
        ""
        if alone is None
        else f" With the projector paused (its own CPUs, as a separate projector host would "
        f"leave the member): **{alone['consume_eps']:,} records/s** "
        f"({verdict_of(alone['consume_eps'])} the target); the "
        f"projections then applied the backlog at {alone['served_eps']:,} records/s."
    )
    info = machine_info()
    load = os.getloadavg()[0]
    return "\n".join(
        [
            "## Freshness: OLTP commit → visible, through Kafka",
            "",
            f"Live: {live['produced']:,} Debezium events produced at {result['rate']:,}/s for "
            f"{result['seconds']} s to a Tansu broker on loopback, `source.ts_ms` = produce "
            "time. `bo consume`, `bo project` and `bo serve --no-projector` run as separate "
            "processes, as in the production deployment (docs/operations.md), on a throwaway "
            "PostgreSQL 15 cluster (fsync off). CPU per live event: consumer "
            f"{live['consume_cpu_us']} µs, projector {live.get('project_cpu_us', '-')} µs, "
            f"API {live['serve_cpu_us']} µs (its share is the 5/s probe's polling).",
            "",
            markdown_table(
                ["commit → …", "samples", "p50 ms", "p95 ms", "p99 ms"],
                [
                    row("appended to the event log (`ingested_at`)", live["log"]),
                    row("applied to the serving ledger_entries projection", live["view"]),
                    row("answered by GET /admin/tx/{id} (HTTP, sampled 5/s)", live["api"]),
                ],
            ),
            "",
            f"API p95 **{p95:.0f} ms**: {verdict} the target (p95 ≤ 250 ms; the seed asks ≤ 5 s).",
            "",
            f"Catch-up: {catch['records']:,} records (about 5% redeliveries) produced while no "
            "consumer ran, then N `bo consume` processes (one consumer group; 3 partitions per "
            "topic) started; each run has its own new backlog. Start-up, group join and the "
            "first batch are not counted: rates are over the records appended after the "
            "first batch. `bo project` runs meanwhile on the same 2 CPUs at its default "
            "niceness (`BO_PROJECT_NICE=10`: the backlog goes into the log first), or at "
            "equal priority, or paused: stopped (SIGSTOP) from the first backlog event until "
            "the backlog is in the log, its projections' time then counted from its resumption.",
            "",
            markdown_table(
                [
                    "members",
                    "projector",
                    "start-up s",
                    "in the log: s",
                    "records/s",
                    "consumer CPU µs/record",
                    "applied by the projections: s",
                    "records/s",
                    "projector CPU µs/record",
                ],
                [
                    [
                        str(c["members"]),
                        str(c.get("projector", PAUSED if c.get("projector_paused") else NICED)),
                        f"{c['startup_seconds']}",
                        f"{c['consume_seconds']}",
                        f"{c['consume_eps']:,}",
                        f"{c['consume_cpu_us']}",
                        f"{c['served_seconds']}",
                        f"{c['served_eps']:,}",
                        f"{c.get('project_cpu_us', '-')}",
                    ]
                    for c in catches
                ],
            ),
            "",
            f"Consumer catch-up, one member sharing the CPUs with the niced projector: "
            f"**{eps:,} records/s** {verdict_of(eps)} the target (≥ 20,000/s){group_line}."
            f"{equal_line}{alone_line} "
            "A member is one Python process (prepare in forked worker processes on a "
            "backlog; kafka-python's record parsing and the append in the main one); past "
            "it is the consumer group (one member per partition; docs/scaling.md). The "
            "projections apply a backlog slower than it is appended (one runner, one batch "
            "per version at a time).",
            "",
            f"Machine: python {info.get('python')}, {info.get('cpus')} cpus "
            f"({info.get('cpu', '?')}), {info.get('memory', '?')}; load average at the end "
            f"{load:.2f}, CPU probe {info.get('cpu probe')} (the machine is shared: "
            "bench/common.py `cpu_probe_ms`).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument(
        "--members",
        type=int,
        nargs="+",
        default=[1, 2],
        help="bo consume processes for each catch-up run (one backlog per run)",
    )
    args = parser.parse_args(argv)
    result = run(args.rate, args.seconds, args.backlog, tuple(args.members))
    path = write_section("freshness", render(result))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
