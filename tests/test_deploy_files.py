"""Dockerfile, compose.yaml and the Prometheus alerts agree with the code.

Docker cannot run on the CI machines, so the files are parsed: every command they run
must parse against the real CLI (typer app introspection), every variable they set must be
a real setting with a valid value, every file they copy or mount must exist, and every
metric an alert uses must appear in a live ``/metrics`` scrape of the API.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from bo import demo
from bo.cli import app as bo_app
from bo.wiring import Container
from eventlog.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
SETTING_NAMES = {f"BO_{name.upper()}" for name in Settings.model_fields}
# Variables other than settings that the code or Python itself reads.
READ_BY_THE_CODE = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "PATH",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
}


def cli_root(program: str) -> Any:
    if program == "bo":
        return typer.main.get_command(bo_app)
    if program == "rebuild":
        from rebuild.cli import app as rebuild_app

        return typer.main.get_command(rebuild_app)
    raise AssertionError(f"not one of our programs: {program}")


def check_command(argv: list[str]) -> None:
    """Parse ``argv`` with the real CLI (sub-commands, options, types) without running it."""
    program, *args = argv
    command = cli_root(program)
    path = [program]
    while (
        isinstance(getattr(command, "commands", None), dict)
        and args
        and args[0] in command.commands
    ):
        path.append(args[0])
        command = command.commands[args.pop(0)]
    if isinstance(getattr(command, "commands", None), dict) and not getattr(
        command, "invoke_without_command", False
    ):
        raise AssertionError(f"{' '.join(argv)}: {' '.join(path)} needs a sub-command")
    command.make_context(" ".join(path), list(args))  # raises on unknown options or bad values


def check_environment(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = {k for k in env if k.startswith("BO_")} - SETTING_NAMES
    assert not unknown, f"not settings: {sorted(unknown)}"
    others = {k for k in env if not k.startswith("BO_")} - READ_BY_THE_CODE
    assert not others, f"variables the code does not read: {sorted(others)}"
    with monkeypatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, str(value))
        load_settings()  # a bad value raises ConfigError naming the variable


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in joined.splitlines()
        if (parts := line.strip().split(None, 1))
    ]


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_dockerfile_is_multi_stage() -> None:
    stages = [arg for op, arg in dockerfile_instructions() if op == "FROM"]
    assert len(stages) >= 2
    assert any("--from=" in arg for op, arg in final_stage() if op == "COPY")


def test_dockerfile_runs_as_non_root() -> None:
    users = [arg.split(":")[0] for op, arg in final_stage() if op == "USER"]
    assert users
    assert users[-1] not in ("root", "0")


def test_dockerfile_healthcheck_probes_healthz() -> None:
    checks = [arg for op, arg in final_stage() if op == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0]
    assert "8000" in checks[0]


def test_dockerfile_command_exists_in_the_cli() -> None:
    cmds = [arg for op, arg in final_stage() if op in ("CMD", "ENTRYPOINT")]
    assert cmds
    argv = yaml.safe_load(cmds[-1])  # exec form is a JSON array
    assert isinstance(argv, list)
    check_command(argv)


def test_dockerfile_env_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env: dict[str, str] = {}
    for op, arg in final_stage():
        if op == "ENV":
            env |= dict(item.split("=", 1) for item in shlex.split(arg))
    env.pop("PATH")
    check_environment(env, monkeypatch)


def test_dockerfile_copies_every_package_and_nothing_missing() -> None:
    copied = set()
    for op, arg in dockerfile_instructions():
        if op == "COPY" and "--from=" not in arg:
            sources = [s for s in shlex.split(arg) if not s.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                copied.add(source)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.split(".")[0] for p in pyproject["tool"]["setuptools"]["packages"]}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".env", "var", ".venv", ".git"} <= ignored


# ---------------------------------------------------------------- compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def ours(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Services that run this project's image."""
    for name, service in compose["services"].items():
        if "build" in service or str(service.get("image", "")).startswith("bo:"):
            yield name, service


def test_compose_has_the_whole_shape(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = " ".join(str(s.get("image", "")) for s in services.values())
    assert "postgres" in images
    assert re.search(r"redpanda|kafka|tansu", images)
    commands = {name: service.get("command") for name, service in ours(compose)}
    assert commands["migrate"] == ["bo", "migrate"]
    assert commands["consumer"][:2] == ["bo", "consume"]
    assert commands["api"][:2] == ["bo", "serve"]


def test_compose_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    for name, service in ours(compose):
        command = service.get("command")
        assert isinstance(command, list), f"{name}: use the exec (list) form"
        check_command(command)


def test_compose_variables_are_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in ours(compose):
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        assert "BO_DATABASE_URL" in env, name
        check_environment({k: str(v) for k, v in env.items()}, monkeypatch)


def test_compose_migrates_before_anything_uses_the_database(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def upstream(name: str) -> set[str]:
        found: set[str] = set()
        for dep in services[name].get("depends_on") or {}:
            found |= {dep} | upstream(dep)
        return found

    for name, _service in ours(compose):
        if name != "migrate":
            assert "migrate" in upstream(name), f"{name} may start before migrations"
    assert services["migrate"]["restart"] == "no"


def test_compose_mounts_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_compose_api_keeps_the_image_healthcheck(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert not (api.get("healthcheck") or {}).get("disable")
    assert "8000" in " ".join(api["command"])


# ---------------------------------------------------------------- alerts


@pytest.fixture(scope="module")
def alerts() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name a live ``/metrics`` scrape of the API shows, over the demo data."""
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'bo.db'}"
    c = Container(load_settings(database_url=url, var_dir=str(tmp_path_factory.mktemp("var"))))
    try:
        demo.prepare(c)  # migrated, the sample ingested, projections caught up
        with TestClient(create_app(c.settings, c.engine)) as client:
            client.get("/healthz")
            text = client.get("/metrics").text
    finally:
        c.close()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "gauge": ("",),
        "unknown": ("",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


REQUIRED = {
    "lookup p95": "bo_http_request_duration_seconds_bucket",
    "freshness p95": "bo_freshness_seconds_bucket",
    "consumer lag": "bo_consumer_lag_records",
    "failed projection": "bo_projection_failed",
    "dead letters": "bo_dead_letters_total",
    "audit write failures": "bo_audit_write_failures_total",
    "old incomplete pairs": "bo_pairs_incomplete_oldest_age_seconds",
}


def test_alerts_cover_every_slo(alerts: list[dict[str, Any]]) -> None:
    used = " ".join(rule["expr"] for rule in alerts)
    missing = [what for what, metric in REQUIRED.items() if metric not in used]
    assert not missing
    assert re.search(r"> 0\.2\b", used), "lookup p95 threshold 200 ms"
    assert re.search(r"bo_freshness_seconds_bucket.*\)\)\) > 5\b", used, re.S)


def test_alert_metrics_are_exported(alerts: list[dict[str, Any]], exported: set[str]) -> None:
    for rule in alerts:
        for name in re.findall(r"\bbo_[a-z_]+\b", rule["expr"]):
            assert name in exported, f"{rule['alert']}: {name} is not exported by /metrics"


def test_alerts_are_complete_and_point_at_runbooks(alerts: list[dict[str, Any]]) -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names))
    for rule in alerts:
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in headings, f"{rule['alert']}: docs/operations.md has no #{anchor}"
