"""``bo demo``: the one-command demo (the work itself is in :mod:`bo.demo`)."""

from __future__ import annotations

from typing import Annotated

import typer

from bo import demo
from bo.output import EXIT_OK, emit
from bo.wiring import bootstrap, check_port_free


def register(app: typer.Typer) -> None:
    """Add ``bo demo`` to ``app``."""
    app.command("demo")(demo_command)


def demo_command(
    reset: Annotated[
        bool, typer.Option("--reset", help="Delete the embedded SQLite database first.")
    ] = False,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8000,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Prepare and print, but do not serve.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> int:
    """Migrate, load the sample, catch up, print tokens and curl lines, then serve the API.

    Re-running reuses the database; --reset starts over. Ctrl-C stops cleanly.
    """
    c = bootstrap()  # logs as every command writes them: one JSON object a line, on stderr
    if not no_serve:
        check_port_free(host, port)
    base_url = f"http://{host}:{port}"
    report = demo.prepare(c, reset=reset)
    emit(report.as_dict(base_url), as_json, lambda _d: demo.render(report, base_url))
    if no_serve:
        c.close()
        return EXIT_OK
    return demo.serve(c, host, port)
