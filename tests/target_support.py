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
