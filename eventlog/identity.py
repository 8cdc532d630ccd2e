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
        return f"\x00dec:{value}"  # a JSON number's own text, never a float
    if isinstance(value, int):  # ints past 64 bits
        return f"\x00int:{value}"
    raise TypeError(type(value).__name__)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, exact numbers."""
    return orjson.dumps(value, default=_exact, option=orjson.OPT_SORT_KEYS)


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
