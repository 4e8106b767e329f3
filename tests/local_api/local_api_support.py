"""What the local Import API tests share: an HTTP helper, an error-body check, a CLI runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, LocalImportAPI

TIMEOUT = 10


class Api:
    """A thin HTTP helper bound to one server: the calls a client of the Import API makes."""

    def __init__(self, server: LocalImportAPI, session: requests.Session) -> None:
        self.server = server
        self.session = session

    def push(
        self,
        table: str,
        body: Any,
        *,
        client_id: int = DEMO_CLIENT_ID,
        key: str = DEMO_API_KEY,
        raw: bytes | None = None,
    ) -> requests.Response:
        url = f"{self.server.base_url}/client/{client_id}/table/{table}/data"
        if raw is not None:
            return self.session.post(
                url,
                params={"apikey": key},
                data=raw,
                headers={"Content-Type": "application/json"},
                timeout=TIMEOUT,
            )
        return self.session.post(url, params={"apikey": key}, json=body, timeout=TIMEOUT)

    def authenticate(self, client_id: int = DEMO_CLIENT_ID, key: str = DEMO_API_KEY) -> requests.Response:
        url = f"{self.server.base_url}/client/{client_id}/authenticate"
        return self.session.get(url, params={"apikey": key}, timeout=TIMEOUT)

    def local(self, path: str, method: str = "GET", **kwargs: Any) -> requests.Response:
        return self.session.request(
            method, f"{self.server.root_url}/_local/{path}", timeout=TIMEOUT, **kwargs
        )


def assert_error(response: requests.Response, status: int) -> list[str]:
    """Assert a JSON error body of ``status`` and return its reasons."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["reasons"], list) and body["reasons"]
    assert all(isinstance(r, str) for r in body["reasons"])
    return body["reasons"]


class CliServer:
    """``rjmetrics-local-api serve`` running as a subprocess (so it can be SIGKILLed)."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.ready = tmp / f"ready-{time.monotonic_ns()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RJMETRICS_LOCAL_API")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "target_rjmetrics.local_api", "serve", "--port", "0",
             "--ready-file", str(self.ready), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        deadline = time.monotonic() + 15
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                _, err = self.proc.communicate()
                raise RuntimeError(f"CLI server did not start: {err}")
            time.sleep(0.02)
        self.ports = [int(line) for line in self.ready.read_text().split()]
        self.root_url = f"http://127.0.0.1:{self.ports[0]}"
        self.base_url = f"{self.root_url}/v2"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=15)
