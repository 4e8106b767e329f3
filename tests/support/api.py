"""A small HTTP client of one local server (the calls an Import API client makes), and an error-body check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, LocalImportAPI

if TYPE_CHECKING:
    import requests

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
        return self.session.request(method, f"{self.server.root_url}/_local/{path}", timeout=TIMEOUT, **kwargs)


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
