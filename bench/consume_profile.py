"""Consumer cost per record: a backlog through :class:`eventlog.kafka.SyncConsumer`, in-process.

Run: ``python -m bench.consume_profile [--records 50000] [--profile] [--batch-size 2000]``.

A Tansu broker and a throwaway PostgreSQL cluster on loopback; the backlog is produced
first, then one consumer runs until the database offsets cover it. Reports this
process's CPU µs per record (``time.process_time``, which includes kafka-python's IO
thread and any prepare worker processes it waits for are reported separately) and the
wall rate; ``--profile`` prints the top of a cProfile of the consume phase.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import threading
import time

import psutil
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from loguru import logger
from sqlalchemy import func, select

from bench.common import debezium_events
from bo.broker import throwaway_broker
from bo.pgcluster import throwaway_cluster
from eventlog.db import make_engine
from eventlog.kafka import ConsumerConfig, SyncConsumer
from eventlog.migrate import upgrade
from eventlog.schema import kafka_offsets
from eventlog.settings import load_settings

LEDGER, ORDERS = "oltp.public.ledger_entries", "oltp.public.payment_orders"


def _produce_live(bootstrap: str, rate: int, seconds: int) -> None:
    from bench.freshness import _event

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
    started = time.monotonic()
    for n in range(rate * seconds):
        producer.send(LEDGER, key=f"F{n:08d}".encode(), value=_event(n, int(time.time() * 1000)))
        if n % max(1, rate // 100) == 0:
            ahead = started + n / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    producer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--live", type=int, default=0, help="instead of a backlog: produce this many events/s"
    )
    parser.add_argument("--seconds", type=int, default=10, help="with --live")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(lambda m: print(m, end=""), level="WARNING")
    with throwaway_broker() as broker, throwaway_cluster() as cluster:
        url = cluster.create_database("prof")
        engine = make_engine(url, pre_ping=False)  # as `bo consume` makes it
        upgrade(engine)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(LEDGER, 3, 1), NewTopic(ORDERS, 3, 1)])
        admin.close()
        if args.live:
            args.records = args.live * args.seconds
            live = multiprocessing.get_context("fork").Process(
                target=_produce_live, args=(broker.bootstrap, args.live, args.seconds)
            )
        else:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20, acks=1)
            for raw in debezium_events(args.records, redelivery=0.05, seed=13):
                topic = LEDGER if b'"table":"ledger_entries"' in raw else ORDERS
                producer.send(topic, value=raw)
            producer.flush(timeout=300)
            producer.close()
        settings = load_settings(
            database_url=url,
            kafka_bootstrap=broker.bootstrap,
            kafka_topics=f"{LEDGER},{ORDERS}",
            kafka_group="prof",
        )
        stop = threading.Event()
        config = ConsumerConfig(batch_size=args.batch_size, prepare_workers=args.workers)
        consumer = SyncConsumer(settings, engine, stop, config)

        def done() -> bool:
            with engine.connect() as conn:
                total = conn.execute(
                    select(func.coalesce(func.sum(kafka_offsets.c.next_offset), 0))
                ).scalar_one()
            return int(total) >= int(args.records)

        first: list[float] = []

        def watch() -> None:
            while not stop.is_set():
                if not first and consumer.stats.batches:
                    first.append(time.monotonic())
                    first.append(consumer.stats.records)
                if done():
                    # per-thread CPU while the Kafka client's threads still exist, and
                    # the prepare workers' before the pool is shut down
                    names = {t.native_id: t.name for t in threading.enumerate()}
                    for t in me.threads():
                        at_done[names.get(t.id, str(t.id))] = t.user_time + t.system_time
                    for child in me.children():
                        times = child.cpu_times()
                        at_done["workers"] = at_done.get("workers", 0.0) + times.user + times.system
                    stop.set()
                stop.wait(0.02)

        at_done: dict[str, float] = {}
        me = psutil.Process(os.getpid())
        names0 = {t.native_id: t.name for t in threading.enumerate()}
        at_start = {names0.get(t.id, str(t.id)): t.user_time + t.system_time for t in me.threads()}
        threading.Thread(target=watch, daemon=True).start()
        if args.live:
            live.start()
        me = psutil.Process(os.getpid())
        profile = cProfile.Profile() if args.profile else None
        cpu0, wall0, main0 = time.process_time(), time.monotonic(), time.thread_time()
        if profile:
            profile.enable()
        stats = consumer.run()
        if profile:
            profile.disable()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        main_cpu = time.thread_time() - main0
        names = {t.native_id: t.name for t in threading.enumerate()}
        threads = {names.get(t.id, str(t.id)): t.user_time + t.system_time for t in me.threads()}
        if args.live:
            live.join()
        children = sum(c.cpu_times().user + c.cpu_times().system for c in me.children())
        engine.dispose()
    n = stats.records
    if first:
        steady = wall0 + wall - first[0]
        print(
            f"after the first batch: {n - first[1]:.0f} records in {steady:.2f} s = "
            f"{(n - first[1]) / steady:,.0f}/s"
        )
    print(
        f"records {n}, wall {wall:.2f} s ({n / wall:,.0f}/s incl. group join), "
        f"CPU {cpu:.2f} s = {cpu / max(n, 1) * 1e6:.1f} µs/record in this process"
        f" (+ live children {children:.2f} s), batches {stats.batches}"
    )
    print(stats.summary())
    print(f"main thread CPU {main_cpu:.2f} s = {main_cpu / max(n, 1) * 1e6:.1f} µs/record")
    print({k: round(v, 2) for k, v in threads.items() if v > 0.05})
    spent = {k: v - at_start.get(k, 0.0) for k, v in at_done.items()}
    print(
        "CPU µs/record by thread (and the prepare workers) in the consume phase:",
        {k: round(v / max(n, 1) * 1e6, 1) for k, v in spent.items() if v > 0.01},
    )
    if profile:
        st = pstats.Stats(profile)
        st.sort_stats("tottime").print_stats(30)
        st.print_callers("threading.py:.*wait")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
