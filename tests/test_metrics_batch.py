"""The runner's cheap freshness observation equals the per-event one it replaced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from eventlog.metrics import BatchHistogram
from eventlog.timeutil import epoch_seconds, format_ts, parse_ts

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# amounts on and around every bound, plus anything in between
AMOUNTS = st.one_of(
    st.sampled_from([0.0, *BUCKETS, *(b + 1e-9 for b in BUCKETS), 1e9]),
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
)


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@given(st.lists(AMOUNTS, max_size=60), st.integers(min_value=1, max_value=7))
def test_observe_many_equals_observe_each(amounts: list[float], split: int) -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    each = Histogram("fresh_each", "per amount", buckets=BUCKETS, registry=one)
    batch = BatchHistogram("fresh_each", "per amount", buckets=BUCKETS, registry=many)
    for amount in amounts:
        each.observe(amount)
    for start in range(0, len(amounts), split):  # in several batches, as the runner does
        batch.observe_many(iter(amounts[start : start + split]))
    got, want = _samples(batch), _samples(each)
    total = ("fresh_each_sum", "")
    assert got.pop(total) == pytest.approx(want.pop(total), rel=1e-12, abs=1e-9)  # added in
    assert got == want  # another order; buckets and count exactly


MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@given(MOMENTS)
def test_epoch_seconds_of_canonical_text(moment: datetime) -> None:
    text = format_ts(moment)
    assert abs(epoch_seconds(text) - parse_ts(text).timestamp()) < 1e-5
    assert abs(epoch_seconds(text) - moment.timestamp()) < 1e-5


@given(MOMENTS, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_epoch_seconds_of_other_iso_text(moment: datetime, offset_minutes: int) -> None:
    local = moment.replace(tzinfo=None) + timedelta(minutes=offset_minutes)  # that zone's clock
    text = local.isoformat() + ("+" if offset_minutes >= 0 else "-")
    text += f"{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    assert abs(epoch_seconds(text) - moment.timestamp()) < 1e-5
