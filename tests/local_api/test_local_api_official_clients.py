"""What the official client libraries and the docs do, replayed against the local server.

The clients build URLs by string formatting (no encoding), chunk data into requests of at
most 100 points, and expect 201; these tests do the same.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

    from target_rjmetrics.local_api import LocalImportAPI


def _push_in_chunks(session: requests.Session, url: str, data: list[dict[str, Any]], size: int = 100) -> list[int]:
    return [
        session.post(
            url, data=json.dumps(data[i : i + size]), headers={"Content-type": "application/json"}, timeout=10
        ).status_code
        for i in range(0, len(data), size)
    ]


def test_rjmetrics_py_authenticates_with_its_url_and_lands_144_points_in_two_posts(
    make_server: Any, session: requests.Session
) -> None:
    server: LocalImportAPI = make_server(credentials={12: "key-for-12"}, log_point_keys=True)
    url = server.base_url + "/client/" + str(12) + "/authenticate?apikey=" + "key-for-12"
    assert session.get(url, timeout=10).status_code == 200
    data = [{"keys": ["id"], "id": i, "email": f"u{i}@example.com"} for i in range(144)]
    url = f"{server.base_url}/client/12/table/users/data?apikey=key-for-12"
    assert _push_in_chunks(session, url, data) == [201, 201]
    posts = [e for e in server.request_log() if e.method == "POST"]
    assert [e.points for e in posts] == [100, 44]
    assert posts[1].key_values == [[i] for i in range(100, 144)]
    auth = [e for e in server.request_log() if e.path.endswith("/authenticate")]
    assert [e.path for e in auth] == ["/v2/client/12/authenticate"]
    assert server.tables(12) == {"users": 144}


def test_rjmetrics_ruby_1001_points_become_11_posts_and_1001_rows(
    server: LocalImportAPI, session: requests.Session
) -> None:
    data = [{"keys": ["id"], "id": i, "n": i * 2} for i in range(1001)]
    codes = _push_in_chunks(session, f"{server.base_url}/client/1/table/ruby/data?apikey=local-demo-key", data)
    assert codes == [201] * 11
    assert [e.points for e in server.request_log()] == [100] * 10 + [1]
    assert server.tables(1) == {"ruby": 1001}
    assert server.rows(1, "ruby")[-1] == {"id": 1000, "n": 2000}


def test_seed_docs_array_example_leaves_id_1_complete(server: LocalImportAPI, session: requests.Session) -> None:
    example = [
        {"keys": ["id"], "id": 1, "email": "joe@schmo.com", "status": "pending", "created_at": "2019-08-01 14:22:32"},
        {"keys": ["id"], "id": 2, "email": "anne@schmo.com", "status": "pending", "created_at": "2019-08-03 23:12:30"},
        {"keys": ["id"], "id": 1, "email": "joe@schmo.com", "status": "complete", "created_at": "2019-08-05 04:51:02"},
    ]
    url = f"{server.base_url}/client/1/table/users/data?apikey=local-demo-key"
    assert _push_in_chunks(session, url, example) == [201]
    rows = {r["id"]: r for r in server.rows(1, "users")}
    assert rows[1]["status"] == "complete"
    assert rows[1]["created_at"] == "2019-08-05 04:51:02"
    assert rows[2]["status"] == "pending"
    assert len(rows) == 2


def test_docs_sync_user_loop_one_record_per_request(server: LocalImportAPI, session: requests.Session) -> None:
    url = f"{server.base_url}/client/1/table/users/data?apikey=local-demo-key"
    users = [{"id": i, "email": f"{i}@x.com", "acquisition_source": "PPC"} for i in range(5)]
    for user in users:
        point = {"keys": ["id"], **user}
        response = session.post(url, data=json.dumps(point), headers={"Content-type": "application/json"}, timeout=10)
        assert response.status_code == 201
    assert server.rows(1, "users") == users
    assert [e.points for e in server.request_log()] == [1] * 5
