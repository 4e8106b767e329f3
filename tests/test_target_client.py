"""The HTTP client on real loopback sockets: what counts as a landing, bounded tries, the fate of failures.

The local server gives the statuses it can (429, 5xx, 4xx, dropped connections); a scripted
loopback server (``tests.support.scripted.ScriptedServer``) gives the rest: redirects, other 2xx,
answers that trickle in or never come, connections reset after the request was sent.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import typing as t

import pytest

from target_rjmetrics.client import CONNECT_RETRY_SECONDS_AT_START, RJMetricsClient
from target_rjmetrics.exceptions import (
    RJMetricsAPIError,
    RJMetricsAuthError,
    RJMetricsError,
    RJMetricsRetriesExhausted,
    RJMetricsStopped,
    RJMetricsUnexpectedAnswerError,
    RJMetricsUnreachableError,
)
from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, Faults, LocalImportAPI
from target_rjmetrics.transport import MAX_ANSWER_BYTES
from tests.support.checks import upserts
from tests.support.fakes import FakeClock
from tests.support.scripted import Reply, ScriptedServer
from tests.support.servers import free_port
from tests.support.tls import self_signed_cert

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BODY = b'[{"id": 1, "keys": ["id"]}]'
KEY = "k3y-Of-The-Test/42"


@pytest.fixture
def scripted() -> Iterator[t.Callable[..., ScriptedServer]]:
    """Factory of scripted loopback servers, all stopped at teardown."""
    servers: list[ScriptedServer] = []

    def make(script: t.Any, **kwargs: t.Any) -> ScriptedServer:
        server = ScriptedServer(script, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def clients() -> Iterator[t.Callable[..., RJMetricsClient]]:
    """Factory of clients, all closed at teardown."""
    made: list[RJMetricsClient] = []

    def make(base_url: str, **kwargs: t.Any) -> RJMetricsClient:
        kwargs.setdefault("client_id", DEMO_CLIENT_ID)
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("timeout", 5)
        kwargs.setdefault("max_retry_seconds", 0)  # one try, unless a test says otherwise
        client = RJMetricsClient(base_url=base_url, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def push_failure(client: RJMetricsClient, table: str = "users") -> RJMetricsError:
    """Push once and return the error that stopped it (the test fails if it raised nothing else)."""
    with pytest.raises(RJMetricsError) as info:
        client.push(table, BODY)
    return info.value


# -- only a 201 lands an upsert, only a 200 passes authenticate ---------------------------------------


@pytest.mark.parametrize("status", [200, 202, 204])
def test_an_upsert_answered_another_2xx_is_a_fatal_error_naming_what_answered(
    scripted: t.Any, clients: t.Any, status: int
) -> None:
    server = scripted(Reply(status=status, body=b""))
    client = clients(server.base_url, max_retry_seconds=30)

    error = push_failure(client)

    assert isinstance(error, RJMetricsUnexpectedAnswerError)
    assert error.status == status
    assert f"answered {status} instead of 201" in str(error)
    assert "proxy" in str(error) and "`api_url`" in str(error)
    assert len(server.requests) == 1, "an answer that is not a landing must not be retried as one"
    assert error.unknown_fate_at is not None, "whatever answered may have passed the request on"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_its_message_says_where_it_pointed(
    scripted: t.Any, clients: t.Any, status: int
) -> None:
    elsewhere = scripted(Reply(status=201))
    location = f"http://127.0.0.1:{elsewhere.port}/v2/client/1/table/users/data?apikey={KEY}&x=1"
    server = scripted(Reply(status=status, headers={"Location": location}, body=b""))
    client = clients(server.base_url)

    error = push_failure(client)

    assert isinstance(error, RJMetricsUnexpectedAnswerError)
    message = str(error)
    assert f"answered {status} with Location http://127.0.0.1:{elsewhere.port}/v2/client/1/table/users/data" in message
    assert "(query removed)" in message and "Set `api_url` to the final URL" in message
    assert KEY not in message and "apikey=" not in message
    assert elsewhere.connections == 0 and elsewhere.requests == []
    assert [m for m, _ in server.requests] == ["POST"]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (201, RJMetricsUnexpectedAnswerError),
        (204, RJMetricsUnexpectedAnswerError),
        (302, RJMetricsUnexpectedAnswerError),
        (401, RJMetricsAuthError),
    ],
)
def test_authenticate_passes_only_on_200(scripted: t.Any, clients: t.Any, status: int, error_type: type) -> None:
    server = scripted(Reply(status=status, headers={"Location": "http://127.0.0.1:9/v2"}, body=b"{}"))
    client = clients(server.base_url)

    with pytest.raises(error_type) as info:
        client.authenticate()

    assert f"answered {status}" in str(info.value)
    assert len(server.requests) == 1


def test_authenticate_answered_200_passes(scripted: t.Any, clients: t.Any) -> None:
    server = scripted(Reply(status=200, body=b'{"code": 200}'))
    clients(server.base_url).authenticate()
    assert [m for m, _ in server.requests] == ["GET"]


def test_a_404_on_authenticate_says_the_base_url_ends_in_v2_and_shows_the_url_tried(
    local_api: LocalImportAPI, clients: t.Any
) -> None:
    root = local_api.base_url.removesuffix("/v2")
    client = clients(root, api_key=DEMO_API_KEY)

    with pytest.raises(RJMetricsAPIError) as info:
        client.authenticate()

    message = str(info.value)
    assert info.value.status == 404
    assert f"GET {root}/client/{DEMO_CLIENT_ID}/authenticate?apikey=***" in message
    assert "ending in /v2 (e.g. https://connect.rjmetrics.com/v2)" in message
    assert DEMO_API_KEY not in message


# -- every try is bounded as a whole --------------------------------------------------------------


def test_an_answer_trickling_in_fails_the_try_within_request_timeout(scripted: t.Any, clients: t.Any) -> None:
    # One byte every 0.5 s: no single read waits as long as the 2 s timeout, so only a bound
    # on the whole try ends it (before the fix it took the server's 20 s).
    server = scripted(Reply(how="trickle", interval=0.5, bound=20))
    client = clients(server.base_url, timeout=2)

    started = time.monotonic()
    error = push_failure(client)
    took = time.monotonic() - started

    assert isinstance(error, RJMetricsRetriesExhausted)
    assert "timed out" in str(error) and "no complete answer within 2s" in str(error)
    assert 1.8 <= took < 4, f"the try took {took:.1f}s"
    assert error.unknown_fate_at is not None, "a try cut mid-answer may still be applied"


def test_an_answer_trickling_in_over_tls_is_bounded_too(
    scripted: t.Any, clients: t.Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # trust this server (requests reads it)
    server = scripted(Reply(how="trickle", interval=0.5, bound=20), tls=(cert, key))
    working = scripted(Reply(status=201), tls=(cert, key))

    assert clients(working.base_url).push("users", BODY) is None, "TLS to the scripted server must work"
    started = time.monotonic()
    error = push_failure(clients(server.base_url, timeout=2))
    took = time.monotonic() - started

    assert isinstance(error, RJMetricsRetriesExhausted)
    assert "no complete answer within 2s" in str(error)
    assert 1.8 <= took < 4, f"the try took {took:.1f}s"


def test_a_try_through_an_http_proxy_is_bounded_too(
    scripted: t.Any, clients: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = scripted(Reply(how="trickle", interval=0.5, bound=20))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    client = clients("http://rjmetrics-target-test.invalid:8765/v2", timeout=2)

    started = time.monotonic()
    error = push_failure(client)
    took = time.monotonic() - started

    assert [target.split("?")[0] for _, target in proxy.requests] == [
        "http://rjmetrics-target-test.invalid:8765/v2/client/1/table/users/data"
    ], "the request did not go through the proxy"
    assert "no complete answer within 2s" in str(error)
    assert 1.8 <= took < 4, f"the try took {took:.1f}s"
    assert error.unknown_fate_at is not None


def test_no_try_starts_after_max_retry_seconds_and_a_push_ends_within_it_plus_one_try(
    make_api: t.Any, clients: t.Any
) -> None:
    server = make_api(faults=Faults(error_rate=1.0, error_statuses=(500,), latency_ms=300))
    client = clients(server.base_url, api_key=DEMO_API_KEY, timeout=2, max_retry_seconds=1.5)

    started = time.monotonic()
    error = push_failure(client)
    took = time.monotonic() - started

    assert isinstance(error, RJMetricsRetriesExhausted)
    assert "still failing after retrying for up to 1.5s" in str(error)
    tries = upserts(server, status=None)
    assert len(tries) >= 2
    # The last try starts within 1.5 s of the first (plus the time a request takes to arrive).
    assert max(e.arrived for e in tries) - min(e.arrived for e in tries) < 1.5 + 0.3
    assert took < 1.5 + 2


def test_a_retry_after_beyond_max_retry_seconds_gives_up_at_once(make_api: t.Any, clients: t.Any) -> None:
    server = make_api(faults=Faults(rate_limit_rate=1.0, retry_after=60))
    client = clients(server.base_url, api_key=DEMO_API_KEY, max_retry_seconds=10)

    started = time.monotonic()
    error = push_failure(client)

    assert time.monotonic() - started < 2
    assert isinstance(error, RJMetricsRetriesExhausted)
    assert "asked to wait 60s more (Retry-After)" in str(error) and "`max_retry_seconds`" in str(error)
    assert len(upserts(server, status=None)) == 1


# -- a stop ends every wait at once, and nothing is sent after it -------------------------------------


def test_cancel_retries_ends_a_retry_after_3600_wait_at_once_and_nothing_is_sent_after_it(
    make_api: t.Any, clients: t.Any
) -> None:
    server = make_api(faults=Faults(rate_limit_rate=1.0, retry_after=3600))
    client = clients(server.base_url, api_key=DEMO_API_KEY, max_retry_seconds=7200)
    outcome: list[BaseException] = []

    def push() -> None:
        try:
            client.push("users", BODY)
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome.append(exc)

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    deadline = time.monotonic() + 10
    while not upserts(server, status=429) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert upserts(server, status=429), "the server never answered 429"
    time.sleep(0.2)  # now in the 3600 s wait

    cancelled_at = time.monotonic()
    client.cancel_retries()
    pusher.join(timeout=5)
    ended = time.monotonic()

    assert not pusher.is_alive(), "the wait did not end on cancel_retries()"
    assert ended - cancelled_at < 1
    assert isinstance(outcome[0], RJMetricsStopped)
    assert "not retried because the run is stopping" in str(outcome[0])
    with pytest.raises(RJMetricsStopped, match="not sent because the run is stopping"):
        client.push("users", BODY)
    time.sleep(0.5)
    assert len(upserts(server, status=None)) == 1, "a request was sent after the stop"


# -- the fate of each failed try -------------------------------------------------------------------------


def test_a_refused_connection_is_certain_and_names_host_and_port(clients: t.Any) -> None:
    port = free_port()
    client = clients(f"http://127.0.0.1:{port}/v2")

    error = push_failure(client)

    assert f"cannot connect to 127.0.0.1:{port} (connection refused)" in str(error)
    assert error.unknown_fate_at is None
    assert client.last_unknown_fate_at is None


def test_a_name_that_does_not_resolve_is_certain(clients: t.Any) -> None:
    client = clients("http://rjmetrics-target-test.invalid:8765/v2")

    error = push_failure(client)

    assert "cannot connect to rjmetrics-target-test.invalid:8765 (name not resolved)" in str(error)
    assert error.unknown_fate_at is None


def test_a_connect_timeout_is_certain(clients: t.Any) -> None:
    # A listening socket whose backlog is full: the kernel drops further SYNs, so connecting hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        error = push_failure(clients(f"http://127.0.0.1:{port}/v2", timeout=1))
    finally:
        for sock in [*fillers, listener]:
            sock.close()

    assert f"cannot connect to 127.0.0.1:{port} (no answer within 1s)" in str(error)
    assert error.unknown_fate_at is None


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("hang", "timed out"),
        ("close", "lost its connection before a complete answer"),
        ("reset", "lost its connection before a complete answer"),
    ],
)
def test_a_try_that_got_no_complete_answer_after_sending_is_of_unknown_fate(
    scripted: t.Any, clients: t.Any, how: str, says: str
) -> None:
    server = scripted(Reply(how=how, bound=10))
    client = clients(server.base_url, timeout=1)

    before = time.monotonic()
    error = push_failure(client)

    assert says in str(error)
    assert server.requests, "the request never reached the server"
    assert error.unknown_fate_at is not None and before < error.unknown_fate_at <= time.monotonic()
    assert client.last_unknown_fate_at == error.unknown_fate_at


@pytest.mark.parametrize(("status", "unknown"), [(502, True), (504, True), (429, False), (500, False), (503, False)])
def test_a_gateway_answer_is_of_unknown_fate_and_the_apis_own_refusals_are_certain(
    make_api: t.Any, clients: t.Any, status: int, unknown: bool
) -> None:
    faults = (
        Faults(rate_limit_rate=1.0, retry_after=0)
        if status == 429
        else Faults(error_rate=1.0, error_statuses=(status,))
    )
    server = make_api(faults=faults)
    client = clients(server.base_url, api_key=DEMO_API_KEY)

    error = push_failure(client)

    assert f"answered {status}" in str(error)
    assert (error.unknown_fate_at is not None) is unknown
    assert (client.last_unknown_fate_at is not None) is unknown


def test_a_permanent_refusal_is_certain_but_carries_an_earlier_unknown_try(make_api: t.Any, clients: t.Any) -> None:
    server = make_api(faults=Faults(error_rate=1.0, error_statuses=(504,)))
    client = clients(server.base_url, api_key=DEMO_API_KEY, max_retry_seconds=30)
    failures: list[str] = []

    def refuse_from_now_on(reason: str, _wait: float) -> None:
        failures.append(reason)
        server.set_faults(error_rate=0.0, fail_after=0, fail_status=400)

    with pytest.raises(RJMetricsAPIError) as info:
        client.push("users", BODY, on_retry=refuse_from_now_on)

    statuses = [e.status for e in upserts(server, status=None)]
    assert statuses == [504, 400]
    assert info.value.status == 400
    assert info.value.unknown_fate_at is not None, "the 504 before the 400 may still be applied"
    assert client.last_unknown_fate_at == info.value.unknown_fate_at


def test_push_returns_when_its_last_unknown_try_was_abandoned_and_none_after_a_clean_landing(
    make_api: t.Any, clients: t.Any
) -> None:
    server = make_api(faults=Faults(error_rate=1.0, error_statuses=(502,)))
    client = clients(server.base_url, api_key=DEMO_API_KEY, max_retry_seconds=30)

    def heal(_reason: str, _wait: float) -> None:
        server.set_faults(error_rate=0.0)

    before = time.monotonic()
    abandoned = client.push("users", BODY, on_retry=heal)

    assert abandoned is not None and before < abandoned < time.monotonic()
    assert [e.status for e in upserts(server, status=None)] == [502, 201]
    assert client.push("users", BODY) is None
    assert client.last_unknown_fate_at == abandoned, "a clean push must not move the last abandonment"


def test_last_unknown_fate_at_is_the_latest_over_pushes_from_many_threads(make_api: t.Any, clients: t.Any) -> None:
    server = make_api(faults=Faults(error_rate=1.0, error_statuses=(504,)))
    client = clients(server.base_url, api_key=DEMO_API_KEY)
    seen: list[float] = []
    lock = threading.Lock()

    def push() -> None:
        for _ in range(5):
            try:
                client.push("users", BODY)
            except RJMetricsRetriesExhausted as exc:
                with lock:
                    seen.append(t.cast("float", exc.unknown_fate_at))

    threads = [threading.Thread(target=push) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(seen) == 20 and all(s is not None for s in seen)
    assert client.last_unknown_fate_at == max(seen)


def test_the_dry_run_client_never_has_a_try_of_unknown_fate(tmp_path: Path) -> None:
    capture = RJMetricsClient(
        client_id=1, api_key=KEY, base_url="http://u:S3cretPass@h/v2", dry_run_file=str(tmp_path / "dry.jsonl")
    )
    try:
        assert capture.push("users", BODY) is None
        assert capture.last_unknown_fate_at is None
    finally:
        capture.close()
    written = (tmp_path / "dry.jsonl").read_text()
    # The URL as sent: its user and password travel as the Authorization header, never shown.
    assert "S3cretPass" not in written and '"url": "http://h/v2/client/1/table/users/data?apikey=***"' in written
    assert KEY not in written


# -- connecting: at start, and during a run ----------------------------------------------------------------


def test_authenticate_fails_soon_when_the_host_refuses_connections(clients: t.Any) -> None:
    # Real refused connections, an injected clock: the ~10 s of retries at start pass at once.
    port = free_port()
    clock = FakeClock()
    client = clients(f"http://127.0.0.1:{port}/v2", max_retry_seconds=300, clock=clock)

    started = clock.now()
    with pytest.raises(RJMetricsUnreachableError) as info:
        client.authenticate()

    assert len(clock.slept) >= 2, "a refused connection at start is retried"
    assert CONNECT_RETRY_SECONDS_AT_START / 2 <= clock.now() - started <= CONNECT_RETRY_SECONDS_AT_START + 5
    message = str(info.value)
    assert message.startswith(f"cannot connect to 127.0.0.1:{port} (connection refused)")
    assert "max_retry_seconds" not in message and "lost its connection" not in message


def test_a_push_retries_refused_connections_saying_so_and_lands_once_the_api_is_back(
    clients: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    client = clients(f"http://127.0.0.1:{port}/v2", api_key=DEMO_API_KEY, max_retry_seconds=30)
    server = LocalImportAPI(port=port, log_point_keys=True)
    starter = threading.Timer(1.5, server.start)
    starter.start()
    try:
        with caplog.at_level(logging.WARNING):
            assert client.push("users", BODY) is None, "a refused connection applied nothing"
    finally:
        starter.join()
        server.stop()

    assert f"cannot connect to 127.0.0.1:{port} (connection refused)" in caplog.text
    assert "Retrying upsert into table 'users'" in caplog.text


# -- what is shown: no secret, and a bounded part of the answer ----------------------------------------


def test_a_huge_error_answer_is_shown_bounded(scripted: t.Any, clients: t.Any) -> None:
    answer = {"code": 400, "message": "M" * 2000, "reasons": [f"reason {i} " + "R" * 1000 for i in range(40)]}
    server = scripted(Reply(status=400, body=json.dumps(answer).encode()))
    huge = scripted(Reply(status=400, body=b'{"message": "' + b"X" * 2_000_000 + b'"}'))

    error = push_failure(clients(server.base_url))
    message = str(error)
    assert isinstance(error, RJMetricsAPIError)
    assert len(message) < 3000, len(message)
    assert "reason 4 " in message and "reason 5 " not in message
    assert "and 35 more reasons" in message and "more characters" in message

    error = push_failure(clients(huge.base_url))
    assert isinstance(error, RJMetricsAPIError)
    assert len(str(error)) < 1000
    assert MAX_ANSWER_BYTES < 2_000_000


def test_a_malformed_header_line_in_a_201_is_still_a_landing_and_nothing_logs_the_key(
    scripted: t.Any, clients: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    head = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nthis line has no colon\r\nX-A: b\r\n\r\n"
    server = scripted(Reply(raw_head=head, body=b"{}"))

    with caplog.at_level(logging.DEBUG):
        assert clients(server.base_url).push("users", BODY) is None

    assert "urllib3" in caplog.text, "nothing was logged at DEBUG: the test proves nothing"
    assert KEY not in caplog.text and "k3y-Of-The-Test%2F42" not in caplog.text
