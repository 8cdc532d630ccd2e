"""How /console is served (headers, paths) and what its files may contain — no browser."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.console import CONTENT_SECURITY_POLICY, mount_console, read_asset
from eventlog.schema import audit_log
from eventlog.settings import load_settings
from tests.fixtures_browser import find_or_install_chromium

CONSOLE_DIR = Path(str(resources.files("api.console")))
JS_FILES = sorted(CONSOLE_DIR.glob("*.js"))
STATIC_FILES = sorted(
    p for p in CONSOLE_DIR.iterdir() if p.suffix in {".html", ".css", ".js", ".svg"}
)


@pytest.fixture
def engine(sqlite_url: str, engine_factory: Callable[[str], Engine]) -> Engine:
    return engine_factory(sqlite_url)


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path, engine: Engine) -> Iterator[TestClient]:
    """The real app (which mounts the console) over a fresh SQLite database."""
    from api.app import create_app

    settings = load_settings(database_url=sqlite_url, var_dir=tmp_path / "var", auth_mode="dev")
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


def test_console_redirects_to_its_folder(client: TestClient) -> None:
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "console/"  # relative: works under a prefix


def test_index_is_served_with_a_strict_csp(client: TestClient) -> None:
    response = client.get("/console/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="app.js">' in response.text


@pytest.mark.parametrize("path", STATIC_FILES, ids=lambda p: p.name)
def test_every_file_is_served_with_its_type_and_the_csp(client: TestClient, path: Path) -> None:
    response = client.get(f"/console/{path.name}")
    assert response.status_code == 200
    assert response.content == path.read_bytes()
    expected = {
        ".html": "text/html",
        ".css": "text/css",
        ".js": "text/javascript",
        ".svg": "image/svg+xml",
    }
    assert response.headers["content-type"].startswith(expected[path.suffix])
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_head_requests_work(client: TestClient) -> None:
    response = client.head("/console/app.js")
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.parametrize(
    "name",
    [
        "__init__.py",
        "missing.js",
        ".hidden.js",
        "..%2F__init__.py",
        "%2e%2e%2fapp.py",
        "APP.JS",
        "app.js.map",
        "x" * 300 + ".js",
    ],
)
def test_anything_else_is_a_404_problem(client: TestClient, name: str) -> None:
    response = client.get(f"/console/{name}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert b"import " not in response.content


def test_paths_outside_the_folder_are_not_reached() -> None:
    for name in ("../app.py", "../../pyproject.toml", "/etc/passwd", "sub/app.js", "__init__.py"):
        assert read_asset(name) is None


def test_console_is_not_part_of_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]


def test_console_needs_no_token_and_writes_no_audit_record(
    client: TestClient, engine: Engine
) -> None:
    # A page, not data: the API calls it makes are what gets authorised and audited.
    for path in ("/console/", "/console/app.js", "/console/missing.js"):
        client.get(path)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 0
    client.get("/admin/tx/T1")  # while an /admin call without a token is audited
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 1


def test_mount_console_works_on_a_bare_app() -> None:
    app = FastAPI()
    mount_console(app)
    with TestClient(app) as bare:
        assert bare.get("/console/views.js").status_code == 200


# ---------------------------------------------------------------- the files themselves

UNSAFE_JS = re.compile(
    r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"setAttribute\(\s*['\"](on|style)|localStorage|https?://"
)


@pytest.mark.parametrize("path", JS_FILES, ids=lambda p: p.name)
def test_scripts_never_write_markup_or_reach_elsewhere(path: Path) -> None:
    """Data goes into the page as text only; nothing loads from another origin; the
    token stays in session storage (never localStorage)."""
    assert UNSAFE_JS.findall(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", JS_FILES, ids=lambda p: p.name)
def test_module_imports_resolve_to_files_in_the_package(path: Path) -> None:
    imports = re.findall(r'from "\./([^"]+)"', path.read_text(encoding="utf-8"))
    for name in imports:
        assert (CONSOLE_DIR / name).is_file(), f"{path.name} imports missing {name}"


def test_index_has_no_inline_code_and_labels_every_control() -> None:
    html = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert " style=" not in html
    assert "<style" not in html
    assert "http://" not in html
    assert "https://" not in html
    ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html)
    labelled = set(re.findall(r'<label for="([^"]+)"', html))
    assert ids
    assert set(ids) <= labelled
    # Radio buttons are labelled by wrapping labels inside a fieldset with a legend.
    assert "<legend>Show times in</legend>" in html


def test_static_files_sit_directly_in_the_package_folder() -> None:
    """Package data is declared as api/console/* — no subfolders would be installed."""
    assert [p for p in CONSOLE_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"] == []


# ---------------------------------------------------------------- Chromium for the browser tests


def test_chromium_is_used_where_it_is(tmp_path: Path) -> None:
    binary = tmp_path / "chromium"
    binary.touch()
    assert find_or_install_chromium(binary, can_install=lambda: False, install=_never) == binary


def test_chromium_is_installed_when_missing_and_root(tmp_path: Path) -> None:
    binary = tmp_path / "chromium"
    assert (
        find_or_install_chromium(binary, can_install=lambda: True, install=binary.touch) == binary
    )


def test_without_chromium_and_root_the_browser_tests_skip_saying_how_to_install(
    tmp_path: Path,
) -> None:
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        find_or_install_chromium(tmp_path / "chromium", can_install=lambda: False, install=_never)


def test_an_install_that_leaves_no_binary_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="still missing"):
        find_or_install_chromium(
            tmp_path / "chromium", can_install=lambda: True, install=lambda: None
        )


def _never() -> None:
    raise AssertionError("must not install")
