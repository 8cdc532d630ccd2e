"""The Debezium decoder's limits and reasons (SPEC §2.2 to §2.4): bounded work on huge
decimals, scales and exponents; dead-letter reasons that say what is wrong (never "internal
error" or "not JSON" for a readable document); records that are not change events; and
the schemaless VariableScaleDecimal."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

import eventlog.decode
import eventlog.store
from tests.fixtures_eventlog import (
    change_of,
    connect_decimal,
    envelope,
    ledger_row,
    reason_of,
    wrapped,
)

CONNECT_DECIMAL = "org.apache.kafka.connect.data.Decimal"
VARIABLE_SCALE = "io.debezium.data.VariableScaleDecimal"


def bare(**columns: Any) -> bytes:
    return json.dumps(envelope(after=ledger_row(amount_signed=None, **columns))).encode()


def amount_event(amount: Any, schema: dict[str, Any] | None) -> bytes:
    """A ledger entry whose amount is ``amount``; wrapped with ``schema`` as its field schema."""
    if schema is None:
        return bare(amount=amount)
    return wrapped(
        envelope(after=ledger_row(amount=amount, amount_signed=None)), {"amount": schema}
    )


def base64_of(unscaled: int, pad: int = 0) -> str:
    """Connect decimal bytes of ``unscaled``, after ``pad`` sign-extension bytes."""
    size = (unscaled.bit_length() + 8) // 8
    data = unscaled.to_bytes(size, "big", signed=True)
    return base64.b64encode((b"\xff" if unscaled < 0 else b"\x00") * pad + data).decode()


# ---------------------------------------------------------------- 1. bounded decimal work


class _DecimalOfNoHugeInt(Decimal):
    """``Decimal`` that refuses to convert a huge integer: the quadratic step that stalled a
    partition (seconds per event) is watched instead of timed."""

    def __new__(cls, value: Any = "0", context: Any = None) -> Any:
        if isinstance(value, int) and value.bit_length() > 4096:
            raise AssertionError("Decimal() of a huge integer")
        return Decimal(value, context)


@pytest.mark.parametrize(
    ("shape", "schema"),
    [
        ("connect", {"name": CONNECT_DECIMAL, "parameters": {"scale": "2"}}),
        ("variable", {"type": "struct", "name": VARIABLE_SCALE}),
        ("variable", None),  # schemaless VariableScaleDecimal (3. below)
    ],
)
def test_a_300_kb_decimal_is_refused_by_its_length_before_any_decimal_conversion(
    monkeypatch: pytest.MonkeyPatch, shape: str, schema: dict[str, Any] | None
) -> None:
    monkeypatch.setattr(eventlog.decode, "Decimal", _DecimalOfNoHugeInt)

    def amount(unscaled_base64: str) -> Any:
        return unscaled_base64 if shape == "connect" else {"scale": 2, "value": unscaled_base64}

    huge = base64.b64encode(b"\x7f" + b"\xa5" * 225_000).decode()  # 300 KB of base64
    assert len(huge) > 300_000
    assert (
        reason_of(amount_event(amount(huge), schema)) == "undecodable amount: more than 64 digits"
    )
    # the bound is exact: every 64-digit value still decodes, 65 digits never do
    widest = 10**64 - 1
    for unscaled, expected in [
        (widest, f"{str(widest)[:-2]}.{str(widest)[-2:]}"),
        (-widest, f"-{str(widest)[:-2]}.{str(widest)[-2:]}"),
    ]:
        assert (
            change_of(amount_event(amount(base64_of(unscaled)), schema)).row["amount"] == expected
        )
    for unscaled in (10**64, -(10**64), 2**213, -(2**213)):
        raw = amount_event(amount(base64_of(unscaled)), schema)
        assert reason_of(raw) == "undecodable amount: more than 64 digits"
    # sign-extended bytes (never written by Connect, still the same number) are not refused
    padded = amount_event(amount(base64_of(-10050, pad=400)), schema)
    assert change_of(padded).row["amount"] == "-100.50"


# ---------------------------------------------------------------- 2a. long integer text


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("version", "undecodable version: out of the 64-bit integer range"),
        ("lsn", "undecodable source.lsn: out of the 64-bit integer range"),
        ("ts_ms", "undecodable timestamp source.ts_ms: out of range"),
    ],
)
def test_5000_digits_of_integer_text_are_out_of_range_not_an_internal_error(
    where: str, expected: str
) -> None:
    """Python's int() refuses text past 4,300 digits: such a value is simply out of range."""
    assert reason_of(_with(where, "9" * 5000)) == expected
    # leading zeros are no digits of the value: a long padded small number still decodes
    if where == "version":
        assert change_of(_with(where, "0" * 5000 + "7")).row["version"] == 7
    else:
        change = change_of(_with(where, "0" * 5000 + "1767225600000"))
        if where == "lsn":
            assert change.lsn == 1_767_225_600_000
        else:
            assert change.source_ts == "2026-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("where", "text", "expected"),
    [
        ("version", "--5", "undecodable version: '--5'"),
        ("version", "²", "undecodable version: '²'"),  # str.isdigit() but not int()-readable
        ("ts_ms", "²", "undecodable timestamp source.ts_ms: '²'"),
    ],
)
def test_integer_text_int_cannot_read_is_undecodable_not_an_internal_error(
    where: str, text: str, expected: str
) -> None:
    assert reason_of(_with(where, text)) == expected


def _with(where: str, text: str) -> bytes:
    """A ledger change whose ``after.version`` (``where`` = "version") or ``source.<where>``
    is ``text``."""
    doc = envelope(after=ledger_row())
    if where == "version":
        doc["after"]["version"] = text
    else:
        doc["source"][where] = text
    return json.dumps(doc).encode()


# ---------------------------------------------------------------- 2b, 2c. malformed schemas


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (["scale", "2"], "undecodable amount: schema parameters ['scale', '2'] are not an object"),
        ("scale=2", "undecodable amount: schema parameters 'scale=2' are not an object"),
        ({"scale": ["2"]}, "undecodable amount: schema parameter scale ['2']"),
        ({"scale": True}, "undecodable amount: schema parameter scale True"),
    ],
)
def test_malformed_decimal_schema_parameters_are_named_in_the_reason(
    parameters: Any, expected: str
) -> None:
    schema = {"type": "bytes", "name": CONNECT_DECIMAL, "parameters": parameters}
    assert reason_of(amount_event(connect_decimal("100.50"), schema)) == expected


def test_a_schema_name_that_is_not_text_is_read_as_an_unknown_name() -> None:
    """As a name no decoder knows: an integer timestamp of that schema is refused (it
    would otherwise be read in a guessed unit), text that speaks for itself is read."""
    listed = {"field": "created_at", "type": "int64", "name": ["x"]}
    raw = wrapped(
        envelope(after=ledger_row(created_at=1_767_225_600_000_000)), {"created_at": listed}
    )
    assert reason_of(raw) == "undecodable timestamp created_at: integer of schema \"['x']\""
    columns: dict[str, dict[str, Any]] = {
        "created_at": {"name": ["x"]},
        "amount": {"name": {"n": 1}, "parameters": []},
    }
    change = change_of(wrapped(envelope(after=ledger_row()), columns))
    assert (change.row["created_at"], change.row["amount"]) == (
        "2026-01-01T00:00:00.000000Z",
        "100.50",
    )


def test_a_type_error_bug_is_an_internal_error_not_not_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """orjson.JSONEncodeError *is* TypeError: only the re-encoding may report "not JSON"."""
    # a lone surrogate escape: JSON that cannot be encoded again (hashed, stored)
    surrogate = (
        b'{"op":"c","source":{"table":"ledger_entries","ts_ms":1,"lsn":1},'
        b'"after":{"tx_id":"T1","amount":"1.00","status":"\\ud800"}}'
    )
    assert reason_of(surrogate).startswith("not JSON: cannot be re-encoded")

    def bug(_parsed: Any) -> Any:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(eventlog.store, "change_of", bug)
    assert reason_of(bare()) == "undecodable: internal error (TypeError)"


# ---------------------------------------------------------------- 2d. not change events

BEGIN = {
    "status": "BEGIN",
    "id": "571:53195829",
    "ts_ms": 1486500577125,
    "event_count": None,
    "data_collections": None,
}
END = {
    "status": "END",
    "id": "571:53195829",
    "ts_ms": 1486500577125,
    "event_count": 2,
    "data_collections": [
        {"data_collection": "s1.a", "event_count": 1},
        {"data_collection": "s1.b", "event_count": 1},
    ],
}
HEARTBEAT = {"ts_ms": 1486500577125}


@pytest.mark.parametrize(
    ("record", "wrap", "expected"),
    [
        (BEGIN, False, "not a change event: Debezium transaction metadata (BEGIN)"),
        (END, False, "not a change event: Debezium transaction metadata (END)"),
        (HEARTBEAT, False, "not a change event: heartbeat"),
        (HEARTBEAT, True, "not a change event: heartbeat"),  # JsonConverter, schemas on
    ],
)
def test_transaction_metadata_and_heartbeats_are_dead_letters_that_say_so(
    record: dict[str, Any], wrap: bool, expected: str
) -> None:
    def encoded(payload: dict[str, Any]) -> bytes:
        schema = {"type": "struct", "name": "io.debezium.connector.common.Heartbeat"}
        return json.dumps({"schema": schema, "payload": payload} if wrap else payload).encode()

    assert reason_of(encoded(record)) == expected
    # the same with anything else beside it is no such record: an object with no op
    assert reason_of(encoded({**record, "after": {"tx_id": "T1"}})) == "unknown op None"


# ---------------------------------------------------------------- 3. VariableScaleDecimal


@pytest.mark.parametrize(
    ("unscaled", "scale", "expected"),
    [(10050, 2, "100.50"), (-12345, 3, "-12.345")],
)
def test_schemaless_variable_scale_decimal_decodes_but_text_scale_or_extra_keys_do_not(
    unscaled: int, scale: int, expected: str
) -> None:
    """Without a schema only the exact shape is read: an integer ``scale`` (a text "2" or a
    boolean is refused, as Debezium writes an int32) and a base64 ``value``, nothing else."""
    amount = {"scale": scale, "value": base64_of(unscaled)}
    assert change_of(amount_event(amount, None)).row["amount"] == expected
    schema = {"type": "struct", "name": VARIABLE_SCALE}
    assert change_of(amount_event(amount, schema)).row["amount"] == expected
    for malformed in [
        {"scale": scale, "value": "!!not base64"},
        {"scale": str(scale), "value": amount["value"]},
        {"scale": True, "value": amount["value"]},
        {**amount, "extra": 1},
        {"value": amount["value"]},
        {"scale": scale, "value": ""},
    ]:
        assert reason_of(amount_event(malformed, None)).startswith("undecodable amount: {")


# ---------------------------------------------------------------- 4. huge scales and exponents


def test_a_huge_scale_is_refused_before_its_zeros_are_written() -> None:
    """A JsonConverter NUMERIC decimal at scale 10^12 would be a trillion zeros (all the
    memory): refused by the digit cap before any is written."""
    connect = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal"}
    schema = {**connect, "parameters": {"scale": str(10**12)}}
    assert reason_of(amount_event(5, schema)) == "undecodable amount: more than 64 digits"


@pytest.mark.parametrize("column", ["created_at", "source.ts_ms"])
def test_a_timestamp_with_a_huge_exponent_is_out_of_range_at_once(column: str) -> None:
    """``1e1000000000`` as an epoch number would be spelled out as a billion-digit integer
    before the range check: refused from its exponent instead."""
    raw = bare() if column == "source.ts_ms" else bare(created_at=0)
    doc = json.loads(raw)
    if column == "source.ts_ms":
        doc["source"]["ts_ms"] = 0
        text = json.dumps(doc).replace('"ts_ms": 0', '"ts_ms": 1e1000000000')
    else:
        text = json.dumps(doc).replace('"created_at": 0', '"created_at": 1e1000000000')
    assert "1e1000000000" in text
    assert reason_of(text.encode()) == f"undecodable timestamp {column}: out of range"
