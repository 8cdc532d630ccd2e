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
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from eventlog.errors import DecodeError
from eventlog.redact import (
    MAX_DEPTH,
    REDACTED,
    is_credential_key,
    mentions_credential,
    path_of,
    redact_at,
    redact_text,
    scan_tree,
)

MAX_EVENT_BYTES = 1024 * 1024
OPS = frozenset({"c", "u", "d", "r"})
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
    inexact: bool = False  # parsed by orjson and holds a float: must be parsed again exactly


# ---------------------------------------------------------------- parsing


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _DuplicateKey
    return found


_PAIRS = json.JSONDecoder(
    object_pairs_hook=_unique_pairs, parse_float=Decimal, parse_constant=_reject_constant
)


def has_duplicate_keys(raw: bytes) -> bool:
    """Whether an object in the JSON text ``raw`` names a key twice.

    Every parser keeps the last value, so the earlier ones are invisible to the redaction
    walk while still present in the bytes: such a document is never stored as received.
    (Not JSON at all: ``False``; the caller's parse reports that.)
    """
    try:
        _PAIRS.decode(raw.decode("utf-8"))
    except _DuplicateKey:
        return True
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False
    return False


_CONTAINERS = (dict, list)


def load_json(raw: bytes) -> Any:
    """Parse JSON exactly: non-integer numbers become :class:`Decimal` (never float).

    orjson parses first (fast); when the document holds a non-integer number, or an
    integer past 64 bits that orjson refuses, the standard library parses it again with
    ``parse_float=Decimal``, which keeps the number's own text. ``NaN``/``Infinity`` are
    refused; a duplicate key keeps its last value (both parsers agree).
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _load_exact(raw)
    return _load_exact(raw) if _has_float(doc, 0) else doc


def _has_float(value: Any, depth: int) -> bool:
    """True if a float is anywhere in ``value`` (or it nests too deep to tell cheaply)."""
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return isinstance(value, float)
    if depth > MAX_DEPTH:
        return True
    types = set(map(type, children))
    if float in types:
        return True
    if dict in types or list in types:
        return any(_has_float(c, depth + 1) for c in children if isinstance(c, _CONTAINERS))
    return False


def _load_exact(raw: bytes) -> Any:
    try:
        return _JSON.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError("not JSON: invalid UTF-8") from exc
    except RecursionError as exc:
        raise DecodeError("not JSON: nested too deeply") from exc
    except ValueError as exc:
        raise DecodeError(f"not JSON: {str(exc).splitlines()[0][:200]}") from exc


def parse(raw: bytes) -> Parsed | None:
    """Parse and redact one received value; ``None`` means a tombstone (JSON ``null``).

    Besides the keys of the envelope's objects, the keys inside JSON carried as text —
    Debezium sends ``json``/``jsonb`` columns as strings — are redacted too
    (:func:`redact_json_text`); such a value is then stored re-serialised.

    The whole envelope is redacted (``before``/``after`` and anything else beside them);
    ``redacted_paths`` are relative to it (``after.password``). Whenever a credential key
    is present — or a key is named twice in one object — the stored bytes are the
    re-serialised, redacted document, so a credential cannot survive in the received bytes
    (in a copy a duplicate key shadows, say).

    orjson parses first; the redaction walk also notices floats, and only then is the
    value parsed again exactly (see :func:`load_json`) — one walk instead of two.
    """
    parsed = _parse(raw)
    if parsed is not None and _redact_row_text(parsed.envelope, parsed.redacted_paths):
        parsed.rewritten = True
    return parsed


def _redact_row_text(envelope: dict[str, Any], found: list[str]) -> bool:
    """:func:`redact_json_text` over ``before`` and ``after`` (SPEC §2.5's scope: the row
    images, where Debezium puts json/jsonb columns as text)."""
    changed = False
    for side in ("before", "after"):
        row = envelope.get(side)
        if type(row) is dict and _TEXT_START_OR_BLANK.isdisjoint(
            {v[:1] for v in row.values() if type(v) is str}
        ):
            kinds = set(map(type, row.values()))
            if dict not in kinds and list not in kinds:
                continue  # a flat row with no string that may be JSON text: the usual case
        if isinstance(row, dict | list):
            changed = redact_json_text(row, found, [side]) or changed
    return changed


_TEXT_START = frozenset('{["')  # an object, an array, or JSON text encoded again as a string
_BLANK = " \t\r\n\ufeff"  # what may precede JSON text in a json column (and a BOM)
_TEXT_START_OR_BLANK = _TEXT_START | frozenset(_BLANK)


def redact_json_text(value: Any, found: list[str], parts: list[str | int] | None = None) -> bool:
    """Redact credentials inside strings of ``value`` that hold JSON objects or arrays, or
    such JSON encoded again as a JSON string (in place: such a string is replaced by its
    redacted JSON, encoded as often as it was); True if one changed. Paths go
    on through the text (``after.meta.password``). Text that starts like JSON but does not
    parse (truncated, say) is redacted textually (:func:`eventlog.redact.redact_text`)
    and its own path recorded."""
    changed = False
    here = parts or []
    if len(here) > MAX_DEPTH:
        return False
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    for key, child in items:
        if type(child) is str:
            first = child[:1]
            if first not in _TEXT_START and (
                not first or first not in _BLANK or child.lstrip(_BLANK)[:1] not in _TEXT_START
            ):
                continue
            replaced = _redacted_text(child, [*here, key], found)
            if replaced is not None:
                value[key] = replaced
                changed = True
        elif isinstance(child, dict | list):
            changed = redact_json_text(child, found, [*here, key]) or changed
    return changed


def _redacted_text(text: str, where: list[str | int], found: list[str]) -> str | None:
    """The redacted form of JSON carried as text, or ``None`` when nothing changed."""
    from eventlog.identity import dump_json  # identity imports this module

    stripped = text.lstrip(_BLANK)
    try:
        inner = _JSON.decode(stripped)  # exact numbers, as load_json
    except (ValueError, RecursionError):
        # Text that starts like JSON but does not parse: its syntax is anyone's (Ruby's
        # ``=>``, YAML, a truncated dump), so a textual redaction may miss part of a
        # secret — and this value goes to the immutable log. Any sign of a credential (a
        # key the textual redaction found, or a word that names one) removes it whole.
        raw = text.encode("utf-8", "surrogatepass")
        if redact_text(raw) == raw and not mentions_credential(text):
            return None
        found.append(path_of(where))
        return REDACTED
    if isinstance(inner, str):  # JSON text encoded twice (a json column holding a string)
        if inner.lstrip(_BLANK)[:1] not in _TEXT_START:
            return None
        again = _redacted_text(inner, where, found)
        return None if again is None else dump_json(again).decode()
    if not isinstance(inner, dict | list):
        return None
    hit = redact_at(inner, where, found)
    hit = redact_json_text(inner, found, where) or hit
    if not hit and not has_duplicate_keys(stripped.encode("utf-8", "surrogatepass")):
        return None
    try:
        return dump_json(inner).decode()
    except orjson.JSONEncodeError:  # e.g. a lone surrogate escape: keep nothing of it
        found.append(path_of(where))
        return REDACTED


def _parse(raw: bytes) -> Parsed | None:
    if len(raw) > MAX_EVENT_BYTES:
        raise DecodeError(f"value over 1 MiB ({len(raw)} bytes)")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _unhidden(_parse_doc(_load_exact(raw)), raw)  # orjson refuses ints past 64 bits
    parsed = _parse_doc(doc)
    if parsed is not None and parsed.inexact:
        return _unhidden(_parse_doc(_load_exact(raw)), raw)
    if parsed is None or parsed.rewritten or orjson.dumps(doc) == raw:
        return parsed  # the usual case: the bytes are exactly the parse (nothing hidden)
    if not has_duplicate_keys(raw):
        return parsed
    if _has_float(doc, 0):  # re-serialised: its numbers must be the exact ones
        parsed = _parse_doc(_load_exact(raw))
    if parsed is not None:
        parsed.rewritten = True
    return parsed


def _unhidden(parsed: Parsed | None, raw: bytes) -> Parsed | None:
    """``parsed``, to be stored re-serialised when ``raw`` hides values behind duplicate
    keys (SPEC §2.5: a credential in a shadowed copy must not reach the log)."""
    if parsed is not None and not parsed.rewritten and has_duplicate_keys(raw):
        parsed.rewritten = True
    return parsed


def _parse_doc(doc: Any) -> Parsed | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise DecodeError(f"not an object (JSON {_json_type(doc)})")
    envelope, schemas = _unwrap(doc)
    if envelope is None:
        return None
    parsed = Parsed(envelope=envelope, document=doc, field_schemas=schemas)
    _changed, floats = scan_tree(envelope, parsed.redacted_paths)
    if envelope is not doc:
        _redact_wrapper(doc, parsed.redacted_paths)
    parsed.rewritten = bool(parsed.redacted_paths)
    # a float anywhere in the envelope, or (only if re-serialised) in the rest of the document
    parsed.inexact = floats or (parsed.rewritten and envelope is not doc and _has_float(doc, 0))
    return parsed


def _redact_wrapper(doc: dict[str, Any], found: list[str]) -> None:
    """The rest of a schema-wrapped document: keys beside ``schema`` and ``payload``
    (redacted like the envelope's), and the ``default`` of a credential column's field
    schema (Debezium writes the column's default value there): the stored bytes are the
    whole document."""
    for key, value in doc.items():
        if key in ("schema", "payload"):
            continue
        if is_credential_key(key):
            found.append(path_of([key]))
            doc[key] = REDACTED
        else:
            redact_at(value, [key], found)
    redact_schema_defaults(doc, found)


def redact_schema_defaults(doc: Any, found: list[str]) -> bool:
    """Redact the ``default`` of every credential column in a JsonConverter document's
    ``schema`` (in place); True if one changed."""
    before = len(found)
    if isinstance(doc, dict):
        _redact_defaults(doc.get("schema"), ["schema"], found)
    return len(found) > before


def _redact_defaults(schema: Any, parts: list[str | int], found: list[str]) -> None:
    if len(parts) > MAX_DEPTH or not isinstance(schema, dict):
        return
    name = schema.get("field")
    here = [*parts, name] if isinstance(name, str) else parts
    if isinstance(name, str) and is_credential_key(name) and schema.get("default") is not None:
        found.append(path_of([*here, "default"]))
        schema["default"] = REDACTED
    for child in ("fields", "keySchema", "valueSchema", "items"):
        nested = schema.get(child)
        for item in nested if isinstance(nested, list) else [nested]:
            _redact_defaults(item, here, found)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else type(value).__name__


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
    if op is None and (other := _not_a_change(env)) is not None:
        raise DecodeError(f"not a change event: {other}")
    if op == "t":
        raise DecodeError("truncate event (op t) is not supported")
    if not isinstance(op, str) or op not in OPS:
        raise DecodeError(f"unknown op {_short(op)}")
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
    if type(raw_row[spec.key]) not in (str, int):  # SPEC §2.2: a string or an integer
        kind = type(raw_row[spec.key]).__name__
        raise DecodeError(
            f"undecodable primary key {spec.key}: expected a string or an integer, got {kind}"
        )
    return Change(
        table=table,
        op=op,
        key=key,
        row=row,
        source_ts=_source_ts(source),
        lsn=_lsn(source.get("lsn")),
        source_tx=_text_or_none(source.get("txId")),
        snapshot=_text_or_none(source.get("snapshot")),
    )


_TX_METADATA_KEYS = frozenset({"status", "id", "ts_ms", "event_count", "data_collections"})


def _not_a_change(env: dict[str, Any]) -> str | None:
    """What a record with no ``op`` is when Debezium writes it beside change events (a
    transaction boundary, ``provide.transaction.metadata``; a heartbeat,
    ``heartbeat.interval.ms``), so its dead letter says so; ``None`` if neither."""
    if "op" in env:
        return None
    if {"status", "id"} <= env.keys() <= _TX_METADATA_KEYS and env["status"] in ("BEGIN", "END"):
        return f"Debezium transaction metadata ({env['status']})"
    if env.keys() == {"ts_ms"}:
        return "heartbeat"
    return None


def _text_or_none(value: Any) -> str | None:
    """Source metadata as text; booleans as JSON spells them (``snapshot: true``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def decode_bytes(raw: bytes) -> Change:
    """Decode stored log bytes (already redacted) into a :class:`Change`."""
    parsed = parse(raw)
    if parsed is None:
        raise DecodeError("tombstone in the log")
    return to_change(parsed)


def _source_ts(source: dict[str, Any]) -> str | None:
    """``source.ts_ms`` as canonical text; absent → None (the change has no commit time)."""
    ts = source.get("ts_ms")
    if ts is None:
        return None
    if isinstance(ts, str) and ts.strip().isdecimal():  # isdecimal: what int() reads ("²" not)
        ts = _int64_text(ts.strip())
        if ts is None:
            raise DecodeError("undecodable timestamp source.ts_ms: out of range")
    if isinstance(ts, bool) or not isinstance(ts, int | Decimal):
        raise DecodeError(f"undecodable timestamp source.ts_ms: {_short(ts)}")
    return _epoch(ts, 1000, "source.ts_ms")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what a stored (bigint) integer column holds
_INT64_DIGITS = len(str(INT64_MAX))


def _int64_text(text: str) -> int | None:
    """Decimal digits, ``-`` first or not, as an integer; ``None`` when there are more
    significant digits than 64 bits hold. Not int() alone: it refuses text past 4,300
    digits (leading zeros count) with a ValueError, and reads a long one in quadratic time."""
    negative = text.startswith("-")
    digits = text[negative:].lstrip("0")
    if len(digits) > _INT64_DIGITS:
        return None
    number = int(digits or "0")
    return -number if negative else number


_PG_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


def _lsn(value: Any) -> int | None:
    """``source.lsn`` as an integer: a JSON integer, its digits as text, or PostgreSQL's
    textual ``hi/lo`` form (two hexadecimal 32-bit halves); ``None`` when absent. Anything
    else — a float, a boolean, an object, a malformed or out-of-range form — is a dead
    letter: the lsn orders the changes of a key, a wrong one would reorder them."""
    if value is None:
        return None
    lsn: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        lsn = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        lsn = _int64_text(value)
        if lsn is None:
            raise DecodeError("undecodable source.lsn: out of the 64-bit integer range")
    elif isinstance(value, str) and _PG_LSN.fullmatch(value):
        hi, _, lo = value.partition("/")
        lsn = (int(hi, 16) << 32) | int(lo, 16)
    if lsn is None:
        raise DecodeError(f"undecodable source.lsn: {_short(value)}")
    if not INT64_MIN <= lsn <= INT64_MAX:
        # the order key stores it as a 64-bit integer: dead-letter it rather than append an
        # event every projection that orders by lsn would fail on
        raise DecodeError("undecodable source.lsn: out of the 64-bit integer range")
    return lsn


# ---------------------------------------------------------------- columns


def decode_row(spec: TableSpec, raw: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> Row:
    """Decode the known columns of one row; unknown columns stay only in the logged bytes.

    The hot path of ingest and replay: values already in canonical form (text ids,
    canonical UTC timestamps, plain decimal strings, integer versions) are validated
    inline, one loop per kind of column; anything else, and every row that carries a
    schema, goes through the full decoder of its column.
    """
    if schemas:
        return _decode_row_full(spec, raw, schemas)
    decimals, timestamps, integers, texts = _plan(spec)
    row: Row = {}
    get = raw.get
    for column in decimals:
        value = get(column)
        if value is None or value == _UNAVAILABLE:
            row[column] = None
        elif type(value) is str and _is_plain_decimal(value):
            row[column] = value
        else:
            row[column] = decode_decimal(column, value, _NO_SCHEMA)
    for column in timestamps:
        value = get(column)
        if value is None or value == _UNAVAILABLE:
            row[column] = None
        elif type(value) is str and _is_canonical_ts(value):
            row[column] = value
        else:
            row[column] = decode_timestamp(column, value, _NO_SCHEMA)
    for column in integers:
        value = get(column)
        if value is None or value == _UNAVAILABLE:
            row[column] = None
        elif type(value) is int and INT64_MIN <= value <= INT64_MAX:  # not a bool: type()
            row[column] = value
        else:
            row[column] = decode_integer(column, value, _NO_SCHEMA)
    for column in texts:
        value = get(column)
        if value is None or value == _UNAVAILABLE:
            row[column] = None
        elif type(value) is str and "\x00" not in value:
            row[column] = value
        else:
            row[column] = decode_text(column, value, _NO_SCHEMA)
    return row


def _decode_row_full(
    spec: TableSpec, raw: dict[str, Any], schemas: dict[str, dict[str, Any]]
) -> Row:
    row: Row = {}
    for column, decoder in _decoders(spec):
        value = raw.get(column)
        if value is None or value == _UNAVAILABLE:
            row[column] = None
            continue
        row[column] = decoder(column, value, schemas.get(column, _NO_SCHEMA))
    return row


_PLANS: dict[TableSpec, tuple[tuple[str, ...], ...]] = {}


def _plan(spec: TableSpec) -> tuple[tuple[str, ...], ...]:
    """The table's columns by kind, in :func:`_decoders` order (cached)."""
    found = _PLANS.get(spec)
    if found is None:
        found = tuple(
            tuple(sorted(group))
            for group in (spec.decimals, spec.timestamps, spec.integers, spec.texts)
        )
        _PLANS[spec] = found
    return found


def _is_canonical_ts(text: str) -> bool:
    if len(text) != 27 or text[26] != "Z" or text[19] != "." or text[10] != "T":
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_canonical_ts(text: str) -> bool:
    """Whether ``text`` is a timestamp in the stored form (RFC 3339 UTC, microseconds)."""
    return _is_canonical_ts(text)


def _is_plain_decimal(text: str) -> bool:
    # "-0.00" is not canonical (no negative zero): the full decoder rewrites it
    return _PLAIN_DECIMAL.fullmatch(text) is not None and bool(text.strip("-0."))


_NO_SCHEMA: dict[str, Any] = {}
Decoder = Callable[[str, Any, dict[str, Any]], Any]
_DECODERS: dict[TableSpec, list[tuple[str, Decoder]]] = {}


def _decoders(spec: TableSpec) -> list[tuple[str, Decoder]]:
    """(column, its full decoder), cached per table."""
    found = _DECODERS.get(spec)
    if found is not None:
        return found
    out: list[tuple[str, Decoder]] = []
    out += [(c, decode_decimal) for c in sorted(spec.decimals)]
    out += [(c, decode_timestamp) for c in sorted(spec.timestamps)]
    out += [(c, decode_integer) for c in sorted(spec.integers)]
    out += [(c, decode_text) for c in sorted(spec.texts)]
    _DECODERS[spec] = out
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_text(column: str, value: Any, _schema: dict[str, Any]) -> str:
    """Text as is; numbers and booleans as their JSON text. NUL is refused: PostgreSQL text
    cannot hold it, so it would fail the log's (or a projection's) write, not just this row."""
    if isinstance(value, str):
        if "\x00" in value:
            raise DecodeError(f"undecodable {column}: contains a NUL character")
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    raise DecodeError(f"undecodable {column}: expected a string, got {type(value).__name__}")


_INTEGER_TEXT = re.compile(r"-?\d+")  # \d: the decimal digits int() reads ("²" is not one)


def decode_integer(column: str, value: Any, _schema: dict[str, Any]) -> int:
    number: int | None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(text := value.strip()):
        number = _int64_text(text)
    else:
        raise DecodeError(f"undecodable {column}: {_short(value)}")
    if number is None or not INT64_MIN <= number <= INT64_MAX:
        raise DecodeError(f"undecodable {column}: out of the 64-bit integer range")
    return number


_PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,39})(?:\.[0-9]{1,24})?")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def decode_decimal(column: str, value: Any, schema: dict[str, Any]) -> str:
    """Decimal as canonical text that keeps the source scale (``"100.50"``).

    Without a schema, an object of exactly ``scale`` (an integer) and ``value`` (base64
    text) is Debezium's ``VariableScaleDecimal`` (``decimal.handling.mode=precise`` on a
    numeric column without a fixed scale), as it is with its schema."""
    name = _schema_name(schema)
    if name is None and type(value) is str and _is_plain_decimal(value):
        return value  # already canonical: the common case of decimal.handling.mode=string
    try:
        if name == "org.apache.kafka.connect.data.Decimal":
            scale = _connect_scale(column, schema)
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                # JsonConverter decimal.format=NUMERIC
                number = _at_scale(Decimal(value), scale, column)
            else:
                number = _from_connect_bytes(column, value, scale)
        elif name == "io.debezium.data.VariableScaleDecimal" and isinstance(value, dict):
            scale = int(value.get("scale", 0))
            number = _from_connect_bytes(column, value.get("value"), scale)
        elif name is None and _is_variable_scale(value):
            number = _from_connect_bytes(column, value["value"], value["scale"])
        elif isinstance(value, bool):
            raise ValueError("boolean")
        elif isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
            number = Decimal(value.strip())  # ASCII only: Decimal() alone accepts "1_0"
        else:
            raise ValueError(type(value).__name__)
    except (ValueError, TypeError, InvalidOperation, binascii.Error) as exc:
        raise DecodeError(f"undecodable {column}: {_short(value)}") from exc
    return format_decimal(number, column)


def _schema_name(schema: dict[str, Any]) -> str | None:
    """A field schema's ``name``; one that is not text is just a name no decoder knows
    (JsonConverter only writes text: anything else is as foreign as an unknown name)."""
    name = schema.get("name")
    return name if name is None or isinstance(name, str) else _short(name)


_SCALE_TEXT = re.compile(r"-?[0-9]{1,18}")


def _connect_scale(column: str, schema: dict[str, Any]) -> int:
    """``parameters.scale`` of a Connect Decimal field schema (JsonConverter writes it as
    text, ``{"scale": "2"}``); absent → 0."""
    parameters = schema.get("parameters")
    if parameters is None:
        return 0
    if not isinstance(parameters, dict):
        raise DecodeError(
            f"undecodable {column}: schema parameters {_short(parameters)} are not an object"
        )
    scale = parameters.get("scale", 0)
    if isinstance(scale, int) and not isinstance(scale, bool):
        return scale
    if isinstance(scale, str) and _SCALE_TEXT.fullmatch(scale.strip()):
        return int(scale)
    raise DecodeError(f"undecodable {column}: schema parameter scale {_short(scale)}")


def _is_variable_scale(value: Any) -> bool:
    """The shape of a schemaless ``VariableScaleDecimal``: ``{"scale": 2, "value": "J0I="}``.
    Strict (no bool or text scale, no other key): without a schema the shape is all there
    is to tell it from an object that merely happens to have such keys."""
    return (
        type(value) is dict
        and value.keys() == {"scale", "value"}
        and type(value["scale"]) is int
        and type(value["value"]) is str
    )


def _too_many_digits(column: str) -> DecodeError:
    return DecodeError(f"undecodable {column}: more than {_MAX_DECIMAL_DIGITS} digits")


def format_decimal(number: Decimal, column: str = "decimal") -> str:
    if not number.is_finite():
        raise DecodeError(f"undecodable {column}: not a finite number")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    # the digits its plain text spells out: 1.5 → 2, 0.001 → 3, 1E+3 → 4
    width = max(len(digits), -exponent) if exponent < 0 else len(digits) + exponent
    if width > _MAX_DECIMAL_DIGITS:
        raise _too_many_digits(column)
    text = format(number, "f")
    return text[1:] if sign and not any(digits) else text  # no negative zero


def _at_scale(number: Decimal, scale: int, column: str) -> Decimal:
    """``number`` written with at least ``scale`` decimals (``100.5`` at scale 2 →
    ``100.50``), exactly: trailing zeros are added, never digits rounded away."""
    if not number.is_finite():
        return number  # refused by format_decimal
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    missing = exponent + scale
    if missing <= 0:
        return number
    if len(digits) + missing > _MAX_DECIMAL_DIGITS:  # before building them: a scale or an
        raise _too_many_digits(column)  # exponent of 10^9 would be a billion zeros
    return Decimal((sign, (*digits, *(0,) * missing), -scale))


# the widest unscaled integer of a decimal of at most 64 digits: 213 bits (27 bytes with
# the sign bit, as Connect writes it); a wider one has more digits at any scale
_MAX_UNSCALED_BITS = (10**_MAX_DECIMAL_DIGITS - 1).bit_length()


def _from_connect_bytes(column: str, value: Any, scale: int) -> Decimal:
    """Connect's decimal bytes (base64, big-endian two's complement) at ``scale``."""
    if not isinstance(value, str):
        raise ValueError("expected base64 text")
    data = base64.b64decode(value, validate=True)
    if not data:
        raise ValueError("empty")
    unscaled = int.from_bytes(data, "big", signed=True)  # linear in the length
    if unscaled.bit_length() > _MAX_UNSCALED_BITS:
        # refused before Decimal(unscaled): that conversion is quadratic in the length
        # (seconds for an amount near the 1 MiB limit, a stalled partition)
        raise _too_many_digits(column)
    # built from its digits: exact (scaleb would round to the context's 28 digits)
    sign, digits, _exponent = Decimal(unscaled).as_tuple()
    return Decimal((sign, digits, -scale))


_INT_UNITS = {
    "io.debezium.time.MicroTimestamp": 1_000_000,
    "io.debezium.time.Timestamp": 1_000,
    "io.debezium.time.NanoTimestamp": 1_000_000_000,
    "org.apache.kafka.connect.data.Timestamp": 1_000,
}
_DAY_UNITS = frozenset({"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"})


def decode_timestamp(column: str, value: Any, schema: dict[str, Any]) -> str:
    """ISO-8601 text (no offset = UTC) or epoch integers in the unit the schema names."""
    if isinstance(value, str):
        return _iso(column, value)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise DecodeError(f"undecodable timestamp {column}: {_short(value)}")
    name = _schema_name(schema)
    if name in _DAY_UNITS:
        return _epoch(value, 1, column, days=True)
    if name is None:  # no schema, or a plain int64 field: epoch microseconds (SPEC §2.3)
        return _epoch(value, 1_000_000, column)
    unit = _INT_UNITS.get(name)
    if unit is None:  # a time of day, say: reading it as an epoch would invent a date
        raise DecodeError(f"undecodable timestamp {column}: integer of schema {_short(name)}")
    return _epoch(value, unit, column)


def _iso(column: str, text: str) -> str:
    """ISO-8601 → canonical text; fractions finer than microseconds are truncated."""
    if len(text) == 27 and text[26] == "Z" and text[19] == "." and text[10] == "T":
        try:  # already canonical (the common case): validate, keep the text
            datetime.fromisoformat(text)
        except ValueError as exc:
            raise DecodeError(f"undecodable timestamp {column}: {_short(text)}") from exc
        return text
    try:
        value = datetime.fromisoformat(_trim_fraction(text.strip().replace("z", "Z")))
    except ValueError as exc:
        raise DecodeError(f"undecodable timestamp {column}: {_short(text)}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        moment = value.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError) as exc:
        raise DecodeError(f"undecodable timestamp {column}: out of range") from exc
    # isoformat, not strftime: "%Y" does not zero-pad years before 1000 on glibc
    return moment.isoformat(timespec="microseconds") + "Z"


_FRACTION = re.compile(r"([.,]\d{6})\d+")


def _trim_fraction(text: str) -> str:
    """Nanosecond fractions (``.123456789``) → microseconds, truncating."""
    return _FRACTION.sub(r"\1", text, count=1)


_EPOCH_NAIVE = datetime(1970, 1, 1)


_EPOCH_MAX_DIGITS = 30  # far past year 9999 in any unit; checked before int() spells it out


def _epoch(value: int | Decimal, per_second: int, column: str, *, days: bool = False) -> str:
    if isinstance(value, Decimal) and (
        not value.is_finite() or (value and value.adjusted() >= _EPOCH_MAX_DIGITS)
    ):  # 1e1000000 would be a million-digit int (seconds of CPU, or all the memory)
        raise DecodeError(f"undecodable timestamp {column}: out of range")
    if isinstance(value, Decimal) and value != value.to_integral_value():
        raise DecodeError(f"undecodable timestamp {column}: {_short(value)}")
    number = int(value)
    if days:
        number *= 86_400
        per_second = 1
    seconds, rest = divmod(number, per_second)
    micros = rest * 1_000_000 // per_second
    try:
        return f"{_second_text(seconds)}.{micros:06d}Z"
    except (OverflowError, ValueError) as exc:
        raise DecodeError(f"undecodable timestamp {column}: out of range") from exc


@functools.lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of an epoch second (cached: a stream's times are close)."""
    return (_EPOCH_NAIVE + timedelta(seconds=seconds)).isoformat()


# ---------------------------------------------------------------- stored bytes (rebuild)

_FALLBACK = DecodeError("use the reference decoder")
_EXACT_TYPES = frozenset({str, int, bool})  # values orjson and the exact parse agree on


def decode_stored(raw: bytes, columns: frozenset[str] | None = None) -> Change:
    """:func:`decode_bytes` for bytes read back from the log, without the redaction walk.

    The log only holds bytes that went through :func:`parse` at append time, so they are
    already redacted (redaction is idempotent: a second walk changes nothing) and within
    the size and depth limits. This reads the fields a :class:`Change` needs straight from
    orjson's parse. Anything off the common shapes — a schema-wrapped document, a float
    or a container where a value is read (they need the exact re-parse or the walk), any
    error — goes through :func:`decode_bytes`, so the result (or the error) is always
    the reference decoder's.

    ``columns``: a fold that reads only these columns of a row (besides the table's key and
    group columns, always decoded) may leave the others undecoded — absent from the row on
    the fast path (the reference decoder, when it is taken, decodes every column).
    """
    try:
        doc = orjson.loads(raw) if len(raw) <= MAX_EVENT_BYTES else None
        if type(doc) is dict and not ("payload" in doc and "schema" in doc):
            return _stored_change(doc, None if columns is None else _plans(columns))
    except (orjson.JSONDecodeError, DecodeError):
        pass
    return decode_bytes(raw)


def change_of(parsed: Parsed) -> Change:
    """:func:`to_change` for a value just parsed (``prepare``): the fast path of
    :func:`decode_stored` on its envelope — it is redacted and within the limits already —
    and the reference decoder for anything that path does not take (schema-wrapped
    documents, exactly re-parsed floats, any error), so the result or the error is
    always :func:`to_change`'s."""
    if not parsed.field_schemas and parsed.envelope is parsed.document:
        try:
            return _stored_change(parsed.envelope)
        except DecodeError:
            pass
    return to_change(parsed)


def _stored_change(env: dict[str, Any], plans: dict[str, tuple[Any, ...]] | None = None) -> Change:
    """The fast path of :func:`decode_stored` (``plans``: :data:`_STORED_PLANS` unless
    reduced by :func:`_plans`); raises :class:`DecodeError` to fall back."""
    op = env.get("op")
    source = env.get("source")
    if type(op) is not str or op not in OPS or type(source) is not dict:
        raise _FALLBACK
    table: Any = source.get("table")
    plan = (plans or _STORED_PLANS).get(table) if type(table) is str else None
    raw_row = env.get("before" if op == "d" else "after")
    if plan is None or type(raw_row) is not dict:
        raise _FALLBACK
    key_column, decimals, timestamps, integers, texts = plan
    get = raw_row.get
    row: Row = {}
    # decode_row's loops and column order; a value not in canonical form goes through its
    # column's full decoder as there, unless it is a float or a container
    for column in decimals:
        value = get(column)
        if type(value) is str and _is_plain_decimal(value):
            row[column] = value
        elif value is None or value == _UNAVAILABLE:
            row[column] = None
        elif type(value) in _EXACT_TYPES:
            row[column] = decode_decimal(column, value, _NO_SCHEMA)
        else:
            raise _FALLBACK
    for column in timestamps:
        value = get(column)
        if type(value) is str and _is_canonical_ts_cached(value):
            row[column] = value
        elif value is None or value == _UNAVAILABLE:
            row[column] = None
        elif type(value) in _EXACT_TYPES:
            row[column] = decode_timestamp(column, value, _NO_SCHEMA)
        else:
            raise _FALLBACK
    for column in integers:
        value = get(column)
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:
            row[column] = value
        elif value is None or value == _UNAVAILABLE:
            row[column] = None
        elif type(value) in _EXACT_TYPES:
            row[column] = decode_integer(column, value, _NO_SCHEMA)
        else:
            raise _FALLBACK
    for column in texts:
        value = get(column)
        if type(value) is str and "\x00" not in value and value != _UNAVAILABLE:
            row[column] = value
        elif type(value) is int:  # decode_text: an integer as its JSON text (not a bool: type())
            row[column] = str(value)
        elif value is None or value == _UNAVAILABLE:
            row[column] = None
        elif type(value) in _EXACT_TYPES:
            row[column] = decode_text(column, value, _NO_SCHEMA)
        else:
            raise _FALLBACK
    key = row.get(key_column)
    key_type = type(get(key_column))
    ts = source.get("ts_ms")
    lsn = source.get("lsn")
    tx = source.get("txId")
    snapshot = source.get("snapshot")
    if (
        key is None
        or key == ""
        or (key_type is not str and key_type is not int)
        or not (ts is None or type(ts) is int)
        or not (lsn is None or type(lsn) in _EXACT_TYPES)
        or not (tx is None or type(tx) in _EXACT_TYPES)
        or not (snapshot is None or type(snapshot) in _EXACT_TYPES)
    ):
        raise _FALLBACK
    # Change(...) field by field through its slot descriptors: the frozen dataclass's
    # __init__ goes through object.__setattr__ per field, twice as slow on this hot path
    change = _new(Change)
    _set_table(change, table)
    _set_op(change, op)
    _set_key(change, key)
    _set_row(change, row)
    _set_source_ts(change, None if ts is None else _epoch(ts, 1000, "source.ts_ms"))
    _set_lsn(change, lsn if type(lsn) is int and INT64_MIN <= lsn <= INT64_MAX else _lsn(lsn))
    _set_source_tx(change, str(tx) if type(tx) is int else _text_or_none(tx))
    _set_snapshot(change, snapshot if type(snapshot) is str else _text_or_none(snapshot))
    return change


# table name → (key column, then its columns by kind in decode_row's order); keyed by the
# name: hashing a frozen TableSpec per event (a Python-level __hash__) cost a microsecond
_STORED_PLANS: dict[str, tuple[Any, ...]] = {
    name: (spec.key, *_plan(spec)) for name, spec in TABLES.items()
}


@functools.lru_cache(maxsize=16)
def _plans(columns: frozenset[str]) -> dict[str, tuple[Any, ...]]:
    """:data:`_STORED_PLANS` reduced to ``columns`` plus each table's key and group column."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, spec in TABLES.items():
        wanted = columns | {spec.key} | ({spec.group} if spec.group else set())
        out[name] = (spec.key, *(tuple(c for c in kind if c in wanted) for kind in _plan(spec)))
    return out


_CANONICAL_SECONDS: set[str] = set()  # "YYYY-MM-DDTHH:MM:SS" prefixes known to be valid


def _is_canonical_ts_cached(text: str) -> bool:
    """:func:`_is_canonical_ts` that parses each second once: the log's times are close
    together, so most share a second already checked; then only the fraction is looked at
    (six ASCII digits, which is all ``fromisoformat`` accepts there)."""
    if len(text) != 27 or text[26] != "Z" or text[19] != "." or text[10] != "T":
        return False
    second = text[:19]
    if second in _CANONICAL_SECONDS:
        fraction = text[20:26]
        return fraction.isdigit() and fraction.isascii()
    if not _is_canonical_ts(text):
        return False
    if len(_CANONICAL_SECONDS) >= 100_000:
        _CANONICAL_SECONDS.clear()
    _CANONICAL_SECONDS.add(second)
    return True


_new = object.__new__
(
    _set_table,
    _set_op,
    _set_key,
    _set_row,
    _set_source_ts,
    _set_lsn,
    _set_source_tx,
    _set_snapshot,
) = (
    Change.__dict__[name].__set__
    for name in ("table", "op", "key", "row", "source_ts", "lsn", "source_tx", "snapshot")
)
