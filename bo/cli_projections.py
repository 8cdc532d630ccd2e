"""Commands of the `bo` CLI owned by this area (registered by :mod:`bo.cli`)."""

from __future__ import annotations

from typing import Any

import typer

from bo.wiring import Container


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""


def catch_up(c: Container) -> Any:
    """Catch the projections up to the log head and return a summary."""
    return None
