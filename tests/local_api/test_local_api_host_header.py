"""The Host-header check that keeps web pages out (DNS rebinding), over raw loopback HTTP."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import requests

from target_rjmetrics.local_api import DEMO_API_KEY, LocalImportAPI
from tests.support.api import assert_error

#: The address that binds every interface (what the wildcard test binds to).
WILDCARD = "0.0.0.0"  # noqa: S104


def _raw(server: LocalImportAPI, request: bytes) -> tuple[int, dict[str, Any] | None]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), json.loads(body) if body else None


def _get(server: LocalImportAPI, path: str, host: str | None) -> tuple[int, dict[str, Any] | None]:
    host_line = f"Host: {host}\r\n" if host is not None else ""
    return _raw(server, f"GET {path} HTTP/1.1\r\n{host_line}Connection: close\r\n\r\n".encode())


def _put_faults(server: LocalImportAPI, host: str) -> tuple[int, dict[str, Any] | None]:
    body = b'{"error_rate": 1.0}'
    return _raw(
        server,
        (
            f"PUT /_local/faults HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body,
    )


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "localhost.evil.example",
        "192.168.1.5:{port}",
        "0.0.0.0:{port}",
    ],
)
def test_a_rebound_host_name_cannot_change_faults_or_push_data(make_server: Any, host: str) -> None:
    server = make_server()
    host = host.format(port=server.port)
    status, body = _put_faults(server, host)
    assert status == 403 and body is not None
    assert f"Host {host!r} is not accepted" in body["reasons"][0]
    assert "DNS rebinding" in body["reasons"][0] and "--allow-host" in body["reasons"][0]
    assert server.faults.error_rate == 0.0
    point = b'{"keys":["id"],"id":1}'
    status, _ = _raw(
        server,
        (
            f"POST /v2/client/1/table/t/data?apikey={DEMO_API_KEY} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {len(point)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + point,
    )
    assert status == 403
    assert server.tables(1) == {}
    assert _get(server, "/_local/requests", host)[0] == 403
    [entry] = server.request_log()  # the refused API request is logged, /_local ones are not
    assert (entry.status, entry.path) == (403, "/v2/client/1/table/t/data")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "127.0.0.1",
        "localhost:{port}",
        "LOCALHOST",
        "127.0.0.2:{port}",
        "[::1]:{port}",
        "[::1]",
        None,
    ],
)
def test_loopback_hosts_and_a_missing_host_are_accepted(make_server: Any, host: str | None) -> None:
    server = make_server()
    assert _get(server, "/", None if host is None else host.format(port=server.port))[0] == 200


def test_a_request_with_two_host_headers_is_refused(make_server: Any) -> None:
    server = make_server()
    status, body = _raw(server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert status == 403 and body is not None and "more than one Host" in body["reasons"][0]


def test_the_targets_own_requests_pass(make_server: Any) -> None:
    # requests builds Host from the base URL: 127.0.0.1:PORT, as the target's client does.
    server = make_server()
    url = f"{server.base_url}/client/1/table/t/data"
    assert (
        requests.post(url, params={"apikey": DEMO_API_KEY}, json={"keys": ["id"], "id": 1}, timeout=10).status_code
        == 201
    )
    localhost = f"http://localhost:{server.port}/v2/client/1/authenticate"
    assert requests.get(localhost, params={"apikey": DEMO_API_KEY}, timeout=10).status_code == 200


def test_a_wildcard_bind_accepts_ip_literals_but_no_other_name(make_server: Any) -> None:
    server = make_server(host=WILDCARD)
    assert _get(server, "/", f"192.168.1.5:{server.port}")[0] == 200
    assert _get(server, "/", f"[fe80::1]:{server.port}")[0] == 200
    assert _get(server, "/", f"localhost:{server.port}")[0] == 200
    status, body = _get(server, "/", f"evil.example:{server.port}")
    assert status == 403 and body is not None and WILDCARD in body["reasons"][0]


def test_allowed_hosts_and_the_bind_name_are_accepted(make_server: Any) -> None:
    server = make_server(host="localhost", allowed_hosts=["Api.Internal"])
    assert _get(server, "/", f"api.internal:{server.port}")[0] == 200
    assert _get(server, "/", "localhost")[0] == 200
    assert _get(server, "/", "other.internal")[0] == 403


def test_a_refused_oversized_body_is_not_read(make_server: Any) -> None:
    server = make_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/client/1/table/t/data HTTP/1.1\r\nHost: evil.example\r\n"
            b"Content-Length: 10737418240\r\nExpect: 100-continue\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 403 ") and b"100 Continue" not in data


def test_the_cli_host_flags_are_applied(cli_server: Any) -> None:
    srv = cli_server("--in-memory", "--allow-host", "api.internal")
    for host, expected in [("api.internal", 200), ("evil.example", 403)]:
        response = requests.get(srv.root_url, headers={"Host": host}, timeout=10)
        assert response.status_code == expected
    assert_error(requests.get(f"{srv.root_url}/_local/faults", headers={"Host": "evil.example"}, timeout=10), 403)


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1.evil.example:80"])
def test_a_cross_site_page_cannot_post_even_to_127_0_0_1(make_server: Any, origin: str) -> None:
    # A "simple" cross-origin POST needs no preflight and carries a legitimate Host, but the
    # browser adds the page's Origin.
    server = make_server()
    url = f"{server.base_url}/client/1/table/t/data?apikey={DEMO_API_KEY}"
    response = requests.post(
        url, data=b'{"keys":["id"],"id":1}', headers={"Origin": origin, "Content-Type": "text/plain"}, timeout=10
    )
    reasons = assert_error(response, 403)
    assert f"Origin {origin!r} is not accepted" in reasons[0]
    assert server.tables(1) == {}
    same_site = requests.post(
        url, json={"keys": ["id"], "id": 1}, timeout=10, headers={"Origin": f"http://localhost:{server.port}"}
    )
    assert same_site.status_code == 201
