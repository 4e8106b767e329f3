"""Sandbox mode: the same validation and codes as production, nothing persisted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from target_rjmetrics.local_api import DEMO_API_KEY
from tests.support.api import Api

if TYPE_CHECKING:
    from pathlib import Path

CASES: list[tuple[str, Any]] = [
    ("users", {"keys": ["id"], "id": 1}),
    ("users", [{"keys": ["id"], "id": i} for i in range(100)]),
    ("users", [{"keys": ["id"], "id": i} for i in range(101)]),
    ("users", []),
    ("users", {"id": 1}),
    ("bad-name", {"keys": ["id"], "id": 1}),
    ("users", {"keys": ["id"], "id": None}),
]


def _answers(api: Api) -> list[int]:
    codes = [api.authenticate().status_code, api.authenticate(key="wrong").status_code]
    codes += [api.push(table, body).status_code for table, body in CASES]
    codes.append(api.push("users", {"keys": ["id"], "id": 1}, key="wrong").status_code)
    return codes


def test_sandbox_answers_like_production_and_stores_nothing(
    make_server: Any, session: requests.Session, tmp_path: Path
) -> None:
    production = make_server()
    sandbox = make_server(sandbox=True, data_dir=tmp_path)
    expected = [200, 401, 201, 201, 400, 400, 400, 400, 400, 401]
    assert _answers(Api(production, session)) == expected
    assert _answers(Api(sandbox, session)) == expected
    assert production.tables(1) == {"users": 100}
    assert sandbox.tables(1) == {}
    assert sandbox.rows(1, "users") == []
    assert list(tmp_path.iterdir()) == []  # not even a database file
    assert all(e.sandbox for e in sandbox.request_log())
    assert not any(e.sandbox for e in production.request_log())


def test_one_process_serves_production_and_sandbox_on_two_ports(cli_server: Any, tmp_path: Path) -> None:
    srv = cli_server("--data-dir", str(tmp_path / "d"), "--sandbox-port", "0", "--credentials", "3:three")
    assert len(srv.ports) == 2
    sandbox_base = f"http://127.0.0.1:{srv.ports[1]}/v2"
    point = {"keys": ["id"], "id": 1}
    for base in (srv.base_url, sandbox_base):
        # Same credentials on both.
        assert requests.get(f"{base}/client/3/authenticate", params={"apikey": "three"}, timeout=5).status_code == 200
        assert (
            requests.get(f"{base}/client/1/authenticate", params={"apikey": DEMO_API_KEY}, timeout=5).status_code == 401
        )
    url = "{}/client/3/table/{}/data"
    assert (
        requests.post(
            url.format(sandbox_base, "only_sandbox"), params={"apikey": "three"}, json=point, timeout=5
        ).status_code
        == 201
    )
    assert (
        requests.post(url.format(srv.base_url, "prod"), params={"apikey": "three"}, json=point, timeout=5).status_code
        == 201
    )
    listing = requests.get(f"{srv.root_url}/_local/tables", timeout=5).json()
    assert listing == [{"client_id": 3, "table": "prod", "rows": 1}]
    sandbox_listing = requests.get(f"http://127.0.0.1:{srv.ports[1]}/_local/tables", timeout=5).json()
    assert sandbox_listing == []
