"""File ingest: JSONL files (or stdin) of Debezium change events → the log.

Preparing an event (parse, redact, decode, identify) is CPU work in Python and costs
several times what appending it costs this process, so large inputs are prepared by
worker processes:

1. the main process reads lines and hands out chunks of :data:`CHUNK` lines, keeping
   about two batches in flight — so the workers prepare the next batch while this process
   waits for the database to take the current one — and memory stays bounded for any
   file size;
2. each worker returns its chunk's outcomes, prepared events reduced to
   :class:`~eventlog.store.Staged` tuples (cheap to pickle);
3. the main process takes results strictly in input order and appends them in batches of
   :data:`BATCH`, one transaction each — positions follow the file's order exactly as
   in the single-process path, which small inputs use.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

from eventlog.errors import UsageError
from eventlog.gcpause import gc_paused
from eventlog.store import (
    Appendable,
    AppendResult,
    EventLog,
    SlimOutcome,
    SourceRef,
    prepare,
    prepare_slim,
    stage,
    unslim,
)
from eventlog.workers import exit_with_parent

BATCH = 5000
CHUNK = 1000
PARALLEL_MIN_BYTES = 4 * 1024 * 1024  # below this, worker start-up is not worth it

Chunk = list[tuple[int, bytes]]
JSON_WHITESPACE = b" \t\r\n"


def read_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, bytes) for every non-blank line (a leading UTF-8 BOM is dropped).

    Blank means JSON whitespace only (space, tab, CR, LF): a line of form feeds or vertical
    tabs is input, and becomes a dead letter like any other text that is not JSON.
    """
    for number, line in enumerate(stream, start=1):
        data = line.rstrip(b"\r\n")
        if number == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if data.strip(JSON_WHITESPACE):
            yield number, data


def default_workers(size: int | None) -> int:
    """Worker processes for an input of ``size`` bytes (``None``: unknown, e.g. stdin)."""
    if size is None or size < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def _chunks(lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[Chunk, int]]:
    chunk: Chunk = []
    read = 0
    for number, data in lines:
        read += len(data) + 1
        chunk.append((number, data))
        if len(chunk) >= CHUNK:
            yield chunk, read
            chunk = []
    if chunk:
        yield chunk, read


def prepare_chunk(name: str, chunk: Chunk) -> list[Appendable]:
    """Prepare one chunk in this process (small inputs)."""
    return [stage(prepare(data, SourceRef(file=name, line=number))) for number, data in chunk]


def prepare_slim_chunk(name: str, chunk: Chunk) -> list[SlimOutcome]:
    """In a worker process: :func:`eventlog.store.prepare_slim` of each line of a chunk
    (:func:`complete_chunk` turns the result into :func:`prepare_chunk`'s)."""
    return [prepare_slim(data, SourceRef(file=name, line=number)) for number, data in chunk]


def complete_chunk(chunk: Chunk, slims: list[SlimOutcome]) -> list[Appendable]:
    return [
        unslim(slim, data, None, None, None) if isinstance(slim, tuple) else slim
        for (_number, data), slim in zip(chunk, slims, strict=True)
    ]


def _prepared(
    lines: Iterable[tuple[int, bytes]], name: str, workers: int
) -> Iterator[tuple[list[Appendable], int]]:
    """Prepared chunks in input order, with the bytes read so far."""
    if workers <= 1:
        for chunk, read in _chunks(lines):
            yield prepare_chunk(name, chunk), read
        return
    # fork: workers inherit the imported code at no cost; they never touch the parent's
    # database connections and leave with os._exit, so nothing of them is closed or reused.
    # A worker that dies (killed, out of memory) breaks the pool: BrokenProcessPool is
    # raised here instead of waiting forever for its chunk.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        window: deque[tuple[Future[list[SlimOutcome]], Chunk, int]] = deque()
        in_flight = max(2 * workers, 2 * BATCH // CHUNK)
        for chunk, read in _chunks(lines):
            window.append((pool.submit(prepare_slim_chunk, name, chunk), chunk, read))
            if len(window) >= in_flight:
                result, sent, done = window.popleft()
                yield complete_chunk(sent, result.result()), done
        while window:
            result, sent, done = window.popleft()
            yield complete_chunk(sent, result.result()), done


def ingest_stream(
    log: EventLog,
    lines: Iterable[tuple[int, bytes]],
    name: str,
    *,
    batch: int = BATCH,
    workers: int = 1,
    on_batch: Callable[[AppendResult, int], None] | None = None,
) -> AppendResult:
    """Prepare and append lines in batches; bad lines become dead letters, never errors.

    ``workers`` > 1 prepares in that many processes (see the module docstring). A writer
    *thread* overlapping prepare and append was measured slower than doing both in turn:
    the GIL hand-offs during COPY cost more than the overlap gained.
    """
    total = AppendResult()
    pending: list[Appendable] = []

    def flush(read: int) -> None:
        done = log.append(pending)
        total.add(done)
        pending.clear()
        if on_batch:
            on_batch(done, read)

    read = 0
    prepared = _prepared(lines, name, workers)
    while True:
        # one batch without cyclic collection: its staged rows are freed by reference
        # counting, and the collector walking them cost more than the rows' own append
        with gc_paused():
            for outcomes, done in prepared:
                pending.extend(outcomes)
                read = done
                if len(pending) >= batch:
                    break
            if not pending:
                return total
            flush(read)


def check_files(paths: list[str]) -> None:
    """Refuse missing or unreadable inputs before anything is written."""
    for path in paths:
        if path == "-":
            continue
        file = Path(path)
        if not file.exists():
            raise UsageError(f"no such file: {path}")
        if not file.is_file():
            raise UsageError(f"not a regular file: {path}")
        try:
            with file.open("rb"):
                pass
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
