"""The ``rebuild`` command (SPEC §5): build, promote, diff, verify, status, golden, drop.

Exit codes: 0 ok, 1 a check found a difference, 2 usage or configuration (one line).
Every reporting command takes ``--json`` and then prints exactly one JSON object.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bo.output import EXIT_CHECK, EXIT_OK, Reporter, emit, run_app
from bo.wiring import Container, bootstrap
from eventlog.errors import UsageError
from eventlog.logs import configure_logging
from projections import registry
from projections.status import status as projection_status
from rebuild.batches import RebuildFailed
from rebuild.build import BATCH, build, drop, promote
from rebuild.compare import diff, verify
from rebuild.golden import run_golden

app = typer.Typer(
    name="rebuild",
    help="Replay projections from the event log, verify, diff and swap versions.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ProjectionOpt = Annotated[
    str | None,
    typer.Option("--projection", "-p", help="ledger_entries, payment_orders or pairs."),
]


def _container() -> Container:
    c = bootstrap()
    c.require_database()
    return c


def _within(option: str, value: int, low: int, high: int) -> None:
    # checked here rather than with typer's min/max, whose error escapes run_app's mapping
    if not low <= value <= high:
        raise UsageError(f"{option} must be between {low} and {high}, got {value}")


def _projection(name: str | None) -> str:
    if not name:
        raise UsageError(f"--projection is required ({', '.join(registry.NAMES)})")
    return registry.check_name(name)


@app.callback()
def main_command(
    ctx: typer.Context,
    projection: ProjectionOpt = None,
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Version (default: newest).")
    ] = None,
    no_promote: Annotated[
        bool, typer.Option("--no-promote", help="Build as standby; do not change what serves.")
    ] = False,
    batch: Annotated[int, typer.Option(help="Events per batch (1 to 1,000,000).")] = BATCH,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (0: all in this process). On PostgreSQL, when the log "
            "holds 200,000 events or more, the default folds key partitions in one "
            "process per CPU (at most 4); otherwise workers only decode events."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Build a projection version from position 1 and swap it in atomically."""
    if ctx.invoked_subcommand is not None:
        if projection or version is not None or no_promote or as_json or workers is not None:
            raise UsageError("put options after the subcommand (e.g. rebuild diff --projection P)")
        return EXIT_OK
    name = _projection(projection)
    _within("--batch", batch, 1, 1_000_000)
    if workers is not None:
        _within("--workers", workers, 0, 32)
    c = _container()
    head = c.log.head()
    reporter = Reporter(f"rebuild {name}", head, enabled=True)
    started, seen = time.monotonic(), [0]

    def progress(position: int, total: int) -> None:
        rate = position / max(time.monotonic() - started, 1e-6)
        reporter.set_total(total)
        reporter.advance(position - seen[0], rate=f"{rate:,.0f} ev/s")
        seen[0] = position

    try:
        with reporter.running():
            result = build(
                c.engine,
                c.settings,
                name,
                version,
                promote=not no_promote,
                batch=batch,
                progress=progress,
                workers=workers,
            )
    except RebuildFailed as exc:  # exit 1 with its line; --json still prints one object
        if as_json:
            emit(_failed(name, exc), as_json, str)
        raise
    emit(result.as_dict(), as_json, _build_line)
    return EXIT_OK


def _build_line(d: dict[str, Any]) -> str:
    return (
        f"{d['projection']}.v{d['version']}: {d['rows']} rows through position {d['position']}, "
        f"checksum {d['checksum']}, {d['seconds']} s ({d['events_per_sec']:,.0f} events/s), "
        f"{d['state']}"
    )


@app.command("promote")
def promote_command(
    projection: ProjectionOpt = None,
    version: Annotated[int | None, typer.Option("--version", "-v")] = None,
    as_json: JsonOpt = False,
) -> int:
    """Make VERSION the serving version (atomic)."""
    name = _projection(projection)
    if version is None:
        raise UsageError("--version is required")
    c = _container()
    emit(
        promote(c.engine, c.settings, name, version),
        as_json,
        lambda d: (
            f"{d['projection']}.v{d['version']} serving at position {d['position']} "
            f"(was v{d['previous']})"
        ),
    )
    return EXIT_OK


@app.command("drop")
def drop_command(
    projection: ProjectionOpt = None,
    version: Annotated[int | None, typer.Option("--version", "-v")] = None,
    as_json: JsonOpt = False,
) -> int:
    """Retire a non-serving version's tables."""
    name = _projection(projection)
    if version is None:
        raise UsageError("--version is required")
    c = _container()
    emit(
        drop(c.engine, c.settings, name, version),
        as_json,
        lambda d: f"{d['projection']}.v{d['version']} retired",
    )
    return EXIT_OK


@app.command("diff")
def diff_command(
    projection: ProjectionOpt = None,
    version_from: Annotated[int | None, typer.Option("--from", help="Version A.")] = None,
    version_to: Annotated[int | None, typer.Option("--to", help="Version B.")] = None,
    limit: Annotated[int, typer.Option(help="Differences to list (0 to 100,000).")] = 20,
    as_json: JsonOpt = False,
) -> int:
    """Rows only in A, only in B, changed rows field by field; exit 1 when they differ."""
    name = _projection(projection)
    _within("--limit", limit, 0, 100_000)
    if version_from is None or version_to is None:
        raise UsageError("--from and --to are required")
    c = _container()
    result = diff(c.engine, c.settings, name, version_from, version_to, limit=limit)
    emit(result, as_json, _diff_text)
    return EXIT_OK if result["identical"] else EXIT_CHECK


def _diff_text(d: dict[str, Any]) -> str:
    head = (
        f"{d['projection']} v{d['from']} vs v{d['to']} at position {d['position']}: "
        f"{d['only_in_from']} only in v{d['from']}, {d['only_in_to']} only in v{d['to']}, "
        f"{d['changed']} changed"
    )
    lines = [head if not d["identical"] else head + " (identical)"]
    for item in d["differences"]:
        if item["kind"] == "changed":
            fields = ", ".join(
                f"{k}: {v['old']!r} -> {v['new']!r}" for k, v in item["fields"].items()
            )
            lines.append(f"  {item['table']} {item['key']}: {fields}")
        else:
            lines.append(f"  {item['table']} {item['key']}: {item['kind']}")
    return "\n".join(lines)


@app.command("verify")
def verify_command(
    projection: ProjectionOpt = None,
    limit: Annotated[int, typer.Option(help="Differing keys to name (1 to 1000).")] = 5,
    as_json: JsonOpt = False,
) -> int:
    """Replay serving versions into scratch tables and compare; exit 1 on drift."""
    names = [_projection(projection)] if projection else list(registry.NAMES)
    _within("--limit", limit, 1, 1000)
    c = _container()
    results: list[dict[str, Any]] = []
    for name in names:
        try:
            results.append(verify(c.engine, c.settings, name, limit=limit))
        except RebuildFailed as exc:  # the replay itself failed: a drift, and the next goes on
            results.append(_failed(name, exc))
    ok = all(r["ok"] for r in results)
    emit({"ok": ok, "projections": results}, as_json, _verify_text)
    return EXIT_OK if ok else EXIT_CHECK


def _failed(name: str, exc: RebuildFailed) -> dict[str, Any]:
    """The report of a replay that failed on one event (nothing was swapped in)."""
    return {
        "projection": name,
        "ok": False,
        "version": exc.version,
        "error_position": exc.position,
        "note": str(exc),
    }


def _verify_text(d: dict[str, Any]) -> str:
    lines = []
    for r in d["projections"]:
        if r.get("version") is None:
            lines.append(f"{r['projection']}: {r.get('note', 'not built')}")
        elif not r["ok"] and r.get("note"):
            lines.append(f"{r['projection']}.v{r['version']}: DRIFT: {r['note']}")
        elif r["ok"]:
            lines.append(
                f"{r['projection']}.v{r['version']}: ok at position {r['position']}, "
                f"checksum {r['checksum_serving']}"
            )
        else:
            keys = ", ".join(str(k) for k in r["first_keys"])
            lines.append(
                f"{r['projection']}.v{r['version']}: DRIFT at position {r['position']}: "
                f"{r['differences']} differing rows; first keys: {keys}"
            )
    return "\n".join(lines)


@app.command("status")
def status_command(as_json: JsonOpt = False) -> int:
    """Projections x versions: state, position, log head, lag, rows, checksum."""
    c = _container()
    items = projection_status(c.engine, c.settings)
    head = items[0]["log_head"] if items else c.log.head()
    emit({"log_head": head, "projections": items}, as_json, _status_table)
    return EXIT_OK


def _status_table(d: dict[str, Any]) -> str:
    if not d["projections"]:
        return f"log head {d['log_head']}; no projections yet (run `bo project --once`)"
    lines = [
        f"{'projection':16} {'ver':>3}  {'state':9} {'':7} {'position':>9} {'lag':>7} "
        f"{'rows':>9}  checksum"
    ]
    for p in d["projections"]:
        flags = ("*" if p["serving"] else " ") + (" stale" if p["stale"] else "")
        lines.append(
            f"{p['projection']:16} {p['version']:>3}  {p['state']:9} {flags:7} "
            f"{p['position']:>9} {p['lag']:>7} {p['rows']:>9}  {(p['checksum'] or '-')[:16]}"
        )
        if p["last_error"]:
            lines.append(f"    error at {p['error_position']}: {p['last_error']}")
    lines.append(f"log head {d['log_head']}; * = serving")
    return "\n".join(lines)


@app.command("golden")
def golden_command(
    directory: Annotated[Path, typer.Argument(help="Scenario directory.")] = Path("tests/golden"),
    update: Annotated[bool, typer.Option("--update", help="Rewrite the expected files.")] = False,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="PostgreSQL server for the fresh databases."),
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Replay each scenario into a fresh database and compare with its expected rows."""
    configure_logging("WARNING")  # reads no BO_* settings; logs as JSON lines like the rest
    results = run_golden(directory, update=update, database_url=database_url)
    ok = all(r.ok for r in results)
    emit(
        {"ok": ok, "scenarios": [r.as_dict() for r in results]},
        as_json,
        _golden_text,
    )
    return EXIT_OK if ok else EXIT_CHECK


def _golden_text(d: dict[str, Any]) -> str:
    lines = []
    for s in d["scenarios"]:
        if s["updated"]:
            lines.append(f"{s['scenario']}: updated {', '.join(s['updated'])}")
        elif s["ok"]:
            unchecked = s.get("unchecked") or []
            note = f" (no expected file, not compared: {', '.join(unchecked)})" if unchecked else ""
            lines.append(f"{s['scenario']}: ok{note}")
        else:
            lines.append(f"{s['scenario']}: FAILED")
            lines += [f"    {p}" for p in s["problems"]]
    failed = sum(not s["ok"] for s in d["scenarios"])
    lines.append(f"{len(d['scenarios'])} scenarios, {failed} failed")
    return "\n".join(lines)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
