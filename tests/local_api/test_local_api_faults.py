"""Fault injection: each kind, determinism under the seed, and changing faults mid-run."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from target_rjmetrics.local_api import Faults, LocalImportAPI
from tests.support.api import Api, assert_error


def _point(i: int) -> dict[str, Any]:
    return {"keys": ["id"], "id": i}


def _api(make_server: Any, session: requests.Session, **faults: Any) -> Api:
    return Api(make_server(faults=Faults(**faults), log_point_keys=True), session)


def test_error_rate_answers_5xx_from_the_given_statuses_and_stores_nothing(
    make_server: Any, session: requests.Session
) -> None:
    api = _api(make_server, session, error_rate=1.0, error_statuses=(502, 504))
    statuses = {api.push("t", _point(i)).status_code for i in range(20)}
    assert statuses == {502, 504}
    assert api.authenticate().status_code in (502, 504)
    assert session.get(api.server.root_url, timeout=5).status_code in (502, 504)
    assert api.server.tables(1) == {}
    # /_local is never faulted.
    assert api.local("tables").status_code == 200
    assert {e.fault for e in api.server.request_log()} == {"error_rate"}


def _statuses_under_seed(make_server: Any, seed: int) -> list[int]:
    server = make_server(faults=Faults(seed=seed, error_rate=0.3, rate_limit_rate=0.2))
    with requests.Session() as s:
        api = Api(server, s)
        return [api.push("t", _point(i)).status_code for i in range(40)]


def test_faults_are_deterministic_under_the_seed(make_server: Any) -> None:
    first = _statuses_under_seed(make_server, 7)
    again = _statuses_under_seed(make_server, 7)
    other = _statuses_under_seed(make_server, 8)
    assert first == again
    assert first != other
    assert 201 in first and 429 in first and any(s >= 500 for s in first)


def test_rate_limit_answers_429_with_retry_after(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, rate_limit_rate=1.0, retry_after=0)
    response = api.push("t", _point(1))
    assert_error(response, 429)
    assert response.headers["Retry-After"] == "0"
    assert api.server.tables(1) == {}
    api.server.set_faults(retry_after=12)
    assert api.push("t", _point(1)).headers["Retry-After"] == "12"


def test_latency_and_jitter_delay_each_answer(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, latency_ms=120, jitter_ms=60)
    started = time.monotonic()
    assert api.push("t", _point(1)).status_code == 201
    elapsed = time.monotonic() - started
    assert 0.12 <= elapsed < 1.0
    delay = api.server.request_log()[-1].delay_ms
    assert 120 <= delay <= 180


def test_drop_closes_the_connection_without_an_answer_and_stores_nothing(
    make_server: Any, session: requests.Session
) -> None:
    api = _api(make_server, session, drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        api.push("t", _point(1))
    entry = api.server.request_log()[-1]
    assert entry.status == 0 and entry.fault == "drop"
    assert entry.points == 1
    assert api.server.tables(1) == {}


def test_lowered_body_limit_answers_413(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, max_body_bytes=200)
    small = api.push("t", _point(1))
    assert small.status_code == 201
    big = api.push("t", [_point(i) for i in range(20)])
    assert_error(big, 413)
    assert api.server.request_log()[-1].fault == "max_body_bytes"
    assert api.server.tables(1) == {"t": 1}


def test_fail_after_n_accepted_upserts_fails_every_request(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session, fail_after=2)
    assert [api.push("t", _point(i)).status_code for i in range(4)] == [201, 201, 503, 503]
    assert api.authenticate().status_code == 503
    assert session.get(api.server.root_url, timeout=5).status_code == 503
    assert api.server.tables(1) == {"t": 2}
    # Setting fail_after again restarts its count; fail_status is configurable.
    api.server.set_faults(fail_after=1, fail_status=500)
    assert [api.push("t", _point(i)).status_code for i in (7, 8)] == [201, 500]
    assert api.server.tables(1) == {"t": 3}


def test_fail_after_is_exact_under_concurrency(make_server: Any) -> None:
    server = make_server(faults=Faults(fail_after=5))
    codes: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with requests.Session() as s:
            api = Api(server, s)
            for i in range(5):
                code = api.push("t", _point(n * 100 + i)).status_code
                with lock:
                    codes.append(code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(201) == 5
    assert codes.count(503) == 25
    assert server.tables(1) == {"t": 5}


def test_faults_change_mid_run_through_put_local_faults(make_server: Any, session: requests.Session) -> None:
    api = _api(make_server, session)
    assert api.push("t", _point(1)).status_code == 201
    changed = api.local("faults", "PUT", json={"error_rate": 1.0, "error_statuses": [503]})
    assert changed.status_code == 200
    assert changed.json()["error_rate"] == 1.0
    assert api.local("faults").json()["error_statuses"] == [503]
    assert api.server.faults.error_rate == 1.0
    assert api.push("t", _point(2)).status_code == 503
    assert api.local("faults", "PUT", json={"error_rate": 0}).status_code == 200
    assert api.push("t", _point(3)).status_code == 201
    assert [r["id"] for r in api.server.rows(1, "t")] == [1, 3]


@pytest.mark.parametrize(
    "body",
    [{"nope": 1}, {"error_rate": 2}, {"error_rate": "x"}, {"error_statuses": [200]}, {"max_in_flight": True}, [1]],
)
def test_invalid_fault_changes_are_400_and_change_nothing(
    make_server: Any, session: requests.Session, body: Any
) -> None:
    api = _api(make_server, session)
    before = api.local("faults").json()
    assert_error(api.local("faults", "PUT", json=body), 400)
    assert api.local("faults").json() == before


def test_faults_dataclass_rejects_out_of_range_settings() -> None:
    with pytest.raises(ValueError, match="drop_rate must be between 0 and 1"):
        Faults(drop_rate=1.5)
    with pytest.raises(ValueError, match="latency_ms must not be negative"):
        Faults(latency_ms=-1)
    with pytest.raises(ValueError, match="unknown fault setting"):
        LocalImportAPI().set_faults(bogus=1)
