"""Prometheus metric objects (SPEC §8), one definition for every process.

Counters and histograms are updated where the work happens. Values that live in the
database (log head, projection positions, pairs, dead letters) are read at scrape time
by the API's collector, so every replica reports the same numbers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Histogram


class BatchHistogram(Histogram):
    """A histogram that also takes a batch of observations at once.

    :meth:`observe_many` is ``observe`` for each amount — the same buckets (the first
    upper bound ``>=`` the amount), count and sum — with one increment per bucket touched
    instead of a lock and a bucket search per amount: the projections runner observes
    every event it applies (tested against ``observe``, tests/test_metrics_batch.py).
    """

    def observe_many(self, amounts: Iterable[float]) -> None:
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        values = list(amounts)
        if not values:
            return
        bounds = self._upper_bounds
        for index, count in Tally(bisect_left(bounds, v) for v in values).items():
            self._buckets[index].inc(count)
        self._sum.inc(sum(values))


HTTP_DURATION = Histogram(
    "bo_http_request_duration_seconds",
    "Admin API request duration.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5),
)
INGEST_EVENTS = Counter(
    "bo_ingest_events", "Change events received, by result.", ["result"]
)  # exported as bo_ingest_events_total
FRESHNESS = BatchHistogram(
    "bo_freshness_seconds",
    "OLTP commit (source.ts_ms) to applied in the serving projections.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
VERSION_MISSING = Counter(
    "bo_version_missing", "Changes with neither version nor updated_at."
)  # bo_version_missing_total
AUDIT_WRITE_FAILURES = Counter(
    "bo_audit_write_failures", "Audit records that could not be written (request got 503)."
)  # bo_audit_write_failures_total


def count_ingest(appended: int, duplicate: int, dead_letter: int, tombstone: int) -> None:
    for result, n in (
        ("appended", appended),
        ("duplicate", duplicate),
        ("dead_letter", dead_letter),
        ("tombstone", tombstone),
    ):
        if n:
            INGEST_EVENTS.labels(result=result).inc(n)
