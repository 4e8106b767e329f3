"""Fuzzing: every answer is well-formed JSON with a 2xx/4xx status, or an injected fault.

Whatever arrives; with faults on, an injected fault is allowed too. Never a 500 from the
server's own bug.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from target_rjmetrics.local_api import DEMO_API_KEY, Faults, LocalImportAPI

if TYPE_CHECKING:
    from collections.abc import Iterator

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
field_names = st.sampled_from(["id", "a", "b", "keys", ""]) | st.text(max_size=6)
points = st.builds(
    lambda data, keys: {**data, **({"keys": keys} if keys is not None else {})},
    st.dictionaries(field_names, json_values, max_size=5),
    st.one_of(st.none(), st.lists(field_names, max_size=3), json_values),
)
bodies = st.one_of(
    points.map(json.dumps),
    st.lists(points, max_size=8).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
).map(lambda s: s.encode("utf-8", "surrogatepass")) | st.binary(max_size=200)
path_segments = st.one_of(
    st.sampled_from(
        [
            "v2",
            "client",
            "1",
            "2",
            "0",
            "table",
            "data",
            "authenticate",
            "users",
            "_local",
            "tables",
            "rows",
            "requests",
            "faults",
            "%2F",
            "..",
            "%00",
            "%E9",
            "",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#"), max_size=10),
)
paths = st.lists(path_segments, max_size=7).map(lambda segs: "/" + "/".join(segs))
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"])
queries = st.sampled_from(
    [
        "",
        f"apikey={DEMO_API_KEY}",
        "apikey=x",
        f"apikey={DEMO_API_KEY}&apikey=y",
        "apikey",
        "since=abc",
        "format=csv",
        "client_id=-1",
        "client_id=99999999999999999999",
    ]
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(str.strip)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Accept", "X-Fuzz", "Content-Encoding", "Expect", "Connection"]),
    header_values,
    max_size=3,
)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[LocalImportAPI]:
    with LocalImportAPI(log_point_keys=True) as server:
        yield server


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[LocalImportAPI]:
    faults = Faults(seed=3, error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, jitter_ms=2)
    with LocalImportAPI(faults=faults) as server:
        yield server


def _check(response: requests.Response, method: str, allowed_5xx: frozenset[int] = frozenset()) -> None:
    status = response.status_code
    assert 200 <= status < 500 or status in allowed_5xx, (status, response.text)
    assert "Content-Length" in response.headers
    if method == "HEAD":
        return
    if response.headers.get("Content-Type") == "application/json":
        body = response.json()
        if isinstance(body, dict) and "code" in body:
            assert body["code"] == status
            if status >= 400:
                assert body["reasons"] and all(isinstance(r, str) for r in body["reasons"])
    else:
        # Only /_local row dumps (jsonl/csv) are not JSON.
        assert response.url.split("?")[0].endswith("/rows"), response.headers


@pytest.mark.slow
@FUZZ
@given(body=bodies, table=st.sampled_from(["users", "t_1", "bad-name", "%2F"]))
def test_random_upsert_bodies_get_201_or_a_json_400(fuzz_server: LocalImportAPI, body: bytes, table: str) -> None:
    url = f"{fuzz_server.base_url}/client/1/table/{table}/data"
    response = requests.post(
        url, params={"apikey": DEMO_API_KEY}, data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code in (201, 400), response.text
    _check(response, "POST")


@FUZZ
@given(method=methods, path=paths, query=queries, hdrs=headers, body=st.one_of(st.none(), bodies))
def test_random_requests_get_well_formed_answers(
    fuzz_server: LocalImportAPI, method: str, path: str, query: str, hdrs: dict[str, str], body: bytes | None
) -> None:
    if method == "PUT" and path.rstrip("/") == "/_local/faults":
        return  # changing the faults is allowed there; the server would then fault on purpose
    url = f"{fuzz_server.root_url}{path}" + (f"?{query}" if query else "")
    response = requests.request(method, url, data=body, headers=hdrs, timeout=10)
    _check(response, method)


@FUZZ
@given(method=methods, body=bodies, authenticate=st.booleans())
def test_with_faults_on_every_answer_is_well_formed_or_an_injected_fault(
    faulty_server: LocalImportAPI, method: str, body: bytes, authenticate: bool
) -> None:
    path = "/v2/client/1/authenticate" if authenticate else "/v2/client/1/table/users/data"
    url = f"{faulty_server.root_url}{path}?apikey={DEMO_API_KEY}"
    try:
        response = requests.request(method, url, data=body, timeout=10)
    except requests.ConnectionError:
        assert faulty_server.request_log()[-1].fault == "drop"
        return
    _check(response, method, allowed_5xx=frozenset({500, 502, 503, 504}))
    if response.status_code >= 500 or response.status_code == 429:
        assert any(e.status == response.status_code and e.fault for e in faulty_server.request_log()[-3:])


@settings(max_examples=150, deadline=None)
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda m, p, v, h: f"{m} {p} {v}\r\n{h}\r\n".encode("latin-1"),
            methods,
            paths,
            st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/x", ""]),
            st.sampled_from(
                [
                    "",
                    "Content-Length: 5\r\n",
                    "Content-Length: -1\r\n",
                    "Content-Length: 1\r\nContent-Length: 2\r\n",
                    "Transfer-Encoding: chunked\r\n",
                    "Host: x\r\nExpect: 100-continue\r\nContent-Length: 99999999999\r\n",
                ]
            ),
        ),
    )
)
def test_raw_bytes_never_produce_a_5xx(fuzz_server: LocalImportAPI, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", fuzz_server.port), timeout=5) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if not data:
        return  # nothing parseable arrived; closing is a fine answer
    for answer in data.split(b"HTTP/1.1 ")[1:]:
        status = int(answer[:3])
        assert 100 <= status < 500, data[:300]
        if status >= 400 and not raw.startswith(b"HEAD"):  # HEAD answers carry no body
            head, _, rest = answer.partition(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert json.loads(rest[:length])["code"] == status
