"""Every ``bo`` / ``rebuild`` command fails with one clear line and exit code 2 — no traceback.

The real console scripts run in a subprocess (as an operator runs them), each given a bad
argument, an unreachable database, a missing file or a bad variable. Commands are found by
introspecting the typer apps, so a new command without a case here fails
:func:`test_every_command_has_error_cases`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main

from bo.cli import app as bo_app
from eventlog.db import make_engine
from eventlog.migrate import upgrade

BIN = Path(sys.executable).parent
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"
DATABASE = re.compile(r"database|127\.0\.0\.1:1|connection", re.I)
UNPARSEABLE = "postgresql://u:S3CRET@[::1/x"  # not a URL at all, with a password in it
NOT_PARSED = re.compile(r"^(?!.*S3CRET).*(cannot be parsed|sqlite)", re.I)  # never echoed


def command_paths(command: Any, prefix: str) -> list[str]:
    if isinstance(getattr(command, "commands", None), dict):  # typer vendors click: duck-type
        paths = [prefix] if getattr(command, "invoke_without_command", False) else []
        for name, sub in command.commands.items():
            paths += command_paths(sub, f"{prefix} {name}")
        return paths
    return [prefix]


def rebuild_root() -> Any:
    try:
        from rebuild import cli as rebuild_cli
    except ImportError:
        return None
    found = getattr(rebuild_cli, "app", None)
    if isinstance(found, typer.Typer):
        return typer.main.get_command(found)
    return found if callable(getattr(found, "main", None)) else None


def present_commands() -> set[str]:
    paths = set(command_paths(typer.main.get_command(bo_app), "bo"))
    root = rebuild_root()
    if root is not None:
        paths |= set(command_paths(root, "rebuild"))
    return paths


@dataclass(frozen=True)
class Valid:
    """A well-formed invocation of one command; the error cases break one thing in it."""

    argv: tuple[str, ...]
    needs_db: bool = True
    env: dict[str, str] = field(default_factory=dict)
    reads_settings: bool = True  # False: self-contained (its inputs are its arguments)


# {events} is an existing JSONL file, {port} a free port.
VALID: dict[str, Valid] = {
    "bo migrate": Valid(("migrate",)),
    "bo ingest": Valid(("ingest", "{events}")),
    "bo log verify": Valid(("log", "verify")),
    "bo dead-letters list": Valid(("dead-letters", "list")),
    "bo dead-letters show": Valid(("dead-letters", "show", "1")),
    "bo dead-letters retry": Valid(("dead-letters", "retry", "--all")),
    "bo demo": Valid(("demo", "--no-serve")),
    "bo project": Valid(("project", "--once")),
    "bo consume": Valid(("consume",), env={"BO_KAFKA_BOOTSTRAP": "127.0.0.1:9"}),
    "bo backfill": Valid(("backfill", "--oltp-dsn", "postgresql://nobody@127.0.0.1:1/oltp")),
    "bo serve": Valid(("serve", "--port", "{port}")),
    "bo token": Valid(("token", "--sub", "alice", "--role", "ADMIN_READ"), needs_db=False),
    "bo audit verify": Valid(("audit", "verify")),
    "rebuild": Valid(("--projection", "pairs")),
    "rebuild promote": Valid(("promote", "--projection", "pairs", "--version", "1")),
    "rebuild diff": Valid(("diff", "--projection", "pairs", "--from", "1", "--to", "1")),
    "rebuild verify": Valid(("verify",)),
    "rebuild status": Valid(("status",)),
    # golden replays scenarios into fresh databases: its config is in the scenario files
    # and its server in --database-url, so BO_* variables do not apply to it.
    "rebuild golden": Valid(("golden", "{golden}"), needs_db=False, reads_settings=False),
    "rebuild drop": Valid(("drop", "--projection", "pairs", "--version", "1")),
}

# Bad arguments and missing files: (command, argv, extra env, what the line must name).
BAD: list[tuple[str, tuple[str, ...], dict[str, str], str | re.Pattern[str]]] = [
    ("bo", ("no-such-command",), {}, "no-such-command"),
    ("bo migrate", ("migrate", "--bogus"), {}, "--bogus"),
    ("bo ingest", ("ingest", "{missing}"), {}, "no such file"),
    ("bo dead-letters list", ("dead-letters", "list", "--status", "bogus"), {}, "--status"),
    ("bo dead-letters show", ("dead-letters", "show", "999"), {}, "999"),
    ("bo dead-letters show", ("dead-letters", "show", "9" * 23), {}, "9" * 23),  # past BIGINT
    ("bo dead-letters retry", ("dead-letters", "retry", "9" * 23), {}, "9" * 23),
    ("bo ingest", ("ingest", "--workers", "99999999", "{events}"), {}, "--workers"),
    ("bo dead-letters retry", ("dead-letters", "retry"), {}, "--all"),
    ("bo demo", ("demo", "--port", "0"), {}, "--port"),
    ("bo demo", ("demo", "--no-serve", "--reset"), {"BO_DATABASE_URL": UNREACHABLE}, "sqlite"),
    ("bo consume", ("consume",), {}, "BO_KAFKA_BOOTSTRAP"),
    ("bo backfill", ("backfill", "--oltp-dsn", "{dsn}", "--tables", "nope"), {}, "nope"),
    ("bo serve", ("serve", "--port", "70000"), {}, "--port"),
    ("bo serve", ("serve", "--host", "nosuchhost.invalid", "--port", "{port}"), {}, "listen on"),
    ("bo token", ("token", "--sub", "a", "--role", "X", "--ttl", "-5"), {}, "ttl"),
    (
        "bo token",
        ("token", "--sub", "a", "--role", "ADMIN_READ", "--ttl", "60"),
        {"BO_VAR_DIR": "{events}"},
        "BO_VAR_DIR",
    ),
    ("bo demo", ("demo", "--no-serve"), {"BO_VAR_DIR": "{events}"}, "BO_VAR_DIR"),
    (
        "bo token",
        ("token", "--sub", "a", "--role", "ADMIN_READ"),
        {
            "BO_AUTH_MODE": "oidc",
            "BO_OIDC_JWKS_URL": "https://idp.example/jwks",
            "BO_OIDC_ISSUER": "https://idp.example/",
            "BO_OIDC_AUDIENCE": "bo",
        },
        "oidc",
    ),
    (
        "bo migrate",
        ("migrate",),
        {
            "BO_AUTH_MODE": "oidc",
            "BO_OIDC_JWKS_URL": "notaurl",
            "BO_OIDC_ISSUER": "https://idp.example/",
            "BO_OIDC_AUDIENCE": "bo",
        },
        "BO_OIDC_JWKS_URL",
    ),
    (
        "bo consume",
        ("consume", "--json"),
        {
            "BO_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "BO_KAFKA_SECURITY_PROTOCOL": "SSL",
            "BO_KAFKA_SSL_CAFILE": "{missing}",
        },
        "BO_KAFKA_SSL_CAFILE",
    ),
    ("rebuild", ("--projection", "nope"), {}, "nope"),
    ("rebuild promote", ("promote", "--projection", "pairs"), {}, "version"),
    ("rebuild verify", ("verify", "--projection", "nope"), {}, "nope"),
    ("rebuild golden", ("golden", "{missing}"), {}, "missing"),
    ("rebuild golden", ("golden", "{golden}", "--database-url", "{dsn}"), {}, DATABASE),
    ("rebuild golden", ("golden", "{golden}", "--database-url", UNPARSEABLE), {}, NOT_PARSED),
    ("rebuild golden", ("golden", "{badgolden}"), {}, "line 1 is not JSON"),
    ("rebuild drop", ("drop", "--projection", "nope", "--version", "1"), {}, "nope"),
]

# Bad variables, each given to every command.
BAD_VARIABLES = [
    ({"BO_LOG_LEVEL": "LOUD"}, "BO_LOG_LEVEL"),
    ({"BO_DATABASE_URL": "mysql://root@localhost/bo"}, "BO_DATABASE_URL"),
    ({"BO_DATABASE_URL": "sqlite://"}, "must name a file"),  # in memory: gone per command
    ({"BO_DATABASE_URL": "sqlite:///x.db?mode=ro"}, "options are not supported"),
    ({"BO_STATUS_MAP": "{missing}"}, "BO_STATUS_MAP"),
    ({"BO_AUTH_MODE": "oidc"}, "BO_OIDC"),
]

PRESENT = present_commands()


@dataclass(frozen=True)
class Case:
    """One command run with one thing broken, and what its error line must name."""

    label: str
    command: str
    argv: tuple[str, ...]
    env: dict[str, str]
    names: str | re.Pattern[str]


def build_cases() -> list[Case]:
    """Each present command: one bad variable (rotating), an unreachable database, bad args."""
    cases: list[Case] = []
    present = [c for c in VALID if c in PRESENT]
    for index, command in enumerate(present):
        valid = VALID[command]
        env, names = BAD_VARIABLES[index % len(BAD_VARIABLES)]
        if valid.reads_settings:
            cases.append(
                Case(f"{command}|{next(iter(env))}", command, valid.argv, valid.env | env, names)
            )
        if valid.needs_db:
            broken = valid.env | {"BO_DATABASE_URL": UNREACHABLE}
            cases.append(Case(f"{command}|unreachable-db", command, valid.argv, broken, DATABASE))
            garbled = valid.env | {"BO_DATABASE_URL": UNPARSEABLE}
            cases.append(
                Case(f"{command}|unparseable-url", command, valid.argv, garbled, NOT_PARSED)
            )
    for command, argv, env, names in BAD:
        if command in PRESENT or command == "bo":
            cases.append(Case(f"{command}|{' '.join(argv)}", command, argv, env, names))
    return cases


CASES = build_cases()


def _script(command: str) -> Path:
    return BIN / command.split()[0]


def _fill(values: tuple[str, ...] | dict[str, str], where: Path, port: int) -> list[str]:
    names = {
        "{events}": str(where / "events.jsonl"),
        "{missing}": str(where / "missing" / "nothing.jsonl"),
        "{golden}": str(where / "golden"),
        "{badgolden}": str(where / "badgolden"),
        "{port}": str(port),
        "{dsn}": UNREACHABLE,
    }
    items = values.values() if isinstance(values, dict) else values
    return [names.get(v, v) for v in items]


def run(case: Case, where: Path, template: Path) -> subprocess.CompletedProcess[str]:
    """Run the real console script in ``where`` with a copy of a migrated database."""
    (where / "var").mkdir(parents=True)
    shutil.copy(template, where / "var" / "bo.db")  # only the broken thing is wrong
    (where / "events.jsonl").write_text('{"op":"c"}\n', encoding="utf-8")
    scenario = where / "golden" / "one"  # a well-formed golden scenario
    (scenario / "expected").mkdir(parents=True)
    (scenario / "events.jsonl").write_text('{"op":"c"}\n', encoding="utf-8")
    (scenario / "expected" / "pairs.jsonl").write_text("", encoding="utf-8")
    malformed = where / "badgolden" / "one"  # its expected file is not JSON
    (malformed / "expected").mkdir(parents=True)
    (malformed / "events.jsonl").write_text("", encoding="utf-8")
    (malformed / "expected" / "ledger_entries.jsonl").write_text("{bad\n", encoding="utf-8")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BO_", "OTEL_"))}
    env |= {
        "BO_DATABASE_URL": f"sqlite:///{where / 'var' / 'bo.db'}",
        "BO_VAR_DIR": str(where / "var"),
        "COLUMNS": "200",
    }
    env |= dict(zip(case.env, _fill(case.env, where, port), strict=True))
    try:
        return subprocess.run(
            [str(_script(case.command)), *_fill(case.argv, where, port)],
            cwd=where,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return subprocess.CompletedProcess(exc.cmd, -9, "", f"(still running after 90 s)\n{out}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the selected cases once, in parallel (separate processes; most time is imports)."""
    selected = {
        case.label
        for item in request.session.items
        if isinstance(
            case := getattr(getattr(item, "callspec", None), "params", {}).get("case"), Case
        )
    }
    template = tmp_path_factory.mktemp("template") / "bo.db"
    engine = make_engine(f"sqlite:///{template}")
    upgrade(engine)
    engine.dispose()
    root = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {
            case.label: pool.submit(run, case, root / f"case{n}", template)
            for n, case in enumerate(CASES)
            if case.label in selected
        }
        return {label: future.result() for label, future in futures.items()}


def assert_one_clear_line(
    proc: subprocess.CompletedProcess[str], names: str | re.Pattern[str]
) -> None:
    shown = f"exit {proc.returncode}\nstdout: {proc.stdout[-800:]}\nstderr: {proc.stderr[-1500:]}"
    assert "Traceback" not in proc.stderr, shown
    assert proc.returncode == 2, shown
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    if isinstance(names, str):
        assert names.lower() in lines[0].lower(), shown
    else:
        assert names.search(lines[0]), shown


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_fails_with_one_clear_line(
    case: Case, outcomes: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    assert_one_clear_line(outcomes[case.label], case.names)


def test_every_command_has_error_cases() -> None:
    uncovered = sorted(PRESENT - set(VALID) - {"bo"})
    assert not uncovered, f"add a valid invocation (and bad ones) for: {uncovered}"


def test_rebuild_console_script_is_installed() -> None:
    assert _script("rebuild").exists()
    assert rebuild_root() is not None, "rebuild.cli has no typer/click app"


def _bo(args: list[str], where: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BO_", "OTEL_"))}
    env |= {"BO_DATABASE_URL": f"sqlite:///{where / 'bo.db'}", "BO_VAR_DIR": str(where / "var")}
    return subprocess.run(
        [str(BIN / "bo"), *args],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        **kwargs,
    )


def test_a_database_of_a_newer_build_cannot_be_migrated_and_says_so(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bo.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    assert_one_clear_line(_bo(["migrate", "--json"], tmp_path), "newer build")


def test_a_dot_env_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"# caf\xe9\nOTHER=1\n")
    assert_one_clear_line(_bo(["log", "verify", "--json"], tmp_path), ".env")


def test_ingest_of_a_closed_stdin_is_one_line(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bo.db'}")
    upgrade(engine)
    engine.dispose()
    closed = _bo(["ingest", "-", "--json"], tmp_path, stdin=None, preexec_fn=lambda: os.close(0))
    assert_one_clear_line(closed, "stdin is closed")


def test_a_mistyped_sqlite_path_is_reported_and_not_created(tmp_path: Path) -> None:
    answer = _bo(["log", "verify", "--json"], tmp_path)  # BO_DATABASE_URL names bo.db: absent
    assert_one_clear_line(answer, "no database at")
    assert not (tmp_path / "bo.db").exists()
