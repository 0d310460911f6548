"""A throwaway PostgreSQL server for the multi-worker tests: initdb + pg_ctl in a temp folder.

As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root); as
another user it runs as that user. It listens on 127.0.0.1 on a free port with trust
authentication (loopback only, a throwaway cluster), and is stopped at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port

PG_BINARIES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
               "/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")


def _binary(name: str) -> str:
    for folder in PG_BINARIES:
        path = Path(folder, name)
        if path.is_file():
            return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} is not installed: `make test` installs the Debian "
                    "package postgresql (apt-get install -y postgresql)", pytrace=False)
    return found


class PgServer:
    """One PostgreSQL cluster; ``dsn(database)`` for a database created with ``create``."""

    def __init__(self, *, durable: bool = False) -> None:
        # The tests' cluster skips fsync (speed; a test never cuts the power). A benchmark
        # against SQLite passes durable=True: fsync on, as SQLite's commits are synced.
        self.durable = durable
        self.base = Path(tempfile.mkdtemp(prefix="aimgw-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.base, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=self.base)

    def start(self) -> None:
        done = self._run(_binary("initdb"), "-D", str(self.data), "-A", "trust", "-U",
                         "postgres", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            pytest.fail(f"initdb failed: {done.stderr}", pytrace=False)
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                   f"-c fsync={'on' if self.durable else 'off'} -c max_connections=100")
        done = self._run(_binary("pg_ctl"), "-D", str(self.data), "-l",
                         str(self.base / "server.log"), "-o", options, "-w", "-t", "30",
                         "start")
        if done.returncode != 0:
            log = (self.base / "server.log").read_text(errors="replace") \
                if (self.base / "server.log").exists() else ""
            pytest.fail(f"pg_ctl start failed: {done.stderr}\n{log}", pytrace=False)

    def create(self, database: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        return self.dsn(database)

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


_counter = iter(range(1_000_000))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgServer]:
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(pg_cluster: PgServer) -> str:
    """A fresh, empty database on the session's cluster."""
    return pg_cluster.create(f"aimgw_{os.getpid()}_{next(_counter)}_{int(time.time())}")
