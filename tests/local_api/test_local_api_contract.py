"""Every rule and response-code row of the Import API contract, over real loopback HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any

import pytest
import requests

from target_rjmetrics.local_api import DEMO_API_KEY, Faults, LocalImportAPI
from tests.support.api import Api, assert_error

pytestmark = pytest.mark.smoke

USER = {"keys": ["id"], "id": 1, "email": "joe@schmo.com", "status": "pending"}


# -- status and authentication ---------------------------------------------------------------


def test_status_endpoint_answers_200_json_on_the_bare_host(api: Api) -> None:
    response = api.session.get(api.server.root_url, timeout=5)
    assert response.status_code == 200
    assert response.json()["code"] == 200


def test_authenticate_accepts_the_demo_key(api: Api) -> None:
    response = api.authenticate()
    assert response.status_code == 200
    assert response.json()["code"] == 200


@pytest.mark.parametrize(
    "query", ["apikey=wrong", "", "apikey=", "APIKEY=local-demo-key", "apikey=local-demo-key&apikey=local-demo-key"]
)
def test_authenticate_refuses_missing_wrong_or_repeated_keys(api: Api, query: str) -> None:
    url = f"{api.server.base_url}/client/1/authenticate?{query}"
    reasons = assert_error(api.session.get(url, timeout=5), 401)
    assert not any("local-demo-key" in r or "wrong" in r for r in reasons)


def test_unknown_query_parameters_are_ignored(api: Api) -> None:
    url = f"{api.server.base_url}/client/1/authenticate?apikey={DEMO_API_KEY}&verbose=1"
    assert api.session.get(url, timeout=5).status_code == 200


def test_key_of_one_client_is_refused_on_another_clients_path(make_server: Any, session: requests.Session) -> None:
    server = make_server(credentials={1: "key-one", 2: "key-two"})
    api = Api(server, session)
    assert api.authenticate(1, "key-one").status_code == 200
    assert api.authenticate(2, "key-two").status_code == 200
    assert_error(api.authenticate(2, "key-one"), 401)
    assert_error(api.authenticate(3, "key-one"), 401)
    assert_error(api.push("users", USER, client_id=2, key="key-one"), 401)
    assert api.push("users", USER, client_id=1, key="key-one").status_code == 201
    assert api.push("users", {**USER, "id": 2}, client_id=2, key="key-two").status_code == 201
    assert api.push("orders", {**USER, "id": 3}, client_id=2, key="key-two").status_code == 201
    # Each client sees only its own tables and points.
    assert server.tables(1) == {"users": 1}
    assert server.tables(2) == {"orders": 1, "users": 1}
    assert server.rows(1, "users")[0]["id"] == 1
    assert server.rows(2, "users")[0]["id"] == 2


# -- upsert: success and semantics ----------------------------------------------------------


def test_upsert_of_one_object_answers_201_created_and_stores_it(api: Api) -> None:
    response = api.push("users", USER)
    assert response.status_code == 201
    assert response.json() == {"code": 201, "message": "created"}
    assert api.server.rows(1, "users") == [{k: v for k, v in USER.items() if k != "keys"}]


def test_keys_are_kept_as_metadata_not_as_data(api: Api) -> None:
    api.push("users", USER)
    assert "keys" not in api.server.rows(1, "users")[0]
    assert api.server.rows(1, "users", with_keys=True)[0]["keys"] == ["id"]


def test_a_point_with_known_key_values_replaces_the_stored_one_whole(api: Api) -> None:
    assert api.push("users", {"keys": ["id"], "id": 1, "a": 1, "b": 2}).status_code == 201
    assert api.push("users", {"keys": ["id"], "id": 1, "a": 3}).status_code == 201
    assert api.server.rows(1, "users") == [{"id": 1, "a": 3}]


def test_within_one_array_the_later_point_wins_and_first_seen_order_holds(api: Api) -> None:
    body = [
        {"keys": ["id"], "id": 1, "v": "first"},
        {"keys": ["id"], "id": 2, "v": "only"},
        {"keys": ["id"], "id": 1, "v": "last"},
    ]
    assert api.push("t", body).status_code == 201
    assert api.server.rows(1, "t") == [{"id": 1, "v": "last"}, {"id": 2, "v": "only"}]


def test_composite_keys_identify_points_by_all_their_values(api: Api) -> None:
    body = [
        {"keys": ["a", "b"], "a": 1, "b": "x", "v": 1},
        {"keys": ["a", "b"], "a": 1, "b": "y", "v": 2},
        {"keys": ["a", "b"], "a": 1, "b": "x", "v": 3},
    ]
    assert api.push("t", body).status_code == 201
    assert api.server.rows(1, "t") == [{"a": 1, "b": "x", "v": 3}, {"a": 1, "b": "y", "v": 2}]


def test_equal_json_numbers_name_the_same_point_but_strings_do_not(api: Api) -> None:
    api.push("t", {"keys": ["id"], "id": 1, "v": "int"})
    api.push("t", {"keys": ["id"], "id": 1.0, "v": "float"})
    api.push("t", {"keys": ["id"], "id": "1", "v": "string"})
    assert [r["v"] for r in api.server.rows(1, "t")] == ["float", "string"]


def test_exactly_100_points_are_accepted(api: Api) -> None:
    body = [{"keys": ["id"], "id": i} for i in range(100)]
    assert api.push("t", body).status_code == 201
    assert api.server.tables(1) == {"t": 100}


def test_any_json_value_is_stored_as_given(api: Api) -> None:
    point = {
        "keys": ["id"],
        "id": "a",
        "nested": {"x": [1, {"y": None}]},
        "f": 1.5,
        "b": True,
        "ts": "2019-08-01 14:22:32",
        "u": "\u00e9\u4e2d",
    }
    assert api.push("t", point).status_code == 201
    assert api.server.rows(1, "t") == [{k: v for k, v in point.items() if k != "keys"}]


def test_exactly_5_mib_is_accepted(api: Api) -> None:
    skeleton = json.dumps({"keys": ["id"], "id": 1, "pad": ""}, separators=(",", ":"))
    pad = "x" * (5 * 1024 * 1024 - len(skeleton))
    raw = json.dumps({"keys": ["id"], "id": 1, "pad": pad}, separators=(",", ":")).encode()
    assert len(raw) == 5 * 1024 * 1024
    assert api.push("t", None, raw=raw).status_code == 201


# -- upsert: the 400 rows ----------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes, str | None]] = [
    ("not json", b"{keys: [id]}", None),
    ("truncated json", b'[{"keys": ["id"], "id": 1}', None),
    ("json string", b'"hello"', None),
    ("json number", b"42", None),
    ("json null", b"null", None),
    ("empty body", b"", None),
    ("array of non-objects", b'[{"keys": ["id"], "id": 1}, 5]', "point 1"),
    ("empty array", b"[]", None),
    ("101 points", json.dumps([{"keys": ["id"], "id": i} for i in range(101)]).encode(), None),
    ("no keys", b'{"id": 1}', "point 0"),
    ("keys not array", b'{"keys": "id", "id": 1}', "point 0"),
    ("keys empty", b'{"keys": [], "id": 1}', "point 0"),
    ("keys not strings", b'{"keys": [1], "id": 1}', "point 0"),
    ("key field missing", b'[{"keys": ["id"], "id": 1}, {"keys": ["id"]}]', "point 1"),
    ("key value null", b'[{"keys": ["id"], "id": 1}, {"keys": ["id"], "id": null}]', "point 1"),
    ("key value object", b'{"keys": ["id"], "id": {"a": 1}}', "point 0"),
    ("key value array", b'[{"keys":["id"],"id":1},{"keys":["id"],"id":2},{"keys":["id"],"id":[3]}]', "point 2"),
    ("NaN", b'{"keys": ["id"], "id": 1, "x": NaN}', None),
    ("Infinity overflow", b'{"keys": ["id"], "id": 1, "x": 1e999}', None),
    ("invalid utf-8", b'{"keys": ["id"], "id": "\xff"}', None),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, None),
]


@pytest.mark.parametrize(("body", "point"), [(b, p) for _, b, p in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES])
def test_invalid_bodies_are_400_naming_the_point_and_store_nothing(api: Api, body: bytes, point: str | None) -> None:
    reasons = assert_error(api.push("t", None, raw=body), 400)
    if point is not None:
        assert any(r.startswith(f"{point}:") for r in reasons), reasons
    assert api.server.tables(1) == {}


def test_a_request_is_atomic_one_bad_point_stores_none(api: Api) -> None:
    body = [{"keys": ["id"], "id": i} for i in range(50)] + [{"id": 50}]
    reasons = assert_error(api.push("t", body), 400)
    assert reasons == ["point 50: has no 'keys' field"]
    assert api.server.rows(1, "t") == []


@pytest.mark.parametrize(
    "table", ["users%2F..", "users%2f..%2f..", "a-b", "a%20b", "a.b", "%C3%A9", "users%00", "a%0A", "%25", ""]
)
def test_bad_table_names_are_400_even_when_percent_encoded(api: Api, table: str) -> None:
    reasons = assert_error(api.push(table, USER), 400)
    assert any("table name" in r for r in reasons)
    assert api.server.tables(1) == {}


def test_percent_encoded_valid_table_name_is_decoded(server: LocalImportAPI) -> None:
    # http.client sends the path exactly as written (requests would normalise "%65" first).
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(
            "POST",
            f"/v2/client/1/table/us%65rs_2/data?apikey={DEMO_API_KEY}",
            body=json.dumps(USER),
            headers={"Content-Type": "application/json"},
        )
        assert conn.getresponse().status == 201
    finally:
        conn.close()
    assert server.tables(1) == {"users_2": 1}
    assert server.request_log()[-1].path == "/v2/client/1/table/us%65rs_2/data"


def test_body_over_5_mib_is_413_and_stores_nothing(api: Api) -> None:
    raw = b'{"keys":["id"],"id":1,"pad":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    reasons = assert_error(api.push("t", None, raw=raw), 413)
    assert "5242880" in reasons[0]
    assert api.server.tables(1) == {}
    # The session still works afterwards (the refused connection was closed cleanly).
    assert api.push("t", USER).status_code == 201


def test_huge_declared_length_is_refused_without_reading_the_body(server: LocalImportAPI) -> None:
    # The client announces 10 GiB and waits for "100 Continue": it must get 413 at once.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/client/1/table/t/data?apikey=local-demo-key HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10737418240\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == 413


def test_post_without_content_length_is_411(server: LocalImportAPI) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/client/1/table/t/data?apikey=local-demo-key HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\n\r\n"
        )
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 411 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == 411


def test_chunked_upload_is_411(api: Api) -> None:
    def chunks() -> Any:
        yield json.dumps(USER).encode()

    url = f"{api.server.base_url}/client/1/table/t/data"
    response = api.session.post(url, params={"apikey": DEMO_API_KEY}, data=chunks(), timeout=5)
    assert_error(response, 411)
    assert api.server.tables(1) == {}


@pytest.mark.parametrize(
    "path",
    [
        "/v2",
        "/v2/",
        "/v2/client/1",
        "/v2/client/1/authenticate/",
        "/v2/client/0/authenticate",
        "/v2/client/-1/authenticate",
        "/v2/client/abc/authenticate",
        "/v2/client/01/authenticate",
        "/v1/client/1/authenticate",
        "/v2/client/1/table/t",
        "/v2/client/1/table/t/data/",
        "/v2/client/1/table/t/data/x",
        "/v2//client/1/authenticate",
        "/favicon.ico",
        "/_localx",
    ],
)
def test_unknown_paths_are_404(api: Api, path: str) -> None:
    response = api.session.get(f"{api.server.root_url}{path}?apikey={DEMO_API_KEY}", timeout=5)
    assert_error(response, 404)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/", "GET"),
        ("DELETE", "/", "GET"),
        ("POST", "/v2/client/1/authenticate", "GET"),
        ("GET", "/v2/client/1/table/t/data", "POST"),
        ("PUT", "/v2/client/1/table/t/data", "POST"),
        ("PATCH", "/v2/client/1/table/t/data", "POST"),
        ("HEAD", "/v2/client/1/table/t/data", "POST"),
    ],
)
def test_wrong_method_on_known_path_is_405_with_allow(api: Api, method: str, path: str, allow: str) -> None:
    response = api.session.request(method, f"{api.server.root_url}{path}?apikey={DEMO_API_KEY}", json=USER, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    if method != "HEAD":
        assert_error(response, 405)
    assert api.server.tables(1) == {}


def test_too_many_requests_in_flight_is_429_with_retry_after(make_server: Any) -> None:
    server = make_server(faults=Faults(max_in_flight=2, latency_ms=300, retry_after=3))
    results: list[requests.Response] = []
    lock = threading.Lock()

    def push(i: int) -> None:
        with requests.Session() as s:
            r = Api(server, s).push("t", {"keys": ["id"], "id": i})
        with lock:
            results.append(r)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    limited = [r for r in results if r.status_code == 429]
    created = [r for r in results if r.status_code == 201]
    assert len(limited) + len(created) == 6
    assert limited and created
    # Every accepted request arrived with at most 2 in flight; every refused one above it.
    log = server.request_log()
    assert all(e.in_flight <= 2 for e in log if e.status == 201)
    assert all(e.in_flight > 2 and e.fault == "max_in_flight" for e in log if e.status == 429)
    assert all(r.headers["Retry-After"] == "3" for r in limited)
    assert server.tables(1) == {"t": len(created)}


def test_error_bodies_never_contain_the_api_key(make_server: Any, session: requests.Session) -> None:
    secret = "s3cr3t-key-value"
    server = make_server(credentials={7: secret})
    api = Api(server, session)
    texts = [
        api.push("t", USER, client_id=7, key=secret + "x").text,
        api.push("bad-name", USER, client_id=7, key=secret).text,
        api.push("t", {"id": 1}, client_id=7, key=secret).text,
        session.get(f"{server.root_url}/nope?apikey={secret}", timeout=5).text,
        repr(server.request_log()),
    ]
    assert not any(secret in t for t in texts)


# -- HTTP plumbing -------------------------------------------------------------------------------


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_keep_alive_serves_several_requests_on_one_connection(server: LocalImportAPI) -> None:
    body = json.dumps(USER).encode()
    request = (
        b"POST /v2/client/1/table/t/data?apikey=local-demo-key HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request + request.replace(b"/t/", b"/u/"))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.count(b"HTTP/1.1 201 ") == 2
    assert answer.count(b"HTTP/1.1 200 ") == 1
    assert answer.count(b"Content-Length: ") == 3
    assert server.tables(1) == {"t": 1, "u": 1}


def test_malformed_request_line_gets_a_json_400(server: LocalImportAPI) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        answer = _read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["code"] == 400
