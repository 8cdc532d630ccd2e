"""Dead letters: input that could not be understood, kept with its reason (SPEC §2.4)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, update

from eventlog.db import write_tx
from eventlog.errors import UsageError
from eventlog.redact import REDACTED
from eventlog.schema import dead_letters
from eventlog.store import AppendResult, Prepared, SourceRef, Tombstone, append_in, prepare
from eventlog.timeutil import now_text

_SUMMARY_COLUMNS = (
    "id",
    "received_at",
    "status",
    "reason",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_file",
    "source_line",
    "resolved_position",
    "retried_at",
)


MAX_ID = 2**63 - 1  # ids are BIGINT (SQLite: INTEGER, the same range)


def _plain(mapping: Any) -> dict[str, Any]:
    # column keys are ``quoted_name`` (a str subclass) that JSON encoders refuse as keys
    return {str(key): value for key, value in mapping.items()}


def list_dead_letters(
    engine: Engine, *, status: str | None = "open", limit: int = 100
) -> list[dict[str, Any]]:
    cols = [dead_letters.c[c] for c in _SUMMARY_COLUMNS]
    query = select(*cols).order_by(dead_letters.c.id).limit(limit)
    if status:
        query = query.where(dead_letters.c.status == status)
    with engine.connect() as conn:
        return [_plain(r._mapping) for r in conn.execute(query)]


def count_dead_letters(engine: Engine) -> dict[str, int]:
    query = select(dead_letters.c.status, func.count()).group_by(dead_letters.c.status)
    with engine.connect() as conn:
        return {str(s): int(n) for s, n in conn.execute(query)}


def show_dead_letter(engine: Engine, letter_id: int) -> dict[str, Any]:
    """One dead letter with its (redacted) bytes as text; ``raw_base64`` when not UTF-8."""
    if not 1 <= letter_id <= MAX_ID:  # ids are positive 64-bit integers
        raise UsageError(f"no dead letter with id {letter_id}")
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id)).first()
    if row is None:
        raise UsageError(f"no dead letter with id {letter_id}")
    data = _plain(row._mapping)
    raw = bytes(data.pop("raw"))
    data["raw"] = raw.decode("utf-8", errors="replace")
    data["raw_bytes"] = len(raw)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        data["raw_base64"] = base64.b64encode(raw).decode()  # the exact bytes
    return data


@dataclass(slots=True)
class RetryResult:
    retried: int = 0
    resolved: int = 0
    still_failing: int = 0
    appended: int = 0
    duplicate: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "retried": self.retried,
            "resolved": self.resolved,
            "still_failing": self.still_failing,
            "appended": self.appended,
            "duplicate": self.duplicate,
        }


NOT_RETRYABLE = " (not retryable: the stored copy of this input is redacted)"


def _redacted_text(reason: str, raw: bytes) -> bool:
    """Whether a dead letter keeps a textually redacted copy of input that was not JSON.

    Redaction may have cut the very defect (a ``NaN`` or an invalid byte inside a password
    value): that copy parses, the input never did. Re-parsing it cannot tell whether the
    input would parse now, so a retry must not append it (SPEC §2.4: retry re-parses the
    input after a fix, it does not launder it)."""
    return reason.startswith("not JSON") and f'"{REDACTED}"'.encode() in raw


def retry_dead_letters(engine: Engine, ids: list[int] | None) -> RetryResult:
    """Re-parse open dead letters (all when ``ids`` is None) and append what now parses."""
    result = RetryResult()
    for letter_id in ids or ():
        if not 1 <= letter_id <= MAX_ID:
            raise UsageError(f"no open dead letter with id {letter_id}")
    with write_tx(engine) as conn:
        query = (
            select(dead_letters).where(dead_letters.c.status == "open").order_by(dead_letters.c.id)
        )
        if ids is not None:
            query = query.where(dead_letters.c.id.in_(ids))
        rows = conn.execute(query).all()
        if ids is not None:
            missing = set(ids) - {int(r.id) for r in rows}
            if missing:
                raise UsageError(f"no open dead letter with id {sorted(missing)[0]}")
        now = now_text()
        for row in rows:
            result.retried += 1
            source = SourceRef(
                row.source_topic,
                row.source_partition,
                row.source_offset,
                row.source_file,
                row.source_line,
            )
            values: dict[str, Any] = {"retried_at": now}
            raw = bytes(row.raw)
            outcome = None if _redacted_text(row.reason, raw) else prepare(raw, source)
            if outcome is None:
                result.still_failing += 1
                if not row.reason.endswith(NOT_RETRYABLE):
                    values.update(reason=row.reason + NOT_RETRYABLE)
            elif isinstance(outcome, Prepared | Tombstone):
                appended: AppendResult = append_in(conn, [outcome])
                result.appended += appended.appended
                result.duplicate += appended.duplicate
                result.resolved += 1
                values.update(
                    status="resolved",
                    resolved_position=appended.positions[0] if appended.positions else None,
                )
            else:
                result.still_failing += 1
                values.update(reason=outcome.reason)
            conn.execute(update(dead_letters).where(dead_letters.c.id == row.id).values(**values))
    return result
