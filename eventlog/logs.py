"""Loguru configured for one JSON line per event on stderr."""

from __future__ import annotations

import sys

from loguru import logger


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    logger.remove()
    logger.configure(extra={"request_id": "-"})
    logger.add(sys.stderr, level=level, serialize=json, backtrace=False, diagnose=False)
