"""Debezium change events → :class:`Change` (SPEC §2.1 to §2.3).

The raw event is parsed once (numbers are never read through float when it matters),
credentials are redacted, the envelope is validated, and the columns the service
understands are decoded into canonical text: decimals keep their source scale,
timestamps become RFC 3339 UTC with microseconds, ids become strings.
Anything that cannot be understood raises :class:`DecodeError` with the reason that
the dead letter will carry.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from eventlog.errors import DecodeError
from eventlog.redact import redact_tree
from eventlog.timeutil import format_ts

MAX_EVENT_BYTES = 1024 * 1024
OPS = frozenset({"c", "u", "d", "r"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_DECIMAL_DIGITS = 64
_UNAVAILABLE = "__debezium_unavailable_value"

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """What the service understands of one OLTP table."""

    key: str
    decimals: frozenset[str]
    timestamps: frozenset[str]
    integers: frozenset[str]
    texts: frozenset[str]
    group: str | None  # column whose value groups related events (pairing / order)


TABLES: dict[str, TableSpec] = {
    "ledger_entries": TableSpec(
        key="tx_id",
        decimals=frozenset({"amount", "amount_signed"}),
        timestamps=frozenset({"created_at", "updated_at"}),
        integers=frozenset({"version"}),
        texts=frozenset(
            {"tx_id", "wallet_id", "type", "currency", "related_id", "related_type", "status"}
        ),
        group="related_id",
    ),
    "payment_orders": TableSpec(
        key="order_id",
        decimals=frozenset({"amount"}),
        timestamps=frozenset({"created_at", "updated_at", "settled_at", "failed_at"}),
        integers=frozenset({"version"}),
        texts=frozenset(
            {"order_id", "payer_wallet_id", "receiver_wallet_id", "currency", "status"}
        ),
        group="order_id",
    ),
}


@dataclass(frozen=True, slots=True)
class Change:
    """One decoded change to one row of a known table."""

    table: str
    op: str
    key: str
    row: Row  # the decoded ``after`` (c/u/r) or ``before`` (d); known columns only
    source_ts: str | None  # OLTP commit time (source.ts_ms)
    lsn: int | None
    source_tx: str | None
    snapshot: str | None

    @property
    def entity_key(self) -> str:
        return f"{self.table}:{self.key}"

    @property
    def group_key(self) -> str | None:
        column = TABLES[self.table].group
        value = self.row.get(column) if column else None
        return f"pair:{value}" if value is not None else None


@dataclass(slots=True)
class Parsed:
    """A received event after parsing and redaction, ready to be identified and stored."""

    envelope: dict[str, Any]  # the Debezium envelope (``payload`` when schema-wrapped)
    document: Any  # the whole received JSON document (redacted)
    field_schemas: dict[str, dict[str, dict[str, Any]]]  # before/after → column → schema
    redacted_paths: list[str] = field(default_factory=list)
    rewritten: bool = False


# ---------------------------------------------------------------- parsing


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def load_json(raw: bytes) -> Any:
    """Parse JSON; when it holds non-integer numbers, parse again so they stay exact."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = _load_exact(raw)  # orjson refuses ints past 64 bits; the stdlib does not
    else:
        if not _has_float(doc):
            return doc
        doc = _load_exact(raw)
    return doc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_exact(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise DecodeError("not JSON: invalid UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not JSON: {str(exc).splitlines()[0][:200]}") from exc


def parse(raw: bytes) -> Parsed | None:
    """Parse and redact one received value; ``None`` means a tombstone (JSON ``null``)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise DecodeError(f"value over 1 MiB ({len(raw)} bytes)")
    doc = load_json(raw)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise DecodeError(f"not an object (JSON {type(doc).__name__})")
    envelope, schemas = _unwrap(doc)
    if envelope is None:
        return None
    parsed = Parsed(envelope=envelope, document=doc, field_schemas=schemas)
    for side in ("before", "after"):
        if isinstance(envelope.get(side), dict | list):
            parsed.rewritten |= redact_tree(envelope[side], side, parsed.redacted_paths)
    return parsed


def _unwrap(
    doc: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, dict[str, dict[str, Any]]]]:
    """Return the envelope and, for JsonConverter with schemas, the column schemas."""
    if "payload" not in doc or "schema" not in doc:
        return doc, {}
    payload = doc["payload"]
    if payload is None:
        return None, {}
    if not isinstance(payload, dict):
        raise DecodeError("not an object (schema-wrapped payload)")
    schemas: dict[str, dict[str, dict[str, Any]]] = {}
    schema = doc["schema"]
    fields = schema.get("fields") if isinstance(schema, dict) else None
    for side in fields if isinstance(fields, list) else []:
        if isinstance(side, dict) and side.get("field") in ("before", "after"):
            columns = side.get("fields")
            schemas[side["field"]] = {
                str(c["field"]): c
                for c in (columns if isinstance(columns, list) else [])
                if isinstance(c, dict) and "field" in c
            }
    return payload, schemas


# ---------------------------------------------------------------- validation


def to_change(parsed: Parsed) -> Change:
    """Validate the envelope and decode the row the change carries."""
    env = parsed.envelope
    op = env.get("op")
    if op == "t":
        raise DecodeError("truncate event (op t) is not supported")
    if op not in OPS:
        raise DecodeError(f"unknown op {op!r}")
    source = env.get("source")
    table = source.get("table") if isinstance(source, dict) else None
    if not isinstance(table, str) or not table:
        raise DecodeError("unknown table: source.table missing")
    spec = TABLES.get(table)
    if spec is None:
        raise DecodeError(f"unknown table {table!r}")
    assert isinstance(source, dict)
    side = "before" if op == "d" else "after"
    raw_row = env.get(side)
    if not isinstance(raw_row, dict):
        raise DecodeError(f"{side} missing for op {op}")
    row = decode_row(spec, raw_row, parsed.field_schemas.get(side, {}))
    key = row.get(spec.key)
    if key is None or key == "":
        raise DecodeError(f"missing primary key {spec.key}")
    return Change(
        table=table,
        op=op,
        key=key,
        row=row,
        source_ts=_source_ts(source),
        lsn=_lsn(source.get("lsn")),
        source_tx=None if source.get("txId") is None else str(source.get("txId")),
        snapshot=None if source.get("snapshot") is None else str(source.get("snapshot")),
    )


def decode_bytes(raw: bytes) -> Change:
    """Decode stored log bytes (already redacted) into a :class:`Change`."""
    parsed = parse(raw)
    if parsed is None:
        raise DecodeError("tombstone in the log")
    return to_change(parsed)


def _source_ts(source: dict[str, Any]) -> str | None:
    ts = source.get("ts_ms")
    if ts is None:
        return None
    if isinstance(ts, bool) or not isinstance(ts, int | Decimal):
        raise DecodeError(f"undecodable timestamp source.ts_ms: {_short(ts)}")
    return _epoch(ts, 1000, "source.ts_ms")


def _lsn(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, str) and "/" in value:  # textual pg_lsn "16/B374D848"
        hi, _, lo = value.partition("/")
        try:
            return (int(hi, 16) << 32) | int(lo, 16)
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------- columns


def decode_row(spec: TableSpec, raw: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> Row:
    """Decode the known columns of one row; unknown columns stay only in the logged bytes."""
    row: Row = {}
    for column, decoder in _decoders(spec):
        value = raw.get(column)
        if value is None or value == _UNAVAILABLE:
            row[column] = None
            continue
        row[column] = decoder(column, value, schemas.get(column, {}))
    return row


def _decoders(spec: TableSpec) -> list[tuple[str, Callable[[str, Any, dict[str, Any]], Any]]]:
    out: list[tuple[str, Callable[[str, Any, dict[str, Any]], Any]]] = []
    out += [(c, decode_decimal) for c in sorted(spec.decimals)]
    out += [(c, decode_timestamp) for c in sorted(spec.timestamps)]
    out += [(c, decode_integer) for c in sorted(spec.integers)]
    out += [(c, decode_text) for c in sorted(spec.texts)]
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_text(column: str, value: Any, _schema: dict[str, Any]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    raise DecodeError(f"undecodable {column}: expected a string, got {type(value).__name__}")


def decode_integer(column: str, value: Any, _schema: dict[str, Any]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise DecodeError(f"undecodable {column}: {_short(value)}")


def decode_decimal(column: str, value: Any, schema: dict[str, Any]) -> str:
    """Decimal as canonical text that keeps the source scale (``"100.50"``)."""
    name = schema.get("name")
    try:
        if name == "org.apache.kafka.connect.data.Decimal":
            scale = int((schema.get("parameters") or {}).get("scale", 0))
            number = _from_connect_bytes(value, scale)
        elif name == "io.debezium.data.VariableScaleDecimal" and isinstance(value, dict):
            number = _from_connect_bytes(value.get("value"), int(value.get("scale", 0)))
        elif isinstance(value, bool):
            raise ValueError("boolean")
        elif isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, str):
            number = Decimal(value.strip())
        else:
            raise ValueError(type(value).__name__)
    except (ValueError, TypeError, InvalidOperation, binascii.Error) as exc:
        raise DecodeError(f"undecodable {column}: {_short(value)}") from exc
    return format_decimal(number, column)


def format_decimal(number: Decimal, column: str = "decimal") -> str:
    if not number.is_finite():
        raise DecodeError(f"undecodable {column}: not a finite number")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if len(digits) + abs(exponent) > _MAX_DECIMAL_DIGITS:
        raise DecodeError(f"undecodable {column}: more than {_MAX_DECIMAL_DIGITS} digits")
    text = format(number, "f")
    return text[1:] if sign and not any(digits) else text  # no negative zero


def _from_connect_bytes(value: Any, scale: int) -> Decimal:
    if not isinstance(value, str):
        raise ValueError("expected base64 text")
    data = base64.b64decode(value, validate=True)
    if not data:
        raise ValueError("empty")
    unscaled = int.from_bytes(data, "big", signed=True)
    return Decimal(unscaled).scaleb(-scale)


_INT_UNITS = {
    "io.debezium.time.MicroTimestamp": 1_000_000,
    "io.debezium.time.Timestamp": 1_000,
    "io.debezium.time.NanoTimestamp": 1_000_000_000,
    "org.apache.kafka.connect.data.Timestamp": 1_000,
}


def decode_timestamp(column: str, value: Any, schema: dict[str, Any]) -> str:
    """ISO-8601 text (no offset = UTC) or epoch integers in the unit the schema names."""
    if isinstance(value, str):
        return _iso(column, value)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise DecodeError(f"undecodable timestamp {column}: {_short(value)}")
    name = schema.get("name")
    if name == "io.debezium.time.Date":
        return _epoch(value, 1, column, days=True)
    return _epoch(value, _INT_UNITS.get(str(name), 1_000_000), column)


def _iso(column: str, text: str) -> str:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise DecodeError(f"undecodable timestamp {column}: {_short(text)}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return format_ts(value)
    except (OverflowError, ValueError) as exc:
        raise DecodeError(f"undecodable timestamp {column}: out of range") from exc


def _epoch(value: int | Decimal, per_second: int, column: str, *, days: bool = False) -> str:
    if isinstance(value, Decimal) and value != value.to_integral_value():
        raise DecodeError(f"undecodable timestamp {column}: {_short(value)}")
    number = int(value)
    try:
        if days:
            return format_ts(_EPOCH + timedelta(days=number))
        seconds, rest = divmod(number, per_second)
        micros = rest * 1_000_000 // per_second
        return format_ts(_EPOCH + timedelta(seconds=seconds, microseconds=micros))
    except (OverflowError, ValueError) as exc:
        raise DecodeError(f"undecodable timestamp {column}: out of range") from exc
