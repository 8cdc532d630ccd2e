"""Named exceptions, one per broken invariant or refused input.

The CLI maps :class:`ConfigError` and :class:`UsageError` to exit code 2 and
:class:`CheckFailed` to exit code 1, each as one clear line.
"""


class BoError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(BoError):
    """Configuration is missing or invalid (exit code 2)."""


class UsageError(BoError):
    """A command was called wrongly (exit code 2)."""


class DatabaseUnavailable(ConfigError):
    """The database cannot be reached or is not migrated."""


class CheckFailed(BoError):
    """A verification found a problem (exit code 1)."""


class DecodeError(BoError):
    """A change event cannot be understood; the reason becomes a dead letter's reason."""


class ChainBroken(CheckFailed):
    """A hash chain does not verify; ``position`` is the first bad one."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"chain broken at position {position}: {reason}")
        self.position = position
        self.reason = reason
