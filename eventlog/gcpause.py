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


def freeze_startup() -> None:
    """Exempt everything alive now from the cyclic collector, for a long-running service.

    Called by ``bo consume`` and ``bo project`` once they are wired (modules, settings,
    engine — a few hundred thousand objects that live as long as the process). Afterwards
    each full collection walks only what was made since instead of the whole heap: a
    third of the consumer's main-thread CPU per record went to the collector before
    (measured 2026-11-30; bench/consume_profile.py). Worker processes forked afterwards
    inherit the frozen generation and never walk (nor copy-on-write) those objects either.
    """
    gc.collect()
    gc.freeze()
