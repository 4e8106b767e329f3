"""What each outcome of a try means, and the retry policy, through a scripted transport and a moved clock.

No socket and no real wait: the transport seam gives each try its outcome and the clock seam lets
retry budgets pass at once. (The network transport itself is tested against loopback servers in
tests/test_target_client.py.)
"""

from __future__ import annotations

import http.client
import socket
import ssl
import typing as t
from dataclasses import dataclass

import pytest
import urllib3

from target_rjmetrics.client import CONNECT_RETRY_SECONDS_AT_START, RJMetricsClient
from target_rjmetrics.exceptions import (
    RJMetricsAPIError,
    RJMetricsAuthError,
    RJMetricsError,
    RJMetricsRequestTooLargeError,
    RJMetricsRetriesExhausted,
    RJMetricsStopped,
    RJMetricsUnexpectedAnswerError,
    RJMetricsUnreachableError,
)
from target_rjmetrics.lifecycle import Stop
from tests.support.fakes import FakeClock, MockTransport, Outcome, answer, no_answer

KEY = "k3y/For+Unit=Tests"
BASE = "https://api.example.test/v2"


def _client(
    script: t.Any, clock: FakeClock | None = None, stop: Stop | None = None, **options: t.Any
) -> RJMetricsClient:
    clock = clock or FakeClock()
    return RJMetricsClient(
        client_id=12,
        api_key=KEY,
        base_url=BASE,
        timeout=5,
        max_retry_seconds=options.pop("max_retry_seconds", 60),
        transport=MockTransport(script, clock=clock, try_seconds=options.pop("try_seconds", 0.1)),
        clock=clock,
        stop=stop,
        **options,
    )


def refused() -> Outcome:
    error = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return no_answer(error)


def unresolved() -> Outcome:
    return no_answer(
        urllib3.exceptions.NameResolutionError("api.example.test", None, socket.gaierror(-2, "Name not known"))  # type: ignore[arg-type]
    )


def read_timeout() -> Outcome:
    return no_answer(urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out."), reached=True)  # type: ignore[arg-type]


def cut_at_deadline() -> Outcome:
    return no_answer(urllib3.exceptions.ProtocolError("Connection aborted."), reached=True, expired=True)


def dropped() -> Outcome:
    return no_answer(
        urllib3.exceptions.ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed")), reached=True
    )


def untrusted() -> Outcome:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate")
    return no_answer(urllib3.exceptions.SSLError(cause))


def tunnel_refused(status: str) -> Outcome:
    return no_answer(
        urllib3.exceptions.ProxyError("Unable to connect to proxy", OSError(f"Tunnel connection failed: {status}"))
    )


@dataclass
class Case:
    """A script of outcomes and what the push must do with it."""

    script: list[Outcome]
    raises: type[BaseException] | None = None
    words: tuple[str, ...] = ()
    tries: int | None = None
    unknown_fate: bool = False


CASES: dict[str, Case] = {
    "201": Case([answer(201)], tries=1),
    "200 is not a landing": Case(
        [answer(200)], RJMetricsUnexpectedAnswerError, ("answered 200 instead of 201",), 1, True
    ),
    "302 is never followed": Case(
        [answer(302, Location=f"https://elsewhere.test/x?apikey={KEY}")],
        RJMetricsUnexpectedAnswerError,
        ("answered 302 with Location https://elsewhere.test/x (query removed)", "never followed"),
        1,
        True,
    ),
    "400 with reasons": Case(
        [answer(400, '{"code": 400, "message": "Bad Request", "reasons": ["point 0: keys missing"]}')],
        RJMetricsAPIError,
        ("answered 400 Bad Request (point 0: keys missing)",),
        1,
    ),
    "401": Case([answer(401, '{"message": "Unauthorized"}')], RJMetricsAuthError, ("answered 401",), 1),
    "404 names /v2": Case([answer(404)], RJMetricsAPIError, ("ending in /v2",), 1),
    "413": Case([answer(413)], RJMetricsRequestTooLargeError, ("answered 413",), 1),
    "429 then 201": Case([answer(429, Retry_After="3"), answer(201)], tries=2),
    "500 then 201": Case([answer(500), answer(201)], tries=2),
    "502 then 201: may apply late": Case([answer(502), answer(201)], tries=2, unknown_fate=True),
    "504 then 201: may apply late": Case([answer(504), answer(201)], tries=2, unknown_fate=True),
    "503 for good": Case([answer(503)], RJMetricsRetriesExhausted, ("still failing after retrying for up to 60s",)),
    "refused, then 201": Case([refused(), answer(201)], tries=2),
    "read timeout after sending: may apply late": Case([read_timeout(), answer(201)], tries=2, unknown_fate=True),
    "cut at the deadline": Case([cut_at_deadline(), answer(201)], tries=2, unknown_fate=True),
    "dropped after sending": Case([dropped(), answer(201)], tries=2, unknown_fate=True),
    "an untrusted certificate": Case([untrusted()], RJMetricsError, ("failed TLS verification",), 1),
    "a proxy refusing the tunnel (407)": Case(
        [tunnel_refused("407 Proxy Authentication Required")], RJMetricsError, ("HTTPS_PROXY", "407"), 1
    ),
    "a proxy's 502 for the tunnel is retried": Case([tunnel_refused("502 Bad Gateway"), answer(201)], tries=2),
    "Retry-After past the budget stops at once": Case(
        [answer(429, Retry_After="600")], RJMetricsRetriesExhausted, ("asked to wait 600s",), 1
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_outcome_of_a_push(name: str) -> None:
    case = CASES[name]
    clock = FakeClock()
    client = _client(case.script, clock)
    transport = t.cast("MockTransport", client._transport)
    if case.raises is None:
        abandoned = client.push("users", b"[]")
        assert (abandoned is not None) is case.unknown_fate, abandoned
    else:
        with pytest.raises(case.raises) as raised:
            client.push("users", b"[]")
        assert type(raised.value) is case.raises
        message = str(raised.value)
        for words in case.words:
            assert words in message, message
        assert "k3y" not in message and "For+Unit" not in message
        assert (raised.value.unknown_fate_at is not None) is case.unknown_fate  # type: ignore[attr-defined]
    if case.tries is not None:
        assert len(transport.sent) == case.tries
    assert all(sent.url.endswith("?apikey=k3y%2FFor%2BUnit%3DTests") for sent in transport.sent)
    assert all(sent.url.startswith(f"{BASE}/client/12/table/users/data") for sent in transport.sent)


def test_retry_after_is_a_floor_for_the_wait() -> None:
    clock = FakeClock()
    client = _client([answer(429, Retry_After="7"), answer(201)], clock)
    client.push("users", b"[]")
    assert clock.slept and clock.slept[0] >= 7


def test_no_try_starts_after_max_retry_seconds() -> None:
    clock = FakeClock()
    client = _client([answer(500)], clock, max_retry_seconds=30, try_seconds=2.0)
    started = clock.now()
    with pytest.raises(RJMetricsRetriesExhausted):
        client.push("users", b"[]")
    transport = t.cast("MockTransport", client._transport)
    assert len(transport.sent) >= 3
    # The last try started within the budget; the push ended within budget + one try.
    assert clock.now() - started <= 30 + 2.0


@pytest.mark.parametrize(("outcome", "words"), [(refused, "connection refused"), (unresolved, "name not resolved")])
def test_authenticate_gives_up_on_an_unreachable_host_within_seconds(
    outcome: t.Callable[[], Outcome], words: str
) -> None:
    clock = FakeClock()
    client = _client([outcome()], clock, max_retry_seconds=300)
    started = clock.now()
    with pytest.raises(RJMetricsUnreachableError) as raised:
        client.authenticate()
    assert clock.now() - started <= CONNECT_RETRY_SECONDS_AT_START + 0.5
    assert f"cannot connect to api.example.test:443 ({words})" in str(raised.value)
    assert "tried for 10s" in str(raised.value)


def test_once_the_host_answered_the_whole_budget_applies_at_start() -> None:
    clock = FakeClock()
    client = _client([answer(503), refused()], clock, max_retry_seconds=60)
    with pytest.raises(RJMetricsRetriesExhausted):
        client.authenticate()
    assert clock.now() - 1000.0 > CONNECT_RETRY_SECONDS_AT_START


def test_a_stop_ends_the_wait_between_tries_and_no_try_follows() -> None:
    stop = Stop()
    clock = FakeClock()

    def script(_sent: t.Any) -> Outcome:
        stop.signal(15)  # the stop arrives during the first try
        return answer(503)

    client = _client(script, clock, stop=stop)
    with pytest.raises(RJMetricsStopped, match="not retried because the run is stopping"):
        client.push("users", b"[]")
    assert len(t.cast("MockTransport", client._transport).sent) == 1


def test_the_last_abandoned_try_is_remembered_for_late_applies() -> None:
    clock = FakeClock()
    client = _client([read_timeout(), answer(201)], clock)
    assert client.last_unknown_fate_at is None
    when = client.push("users", b"[]")
    assert when is not None and client.last_unknown_fate_at == when
