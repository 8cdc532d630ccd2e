"""Every projection and its versions, defined in code; which version serves by default."""

from __future__ import annotations

from collections.abc import Callable

from eventlog.errors import UsageError
from eventlog.settings import Settings
from projections.base import Projection
from projections.ledger_entries import LedgerEntriesV1
from projections.pairs import PairsV1
from projections.payment_orders import PaymentOrdersV1, PaymentOrdersV2

Factory = Callable[[Settings | None], Projection]


def _mapping(settings: Settings | None) -> dict[str, str] | None:
    return settings.status_mapping if settings is not None else None


VERSIONS: dict[str, dict[int, Factory]] = {
    "ledger_entries": {1: lambda _s: LedgerEntriesV1()},
    "payment_orders": {
        1: lambda _s: PaymentOrdersV1(),
        2: lambda s: PaymentOrdersV2(_mapping(s)),
    },
    "pairs": {1: lambda _s: PairsV1()},
}
NAMES = tuple(VERSIONS)


def check_name(name: str) -> str:
    if name not in VERSIONS:
        raise UsageError(f"unknown projection {name!r} (use {', '.join(NAMES)})")
    return name


def newest(name: str) -> int:
    return max(VERSIONS[check_name(name)])


def make(name: str, version: int | None, settings: Settings | None) -> Projection:
    """The projection version with its config from ``settings`` (status map for orders)."""
    versions = VERSIONS[check_name(name)]
    number = newest(name) if version is None else version
    factory = versions.get(number)
    if factory is None:
        known = ", ".join(str(v) for v in sorted(versions))
        raise UsageError(f"{name} has no version {number} (versions: {known})")
    return factory(settings)


def default_version(name: str, settings: Settings | None) -> int:
    """The version that serves when a projection starts for the first time.

    ``payment_orders`` serves v2 when ``BO_STATUS_MAP`` is set and v1 otherwise (v2
    without a map would only say UNKNOWN too, under a fingerprint that turns stale the
    moment a map appears); every other projection serves its newest version.
    """
    if name == "payment_orders" and _mapping(settings) is None:
        return 1
    return newest(name)


def all_versions(settings: Settings | None) -> list[Projection]:
    return [make(name, v, settings) for name in NAMES for v in sorted(VERSIONS[name])]
