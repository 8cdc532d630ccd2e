"""Debezium decoding (SPEC §2.1-2.3): envelopes, column encodings, and hostile input.

The ``ledger_*.json`` fixtures follow the create, update and delete examples of Debezium's
PostgreSQL connector documentation (JsonConverter with schemas: ``schema`` + ``payload``,
a ``source`` block with ``lsn``/``txId``/``ts_ms``, an update with ``before`` null under
the default replica identity, a delete whose ``before`` holds only the key, followed by a
tombstone), adapted to the ``ledger_entries`` table.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog.decode import decode_bytes, load_json, parse, to_change
from eventlog.errors import DecodeError
from eventlog.identity import event_id
from eventlog.store import Prepared, Rejected, Tombstone, prepare
from tests.fixtures_eventlog import (
    change_of,
    connect_decimal,
    envelope,
    event,
    fixture,
    ledger_row,
    order_row,
    reason_of,
    wrapped,
)

# ---------------------------------------------------------------- Debezium's own examples


def test_documented_create_event_decodes() -> None:
    change = change_of(fixture("ledger_create.json"))
    assert change.table == "ledger_entries"
    assert change.op == "c"
    assert change.key == "T1001"
    assert change.entity_key == "ledger_entries:T1001"
    assert change.group_key == "pair:O77"
    assert change.row["amount"] == "100.50"  # Connect Decimal bytes, scale 2
    assert change.row["amount_signed"] == "-100.50"
    assert change.row["created_at"] == "2026-01-01T00:00:00.000000Z"  # +09:00 → UTC
    assert change.row["updated_at"] == "2026-01-01T00:00:00.000000Z"  # MicroTimestamp
    assert change.row["version"] == 1
    assert change.source_ts == "2026-01-01T00:00:00.863000Z"
    assert change.lsn == 24023128
    assert change.source_tx == "555"
    assert change.snapshot == "false"


def test_documented_create_event_is_redacted_before_storage() -> None:
    outcome = prepare(fixture("ledger_create.json"))
    assert isinstance(outcome, Prepared)
    assert outcome.redacted_paths == ["after.password"]
    assert b"hunter2" not in outcome.payload
    stored = orjson.loads(outcome.payload)
    assert stored["payload"]["after"]["password"] == "[REDACTED]"
    assert stored["schema"] == json.loads(fixture("ledger_create.json"))["schema"]


def test_documented_update_event_uses_after() -> None:
    change = change_of(fixture("ledger_update.json"))
    assert (change.op, change.key, change.row["status"], change.row["version"]) == (
        "u",
        "T1001",
        "REVERSED",
        2,
    )
    assert change.row["updated_at"] == "2026-01-01T00:01:00.000000Z"
    assert change.lsn == 24023192


def test_documented_delete_takes_its_key_from_before() -> None:
    change = change_of(fixture("ledger_delete.json"))
    assert change.op == "d"
    assert change.key == "T1001"
    assert change.row["amount"] is None  # default replica identity: only the key
    assert change.source_ts == "2026-01-01T00:01:42.461000Z"


def test_documented_tombstone_after_delete_is_counted_not_stored() -> None:
    assert isinstance(prepare(fixture("ledger_delete_tombstone.json").strip()), Tombstone)
    assert isinstance(prepare(None), Tombstone)


def test_schema_wrapped_tombstone_payload_is_a_tombstone() -> None:
    assert isinstance(prepare(b'{"schema": null, "payload": null}'), Tombstone)


def test_bare_and_wrapped_envelopes_decode_to_the_same_row() -> None:
    bare = change_of(event(after=ledger_row()))
    payload = envelope(after=ledger_row())
    wrapped_change = change_of(wrapped(payload, {}))
    assert bare == wrapped_change


def test_stored_bytes_are_the_received_bytes_when_nothing_is_redacted() -> None:
    raw = (
        b'{"op": "c",  "after": {"tx_id": "T9", "amount": "1.0"},'
        b' "source": {"table": "ledger_entries"}}'
    )
    outcome = prepare(raw)
    assert isinstance(outcome, Prepared)
    assert outcome.payload == raw
    assert outcome.redacted_paths == []


def test_snapshot_read_op_r_is_a_change() -> None:
    change = change_of(event(op="r", after=ledger_row()))
    assert change.op == "r"


def test_snapshot_flag_boolean_is_text() -> None:
    doc = envelope(after=ledger_row())
    doc["source"]["snapshot"] = True
    assert change_of(orjson.dumps(doc)).snapshot == "true"


def test_decode_bytes_round_trips_stored_payload() -> None:
    outcome = prepare(fixture("ledger_create.json"))
    assert isinstance(outcome, Prepared)
    assert decode_bytes(outcome.payload) == outcome.change


# ---------------------------------------------------------------- timestamps


def ts_of(value: Any, schema_name: str | None = None) -> str:
    row = ledger_row(created_at=value)
    if schema_name is None:
        return change_of(event(after=row)).row["created_at"]
    raw = wrapped(envelope(after=row), {"created_at": {"name": schema_name, "type": "int64"}})
    return change_of(raw).row["created_at"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T09:30:00+09:00", "2026-01-01T00:30:00.000000Z"),  # ZonedTimestamp
        ("2026-01-01T00:30:00Z", "2026-01-01T00:30:00.000000Z"),
        ("2026-01-01T00:30:00.5-01:00", "2026-01-01T01:30:00.500000Z"),
        ("2026-01-01T00:30:00", "2026-01-01T00:30:00.000000Z"),  # no offset → UTC
        ("2026-01-01 00:30:00.123456", "2026-01-01T00:30:00.123456Z"),
        ("2026-01-01T00:30:00.123456789Z", "2026-01-01T00:30:00.123456Z"),  # ns truncated
        ("2026-01-01T00:30:00.123456789+02:00", "2025-12-31T22:30:00.123456Z"),
        ("2026-01-01T00:30:00.000001Z", "2026-01-01T00:30:00.000001Z"),  # canonical as is
        ("0999-01-01T00:00:00+01:00", "0998-12-31T23:00:00.000000Z"),  # fixed width
    ],
)
def test_iso_timestamps_with_and_without_offset(text: str, expected: str) -> None:
    assert ts_of(text) == expected


def test_integer_without_schema_is_epoch_microseconds() -> None:
    assert ts_of(1_767_225_600_123_456) == "2026-01-01T00:00:00.123456Z"


@pytest.mark.parametrize(
    ("value", "name", "expected"),
    [
        (1_767_225_600_123_456, "io.debezium.time.MicroTimestamp", "2026-01-01T00:00:00.123456Z"),
        (1_767_225_600_123, "io.debezium.time.Timestamp", "2026-01-01T00:00:00.123000Z"),
        (
            1_767_225_600_123_456_789,
            "io.debezium.time.NanoTimestamp",
            "2026-01-01T00:00:00.123456Z",
        ),
        (-1_000_000, "io.debezium.time.MicroTimestamp", "1969-12-31T23:59:59.000000Z"),
        (
            1_767_225_600_123,
            "org.apache.kafka.connect.data.Timestamp",
            "2026-01-01T00:00:00.123000Z",
        ),
        (20_514, "io.debezium.time.Date", "2026-03-02T00:00:00.000000Z"),  # days
        (20_514, "org.apache.kafka.connect.data.Date", "2026-03-02T00:00:00.000000Z"),
    ],
)
def test_integer_timestamps_by_schema_name(value: int, name: str, expected: str) -> None:
    assert ts_of(value, name) == expected


@pytest.mark.parametrize(
    "name", ["io.debezium.time.MicroTime", "org.apache.kafka.connect.data.Time", "custom.Unit"]
)
def test_an_integer_of_another_schema_name_is_not_read_as_an_epoch(name: str) -> None:
    """A time of day (or a unit the service does not know) in a timestamp column would
    become a date in 1970: a dead letter instead, naming the schema."""
    row = ledger_row(created_at=43_200_000_000)
    raw = wrapped(envelope(after=row), {"created_at": {"name": name, "type": "int64"}})
    outcome = prepare(raw)
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith("undecodable timestamp created_at")
    assert name in outcome.reason


@pytest.mark.parametrize(
    "bad",
    ["yesterday", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z", "", True, {"a": 1}, 1.5],
)
def test_undecodable_timestamp_is_a_reason(bad: Any) -> None:
    reason = reason_of(event(after=ledger_row(created_at=bad)))
    assert reason.startswith("undecodable timestamp created_at")


def test_timestamp_out_of_range_is_a_reason() -> None:
    assert "out of range" in reason_of(event(after=ledger_row(created_at=10**30)))
    assert "out of range" in reason_of(event(after=ledger_row(created_at="0001-01-01T00:30+01:00")))


def test_source_ts_ms_missing_leaves_commit_time_empty() -> None:
    doc = envelope(after=ledger_row())
    del doc["source"]["ts_ms"]
    assert change_of(orjson.dumps(doc)).source_ts is None


def test_source_ts_ms_as_digit_string_is_accepted() -> None:
    doc = envelope(after=ledger_row())
    doc["source"]["ts_ms"] = "1767225600000"
    assert change_of(orjson.dumps(doc)).source_ts == "2026-01-01T00:00:00.000000Z"


def test_source_ts_ms_garbage_is_a_reason() -> None:
    doc = envelope(after=ledger_row())
    doc["source"]["ts_ms"] = "soon"
    assert reason_of(orjson.dumps(doc)).startswith("undecodable timestamp source.ts_ms")


# ---------------------------------------------------------------- decimals


def amount_of(raw_amount_json: str) -> str:
    raw = (
        b'{"op":"c","source":{"table":"ledger_entries","ts_ms":1,"lsn":1},'
        b'"after":{"tx_id":"T1","amount":' + raw_amount_json.encode() + b"}}"
    )
    return change_of(raw).row["amount"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"100.50"', "100.50"),  # decimal.handling.mode=string keeps the scale
        ('"-0.00"', "0.00"),  # no negative zero
        ('"  7.5 "', "7.5"),
        ('"1E+3"', "1000"),
        ('"007.10"', "7.10"),
        ("12345678901234567.89", "12345678901234567.89"),  # JSON number, never via float
        ("0.10000", "0.10000"),  # trailing zeros kept
        ("0.1", "0.1"),
        ("100", "100"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),  # > 64 bits
        ("-5.5e-3", "-0.0055"),
    ],
)
def test_decimal_as_string_or_json_number(text: str, expected: str) -> None:
    assert amount_of(text) == expected


def test_json_number_amount_is_exact_not_float() -> None:
    # float("12345678901234567.89") would print 1.2345678901234568e+16
    assert amount_of("12345678901234567.89") != str(float("12345678901234567.89"))


@pytest.mark.parametrize(
    ("value", "scale", "expected"),
    [("100.50", 2, "100.50"), ("-100.50", 2, "-100.50"), ("0.001", 3, "0.001"), ("5", 0, "5")],
)
def test_connect_decimal_base64_with_scale(value: str, scale: int, expected: str) -> None:
    schema = {
        "amount": {
            "type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": str(scale)},
        }
    }
    raw = wrapped(envelope(after=ledger_row(amount=connect_decimal(value))), schema)
    assert change_of(raw).row["amount"] == expected


@pytest.mark.parametrize(
    ("number", "scale", "expected"),
    [("123.45", 2, "123.45"), ("100.5", 2, "100.50"), ("7", 3, "7.000"), ("-0.5", 1, "-0.5")],
)
def test_connect_decimal_as_a_json_number(number: str, scale: int, expected: str) -> None:
    """JsonConverter ``decimal.format=NUMERIC``: the Decimal schema, the value a JSON
    number — read from its text (never a float) at the schema's scale."""
    schema = {
        "amount": {
            "type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": str(scale)},
        }
    }
    doc = orjson.dumps(envelope(after=ledger_row(amount="@", amount_signed=None)))
    raw = wrapped(orjson.loads(doc.replace(b'"@"', number.encode())), schema)
    assert change_of(raw).row["amount"] == expected


@pytest.mark.parametrize(
    "value",
    ["12345678901234567890.123456789012345678", "-99999999999999999999999999999999.999999"],
)
@pytest.mark.parametrize("name", ["Decimal", "VariableScaleDecimal"])
def test_connect_decimals_past_28_digits_keep_every_digit(value: str, name: str) -> None:
    """numeric(38, 18) and wider: no rounding to the decimal context's 28 digits."""
    scale = len(value.partition(".")[2])
    if name == "Decimal":
        schema = {
            "amount": {
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": str(scale)},
            }
        }
        amount: Any = connect_decimal(value)
    else:
        schema = {"amount": {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}}
        amount = {"scale": scale, "value": connect_decimal(value)}
    raw = wrapped(envelope(after=ledger_row(amount=amount, amount_signed=None)), schema)
    change = change_of(raw)
    assert change.row["amount"] == value


@pytest.mark.parametrize(
    ("column", "value"),
    [("version", 2**63), ("version", -(2**63) - 1), ("version", str(2**70))],
)
def test_integers_past_64_bits_are_dead_letters(column: str, value: Any) -> None:
    """A stored integer column is 64-bit: such a value would fail every projection that
    orders by it, forever (the log is immutable) — it is refused at the door instead."""
    raw = json.dumps(
        {"op": "c", "source": {"table": "ledger_entries"}, "after": ledger_row(**{column: value})}
    ).encode()
    assert reason_of(raw) == f"undecodable {column}: out of the 64-bit integer range"
    edge = ledger_row(version=2**63 - 1)
    assert (
        change_of(
            json.dumps({"op": "c", "source": {"table": "ledger_entries"}, "after": edge}).encode()
        ).row["version"]
        == 2**63 - 1
    )


@pytest.mark.parametrize("lsn", [2**64, 2**63, "FFFFFFFF/FFFFFFFF", str(2**63)])
def test_lsn_past_64_bits_is_a_dead_letter(lsn: Any) -> None:
    source = {"table": "ledger_entries", "lsn": lsn}
    raw = json.dumps({"op": "c", "source": source, "after": ledger_row()}).encode()
    assert reason_of(raw) == "undecodable source.lsn: out of the 64-bit integer range"
    ok = json.dumps({"op": "c", "source": {**source, "lsn": 2**63 - 1}, "after": ledger_row()})
    assert change_of(ok.encode()).lsn == 2**63 - 1


@pytest.mark.parametrize(
    ("lsn", "expected"),
    [(10, 10), ("10", 10), ("16/B374D848", (0x16 << 32) | 0xB374D848), (None, None)],
)
def test_lsn_forms(lsn: Any, expected: int | None) -> None:
    source = {"table": "ledger_entries", "lsn": lsn}
    raw = json.dumps({"op": "c", "source": source, "after": ledger_row()}).encode()
    assert change_of(raw).lsn == expected


@pytest.mark.parametrize("lsn", [1.5e20, 2.0, True, "1/FFFFFFFFF", "abc", "16/", {"a": 1}])
def test_a_malformed_lsn_is_a_dead_letter(lsn: Any) -> None:
    """The lsn orders a key's changes: a value that is not one would reorder them."""
    source = {"table": "ledger_entries", "lsn": lsn}
    raw = json.dumps({"op": "c", "source": source, "after": ledger_row()}).encode()
    assert reason_of(raw).startswith("undecodable source.lsn")


@pytest.mark.parametrize(
    "amount",
    [
        "1.11111111111111111111111111111111",
        "12345678.123456789012345678901234567890",
        "0." + "0" * 63 + "1",
    ],
)
def test_decimals_up_to_64_digits_of_text_are_kept(amount: str) -> None:
    """The limit counts the digits the plain text spells out (NUMERIC(38,30) fits)."""
    assert change_of(event(after=ledger_row(amount=amount))).row["amount"] == amount
    too_long = "0." + "0" * 64 + "1"
    assert reason_of(event(after=ledger_row(amount=too_long))) == (
        "undecodable amount: more than 64 digits"
    )


def test_variable_scale_decimal() -> None:
    schema = {"amount": {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}}
    amount = {"scale": 3, "value": connect_decimal("12.345")}
    raw = wrapped(envelope(after=ledger_row(amount=amount)), schema)
    assert change_of(raw).row["amount"] == "12.345"


@pytest.mark.parametrize(
    "bad",
    ['"abc"', '"1_000"', '"1,000.00"', '"NaN"', '"Infinity"', "true", "[1]", '"1e999"', '"٣"'],
)
def test_undecodable_amount_is_a_reason(bad: str) -> None:
    raw = (
        b'{"op":"c","source":{"table":"ledger_entries"},"after":{"tx_id":"T1","amount":'
        + bad.encode()
        + b"}}"
    )
    assert reason_of(raw).startswith("undecodable amount")


def test_bad_connect_decimal_bytes_is_a_reason() -> None:
    schema = {"amount": {"name": "org.apache.kafka.connect.data.Decimal", "parameters": {}}}
    raw = wrapped(envelope(after=ledger_row(amount="!!not base64")), schema)
    assert reason_of(raw).startswith("undecodable amount")


# ---------------------------------------------------------------- ids and other columns


def test_integer_ids_become_strings() -> None:
    change = change_of(event(after=ledger_row(tx_id=42, wallet_id=7, related_id=9)))
    assert (change.key, change.row["tx_id"], change.row["wallet_id"]) == ("42", "42", "7")
    assert change.group_key == "pair:9"


def test_big_integer_id_keeps_every_digit() -> None:
    big = 2**80 + 1
    raw = b'{"op":"c","source":{"table":"payment_orders"},"after":{"order_id":%d}}' % big
    outcome = prepare(raw)
    assert isinstance(outcome, Prepared)
    assert outcome.change.key == str(big)
    assert len(outcome.event_id) == 64


def test_version_as_digit_string_is_an_integer() -> None:
    assert change_of(event(after=ledger_row(version="12"))).row["version"] == 12


def test_unknown_columns_stay_in_the_bytes_only() -> None:
    outcome = prepare(event(after=ledger_row(memo="hello", nested={"a": [1, 2]})))
    assert isinstance(outcome, Prepared)
    assert "memo" not in outcome.change.row
    assert b'"memo":"hello"' in outcome.payload


def test_debezium_unavailable_value_is_null() -> None:
    change = change_of(event(after=ledger_row(status="__debezium_unavailable_value")))
    assert change.row["status"] is None


def test_payment_order_row_decodes() -> None:
    row = order_row(settled_at=1_767_225_600_000_000, amount=12.5)
    change = change_of(event("payment_orders", after=row))
    assert change.row["settled_at"] == "2026-01-01T00:00:00.000000Z"
    assert change.row["amount"] == "12.5"
    assert change.group_key == "pair:O1"


def test_text_column_holding_an_object_is_a_reason() -> None:
    assert reason_of(event(after=ledger_row(status={"x": 1}))) == (
        "undecodable status: expected a string, got dict"
    )


# ---------------------------------------------------------------- hostile JSON


def test_nan_and_infinity_are_not_json() -> None:
    assert reason_of(b'{"op":"c","x":NaN}').startswith("not JSON")
    assert reason_of(b'{"op":"c","x":-Infinity}').startswith("not JSON")


def test_duplicate_keys_keep_the_last_value_and_cannot_smuggle_a_credential() -> None:
    raw = (
        b'{"op":"c","source":{"table":"ledger_entries"},'
        b'"after":{"tx_id":"T1","password":"hunter2","password":"[REDACTED]"}}'
    )
    outcome = prepare(raw)
    assert isinstance(outcome, Prepared)
    assert b"hunter2" not in outcome.payload


@pytest.mark.parametrize(
    "raw",
    [
        # the credential sits in the copy the parser drops: the walk never sees it
        b'{"op":"c","source":{"table":"ledger_entries"},'
        b'"after":{"tx_id":"T1","meta":{"apiKey":"SEC"},"meta":{}}}',
        b'{"op":"c","source":{"table":"ledger_entries"},'
        b'"after":{"tx_id":"T1","password":"SEC"},"after":{"tx_id":"T1"}}',
        b'{"op":"c","source":{"table":"ledger_entries"},'
        b'"after":{"tx_id":"T1","amount":1.50,"x":{"token":"SEC"},"x":1}}',  # exact numbers
        b'{"op":"c","source":{"table":"ledger_entries"},'
        b'"after":{"tx_id":"T1","version":%d,"x":{"token":"SEC"},"x":1}}' % 2**62,
    ],
)
def test_a_credential_behind_a_duplicate_key_never_lands(raw: bytes) -> None:
    outcome = prepare(raw)
    assert isinstance(outcome, Prepared)
    assert b"SEC" not in outcome.payload
    assert outcome.payload == orjson.dumps(load_json(outcome.payload), default=str) or (
        b"1.50" in outcome.payload  # exact numbers are re-serialised with their own text
    )
    assert outcome.change.key == "T1"
    # the same bytes as a dead letter (unknown table) are stored without the hidden copy
    rejected = prepare(raw.replace(b'"ledger_entries"', b'"nope"'))
    assert isinstance(rejected, Rejected)
    assert b"SEC" not in rejected.raw


def test_documents_without_duplicates_are_stored_as_received() -> None:
    raw = (
        b'{"op":"c","source":{"table":"ledger_entries"},'
        b'"after":{"tx_id":"T1","x":{"a":1},"y":{"a":2}}}'
    )
    outcome = prepare(raw)
    assert isinstance(outcome, Prepared)
    assert outcome.payload == raw  # same key in two objects is not a duplicate
    spaced = b'{"op": "c", "source": {"table": "ledger_entries"}, "after": {"tx_id": "T1"}}'
    outcome = prepare(spaced)
    assert isinstance(outcome, Prepared)
    assert outcome.payload == spaced


def test_very_deep_nesting_is_a_reason_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert reason_of(deep).startswith("not JSON")
    nested = b'{"op":"c","source":{"table":"ledger_entries"},"after":{"tx_id":"T1","j":'
    nested += b'{"a":' * 500 + b"1" + b"}" * 500 + b"}}"
    assert "nested" in reason_of(nested)


def test_invalid_utf8_and_lone_surrogates_are_reasons() -> None:
    assert reason_of(b'{"op":"c","x":"\xff"}').startswith("not JSON")
    raw = b'{"op":"c","source":{"table":"ledger_entries"},"after":{"tx_id":"T1","m":"\\ud800"}}'
    assert reason_of(raw).startswith("not JSON")


def test_keys_with_odd_characters_decode() -> None:
    row = ledger_row(**{"we\u0131rd key": 1, "a.b": {"c": 2}, "": 3, "\n": 4})
    change = change_of(event(after=row))
    assert change.key == "T1"


def test_load_json_keeps_big_and_exact_numbers() -> None:
    assert load_json(b'{"a": 1.10, "b": 18446744073709551616}') == {
        "a": Decimal("1.10"),
        "b": 2**64,
    }
    assert load_json(b'{"a": 1, "b": [2, {"c": 3}]}') == {"a": 1, "b": [2, {"c": 3}]}


def test_event_id_ignores_connector_time_and_sees_content() -> None:
    def eid(raw: bytes) -> str:
        parsed = parse(raw)
        assert parsed is not None
        return event_id(parsed, to_change(parsed))

    base = eid(event(after=ledger_row(), top_ts_ms=1))
    assert eid(event(after=ledger_row(), top_ts_ms=999)) == base
    assert eid(event(after=ledger_row(amount="100.51"))) != base
    assert eid(event(after=ledger_row(), lsn=101)) != base
    assert eid(event(after=ledger_row(), tx=6)) != base
    assert eid(event(after=ledger_row(), ts_ms=1)) != base
    assert eid(event(op="u", after=ledger_row())) != base


def test_parse_rejects_oversized_before_parsing() -> None:
    with pytest.raises(DecodeError, match="over 1 MiB"):
        parse(b" " * (1024 * 1024 + 1))


# ---------------------------------------------------------------- never a crash

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_fields = st.sampled_from(["op", "source", "before", "after", "ts_ms", "payload", "schema"])


@settings(max_examples=300, deadline=None)
@given(
    doc=st.dictionaries(_fields, _json_values, max_size=5),
    table=st.sampled_from(["ledger_entries", "payment_orders", "x"]) | _json_values,
    op=st.sampled_from(["c", "u", "d", "r", "t"]) | _json_values,
    row=st.dictionaries(
        st.sampled_from(["tx_id", "order_id", "amount", "created_at", "version", "status"]),
        _json_values,
        max_size=6,
    ),
)
def test_prepare_never_raises(doc: dict[str, Any], table: Any, op: Any, row: Any) -> None:
    for candidate in (
        doc,
        {
            "op": op,
            "source": {"table": table, "ts_ms": doc.get("ts_ms")},
            "after": row,
            "before": row,
        },
    ):
        outcome = prepare(json.dumps(candidate).encode())
        assert isinstance(outcome, Prepared | Rejected | Tombstone)
        if isinstance(outcome, Rejected):
            assert not outcome.reason.startswith("undecodable: internal error"), outcome.reason


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_prepare_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    assert isinstance(prepare(raw), Prepared | Rejected | Tombstone)
