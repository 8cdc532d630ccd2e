"""A throwaway PostgreSQL cluster on a free loopback port (tests and benchmarks).

``initdb`` refuses to run as root, so when we are root the cluster is created and
started as the ``postgres`` user in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from eventlog.errors import ConfigError

_CANDIDATES = (
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
)


def find_bindir() -> Path:
    """Locate ``initdb``/``pg_ctl``; raise :class:`ConfigError` with a clear message if absent."""
    env = os.environ.get("BO_PG_BINDIR")
    candidates = [env] if env else []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += list(_CANDIDATES)
    for cand in candidates:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    raise ConfigError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql-15 "
        "(apt-get install postgresql-15) or set BO_PG_BINDIR"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    bindir: Path
    datadir: Path
    port: int
    user: str
    run_as: str | None

    def url(
        self, database: str = "postgres", user: str | None = None, password: str | None = None
    ) -> str:
        auth = user or self.user
        if password:
            auth += f":{password}"
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--", *args]
        return list(args)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._cmd(*args), capture_output=True, text=True, check=check)

    def start(self) -> None:
        log = self.datadir.parent / "postgres.log"
        self.run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self.run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-m",
            mode,
            "-w",
            "stop",
            check=False,
        )

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(sql.encode())


def _owner() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ConfigError("running as root and no 'postgres' user exists to run initdb") from exc
    return "postgres"


@contextlib.contextmanager
def throwaway_cluster(*, fsync: bool = False) -> Iterator[Cluster]:
    """Create, start, yield and finally destroy a cluster in a temporary directory."""
    bindir = find_bindir()
    run_as = _owner()
    base = Path(tempfile.mkdtemp(prefix="bo-pg-"))
    datadir = base / "data"
    if run_as:
        info = pwd.getpwnam(run_as)
        os.chown(base, info.pw_uid, info.pw_gid)
    user = "bo_owner"
    cluster = Cluster(bindir, datadir, free_port(), user, run_as)
    try:
        cluster.run(
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C",
        )
        with (datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"fsync = {'on' if fsync else 'off'}\nsynchronous_commit = off\n"
                "full_page_writes = off\nmax_connections = 200\nshared_buffers = 256MB\n"
            )
        for attempt in range(5):
            try:
                cluster.start()
                break
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise
                cluster.port = free_port()
                time.sleep(0.2)
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _has_c_utf8() -> bool:
    out = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False).stdout
    return any(line.lower() in ("c.utf8", "c.utf-8") for line in out.splitlines())
