"""Content identity of a change (``event_id``) and the log's hash chain (SPEC §3)."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import orjson

from eventlog.decode import Change, Parsed

GENESIS = "0" * 64


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())  # a JSON number's own text
    raise TypeError(type(value).__name__)


_INT64 = range(-(2**63), 2**64)


def _big_ints(value: Any) -> Any:
    """Integers past 64 bits as exact JSON number fragments (orjson refuses them)."""
    if isinstance(value, dict):
        return {k: _big_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_big_ints(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        return orjson.Fragment(str(value).encode())
    return value


def dump_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """JSON with exact numbers: decimals and integers keep their text, never via float.

    Raises :class:`orjson.JSONEncodeError` for what JSON cannot carry (lone surrogates).
    """
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        return orjson.dumps(value, default=_exact, option=option)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        return orjson.dumps(_big_ints(value), default=_exact, option=option)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, exact numbers."""
    return dump_json(value, sort_keys=True)


def event_id(parsed: Parsed, change: Change) -> str:
    """SHA-256 of the change's content: table, key, op, before, after, lsn, txId, source ts_ms.

    Kafka coordinates and the connector's top-level ``ts_ms`` are left out, so a
    redelivered or re-produced change gets the same id. Values are the redacted ones:
    no stored value is derived from a credential.
    """
    env = parsed.envelope
    source = env.get("source") or {}
    content = {
        "table": change.table,
        "key": change.key,
        "op": change.op,
        "before": env.get("before"),
        "after": env.get("after"),
        "lsn": source.get("lsn"),
        "txId": source.get("txId"),
        "ts_ms": source.get("ts_ms"),
    }
    return hashlib.sha256(canonical_json(content)).hexdigest()


def chain_hash(prev_hash: str, position: int, event_id_hex: str, payload: bytes) -> str:
    """``SHA-256(prev_hash ‖ position ‖ event_id ‖ bytes)``.

    ``prev_hash`` and ``event_id`` as their 32 raw bytes, ``position`` as 8 bytes big-endian.
    """
    digest = hashlib.sha256()
    digest.update(bytes.fromhex(prev_hash))
    digest.update(position.to_bytes(8, "big"))
    digest.update(bytes.fromhex(event_id_hex))
    digest.update(payload)
    return digest.hexdigest()
