"""The admin console: static HTML, CSS and JavaScript modules served at ``/console``.

No build step and no CDN: the files sit next to this module (package data) and are
read from the installed package when asked for. Every response carries a strict
Content-Security-Policy — scripts, styles and API calls only from this origin, no
inline code — so data the page shows can never run as code, even if a rendering
bug slipped through (the page itself only ever writes data with ``textContent``).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse, Response

CONSOLE_PATH: Final = "/console"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # The files change with the package; always revalidate so an upgrade shows at once.
    "Cache-Control": "no-cache",
}

MEDIA_TYPES: Final = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml",
}

# Only flat file names with a known static extension: no paths, no dot files, and
# never this package's Python source.
_ASSET_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(html|css|js|svg)")


def read_asset(name: str) -> tuple[bytes, str] | None:
    """The bytes and media type of the console file ``name``, or ``None`` if there is none."""
    match = _ASSET_NAME.fullmatch(name)
    if match is None:
        return None
    asset = resources.files(__name__).joinpath(name)
    if not asset.is_file():
        return None
    return asset.read_bytes(), MEDIA_TYPES[match.group(1)]


def asset_response(name: str) -> Response:
    """Serve one console file with the security headers, or a 404."""
    found = read_asset(name)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no console file {name!r}")
    body, media_type = found
    return Response(content=body, media_type=media_type, headers=SECURITY_HEADERS)


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/console/`` (``/console`` redirects there).

    The routes stay out of the OpenAPI document: they are a page, not the API.
    """

    @app.api_route(CONSOLE_PATH, methods=["GET", "HEAD"], include_in_schema=False)
    def console_root() -> RedirectResponse:
        # Relative, so the page also works behind a proxy that adds a path prefix.
        return RedirectResponse("console/", status_code=307)

    @app.api_route(f"{CONSOLE_PATH}/", methods=["GET", "HEAD"], include_in_schema=False)
    def console_index() -> Response:
        return asset_response("index.html")

    @app.api_route(f"{CONSOLE_PATH}/{{name}}", methods=["GET", "HEAD"], include_in_schema=False)
    def console_asset(name: str) -> Response:
        return asset_response(name)
