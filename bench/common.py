"""Shared helpers for the benchmarks: realistic Debezium events, timing, RSS, markdown."""

from __future__ import annotations

import os
import platform
import random
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

OUT_DIR = Path(__file__).resolve().parent / "out"
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _source(table: str, ts_ms: int, lsn: int, tx: int) -> dict[str, object]:
    return {
        "version": "2.7.3.Final",
        "connector": "postgresql",
        "name": "oltp",
        "ts_ms": ts_ms,
        "snapshot": "false",
        "db": "payments",
        "sequence": f'["{lsn - 8}","{lsn}"]',
        "schema": "public",
        "table": table,
        "txId": tx,
        "lsn": lsn,
        "xmin": None,
    }


def _ts(ms: int) -> str:
    seconds, rest = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:03d}000Z"


def debezium_events(count: int, *, redelivery: float = 0.05, seed: int = 7) -> Iterator[bytes]:
    """``count`` Debezium change events (bare JSON), about ``redelivery`` of them redelivered.

    Each payment order yields the order's create, its two ledger legs (PAYMENT and RECEIVE)
    and the order's update to SUCCESS. A redelivery repeats an earlier event with a new
    top-level ``ts_ms`` (what a connector restart produces), so the log dedupes it.
    """
    rng = random.Random(seed)
    recent: list[dict[str, object]] = []
    fresh: list[dict[str, object]] = []
    lsn, tx, emitted, order = 10_000, 500, 0, 0
    while emitted < count:
        if recent and rng.random() < redelivery:
            event = dict(rng.choice(recent))
            event["ts_ms"] = int(str(event["ts_ms"])) + rng.randint(1, 10_000)
        else:
            if not fresh:
                order += 1
                lsn, tx = lsn + 256, tx + 2
                fresh = _order_events(rng, order, lsn, tx)
            event = fresh.pop(0)
            recent.append(event)
            if len(recent) > 2000:
                recent.pop(0)
        yield orjson.dumps(event)
        emitted += 1


def _order_events(rng: random.Random, order: int, lsn: int, tx: int) -> list[dict[str, object]]:
    """The four changes of one payment: order created, two ledger legs, order settled."""
    ms = BASE_MS + order * 37
    oid = f"O{order:09d}"
    payer, receiver = f"W{rng.randint(1, 50_000)}", f"W{rng.randint(1, 50_000)}"
    amount = f"{rng.randint(100, 10_000_000)}.{rng.randint(0, 99):02d}"
    order_row: dict[str, object] = {
        "order_id": oid,
        "payer_wallet_id": payer,
        "receiver_wallet_id": receiver,
        "amount": amount,
        "currency": "KRW",
        "status": "PENDING",
        "created_at": _ts(ms),
        "updated_at": _ts(ms),
        "settled_at": None,
        "failed_at": None,
        "version": 1,
    }
    out = [_event("payment_orders", "c", None, order_row, ms, lsn, tx)]
    for n, (leg, wallet, sign) in enumerate((("PAYMENT", payer, "-"), ("RECEIVE", receiver, ""))):
        row = {
            "tx_id": rng.randint(10**9, 10**12),  # an integer id: stored as a string
            "wallet_id": wallet,
            "type": leg,
            "amount": amount,
            "amount_signed": f"{sign}{amount}",
            "currency": "KRW",
            "related_id": oid,
            "related_type": "PAYMENT_ORDER",
            "status": "POSTED",
            "created_at": _ts(ms + 1),
            "updated_at": _ts(ms + 1),
            "version": 1,
            "memo": "transfer",
        }
        out.append(_event("ledger_entries", "c", None, row, ms + 1, lsn + 64 * (n + 1), tx))
    settled = dict(order_row, status="SUCCESS", settled_at=_ts(ms + 5), updated_at=_ts(ms + 5))
    settled["version"] = 2
    out.append(_event("payment_orders", "u", order_row, settled, ms + 5, lsn + 192, tx + 1))
    return out


def _event(
    table: str,
    op: str,
    before: dict[str, object] | None,
    after: dict[str, object] | None,
    ms: int,
    lsn: int,
    tx: int,
) -> dict[str, object]:
    return {
        "before": before,
        "after": after,
        "source": _source(table, ms, lsn, tx),
        "op": op,
        "ts_ms": ms + 40,
        "transaction": None,
    }


def write_events(path: Path, count: int, *, redelivery: float = 0.05) -> int:
    """Write the events as JSONL; return the file size in bytes."""
    with path.open("wb") as out:
        for line in debezium_events(count, redelivery=redelivery):
            out.write(line + b"\n")
    return path.stat().st_size


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / (1024 * 1024)


@dataclass
class Timer:
    seconds: float = 0.0
    _start: float = field(default=0.0, repr=False)

    @contextmanager
    def running(self) -> Iterator[Timer]:
        self._start = time.perf_counter()
        try:
            yield self
        finally:
            self.seconds = time.perf_counter() - self._start


def cpu_probe_ms() -> float:
    """The CPU time of a fixed pure-Python loop (best of three), in ms: how fast this
    shared machine runs Python right now. Seen here on the same machine within one hour:
    124 ms in a quiet window, 249 ms in a busy one — benchmark numbers taken minutes
    apart differ as much; each report prints the probe taken when it was written."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        sum(i * i for i in range(3_000_000))
        best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


def machine_info() -> dict[str, str]:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "cpu probe": f"{cpu_probe_ms()} ms",
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpu:
            for line in cpu:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as mem:
            total_kb = int(mem.readline().split()[1])
            info["memory"] = f"{total_kb / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return info


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(name: str, text: str) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.md"
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    return path


def append_generated(log: Any, count: int, *, batch: int = 5000) -> None:
    """Append ``count`` generated Debezium events to ``log`` through the real path (prepare)."""
    from eventlog.store import SourceRef, prepare

    pending: list[Any] = []
    for n, raw in enumerate(debezium_events(count)):
        pending.append(prepare(raw, SourceRef(topic="bench", partition=0, offset=n)))
        if len(pending) >= batch:
            log.append(pending)
            pending = []
    if pending:
        log.append(pending)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` and all its descendants
    (children that already exited and were reaped count through ``children_*``); 0 when
    the process is gone."""
    import psutil

    try:
        top = psutil.Process(pid)
        family = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in family:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total
