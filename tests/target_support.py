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
