"""UTC timestamps in one fixed text form, so they sort as text and match on every backend."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


def format_ts(value: datetime) -> str:
    """RFC 3339, UTC, microseconds: ``2026-01-02T03:04:05.000006Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # isoformat, not strftime: glibc's %Y does not zero-pad years before 1000.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_ts(text: str) -> datetime:
    """Inverse of :func:`format_ts` (also accepts any ISO-8601 with offset)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def epoch_seconds(text: str) -> float:
    """Seconds since the epoch of a :func:`format_ts` text (any ISO-8601 through
    :func:`parse_ts`). The canonical form costs a cached lookup of its whole second: a
    stream's times are close together (the freshness metric reads one per event)."""
    if len(text) == 27 and text[19] == "." and text[26] == "Z" and text[20:26].isdigit():
        return _second_epoch(text[:19]) + int(text[20:26]) / 1_000_000
    return parse_ts(text).timestamp()


@functools.lru_cache(maxsize=4096)
def _second_epoch(second: str) -> float:
    return parse_ts(second + "Z").timestamp()


def utcnow() -> datetime:
    """The wall clock, for metadata only (``ingested_at``, audit ``at``) — never for projections."""
    return datetime.now(UTC)


def now_text() -> str:
    return format_ts(utcnow())
