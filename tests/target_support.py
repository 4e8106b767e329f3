"""What the target's tests share: Singer input builders, target runners, and expectations."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, LocalImportAPI

TARGET_BIN = Path(sys.executable).with_name("target-rjmetrics")


def schema(stream: str, properties: dict[str, t.Any], keys: list[str] | None = None) -> dict[str, t.Any]:
    """A SCHEMA message."""
    message: dict[str, t.Any] = {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": properties},
    }
    message["key_properties"] = keys if keys is not None else []
    return message


def record(stream: str, **values: t.Any) -> dict[str, t.Any]:
    """A RECORD message."""
    return {"type": "RECORD", "stream": stream, "record": values}


def state(value: t.Any) -> dict[str, t.Any]:
    """A STATE message."""
    return {"type": "STATE", "value": value}


def lines(messages: t.Iterable[dict[str, t.Any] | str]) -> str:
    """Singer input text: messages as JSON lines (strings are taken as raw lines)."""
    return "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)


USERS_SCHEMA = schema(
    "users",
    {
        "id": {"type": "integer"},
        "email": {"type": "string"},
        "acquisition_source": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"]},
        "created_at": {"type": ["string", "null"], "format": "date-time"},
    },
    ["id"],
)


def users(n: int, *, stream: str = "users", version: str = "v1", start: int = 1) -> list[dict[str, t.Any]]:
    """``n`` user records with ids from ``start``."""
    return [
        record(stream, id=i, email=f"user{i}@example.com", acquisition_source="PPC", status=version)
        for i in range(start, start + n)
    ]


@dataclass
class Run:
    """The outcome of one run of the target."""

    exit_code: int
    stdout: str
    stderr: str
    states: list[t.Any] = field(default_factory=list)

    @property
    def output(self) -> str:
        """Everything the target printed."""
        return self.stdout + self.stderr


def base_config(server: LocalImportAPI, **overrides: t.Any) -> dict[str, t.Any]:
    """Settings that point the target at a local server with the demo credentials."""
    config: dict[str, t.Any] = {
        "client_id": DEMO_CLIENT_ID,
        "api_key": DEMO_API_KEY,
        "api_url": server.base_url,
        "max_retry_seconds": 20,
        # The local server applies nothing late unless a test asks for ghosts; a short window
        # keeps the protection exercised without stalling tests whose faults leave fates unknown.
        "late_apply_seconds": 2,
        "request_timeout": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any ``TARGET_RJMETRICS_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_RJMETRICS_")}
    env.update(extra)
    return env


def run_cli(
    config: dict[str, t.Any],
    messages: t.Iterable[dict[str, t.Any] | str] | str,
    *,
    args: t.Sequence[str] = (),
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> Run:
    """Run ``target-rjmetrics`` as a process, feeding ``messages`` on standard input."""
    text = messages if isinstance(messages, str) else lines(messages)
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp, "config.json")
        config_path.write_text(json.dumps(config))
        proc = subprocess.run(
            [str(TARGET_BIN), "--config", str(config_path), *args],
            input=text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or clean_env(),
            check=False,
        )
    return Run(proc.returncode, proc.stdout, proc.stderr, parse_states(proc.stdout))


def run_in_process(config: dict[str, t.Any], messages: t.Iterable[dict[str, t.Any] | str] | str) -> Run:
    """Run the target in this process; an exception is re-raised after output is captured."""
    from target_rjmetrics.target import TargetRJMetrics

    text = messages if isinstance(messages, str) else lines(messages)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        target = TargetRJMetrics(config=config, validate_config=True)
        target.listen(io.StringIO(text))
    return Run(0, out.getvalue(), err.getvalue(), parse_states(out.getvalue()))


def parse_states(stdout: str) -> list[t.Any]:
    """The STATE values a target wrote (one JSON value per line)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def landed_by_id(server: LocalImportAPI, table: str, client_id: int = DEMO_CLIENT_ID) -> dict[t.Any, dict]:
    """Rows of a table keyed by their ``id``."""
    return {row["id"]: row for row in server.rows(client_id, table)}


def upserts(server: LocalImportAPI, *, table: str | None = None, status: int | None = 201) -> list[dict]:
    """Upsert requests from the server's log, optionally filtered by table and status."""
    return [
        entry
        for entry in server.request_log()
        if entry["method"] == "POST"
        and (table is None or entry["table"] == table)
        and (status is None or entry["status"] == status)
    ]


class LiveTarget:
    """``target-rjmetrics`` as a running process: feed it lines, watch STATE as it is written.

    Each STATE line is stamped with the time it was read, which is after the target wrote
    it, so a STATE stamped before the data it covers had landed proves a lie.
    """

    def __init__(self, config: dict[str, t.Any], tmp_path: Path) -> None:
        import threading
        import time

        self._time = time
        config_path = tmp_path / "live-config.json"
        config_path.write_text(json.dumps(config))
        self.proc = subprocess.Popen(
            [str(TARGET_BIN), "--config", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        self.states: list[tuple[float, t.Any]] = []
        self.stderr = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                with self._lock:
                    self.states.append((self._time.time(), json.loads(line)))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def send(self, messages: t.Iterable[dict[str, t.Any] | str]) -> None:
        """Write messages to the target's standard input."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(lines(messages))
        self.proc.stdin.flush()

    def wait_for_state(self, predicate: t.Callable[[t.Any], bool], timeout: float) -> float | None:
        """Wait until a written STATE satisfies ``predicate``; return when it was read."""
        deadline = self._time.monotonic() + timeout
        while True:
            with self._lock:
                for stamp, value in self.states:
                    if predicate(value):
                        return stamp
            if self._time.monotonic() >= deadline:
                return None
            self._time.sleep(0.02)

    def close_input(self, timeout: float = 60) -> int:
        """End the input and wait for the exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.finish(timeout)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the process to exit and for its output to be read."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self._err_reader.join(timeout=10)
        return code

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def landed_keys_by(server: LocalImportAPI, table: str, moment: float) -> set[t.Any]:
    """Single-key values of the points that had landed in ``table`` by ``moment`` (epoch seconds)."""
    landed: set[t.Any] = set()
    for entry in upserts(server, table=table):
        if entry["completed"] <= moment:
            landed.update(values[0] for values in entry["key_values"])
    return landed


# -- a scripted loopback HTTP server, for answers the local server cannot give ------------------


@dataclass
class Reply:
    """How a :class:`ScriptedServer` answers one request.

    ``how`` is ``answer`` (status, headers, body), ``trickle`` (the same answer one byte every
    ``interval`` seconds, for at most ``bound`` seconds), ``hang`` (read the request, then say
    nothing for ``bound`` seconds), ``close`` (read the request, close without an answer) or
    ``reset`` (read the request, then reset the connection).
    """

    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"code": 201, "message": "created"}'
    how: str = "answer"
    interval: float = 0.5
    bound: float = 30.0
    raw_head: bytes | None = None  # sent as is instead of the status line and headers


class ScriptedServer:
    """A hand-written HTTP/1.1 server on a free loopback port (TLS with ``tls=(cert, key)``).

    ``script(method, target)`` chooses each reply; every request is recorded in ``requests`` as
    ``(method, target)`` with the query. Every wait is bounded, and ``stop()`` ends them all.
    """

    def __init__(
        self,
        script: t.Callable[[str, str], Reply] | Reply,
        *,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        import socketserver
        import ssl
        import threading

        self.script = script if callable(script) else (lambda _m, _t, reply=script: reply)
        self.requests: list[tuple[str, str]] = []
        self.connections = 0
        self._stopping = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                sock = self.request
                sock.settimeout(10)
                if tls is not None:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    context.load_cert_chain(str(tls[0]), str(tls[1]))
                    try:
                        sock = context.wrap_socket(sock, server_side=True)
                    except (OSError, ssl.SSLError):
                        return
                reader = sock.makefile("rb")
                try:
                    while not outer._stopping.is_set():
                        if not outer._serve_one(sock, reader):
                            return
                except OSError:
                    return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """The ``/v2`` base URL of this server."""
        return f"{self.scheme}://127.0.0.1:{self.port}/v2"

    def _serve_one(self, sock: t.Any, reader: t.Any) -> bool:
        import http.client
        import socket
        import struct

        line = reader.readline(65536)
        if not line:
            return False
        method, target = line.decode("latin-1").split(" ")[:2]
        length = 0
        while True:
            header = reader.readline(65536)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            reader.read(length)
        self.requests.append((method, target))
        reply = self.script(method, target)
        if reply.how == "close":
            return False
        if reply.how == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if reply.how == "hang":
            self._stopping.wait(reply.bound)
            return False
        head = reply.raw_head
        if head is None:
            headers = {"Content-Type": "application/json", "Content-Length": str(len(reply.body)), **reply.headers}
            phrase = http.client.responses.get(reply.status, "Unknown")
            head = f"HTTP/1.1 {reply.status} {phrase}\r\n".encode() + b"".join(
                f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items()
            ) + b"\r\n"
        data = head + reply.body
        if reply.how == "trickle":
            import time

            ends = time.monotonic() + reply.bound
            for i in range(len(data)):
                if time.monotonic() >= ends or self._stopping.wait(reply.interval):
                    return False
                sock.sendall(data[i : i + 1])
            return True
        sock.sendall(data)
        return True

    def stop(self) -> None:
        """End every wait, stop serving and close the port."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
