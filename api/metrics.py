"""``/metrics``: the process's counters and histograms plus values read from the database.

Database-backed gauges (log head, projection positions, pairs, dead letters) are read at
scrape time by :class:`DatabaseCollector`, so every replica reports the same numbers and
nothing has to be kept in sync in memory. Labels carry no personal data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from loguru import logger
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from api import queries
from eventlog.db import read_tx
from eventlog.timeutil import parse_ts


class DatabaseCollector(Collector):
    """``kafka_group``: the consumer group whose per-partition lag (from its members'
    heartbeats) is reported as ``bo_consumer_lag_records`` — ``bo consume`` serves no HTTP
    of its own, so every API replica reports it."""

    def __init__(
        self, engine: Engine, clock: Callable[[], datetime], kafka_group: str | None = None
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.kafka_group = kafka_group

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("bo_metrics_database_up", "1 if the scrape could read the database.")
        try:
            metrics = list(self._read())
        except SQLAlchemyError as exc:
            logger.warning("metrics: database not readable: {}", str(exc).splitlines()[0])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _read(self) -> Iterator[Metric]:
        with read_tx(self.engine) as conn:
            head = queries.log_head(conn)
            rows = queries.checkpoint_rows(conn)
            dead = queries.dead_letter_count(conn)
            lags = (
                queries.partition_lags(conn, self.clock(), self.kafka_group)
                if self.kafka_group
                else {}
            )
            try:
                with conn.begin_nested():
                    pairs: queries.PairStats | None = queries.pair_stats(conn)
            except SQLAlchemyError:  # the pairs view does not exist yet
                pairs = None
        yield _gauge("bo_log_head_position", "Last position in the event log.", head)
        position = GaugeMetricFamily(
            "bo_projection_position",
            "Checkpoint position per projection version.",
            labels=["projection", "version"],
        )
        failed = GaugeMetricFamily(
            "bo_projection_failed",
            "1 when the projection version has failed.",
            labels=["projection", "version"],
        )
        for row in rows:
            labels = [str(row["projection"]), str(row["version"])]
            position.add_metric(labels, int(row["position"]))
            failed.add_metric(labels, 1 if row["state"] == "failed" else 0)
        yield position
        yield failed
        yield CounterMetricFamily(
            "bo_dead_letters", "Dead letters recorded (all time).", value=dead
        )
        lag = GaugeMetricFamily(
            "bo_consumer_lag_records",
            "Records behind the high watermark, per partition (the consumers' heartbeats).",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(lags.items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        if pairs is not None:
            yield _gauge(
                "bo_pairs_incomplete", "Payment orders with an INCOMPLETE pair.", pairs.incomplete
            )
            oldest = (
                max(0.0, (self.clock() - parse_ts(pairs.oldest_incomplete)).total_seconds())
                if pairs.oldest_incomplete
                else 0.0
            )
            yield _gauge(
                "bo_pairs_incomplete_oldest_age_seconds",
                "Age of the oldest INCOMPLETE pair (since its first leg's commit).",
                oldest,
            )
            ratio = pairs.complete / pairs.total if pairs.total else 1.0
            yield _gauge("bo_pair_completion_ratio", "COMPLETE pairs / all pairs.", ratio)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc)
    gauge.add_metric([], value)
    return gauge


class MetricsExporter:
    """The global registry (counters, histograms) followed by this app's database collector."""

    def __init__(
        self, engine: Engine, clock: Callable[[], datetime], kafka_group: str | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DatabaseCollector(engine, clock, kafka_group))

    def render(self) -> bytes:
        return generate_latest(REGISTRY) + generate_latest(self.registry)
