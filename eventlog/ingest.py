"""File ingest: JSONL files (or stdin) of Debezium change events → the log."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from eventlog.errors import UsageError
from eventlog.store import AppendResult, EventLog, Outcome, SourceRef, prepare

BATCH = 5000


def read_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, bytes) for every non-blank line (a leading UTF-8 BOM is dropped)."""
    for number, line in enumerate(stream, start=1):
        data = line.rstrip(b"\r\n")
        if number == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if data.strip():
            yield number, data


def _batches(
    lines: Iterable[tuple[int, bytes]], name: str, size: int
) -> Iterator[tuple[list[Outcome], int]]:
    pending: list[Outcome] = []
    read = 0
    for number, data in lines:
        read += len(data) + 1
        pending.append(prepare(data, SourceRef(file=name, line=number)))
        if len(pending) >= size:
            yield pending, read
            pending = []
    if pending:
        yield pending, read


def ingest_stream(
    log: EventLog,
    lines: Iterable[tuple[int, bytes]],
    name: str,
    *,
    batch: int = BATCH,
    on_batch: Callable[[AppendResult, int], None] | None = None,
) -> AppendResult:
    """Prepare and append lines in batches; bad lines become dead letters, never errors.

    Preparing batch N+1 (parse, redact, decode, hash: CPU in this process) overlaps with
    appending batch N (mostly the database's work) on one writer thread. Batches are
    appended strictly in order, one at a time, so positions follow the file's order;
    at most two batches are held in memory.
    """
    total = AppendResult()
    in_flight: tuple[Future[AppendResult], int] | None = None

    def settle() -> None:
        assert in_flight is not None
        done = in_flight[0].result()  # re-raises the writer's error here
        total.add(done)
        if on_batch:
            on_batch(done, in_flight[1])

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bo-append") as writer:
        for outcomes, read in _batches(lines, name, batch):
            if in_flight is not None:
                settle()
            in_flight = (writer.submit(log.append, outcomes), read)
        if in_flight is not None:
            settle()
    return total


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
