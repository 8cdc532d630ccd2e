"""Command output: one JSON object with ``--json``, a readable line otherwise; exit codes."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from typer._click.exceptions import ClickException as TyperClickException
from typer._click.exceptions import NoArgsIsHelpError

from eventlog.errors import BoError, CheckFailed, ConfigError, UsageError

EXIT_OK, EXIT_CHECK, EXIT_USAGE = 0, 1, 2


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as one JSON object, or as the human rendering."""
    if as_json:
        sys.stdout.write(orjson.dumps(data, default=str).decode() + "\n")
    elif human is not None:
        sys.stdout.write(human(data).rstrip("\n") + "\n")
    else:
        sys.stdout.write(
            "\n".join(f"{k}: {v}" for k, v in data.items()) + "\n"
            if isinstance(data, dict)
            else f"{data}\n"
        )
    sys.stdout.flush()


def error_line(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    sys.stderr.write(f"error: {first}\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (worker pools shut down,
    transactions roll back, locks released) — by default Python just dies, leaving forked
    workers behind. Commands that stop gracefully on SIGTERM (``bo consume``, ``bo
    project``, ``bo serve``) install their own handler over this one."""


_terminated: list[bool] = []  # SIGTERM arrived (typer turns the interrupt into Exit(130))


def _terminate(_signum: int, _frame: Any) -> None:
    _terminated.append(True)
    raise Terminated


def _exit(code: int) -> None:
    """Exit with ``code``; an interrupt that SIGTERM caused exits 143 (128 + 15), not 130."""
    if code == 130 and _terminated:
        error_line("terminated")
        sys.exit(143)
    sys.exit(code)


def run_app(app: Callable[..., Any]) -> None:
    """Run a typer app; turn every failure into one line and exit code 2 or 1.

    typer 0.29 raises its vendored click's exceptions (``typer._click``), so those are
    the ones mapped here, once for both console scripts.
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = app(standalone_mode=False)
    except typer.Exit as exc:
        _exit(exc.exit_code)
    except typer.Abort:
        if not _terminated:
            error_line("aborted")
        _exit(130)
    except NoArgsIsHelpError as exc:  # bare ``bo`` or ``bo log``: the help, exit 2
        sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
        sys.exit(EXIT_USAGE)
    except TyperClickException as exc:
        error_line(exc.format_message())
        sys.exit(EXIT_USAGE)
    except CheckFailed as exc:
        error_line(str(exc))
        sys.exit(EXIT_CHECK)
    except (ConfigError, UsageError) as exc:
        error_line(str(exc))
        sys.exit(EXIT_USAGE)
    except (OperationalError, DBAPIError) as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        error_line(f"database error: {detail}")
        sys.exit(EXIT_USAGE)
    except psycopg.Error as exc:  # raw psycopg use (golden scratch databases, backfill)
        error_line(f"database error: {exc}")
        sys.exit(EXIT_USAGE)
    except BoError as exc:
        error_line(str(exc))
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        error_line(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        _exit(130)
    _exit(result if isinstance(result, int) else EXIT_OK)


class Reporter:
    """Progress on a TTY (rich bar with rate and ETA); nothing until the summary otherwise."""

    def __init__(self, description: str, total: float | None, *, enabled: bool) -> None:
        self._progress: Progress | None = None
        self._task: Any = None
        if enabled and sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),  # stdout holds only the result (--json)
                transient=True,
            )
            self._task = self._progress.add_task(description, total=total, rate="")

    def advance(self, amount: float, *, rate: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=amount, rate=rate)

    def set_total(self, total: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    @contextmanager
    def running(self) -> Iterator[Reporter]:
        if self._progress is None:
            yield self
            return
        with self._progress:
            yield self
