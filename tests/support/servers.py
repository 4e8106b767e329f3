"""The local Import API for tests and benchmarks: in this process, or as a process of its own.

Both kinds answer the same questions (:class:`ImportAPIView`): what is stored and what the
server logged, so checks work on either.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import urllib.parse
import urllib.request
from pathlib import Path

from target_rjmetrics.local_api import DEMO_CLIENT_ID, LocalImportAPI, RequestLogEntry
from tests.support.processes import ChildProcess
from tests.support.targets import clean_env

#: Clock ticks per second of ``/proc/<pid>/stat`` CPU times.
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ImportAPIView(t.Protocol):
    """What a local server shows: its rows, its tables and its request log."""

    @property
    def base_url(self) -> str:
        """The API base URL, ending in ``/v2``."""
        ...

    def rows(self, client_id: int, table: str) -> list[dict[str, t.Any]]:
        """Stored points of a table, in first-insertion order."""
        ...

    def tables(self, client_id: int) -> dict[str, int]:
        """``{table: row count}`` of one client."""
        ...

    def request_log(self) -> list[RequestLogEntry]:
        """The request-log entries, ordered by ``seq``."""
        ...


def start_local_api(**kwargs: t.Any) -> LocalImportAPI:
    """A started in-process local server, logging point keys unless told otherwise.

    Args:
        **kwargs: ``LocalImportAPI`` arguments.

    Returns:
        The started server (the caller stops it).
    """
    kwargs.setdefault("log_point_keys", True)
    return LocalImportAPI(**kwargs).start()


def local_api_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m target_rjmetrics.local_api ARGS`` to its end, without the caller's server settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RJMETRICS_LOCAL_API")}
    return subprocess.run(
        [sys.executable, "-m", "target_rjmetrics.local_api", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def free_port() -> int:
    """A free loopback port (nothing listens on it once this returns)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``rjmetrics-local-api serve`` as a child process: killed (even ``-9``) and restarted at will.

    Args:
        workdir: Where ready files (and the data directory, if any) go.
        *args: More ``serve`` flags (``--in-memory``, ``--sandbox``, fault flags, ...).
        data_dir: The SQLite data directory (``--data-dir``); its rows stay readable after a stop.
        port: The port; 0 picks a free one at the first start (later starts reuse it).
        keep_log: Poll the request log every 0.1 s and keep every entry across kills and
            restarts (the log lives in the process): :meth:`request_log` returns what was kept.
        stderr_file: Where the server's standard error goes (default: kept in memory).
    """

    def __init__(
        self,
        workdir: Path,
        *args: str,
        data_dir: Path | None = None,
        port: int = 0,
        keep_log: bool = False,
        stderr_file: Path | None = None,
    ) -> None:
        """Configure the server; :meth:`start` starts it."""
        self.workdir = Path(tempfile.mkdtemp(prefix="api-", dir=workdir))
        self.data_dir = data_dir
        self.port = port
        self.ports: list[int] = []
        self.args = list(args)
        self.keep_log = keep_log
        self.stderr_file = stderr_file
        self.child: ChildProcess | None = None
        self.lives = 0
        self._kept: list[RequestLogEntry] = []
        self._seen: set[tuple[int, int]] = set()
        self._since = 0
        self._lock = threading.Lock()
        self._stop_poll = threading.Event()
        self._poller: threading.Thread | None = None

    # -- life ----------------------------------------------------------------------------

    def start(self, timeout: float = 20) -> ServerProcess:
        """Start the server and wait until it listens.

        Raises:
            RuntimeError: It exited or did not listen within ``timeout`` seconds.
        """
        ready = self.workdir / f"ready-{self.lives}"
        command = [
            sys.executable,
            "-m",
            "target_rjmetrics.local_api",
            "serve",
            "--port",
            str(self.port),
            "--ready-file",
            str(ready),
            *self.args,
        ]
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        self.child = ChildProcess(command, stderr_file=self.stderr_file, env=clean_env(), watch_memory=False)
        deadline = time.monotonic() + timeout
        while not (ready.exists() and ready.read_text().strip()):
            if not self.child.running() or time.monotonic() > deadline:
                self.child.kill()
                msg = f"the local server did not start (exit {self.child.exit_code}): {self.child.stderr[-1000:]}"
                raise RuntimeError(msg)
            time.sleep(0.02)
        self.ports = [int(line) for line in ready.read_text().split()]
        self.port = self.ports[0]
        self.lives += 1
        self._since = 0
        if self.keep_log:
            self._stop_poll.clear()
            self._poller = threading.Thread(target=self._poll_loop, daemon=True)
            self._poller.start()
        return self

    def running(self) -> bool:
        """Tell whether the server process is alive."""
        return self.child is not None and self.child.running()

    def kill(self, signum: int = signal.SIGKILL, timeout: float = 15) -> int:
        """Send ``signum`` and wait for the exit; return the exit code."""
        assert self.child is not None
        self._stop_polling()
        self.child.send_signal(signum)
        return self.child.wait(timeout)

    def kill9_after_settling(self, settle: float = 0.4) -> None:
        """Make every request fail, let accepted ones finish, read the log, then ``kill -9``.

        So no request the server accepted goes unrecorded in the kept log.
        """
        self.set_faults(error_rate=1.0, error_statuses=[503])
        time.sleep(settle)
        self._stop_polling()
        self._poll()
        self.kill(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server with SIGTERM (killing it if it does not exit); idempotent."""
        self._stop_polling()
        if self.child is None or self.child.exit_code is not None:
            return
        if self.keep_log and self.child.running():
            with contextlib.suppress(OSError):
                self._poll()
        self.child.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):  # killed by wait
            self.child.wait(15)

    @property
    def stdout(self) -> str:
        """What the server printed on standard output."""
        return self.child.stdout if self.child is not None else ""

    @property
    def stderr(self) -> str:
        """What the server printed on standard error (when not sent to a file)."""
        return self.child.stderr if self.child is not None else ""

    @property
    def exit_code(self) -> int | None:
        """The exit code once the process was reaped."""
        return self.child.exit_code if self.child is not None else None

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the running server has used."""
        assert self.child is not None
        fields = Path(f"/proc/{self.child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    # -- HTTP ----------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        """The status URL, e.g. ``http://127.0.0.1:8765``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:8765/v2``."""
        return f"{self.root_url}/v2"

    def local(self, method: str, path: str, body: t.Any = None, timeout: float = 60) -> t.Any:
        """Call ``/_local/{path}`` and return the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.root_url}/_local/{path}", data=data, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback only)
            return json.loads(response.read())

    def set_faults(self, **changes: t.Any) -> dict[str, t.Any]:
        """Change fault settings; return the settings now in force."""
        return t.cast("dict[str, t.Any]", self.local("PUT", "faults", changes))

    def request_log(self, since: int | None = None) -> list[RequestLogEntry]:
        """The request log: with ``keep_log``, every entry kept across lives; else the server's."""
        if self.keep_log:
            with self._lock:
                return [e for e in self._kept if since is None or e.seq > since]
        query = f"?since={since}" if since is not None else ""
        return [RequestLogEntry.from_dict(item) for item in self.local("GET", f"requests{query}")]

    def clear_request_log(self) -> int:
        """Empty the server's request log; return how many entries it held."""
        return int(self.local("DELETE", "requests")["cleared"])

    def _poll(self) -> None:
        """Read new request-log entries into the kept log.

        Entries are numbered at arrival but logged at completion, so a request can appear
        after a later-numbered one: each poll re-reads a window below the highest number seen.
        """
        new = self.local("GET", f"requests?since={max(0, self._since - 500)}", timeout=10)
        with self._lock:
            for entry in map(RequestLogEntry.from_dict, new):
                if (self.lives, entry.seq) in self._seen:
                    continue
                self._seen.add((self.lives, entry.seq))
                self._kept.append(entry)
                self._since = max(self._since, entry.seq)

    def _poll_loop(self) -> None:
        while not self._stop_poll.wait(0.1):
            with contextlib.suppress(OSError):
                self._poll()

    def _stop_polling(self) -> None:
        self._stop_poll.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
            self._poller = None

    # -- what is stored ------------------------------------------------------------------

    def _stored(self) -> LocalImportAPI:
        if self.data_dir is None:
            msg = "a stopped server without a data directory has nothing to read"
            raise RuntimeError(msg)
        return LocalImportAPI(data_dir=self.data_dir)  # reads the database file directly

    def rows(self, client_id: int, table: str) -> list[dict[str, t.Any]]:
        """Stored points of a table (over HTTP while running, else from the data directory)."""
        if self.running():
            path = f"tables/{client_id}/{urllib.parse.quote(table, safe='')}/rows?format=json"
            return t.cast("list[dict[str, t.Any]]", self.local("GET", path))
        return self._stored().rows(client_id, table)

    def tables(self, client_id: int = DEMO_CLIENT_ID) -> dict[str, int]:
        """``{table: row count}`` of one client (over HTTP while running, else from the data directory)."""
        if self.running():
            listing = self.local("GET", f"tables?client_id={client_id}")
            return {item["table"]: item["rows"] for item in listing}
        return self._stored().tables(client_id)
