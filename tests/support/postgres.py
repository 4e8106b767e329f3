"""A throwaway PostgreSQL server from Debian's packages, on a free loopback port, for real-tap tests.

``initdb`` refuses to run as root, so when the tests run as root (CI does) the cluster belongs to
the ``postgres`` system user that Debian's package creates. Tests that need it skip, saying why,
when the server binaries are not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import typing as t
from pathlib import Path

import pytest

from tests.support.servers import free_port

#: Where Debian puts the server binaries of each major version.
_DEBIAN_BIN = Path("/usr/lib/postgresql")
USER = "tester"


def _bin_dir() -> Path | None:
    versions = sorted(_DEBIAN_BIN.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name), reverse=True)
    if versions:
        return versions[0].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory; :meth:`psql` runs SQL in it."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            pytest.skip("PostgreSQL's server is not installed (Debian package postgresql); .ci/run installs it")
        self._bin = bin_dir
        self.port = free_port()
        self._home = Path(tempfile.mkdtemp(prefix="rjm-pg-"))
        self._data = self._home / "data"
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and no 'postgres' user to run PostgreSQL as")
            shutil.chown(self._home, "postgres")
            self._run_as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self._data), "-A", "trust", "-U", USER, "--no-sync")
        options = f"-p {self.port} -k {self._home} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self._data), "-o", options, "-l", str(self._home / "log"), "-w", "start")

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._run_as, str(self._bin / program), *args], capture_output=True, text=True, check=True, timeout=120
        )

    def psql(self, sql: str) -> str:
        """Run SQL (stopping at the first error) and return what it printed."""
        psql = self._bin / "psql"
        command = [str(psql if psql.exists() else "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER]
        done = subprocess.run(
            [*command, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t"],
            input=sql,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout

    def tap_config(self) -> dict[str, t.Any]:
        """A tap-postgres config for this server."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": USER,
            "password": "unused",
            "database": "postgres",
            "filter_schemas": ["public"],
        }

    def stop(self) -> None:
        """Stop the server and delete its files."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (self._data / "postmaster.pid").exists():
            time.sleep(0.05)
        shutil.rmtree(self._home, ignore_errors=True)
