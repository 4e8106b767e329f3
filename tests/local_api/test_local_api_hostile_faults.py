"""Hostile-network faults: substitute statuses and redirects, trickled answers, late ghosts."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest
import requests

from target_rjmetrics.local_api import DEMO_API_KEY, Faults, LocalImportAPI, RequestLogEntry
from tests.support.api import Api, assert_error

KEY_QUERY = f"apikey={DEMO_API_KEY}"


def _point(i: int, **fields: Any) -> dict[str, Any]:
    return {"keys": ["id"], "id": i, **fields}


def _api(make_server: Any, session: requests.Session, **faults: Any) -> Api:
    return Api(make_server(faults=Faults(**faults)), session)


def _push(api: Api, table: str, body: Any, timeout: float | tuple[float, float] = 10) -> requests.Response:
    url = f"{api.server.base_url}/client/1/table/{table}/data"
    return api.session.post(url, params={"apikey": DEMO_API_KEY}, json=body, timeout=timeout, allow_redirects=False)


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class _Listener:
    """A one-shot raw HTTP listener standing in for another host: it records what it is sent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                while b"\r\n\r\n" not in self.received:
                    self.received += conn.recv(65536)
                head, _, body = self.received.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.received = head + b"\r\n\r\n" + body
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


# -- substitute statuses and redirects --------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_upsert_redirect_points_to_another_host_with_the_query_and_stores_nothing(
    make_server: Any, session: requests.Session, status: int
) -> None:
    api = _api(make_server, session, upsert_status=status, redirect_url="http://other.example:9/base/")
    response = _push(api, "users", _point(1))
    assert response.status_code == status
    assert response.headers["Location"] == f"http://other.example:9/base/v2/client/1/table/users/data?{KEY_QUERY}"
    assert api.server.tables(1) == {}
    [entry] = api.server.request_log()
    assert (entry.status, entry.fault, entry.points) == (status, "upsert_status", 1)
    assert DEMO_API_KEY not in repr(entry)


def test_a_client_that_follows_a_307_sends_key_and_body_to_the_other_host(
    make_server: Any, session: requests.Session
) -> None:
    listener = _Listener()
    try:
        api = _api(make_server, session, upsert_status=307, redirect_url=f"http://127.0.0.1:{listener.port}")
        url = f"{api.server.base_url}/client/1/table/users/data"
        # What a naive client does (requests follows redirects by default).
        response = session.post(url, params={"apikey": DEMO_API_KEY}, json=_point(7), timeout=10)
        listener.thread.join(10)
    finally:
        listener.close()
    assert response.status_code == 200  # the other host's answer
    request_line = listener.received.split(b"\r\n", 1)[0].decode()
    assert request_line == f"POST /v2/client/1/table/users/data?{KEY_QUERY} HTTP/1.1"
    assert listener.received.endswith(json.dumps(_point(7)).encode())
    assert api.server.tables(1) == {}


def test_redirect_without_redirect_url_points_back_to_the_same_path(
    make_server: Any, session: requests.Session
) -> None:
    api = _api(make_server, session, upsert_status=302)
    assert _push(api, "users", _point(1)).headers["Location"] == f"/v2/client/1/table/users/data?{KEY_QUERY}"


@pytest.mark.parametrize("status", [200, 202, 203, 204])
def test_upsert_answered_with_another_2xx_stores_nothing(
    make_server: Any, session: requests.Session, status: int
) -> None:
    api = _api(make_server, session, upsert_status=status)
    response = _push(api, "users", [_point(1), _point(2)])
    assert response.status_code == status
    assert "Location" not in response.headers
    if status == 204:
        assert response.content == b"" and "Content-Length" not in response.headers
    else:
        assert "injected fault: upsert_status" in response.json()["reasons"][0]
    assert api.server.tables(1) == {}
    # The connection stays usable: the next request on it is answered too.
    api.server.set_faults(upsert_status=None)
    assert _push(api, "users", _point(3)).status_code == 201
    assert api.server.rows(1, "users") == [{"id": 3}]


def test_only_the_nth_upsert_of_one_table_is_hit(make_server: Any, session: requests.Session) -> None:
    api = _api(
        make_server,
        session,
        upsert_status=200,
        upsert_status_table="orders",
        upsert_status_skip=2,
        upsert_status_count=1,
    )
    codes = [
        (_push(api, "users", _point(i)).status_code, _push(api, "orders", _point(i)).status_code) for i in range(5)
    ]
    assert codes == [(201, 201), (201, 201), (201, 200), (201, 201), (201, 201)]
    assert [r["id"] for r in api.server.rows(1, "orders")] == [0, 1, 3, 4]
    assert len(api.server.rows(1, "users")) == 5


def test_invalid_upserts_are_not_counted_and_not_hit(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, upsert_status=204, upsert_status_count=1)
    assert_error(_push(api, "users", {"id": 1}), 400)  # no keys: the real check answers
    assert_error(api.push("users", _point(1), key="wrong"), 401)
    assert _push(api, "users", _point(1)).status_code == 204  # the first valid one is hit
    assert _push(api, "users", _point(1)).status_code == 201


def test_setting_a_fault_again_restarts_its_count(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, upsert_status=204, upsert_status_count=2)
    assert [_push(api, "t", _point(i)).status_code for i in range(3)] == [204, 204, 201]
    # Over HTTP, with the same value: the next two are hit again.
    assert api.local("faults", "PUT", json={"upsert_status_count": 2}).status_code == 200
    assert [_push(api, "t", _point(i)).status_code for i in range(3)] == [204, 204, 201]
    # Changing another fault does not restart this one.
    api.server.set_faults(error_rate=0.0)
    assert _push(api, "t", _point(9)).status_code == 201


def _hit_pattern(make_server: Any, seed: int) -> list[int]:
    server = make_server(faults=Faults(seed=seed, upsert_status=202, upsert_status_rate=0.3))
    with requests.Session() as s:
        return [_push(Api(server, s), "t", _point(i)).status_code for i in range(40)]


def test_hit_rate_is_seeded_and_leaves_the_classic_draws_alone(make_server: Any) -> None:
    first, again, other = (_hit_pattern(make_server, seed) for seed in (5, 5, 6))
    assert first == again and first != other
    assert 5 <= first.count(202) <= 20
    # The classic faults' sequence under a seed is the same with or without hostile faults on.
    classic = Faults(seed=7, error_rate=0.3, error_statuses=(503,))
    plain = make_server(faults=classic)
    hostile = make_server(
        faults=classic.replace(
            trickle_interval=0.001, trickle_rate=0.5, ghost_delay=0.0, ghost_answer=502, ghost_rate=0.2
        )
    )
    with requests.Session() as s:
        a = [_push(Api(plain, s), "t", _point(i)).status_code == 503 for i in range(30)]
        b = [_push(Api(hostile, s), "t", _point(i)).status_code == 503 for i in range(30)]
    assert a == b and any(a)


def test_authenticate_gets_its_own_substitute_status_and_redirect(make_server: Any, session: requests.Session) -> None:
    api = _api(
        make_server,
        session,
        authenticate_status=302,
        redirect_url="https://portal.example",
        authenticate_status_count=1,
    )
    response = api.session.get(
        f"{api.server.base_url}/client/1/authenticate",
        params={"apikey": DEMO_API_KEY},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"https://portal.example/v2/client/1/authenticate?{KEY_QUERY}"
    assert api.authenticate().status_code == 200  # count=1: only the first
    assert_error(api.authenticate(key="wrong"), 401)  # a bad key is still a 401
    assert _push(api, "t", _point(1)).status_code == 201  # upserts untouched
    assert [e.fault for e in api.server.request_log()] == ["authenticate_status", None, None, None]
    api.server.set_faults(authenticate_status=204)
    assert api.authenticate().status_code == 204


# -- trickle ------------------------------------------------------------------------------------------


def _raw_upsert(port: int, body: bytes, host: str = "127.0.0.1") -> bytes:
    return (
        f"POST /v2/client/1/table/users/data?{KEY_QUERY} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_trickle_sends_the_answer_one_byte_per_interval_and_stores_the_points(make_server: Any) -> None:
    interval = 0.03
    server = make_server(faults=Faults(trickle_interval=interval))
    received: list[tuple[float, bytes]] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_raw_upsert(server.port, json.dumps(_point(1)).encode()))
        while True:
            chunk = sock.recv(65536)
            received.append((time.monotonic(), chunk))
            data = b"".join(c for _, c in received)
            if b"\r\n\r\n" in data and data.endswith(b"}"):
                break
    data = b"".join(c for _, c in received)
    assert data.startswith(b"HTTP/1.1 201 Created\r\n")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1]) == {"code": 201, "message": "created"}
    # A byte per interval. The reading thread may be scheduled late (a busy machine), so a read
    # may find several bytes waiting: most reads still carry one byte, and the whole answer takes
    # at least its bytes' intervals (delays only make bytes later, never earlier).
    assert sum(len(c) == 1 for _, c in received) >= len(data) / 2, [len(c) for _, c in received]
    assert received[-1][0] - received[0][0] >= interval * (len(data) - 1) * 0.9
    assert server.rows(1, "users") == [{"id": 1}]
    assert server.request_log()[-1].fault == "trickle"


def test_a_per_read_timeout_longer_than_the_interval_never_fires(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, trickle_interval=0.02, trickle_table="slow")
    started = time.monotonic()
    response = _push(api, "slow", _point(1), timeout=(5, 0.5))
    elapsed = time.monotonic() - started
    assert response.status_code == 201 and response.json()["code"] == 201
    assert elapsed > 2.0  # four times the read timeout, yet no timeout
    started = time.monotonic()
    assert _push(api, "fast", _point(1)).status_code == 201  # another table: not trickled
    assert time.monotonic() - started < 1.0


def test_a_trickled_redirect_and_authenticate(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, trickle_interval=0.005, trickle_authenticate=True, upsert_status=303)
    response = _push(api, "t", _point(1))
    assert response.status_code == 303 and response.headers["Location"].endswith(KEY_QUERY)
    assert api.authenticate().status_code == 200
    assert [e.fault for e in api.server.request_log()] == ["upsert_status+trickle", "trickle"]


def test_trickle_thread_ends_soon_after_the_client_goes_away(make_server: Any, session: requests.Session) -> None:
    # The whole answer would take about 180 * 0.1 = 18 s.
    server = make_server(faults=Faults(trickle_interval=0.1, trickle_count=1))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_raw_upsert(server.port, json.dumps(_point(1)).encode()))
        assert sock.recv(1) == b"H"
    left = time.monotonic()

    def trickle_request_departed() -> bool:
        # A request's in_flight counts itself plus any request still being answered.
        assert Api(server, session).push("t", _point(2)).status_code == 201
        return bool(server.request_log()[-1].in_flight == 1)

    _wait_for(trickle_request_departed, timeout=5)
    assert time.monotonic() - left < 3.0


def test_stop_interrupts_a_trickle() -> None:
    server = LocalImportAPI(faults=Faults(trickle_interval=5.0)).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(_raw_upsert(server.port, json.dumps(_point(1)).encode()))
        assert sock.recv(1) == b"H"
    finally:
        started = time.monotonic()
        server.stop()
        stopped_in = time.monotonic() - started
    sock.close()
    assert stopped_in < 2.0


# -- ghosts -------------------------------------------------------------------------------------------


def test_a_ghost_held_past_the_client_timeout_overwrites_a_newer_version(
    make_server: Any, session: requests.Session
) -> None:
    delay = 2.5
    api = _api(make_server, session, ghost_delay=delay, ghost_table="users", ghost_count=1)
    first_attempt = time.time()
    with pytest.raises(requests.Timeout):
        _push(api, "users", _point(1, v="old"), timeout=(5, 0.5))
    # The client retries the same version, then sends a newer one: both land at once.
    assert _push(api, "users", _point(1, v="old")).status_code == 201
    assert _push(api, "users", _point(1, v="new")).status_code == 201
    assert _push(api, "orders", _point(1, v="x")).status_code == 201
    assert api.server.rows(1, "users") == [{"id": 1, "v": "new"}]

    def ghost_entry() -> RequestLogEntry:
        return next(e for e in api.server.request_log() if e.fault == "ghost")

    _wait_for(lambda: ghost_entry().ghost_applied is not None, timeout=delay + 5)
    assert api.server.rows(1, "users") == [{"id": 1, "v": "old"}]  # the ghost overwrote "new"
    ghost = ghost_entry()
    assert ghost.ghost_due is not None and ghost.ghost_applied is not None
    newer = [e for e in api.server.request_log() if e.status == 201 and e.table == "users"][-1]
    assert ghost.status == 0 and ghost.seq == 1
    assert ghost.completed - ghost.arrived < delay  # logged when the client gave up
    assert ghost.ghost_due == pytest.approx(ghost.arrived + delay)
    assert ghost.ghost_applied >= ghost.ghost_due > newer.completed
    assert ghost.ghost_applied - first_attempt < delay + 1.5
    assert api.server.rows(1, "orders") == [{"id": 1, "v": "x"}]


def test_a_ghost_answered_504_is_stored_after_the_delay(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, ghost_delay=0.6, ghost_answer=504)
    started = time.monotonic()
    response = _push(api, "users", [_point(1), _point(2)])
    assert time.monotonic() - started < 0.5
    assert_error(response, 504)
    assert api.server.tables(1) == {}
    _wait_for(lambda: api.server.tables(1) == {"users": 2}, timeout=5)
    assert time.monotonic() - started >= 0.6
    [entry] = api.server.request_log()
    assert (entry.status, entry.fault) == (504, "ghost") and entry.ghost_applied is not None


def test_a_dropped_ghost_closes_the_connection_and_is_stored_later(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, ghost_delay=0.3, ghost_answer="drop")
    with pytest.raises(requests.ConnectionError):
        _push(api, "users", _point(1))
    _wait_for(lambda: api.server.tables(1) == {"users": 1}, timeout=5)
    assert api.server.request_log()[0].status == 0


def test_a_held_ghost_whose_client_waits_gets_504_after_ghost_hold_max(
    make_server: Any, session: requests.Session
) -> None:
    api = _api(make_server, session, ghost_delay=0.0, ghost_hold_max=0.8)
    started = time.monotonic()
    response = _push(api, "users", _point(1))
    held = time.monotonic() - started
    assert_error(response, 504)
    assert 0.7 <= held < 3.0
    assert api.server.rows(1, "users") == [{"id": 1}]  # delay 0: applied while still held
    entry = api.server.request_log()[0]
    assert entry.ghost_applied is not None
    assert entry.ghost_applied <= entry.completed


def test_stop_drops_pending_ghosts_without_waiting(session: requests.Session) -> None:
    server = LocalImportAPI(faults=Faults(ghost_delay=60, ghost_answer=504, ghost_table="users")).start()
    api = Api(server, session)
    try:
        assert_error(api.push("users", _point(1)), 504)
        held = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        server.set_faults(ghost_answer="hold")
        held.sendall(_raw_upsert(server.port, json.dumps(_point(2)).encode()))

        def held_is_in_flight() -> bool:
            assert api.push("t", _point(3)).status_code == 201
            return server.request_log()[-1].in_flight == 2

        _wait_for(held_is_in_flight, timeout=5)
    finally:
        started = time.monotonic()
        server.stop()
        stopped_in = time.monotonic() - started
    held.close()
    assert stopped_in < 2.0
    assert "users" not in server.tables(1)
    ghosts = [e for e in server.request_log() if e.fault == "ghost"]
    assert [(e.status, e.ghost_applied) for e in ghosts] == [(504, None), (0, None)]


def test_ghost_counts_as_accepted_for_fail_after_but_a_substitute_status_does_not(
    make_server: Any, session: requests.Session
) -> None:
    api = _api(
        make_server,
        session,
        fail_after=2,
        upsert_status=200,
        upsert_status_count=1,
        ghost_delay=0.0,
        ghost_answer=502,
        ghost_skip=1,
        ghost_count=1,
    )
    # 1st: substitute 200 (not accepted); 2nd: ghost (accepted); 3rd: stored (accepted); 4th: 503.
    assert [_push(api, "t", _point(i)).status_code for i in range(4)] == [200, 502, 201, 503]
    _wait_for(lambda: api.server.tables(1) == {"t": 2}, timeout=5)


@pytest.mark.parametrize(
    "changes",
    [
        {"upsert_status": 201},
        {"upsert_status": 404},
        {"authenticate_status": 200},
        {"upsert_status": "302"},
        {"upsert_status_table": "a-b"},
        {"redirect_url": "ftp://x"},
        {"redirect_url": "http://x/?a=1"},
        {"trickle_interval": 0},
        {"trickle_interval": 61},
        {"trickle_authenticate": 1},
        {"ghost_delay": -1},
        {"ghost_answer": "later"},
        {"ghost_answer": 404},
        {"ghost_hold_max": 0},
        {"ghost_rate": 1.5},
        {"ghost_skip": -1},
        {"trickle_count": -1},
    ],
)
def test_invalid_hostile_settings_are_refused(
    make_server: Any, session: requests.Session, changes: dict[str, Any]
) -> None:
    api = _api(make_server, session)
    before = api.local("faults").json()
    assert_error(api.local("faults", "PUT", json=changes), 400)
    assert api.local("faults").json() == before
    with pytest.raises(ValueError, match=next(iter(changes))):  # the message names the setting
        Faults(**changes)


def test_hostile_faults_never_touch_local_endpoints_or_the_status_endpoint(
    make_server: Any, session: requests.Session
) -> None:
    api = _api(
        make_server,
        session,
        upsert_status=302,
        authenticate_status=302,
        trickle_interval=1.0,
        trickle_authenticate=True,
    )
    started = time.monotonic()
    assert session.get(api.server.root_url, timeout=5).status_code == 200
    assert api.local("tables").status_code == 200
    assert api.local("faults").json()["trickle_interval"] == 1.0
    assert time.monotonic() - started < 1.0


def test_cli_flags_set_every_hostile_fault(cli_server: Any) -> None:
    srv = cli_server(
        "--in-memory",
        "--seed",
        "4",
        "--upsert-status",
        "307",
        "--upsert-status-rate",
        "0.5",
        "--upsert-status-skip",
        "1",
        "--upsert-status-count",
        "2",
        "--upsert-status-table",
        "orders",
        "--authenticate-status",
        "204",
        "--authenticate-status-rate",
        "0.75",
        "--authenticate-status-skip",
        "3",
        "--authenticate-status-count",
        "4",
        "--redirect-url",
        "http://other.example",
        "--trickle-interval",
        "0.5",
        "--trickle-rate",
        "0.25",
        "--trickle-skip",
        "5",
        "--trickle-count",
        "6",
        "--trickle-table",
        "slow",
        "--trickle-authenticate",
        "--ghost-delay",
        "0.3",
        "--ghost-answer",
        "504",
        "--ghost-hold-max",
        "9",
        "--ghost-rate",
        "1",
        "--ghost-skip",
        "0",
        "--ghost-count",
        "1",
        "--ghost-table",
        "users",
    )
    faults = requests.get(f"{srv.root_url}/_local/faults", timeout=10).json()
    expected = {
        "upsert_status": 307,
        "upsert_status_rate": 0.5,
        "upsert_status_skip": 1,
        "upsert_status_count": 2,
        "upsert_status_table": "orders",
        "authenticate_status": 204,
        "authenticate_status_rate": 0.75,
        "authenticate_status_skip": 3,
        "authenticate_status_count": 4,
        "redirect_url": "http://other.example",
        "trickle_interval": 0.5,
        "trickle_rate": 0.25,
        "trickle_skip": 5,
        "trickle_count": 6,
        "trickle_table": "slow",
        "trickle_authenticate": True,
        "ghost_delay": 0.3,
        "ghost_answer": 504,
        "ghost_hold_max": 9.0,
        "ghost_rate": 1.0,
        "ghost_skip": 0,
        "ghost_count": 1,
        "ghost_table": "users",
    }
    assert {k: faults[k] for k in expected} == expected
    url = f"{srv.base_url}/client/1/table/users/data"
    response = requests.post(url, params={"apikey": DEMO_API_KEY}, json=_point(1), timeout=10)
    assert response.status_code == 504
    _wait_for(lambda: requests.get(f"{srv.root_url}/_local/tables/1/users/rows", timeout=10).json() == [{"id": 1}])
    # "off"/"none" switch a fault off from the command line too.
    off = cli_server("--in-memory", "--ghost-delay", "off", "--ghost-answer", "drop", "--upsert-status", "none")
    faults = requests.get(f"{off.root_url}/_local/faults", timeout=10).json()
    assert (faults["ghost_delay"], faults["ghost_answer"], faults["upsert_status"]) == (None, "drop", None)


def test_cli_refuses_a_bad_hostile_setting_at_start(cli_server: Any) -> None:
    with pytest.raises(RuntimeError, match="ghost_answer must be"):
        cli_server("--in-memory", "--ghost-delay", "1", "--ghost-answer", "later")
