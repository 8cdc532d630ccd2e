"""Pausing the cyclic garbage collector around allocation-heavy loops."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block.

    A replay or a checksum allocates millions of short-lived containers (parsed
    documents, rows) and keeps a batch's worth alive at a time, so the collector would
    run over and over and find nothing: reference counting frees all of it. Cycles made
    meanwhile are collected when the collector is back on. The switch is process-wide:
    a block that starts while the collector is already paused leaves it paused.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
