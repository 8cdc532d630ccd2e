"""File ingest: JSONL files (or stdin) of Debezium change events → the log."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from eventlog.errors import UsageError
from eventlog.store import AppendResult, EventLog, Outcome, SourceRef, prepare

BATCH = 2000


def read_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, bytes) for every non-blank line."""
    for number, line in enumerate(stream, start=1):
        data = line.rstrip(b"\r\n")
        if data.strip():
            yield number, data


def ingest_stream(
    log: EventLog,
    lines: Iterable[tuple[int, bytes]],
    name: str,
    *,
    batch: int = BATCH,
    on_batch: Callable[[AppendResult, int], None] | None = None,
) -> AppendResult:
    """Prepare and append lines in batches; bad lines become dead letters, never errors."""
    total = AppendResult()
    pending: list[Outcome] = []
    read = 0
    for number, data in lines:
        read += len(data) + 1
        pending.append(prepare(data, SourceRef(file=name, line=number)))
        if len(pending) >= batch:
            done = log.append(pending)
            total.add(done)
            pending = []
            if on_batch:
                on_batch(done, read)
    if pending:
        done = log.append(pending)
        total.add(done)
        if on_batch:
            on_batch(done, read)
    return total


def check_files(paths: list[str]) -> None:
    for path in paths:
        if path != "-" and not Path(path).is_file():
            raise UsageError(f"no such file: {path}")
