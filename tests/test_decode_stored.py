"""``decode_stored`` (the rebuild's decoder of logged bytes) = ``decode_bytes``, always.

The fast path skips the redaction walk (the log's bytes were redacted when appended) and
reads the columns straight from orjson's parse; whatever it does not handle goes to the
reference decoder. These tests feed both the bytes the log would store for many kinds of
input — canonical and not, floats, schema-wrapped, errors — and require the same
:class:`Change` or the same error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.common import debezium_events
from eventlog import decode
from eventlog.decode import (
    Parsed,
    change_of,
    decode_bytes,
    decode_stored,
    load_json,
    parse,
    to_change,
)
from eventlog.errors import DecodeError
from eventlog.store import Prepared, prepare
from tests.fixtures_eventlog import DEBEZIUM, envelope, golden_lines, ledger_row, order_row, wrapped

GOLDEN = Path(__file__).resolve().parent / "golden"


def outcome(decoder: Any, raw: bytes) -> Any:
    try:
        return decoder(raw)
    except DecodeError as exc:
        return ("error", str(exc))


def same(raw: bytes) -> None:
    assert outcome(decode_stored, raw) == outcome(decode_bytes, raw)


def stored(raw: bytes) -> bytes | None:
    """The bytes the log keeps for ``raw`` (None: it would not be appended)."""
    result = prepare(raw)
    return result.payload if isinstance(result, Prepared) else None


def test_every_golden_event_and_fixture_decodes_the_same() -> None:
    lines = golden_lines()
    lines += [path.read_bytes() for path in sorted(DEBEZIUM.glob("*.json"))]
    assert len(lines) > 50
    for line in lines:
        kept = stored(line)
        same(line)
        if kept is not None:
            same(kept)


def test_the_common_shapes_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Realistic events (the benchmark's generator) never reach the reference decoder."""
    events = [stored(raw) for raw in debezium_events(400)]
    expected = [decode_bytes(raw) for raw in events if raw is not None]
    monkeypatch.setattr(decode, "decode_bytes", _refuse)
    assert [decode_stored(raw) for raw in events if raw is not None] == expected


def _refuse(raw: bytes) -> Any:
    raise AssertionError("fell back to the reference decoder")


READS = frozenset({"wallet_id", "version"})


def same_restricted(raw: bytes) -> None:
    """With ``columns``: the row holds at least the columns asked for plus the table's
    key and group column, with the reference values, and the rest of the change is the
    reference's. Where the reference fails, so does the restricted decode — unless the
    fault sits only in a column it was told not to read (bytes the log would refuse)."""
    full, part = outcome(decode_bytes, raw), outcome(lambda r: decode_stored(r, READS), raw)
    if isinstance(full, tuple):
        if isinstance(part, tuple) or stored(raw) is not None:
            assert part == full
        return
    spec = decode.TABLES[full.table]
    kept = READS | {spec.key, spec.group}
    assert {k: v for k, v in part.row.items() if k in kept} == {
        k: v for k, v in full.row.items() if k in kept
    }
    assert set(part.row) <= set(full.row)
    assert (part.table, part.op, part.key, part.source_ts, part.lsn, part.source_tx) == (
        full.table,
        full.op,
        full.key,
        full.source_ts,
        full.lsn,
        full.source_tx,
    )
    assert part.entity_key == full.entity_key
    assert part.group_key == full.group_key


def test_only_the_columns_read_are_decoded_with_the_reference_values() -> None:
    lines = golden_lines() + [path.read_bytes() for path in sorted(DEBEZIUM.glob("*.json"))]
    events = [e for e in (stored(raw) for raw in debezium_events(200)) if e is not None]
    for raw in lines + events:
        same_restricted(raw)
    ledger = next(e for e in events if b'"table":"ledger_entries"' in e)
    assert set(decode_stored(ledger, READS).row) == READS | {"tx_id", "related_id"}
    order = next(e for e in events if b'"table":"payment_orders"' in e)
    assert set(decode_stored(order, READS).row) == {"order_id", "version"}


_TEXTS = st.one_of(
    st.none(),
    st.just("__debezium_unavailable_value"),
    st.sampled_from(["T1", "W1", "PAYMENT", "RECEIVE", "O1", "", "x\x00y", "ü"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just({"nested": 1}),
)
_DECIMALS = st.one_of(
    st.none(),
    st.sampled_from(["100.50", "-0.00", "0", "1e3", " 7.5", "1_0", "abc", "-12.340"]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
_TIMES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2026-01-01T00:00:00.000000Z",
            "2026-01-01T00:00:00Z",
            "2026-01-01T09:00:00+09:00",
            "2026-13-01T00:00:00.000000Z",
            "2026-01-01T00:00:00.123456789Z",
            "yesterday",
        ]
    ),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False),
)
_INTS = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=3), st.floats())
_META = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=12),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["16/B374D848", "zz/1", "42"]),
    st.just([1, 2]),
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    table = draw(
        st.sampled_from(["ledger_entries", "payment_orders"])
        | st.sampled_from(["ledger_entries", "payment_orders"])
        | st.sampled_from(["other", None, 7])
    )
    op = draw(st.sampled_from("cudr") | st.sampled_from("cudr") | st.sampled_from(["t", None, 1]))
    base = order_row() if table == "payment_orders" else ledger_row()
    row: dict[str, Any] = dict(base)
    columns = st.sampled_from([*sorted(base), "amount_signed", "updated_at"])
    for column in draw(st.sets(columns, max_size=3)):
        strategy = {
            "amount": _DECIMALS,
            "amount_signed": _DECIMALS,
            "created_at": _TIMES,
            "updated_at": _TIMES,
            "version": _INTS,
        }.get(column, _TEXTS)
        row[column] = draw(strategy)
    if draw(st.booleans()):
        row[draw(st.sampled_from(["password", "memo", "apiToken"]))] = draw(_TEXTS)
    doc = envelope(
        str(table) if isinstance(table, str) else "ledger_entries",
        op if isinstance(op, str) else "c",
        after=None if op == "d" else row,
        before=row if op == "d" else None,
    )
    doc["op"] = op
    doc["source"]["table"] = table
    for field in draw(st.sets(st.sampled_from(["ts_ms", "lsn", "txId", "snapshot"]), max_size=2)):
        doc["source"][field] = draw(_META)
    if draw(st.integers(0, 19)) == 0:
        del doc["source"]
    if draw(st.integers(0, 9)) == 0:
        return wrapped(doc, {"amount": {"name": "org.apache.kafka.connect.data.Decimal"}})
    return json.dumps(doc, separators=(",", ":")).encode()  # stdlib: ints of any size


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents())
def test_stored_bytes_decode_the_same_as_the_reference(raw: bytes) -> None:
    same(raw)  # even bytes the log would refuse give the same error
    kept = stored(raw)
    if kept is not None:
        same(kept)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents())
def test_stored_bytes_decode_restricted_columns_as_the_reference(raw: bytes) -> None:
    same_restricted(raw)
    kept = stored(raw)
    if kept is not None:
        same_restricted(kept)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_fail_or_decode_the_same(raw: bytes) -> None:
    same(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents())
def test_redaction_is_idempotent(raw: bytes) -> None:
    """What ``decode_stored`` relies on: redacting the stored bytes again changes nothing."""
    try:
        first = parse(raw)
    except DecodeError:
        return
    if first is None:
        return
    kept = stored(raw)
    if kept is None:
        return
    second = parse(kept)
    assert isinstance(second, Parsed)
    assert second.document == load_json(kept)  # the walk found nothing left to redact
    assert second.document == first.document
    assert sorted(second.redacted_paths) == sorted(first.redacted_paths)


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00.038000Z",
        "2026-01-01T00:00:00.999999Z",
        "2026-01-01T00:00:00.0380a0Z",  # a letter in the fraction
        "2026-01-01T00:00:00.03\u0663000Z",  # a non-ASCII digit in the fraction
        "2026-01-01T00:00:00.038000z",
        "2026-02-30T00:00:00.000000Z",  # no such day
        "2026-01-01T24:00:00.000000Z",
        "2026-01-01 00:00:00.000000Z",
        "2026-01-01T00:00:00.0380000Z",
    ],
)
def test_the_cached_timestamp_check_agrees_with_the_full_one(text: str) -> None:
    decode._is_canonical_ts_cached("2026-01-01T00:00:00.000000Z")  # the second is cached
    assert decode._is_canonical_ts_cached(text) is decode._is_canonical_ts(text)
    assert decode._is_canonical_ts_cached(text) is decode._is_canonical_ts(text)  # cached


@given(st.text(min_size=27, max_size=27))
def test_the_cached_timestamp_check_agrees_on_any_text(text: str) -> None:
    assert decode._is_canonical_ts_cached(text) is decode._is_canonical_ts(text)


Outcome = tuple[str, object]


def fast_or_reference(raw: bytes) -> tuple[Outcome, Outcome]:
    """(``change_of``'s outcome, ``to_change``'s outcome) for one received value."""
    try:
        parsed = parse(raw)
    except DecodeError as exc:
        return ("error", str(exc)), ("error", str(exc))
    if parsed is None:
        return ("tombstone", None), ("tombstone", None)
    outcomes: list[Outcome] = []
    for decoder in (change_of, to_change):
        try:
            outcomes.append(("change", decoder(parsed)))
        except DecodeError as exc:
            outcomes.append(("error", str(exc)))
    return outcomes[0], outcomes[1]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(documents())
def test_prepare_fast_path_equals_the_reference(raw: bytes) -> None:
    fast, reference = fast_or_reference(raw)
    assert fast == reference


def test_prepare_fast_path_on_golden_and_generated_events() -> None:
    lines = golden_lines()
    lines += list(debezium_events(300, redelivery=0.05, seed=7))
    for line in lines:
        fast, reference = fast_or_reference(line)
        assert fast == reference, line


def test_prepare_takes_the_fast_path_for_common_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = [parse(line) for line in debezium_events(200, redelivery=0.0, seed=5)]

    def reference(_parsed: Parsed) -> None:
        raise AssertionError("fell back to the reference decoder")

    monkeypatch.setattr(decode, "to_change", reference)
    assert all(decode.change_of(p) is not None for p in parsed if p is not None)
