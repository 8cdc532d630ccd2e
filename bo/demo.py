"""The one-command demo behind ``make run``: a working back office on SQLite in seconds.

Steps (each one safe to repeat, so re-running reuses the database):

1. ``--reset`` deletes the embedded SQLite database first (``var/bo.db`` and its WAL files);
2. migrate the database to head;
3. ingest the bundled sample (``bo/sample/events.jsonl``) only when the log is empty;
4. catch the projections up to the log head;
5. pick interesting ids *from the projections* (a COMPLETE pair, an INCOMPLETE pair, a
   CONFLICT, the busiest wallet, a payment order) and mint ADMIN_READ / ADMIN_AUDIT
   dev tokens;
6. print the tokens and ready-to-paste ``curl`` lines, then serve the API with the
   projector in-process until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import Engine, desc, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bo import cli_projections
from bo.wiring import Container
from eventlog.errors import ConfigError, UsageError
from eventlog.ingest import ingest_stream, read_lines
from eventlog.migrate import upgrade
from projections.ledger_entries import LEDGER_ENTRIES
from projections.pairs import PAIRS
from projections.status import status
from projections.tables import view_table

SAMPLE = Path(__file__).resolve().parent / "sample" / "events.jsonl"
TOKEN_TTL = 12 * 3600  # one working day: long enough for a demo session
READ_ROLE, AUDIT_ROLE = "ADMIN_READ", "ADMIN_AUDIT"

_pairs = view_table(PAIRS)  # the stable views over the serving versions
_entries = view_table(LEDGER_ENTRIES)


@dataclass
class DemoIds:
    """Ids worth looking up, chosen from what the projections hold right now."""

    complete_tx: str | None = None
    complete_order: str | None = None
    incomplete_tx: str | None = None
    conflict_tx: str | None = None
    conflict_order: str | None = None
    wallet: str | None = None


@dataclass
class DemoReport:
    database: str
    ingested: dict[str, int] | None
    head: int
    projections: Any
    ids: DemoIds
    tokens: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self, base_url: str) -> dict[str, Any]:
        return {
            "database": self.database,
            "ingested": self.ingested,
            "head": self.head,
            "projections": self.projections,
            "ids": self.ids.__dict__,
            "tokens": self.tokens,
            "warnings": self.warnings,
            "url": base_url,
            "console": f"{base_url}/console",
            "curl": [{"what": what, "command": cmd} for what, cmd in curl_lines(self, base_url)],
            "seconds": self.seconds,
        }


def reset_database(database_url: str, var_dir: Path) -> list[Path]:
    """Delete the demo's SQLite database file and its journal: only one in ``var_dir``
    (``BO_VAR_DIR``) or the default ``./var/bo.db`` — a log and audit trail elsewhere is
    not the demo's to delete. Other backends and files are refused."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise UsageError(
            "--reset only deletes an embedded SQLite database; drop PostgreSQL yourself"
        )
    if not url.database or url.database == ":memory:":
        return []
    base = Path(url.database)
    own = {var_dir.resolve(), Path("var").resolve()}
    if base.resolve().parent not in own:
        raise UsageError(
            f"--reset only deletes the demo's database under BO_VAR_DIR ({var_dir}); "
            f"{base} is another file: delete it yourself if you mean to"
        )
    removed = []
    for path in (base, *(base.with_name(base.name + s) for s in ("-wal", "-shm", "-journal"))):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def prepare(c: Container, *, reset: bool = False, sample: Path = SAMPLE) -> DemoReport:
    """Steps 1-5: a migrated, populated, caught-up database and the ids to show."""
    started = time.monotonic()
    if reset:
        c.close()
        reset_database(c.settings.database_url, c.settings.var_dir)
    try:
        c.settings.var_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"BO_VAR_DIR: cannot use {c.settings.var_dir}: {exc.strerror}") from exc
    engine = c.require_database(migrated=False)
    upgrade(engine)
    ingested: dict[str, int] | None = None
    if c.log.head() == 0:
        if not sample.is_file():
            raise ConfigError(f"the bundled sample is missing: {sample}")
        with sample.open("rb") as stream:
            ingested = ingest_stream(c.log, read_lines(stream, "sample"), "sample").summary()
    projections = cli_projections.catch_up(c)
    report = DemoReport(
        database=engine.url.render_as_string(hide_password=True),
        ingested=ingested,
        head=c.log.head(),
        projections=projections,
        ids=pick_ids(engine),
    )
    report.tokens = mint_tokens(c)
    report.warnings = projection_warnings(c)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def pick_ids(engine: Engine) -> DemoIds:
    """Choose the ids to show by asking the projections (lowest id of each kind: stable)."""
    ids = DemoIds()
    try:
        with engine.connect() as conn:
            for status in ("COMPLETE", "INCOMPLETE", "CONFLICT"):
                row = conn.execute(
                    select(
                        _pairs.c.payment_order_id, _pairs.c.payment_tx_id, _pairs.c.receive_tx_id
                    )
                    .where(_pairs.c.pairing_status == status)
                    .order_by(_pairs.c.payment_order_id)
                    .limit(1)
                ).first()
                if row is None:
                    continue
                order, pay, receive = (None if v is None else str(v) for v in row)
                if status == "COMPLETE":
                    ids.complete_order, ids.complete_tx = order, pay
                elif status == "INCOMPLETE":
                    ids.incomplete_tx = pay or receive or _any_leg(conn, order)
                else:
                    ids.conflict_order, ids.conflict_tx = order, pay or _any_leg(conn, order)
            busiest = conn.execute(
                select(_entries.c.wallet_id)
                .group_by(_entries.c.wallet_id)
                .order_by(desc(func.count()), _entries.c.wallet_id)
                .limit(1)
            ).scalar()
            ids.wallet = None if busiest is None else str(busiest)
    except DBAPIError as exc:  # projections not built: the demo still serves, fewer examples
        logger.warning("no example ids: the projections cannot be read ({})", exc.orig)
        return ids
    return ids


def projection_warnings(c: Container) -> list[str]:
    """What an operator should fix before trusting the answers: failed or stale versions.

    A reused demo database may predate a code change (a new fold revision or status map):
    its serving version keeps answering, and the banner says how to bring it up to date.
    """
    out: list[str] = []
    for item in status(c.engine, c.settings):
        name, version = item["projection"], item["version"]
        if item["state"] == "failed":
            out.append(
                f"{name} v{version} failed at position {item['error_position']}: "
                f"{item['last_error']} (fix, then: bo project --once --retry-failed)"
            )
        elif item["serving"] and item["stale"]:
            out.append(
                f"{name} v{version} is stale (code or config changed): "
                f"rebuild --projection {name} --version {version}"
            )
    return out


def _any_leg(conn: Any, order: str | None) -> str | None:
    if order is None:
        return None
    value = conn.execute(
        select(_entries.c.tx_id)
        .where(_entries.c.related_id == order)
        .order_by(_entries.c.tx_id)
        .limit(1)
    ).scalar()
    return None if value is None else str(value)


def mint_tokens(c: Container) -> dict[str, str]:
    """An ADMIN_READ and an ADMIN_AUDIT dev token; none in OIDC mode (use your IdP)."""
    if c.settings.auth_mode != "dev":
        return {}
    from api.auth import dev_token  # the API package is heavy; import only when minting

    return {
        READ_ROLE: dev_token(c.settings, "demo-reader", [READ_ROLE], TOKEN_TTL),
        AUDIT_ROLE: dev_token(c.settings, "demo-auditor", [AUDIT_ROLE], TOKEN_TTL),
    }


def curl_lines(report: DemoReport, base_url: str) -> list[tuple[str, str]]:
    """(what, command) for every lookup worth trying; tokens come from shell variables."""
    ids = report.ids
    read, audit = '-H "Authorization: Bearer $READ"', '-H "Authorization: Bearer $AUDIT"'
    wanted = [
        ("a COMPLETE pair", ids.complete_tx, "/admin/tx/{}", read),
        ("an INCOMPLETE pair", ids.incomplete_tx, "/admin/tx/{}", read),
        ("a CONFLICT", ids.conflict_tx, "/admin/tx/{}", read),
        ("all legs of the CONFLICT's order", ids.conflict_order, "/admin/payment-orders/{}", read),
        ("a payment order", ids.complete_order, "/admin/payment-orders/{}", read),
        ("a wallet history", ids.wallet, "/admin/wallets/{}/tx?limit=5", read),
    ]
    lines = [
        (what, f"curl -s {auth} '{base_url}{path.format(value)}'")
        for what, value, path, auth in wanted
        if value is not None
    ]
    lines.append(("the projections", f"curl -s {read} '{base_url}/admin/projections'"))
    lines.append(("the audit log", f"curl -s {audit} '{base_url}/admin/audit?limit=5'"))
    return lines


def render(report: DemoReport, base_url: str) -> str:
    """The human banner: what was done, the tokens, the curl lines, the console URL."""
    done = (
        f"ingested the sample: appended {report.ingested['appended']}, duplicate "
        f"{report.ingested['duplicate']}, dead letters {report.ingested['dead_letter']}"
        if report.ingested
        else "reusing the existing log (bo demo --reset starts over)"
    )
    out = [
        f"database  {report.database}",
        f"log       {done}; head {report.head}",
        *(f"WARNING   {warning}" for warning in report.warnings),
        f"ready in  {report.seconds} s",
        "",
    ]
    if report.tokens:
        out += [
            f"export READ='{report.tokens[READ_ROLE]}'",
            f"export AUDIT='{report.tokens[AUDIT_ROLE]}'",
        ]
    else:
        out.append("# BO_AUTH_MODE=oidc: export READ / AUDIT tokens from your identity provider")
    out.append("")
    for what, command in curl_lines(report, base_url):
        out += [f"# {what}", command]
    out += ["", f"console   {base_url}/console", f"metrics   {base_url}/metrics"]
    return "\n".join(out)


def serve(c: Container, host: str, port: int) -> int:
    """Serve the API with the projector in-process; Ctrl-C is a clean exit 0."""
    from bo.cli_api import serve as serve_api

    with contextlib.suppress(KeyboardInterrupt):
        serve_api(c, host=host, port=port, projector=True, consumer=False)
    return 0
