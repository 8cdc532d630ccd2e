"""The README's configuration table and CLI reference stay true to the code."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from bo.cli import app as bo_app
from eventlog.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CODE_DIRS = ("eventlog", "projections", "api", "rebuild", "bo", "bench", "migrations")
_VAR = re.compile(r"\bBO_[A-Z][A-Z0-9_]*\b")
_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|")


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a Markdown document."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def readme_variables() -> set[str]:
    table = section(README.read_text(encoding="utf-8"), "Configuration")
    return {m.group(1) for line in table.splitlines() if (m := _ROW.match(line))}


def string_literals(path: Path) -> Iterator[str]:
    """Every string constant in a Python file (f-string parts and docstrings too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def code_variables() -> set[str]:
    """``BO_*`` names the code reads: every settings field, plus names in string literals.

    Only strings count: ``BO_SCHEMA`` the Python constant is not an environment variable.
    """
    found = {f"BO_{name.upper()}" for name in Settings.model_fields}
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for literal in string_literals(path):
                found |= set(_VAR.findall(literal))
    return found


def test_every_setting_is_documented() -> None:
    missing = code_variables() - readme_variables()
    assert not missing, f"add to the README configuration table: {sorted(missing)}"


def test_every_documented_variable_exists() -> None:
    documented = {v for v in readme_variables() if v.startswith("BO_")}
    unknown = documented - code_variables()
    assert not unknown, f"README documents variables the code never reads: {sorted(unknown)}"


def test_table_rows_have_a_default_an_example_and_a_meaning() -> None:
    table = section(README.read_text(encoding="utf-8"), "Configuration")
    for line in table.splitlines():
        if _ROW.match(line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert len(cells) == 4, f"not 4 cells: {line}"
            assert all(cells), f"empty cell: {line}"


def test_the_default_in_the_table_is_the_code_default() -> None:
    table = section(README.read_text(encoding="utf-8"), "Configuration")
    rows = {
        m.group(1): [c.strip() for c in line.strip().strip("|").split("|")]
        for line in table.splitlines()
        if (m := _ROW.match(line))
    }
    for name, info in Settings.model_fields.items():
        default = info.default
        cell = rows[f"BO_{name.upper()}"][1]
        if default is None or default == "":
            assert cell.startswith("(") or cell == "—", f"BO_{name.upper()}: {cell}"
        else:
            assert str(default).strip("./") in cell, f"BO_{name.upper()}: {cell} vs {default}"


def command_paths(group: Any, prefix: str) -> list[str]:
    if not isinstance(getattr(group, "commands", None), dict):  # typer vendors its own click
        return [prefix]
    paths = []
    for name, sub in group.commands.items():
        if sub.hidden:
            continue
        paths += command_paths(sub, f"{prefix} {name}")
    return paths


def test_every_bo_command_is_in_the_cli_reference() -> None:
    reference = section(README.read_text(encoding="utf-8"), "CLI")
    missing = [
        path
        for path in command_paths(typer.main.get_command(bo_app), "bo")
        if f"`{path}" not in reference
    ]
    assert not missing, f"README CLI reference lacks: {missing}"


def test_every_rebuild_command_is_in_the_cli_reference() -> None:
    from rebuild import cli as rebuild_cli

    reference = section(README.read_text(encoding="utf-8"), "CLI")
    command = rebuild_cli.app if hasattr(rebuild_cli, "app") else None
    assert command is not None, "rebuild.cli exposes no app"
    root = typer.main.get_command(command) if isinstance(command, typer.Typer) else command
    missing = [p for p in command_paths(root, "rebuild") if f"`{p}" not in reference]
    assert not missing, f"README CLI reference lacks: {missing}"


def all_commands() -> list[tuple[str, Any]]:
    """(path, command) for every `bo` and `rebuild` command, the rebuild root included."""
    from rebuild.cli import app as rebuild_app

    found: list[tuple[str, Any]] = []

    def walk(command: Any, path: str) -> None:
        subs = getattr(command, "commands", None)
        if not isinstance(subs, dict) or getattr(command, "invoke_without_command", False):
            found.append((path, command))
        for name, sub in (subs or {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(bo_app), "bo")
    walk(typer.main.get_command(rebuild_app), "rebuild")
    return [(p, c) for p, c in found if p != "bo"]


def test_every_option_is_in_the_cli_reference() -> None:
    """Each command's row in the README names every option it takes (--json/--help aside)."""
    rows = {
        m.group(1): line
        for line in section(README.read_text(encoding="utf-8"), "CLI").splitlines()
        if (m := re.match(r"^\| `([a-z][a-z-]*(?: [a-z][a-z-]*)*)", line))
    }
    missing: list[str] = []
    for path, command in all_commands():
        row = rows.get(path)
        if row is None:
            missing.append(path)
            continue
        for param in command.params:
            longs = [o for o in param.opts if o.startswith("--")]
            if longs and longs[0] not in ("--json", "--help") and longs[0] not in row:
                missing.append(f"{path} {longs[0]}")
    assert not missing, f"README CLI reference lacks: {missing}"
