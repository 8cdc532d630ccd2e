"""UTC timestamps in one fixed text form, so they sort as text and match on every backend."""

from __future__ import annotations

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


def utcnow() -> datetime:
    """The wall clock, for metadata only (``ingested_at``, audit ``at``) — never for projections."""
    return datetime.now(UTC)


def now_text() -> str:
    return format_ts(utcnow())
