"""Commands of the `bo` CLI owned by this area (registered by :mod:`bo.cli`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
