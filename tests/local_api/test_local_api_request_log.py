"""The request log: its fields, ordering, filtering and clearing, in-process and over HTTP."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import requests

from target_rjmetrics.local_api import DEMO_API_KEY, Faults, RequestLogEntry
from target_rjmetrics.local_api.requestlog import entry_bytes
from tests.support.api import Api

#: The fields of an entry as /_local/requests shows them, in order (with point keys logged).
FIELDS = [
    "seq",
    "arrived",
    "completed",
    "method",
    "path",
    "client_id",
    "table",
    "points",
    "body_bytes",
    "status",
    "in_flight",
    "fault",
    "delay_ms",
    "sandbox",
    "key_values",
]


def test_an_upsert_entry_carries_every_field(api: Api) -> None:
    body = [{"keys": ["id"], "id": 3}, {"keys": ["a", "b"], "a": "x", "b": 2}, {"keys": ["id"], "id": 1}]
    raw = json.dumps(body).encode()
    before = time.time()
    response = api.push("us%65rs", None, raw=raw)
    after = time.time()
    assert response.status_code == 201
    [entry] = api.server.request_log()
    assert isinstance(entry, RequestLogEntry)
    [shown] = api.local("requests").json()
    assert list(shown) == FIELDS
    assert shown == entry.to_dict(with_key_values=True)
    assert DEMO_API_KEY not in api.local("requests").text
    assert entry.method == "POST"
    # Path only: never the query string that carries the key.
    assert entry.path == response.request.path_url.split("?")[0]
    assert entry.path == "/v2/client/1/table/users/data"
    assert entry.client_id == 1
    assert entry.table == "users"
    assert entry.points == 3
    assert entry.body_bytes == len(raw)
    assert entry.status == 201 and entry.fault is None and entry.sandbox is False
    assert entry.in_flight == 1
    assert before <= entry.arrived <= entry.completed <= after
    assert entry.key_values == [[3], ["x", 2], [1]]
    assert DEMO_API_KEY not in repr(api.server.request_log())


def test_entries_show_key_values_only_when_logged_and_ghost_fields_only_for_ghosts(make_server: Any) -> None:
    plain = make_server(log_point_keys=False, faults=Faults(ghost_delay=0.0, ghost_answer=502, ghost_count=1))
    with requests.Session() as s:
        api = Api(plain, s)
        assert api.push("t", {"keys": ["id"], "id": 1}).status_code == 502  # a ghost, stored at once
        assert api.push("t", {"keys": ["id"], "id": 2}).status_code == 201
        deadline = time.monotonic() + 5
        while plain.request_log()[0].ghost_applied is None:
            assert time.monotonic() < deadline, "the ghost was never applied"
            time.sleep(0.02)
        ghost, upsert = api.local("requests").json()
    assert list(upsert) == FIELDS[:-1]  # no key_values without --log-point-keys
    assert list(ghost) == [*FIELDS[:-1], "ghost_due", "ghost_applied"]
    assert ghost["fault"] == "ghost" and ghost["ghost_applied"] >= ghost["ghost_due"] == ghost["arrived"]
    entries = plain.request_log()
    assert [e.key_values for e in entries] == [None, None]
    assert [e.is_ghost for e in entries] == [True, False]
    assert [e.to_dict(with_key_values=False) for e in entries] == [ghost, upsert]
    assert RequestLogEntry.from_dict(ghost) == entries[0]


def test_log_over_http_filters_by_since_and_clears(api: Api) -> None:
    for i in range(3):
        api.push("t", {"keys": ["id"], "id": i})
    api.authenticate(key="bad")
    log = api.local("requests").json()
    assert [e["seq"] for e in log] == [1, 2, 3, 4]
    assert [e["status"] for e in log] == [201, 201, 201, 401]
    assert [e["seq"] for e in api.local("requests", params={"since": 2}).json()] == [3, 4]
    # /_local requests are not logged themselves.
    assert len(api.local("requests").json()) == 4
    assert api.local("requests", "DELETE").json() == {"cleared": 4}
    assert api.local("requests").json() == []
    api.push("t", {"keys": ["id"], "id": 9})
    assert [e.seq for e in api.server.request_log()] == [5]  # seq keeps counting
    api.server.clear_request_log()
    assert api.server.request_log() == []


def test_in_flight_counts_concurrent_requests(make_server: Any) -> None:
    server = make_server(faults=Faults(latency_ms=200))
    barrier = threading.Barrier(4)

    def push(i: int) -> None:
        with requests.Session() as s:
            barrier.wait()
            Api(server, s).push("t", {"keys": ["id"], "id": i})

    threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = server.request_log()
    assert sorted(e.in_flight for e in log) == [1, 2, 3, 4]
    # Overlap is visible in the times as well.
    assert max(e.arrived for e in log) < min(e.completed for e in log)


def test_completed_of_a_201_is_after_the_data_is_stored(api: Api) -> None:
    seen: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        # Whenever the log shows the 201, the row must already be readable.
        while not stop.is_set():
            done = any(e.status == 201 for e in api.server.request_log())
            if done:
                seen.append(api.server.tables(1) == {"t": 1})
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert api.push("t", {"keys": ["id"], "id": 1}).status_code == 201
    watcher.join(5)
    stop.set()
    assert seen == [True]


def test_unparseable_requests_are_logged_with_what_is_known(api: Api) -> None:
    api.push("t", None, raw=b"{nope")
    api.session.get(f"{api.server.root_url}/v2/client/1/nope?apikey=x", timeout=5)
    bad_json, not_found = api.server.request_log()
    assert bad_json.status == 400 and bad_json.points is None and bad_json.table == "t"
    assert not_found.status == 404 and not_found.client_id is None
    assert not_found.path == "/v2/client/1/nope"


def test_log_is_bounded_by_bytes_keeping_the_newest_entries(make_server: Any) -> None:
    # With point keys logged an entry of 100 points takes about 11 KB of memory.
    server = make_server(max_log_bytes=60_000, log_point_keys=True)
    with requests.Session() as s:
        api = Api(server, s)
        for i in range(40):
            body = [{"keys": ["id"], "id": i * 100 + k} for k in range(100)]
            assert api.push("t", body).status_code == 201
        log = server.request_log()
        assert sum(entry_bytes(e) for e in log) <= 60_000
        assert 2 <= len(log) <= 6
        assert [e.seq for e in log] == list(range(41 - len(log), 41))  # the newest, in order
        # Over HTTP too.
        assert [e["seq"] for e in api.local("requests").json()] == [e.seq for e in log]


def test_log_entry_count_bound_still_holds(make_server: Any) -> None:
    server = make_server(max_log_entries=3)
    with requests.Session() as s:
        for i in range(5):
            Api(server, s).push("t", {"keys": ["id"], "id": i})
    assert [e.seq for e in server.request_log()] == [3, 4, 5]


def test_cli_log_bounds(cli_server: Any) -> None:
    entries = cli_server("--in-memory", "--max-log-entries", "2")
    by_bytes = cli_server("--in-memory", "--max-log-bytes", "3000")
    for srv in (entries, by_bytes):
        for i in range(12):
            url = f"{srv.base_url}/client/1/table/t/data"
            assert (
                requests.post(
                    url, params={"apikey": DEMO_API_KEY}, json={"keys": ["id"], "id": i}, timeout=10
                ).status_code
                == 201
            )
    assert [e["seq"] for e in requests.get(f"{entries.root_url}/_local/requests", timeout=10).json()] == [11, 12]
    kept = requests.get(f"{by_bytes.root_url}/_local/requests", timeout=10).json()
    assert 1 < len(kept) < 12 and kept[-1]["seq"] == 12
    assert sum(entry_bytes(RequestLogEntry.from_dict(e)) for e in kept) <= 3000


def test_an_answered_request_is_out_of_flight_before_its_answer_arrives(make_server: Any) -> None:
    """One request at a time over two connections: the next one, sent the moment an answer came, finds none in flight.

    The count once dropped only after the answer was written, so a client keeping four requests in
    flight was sometimes logged with five, and a ``max_in_flight`` server could refuse it.
    """
    server = make_server(faults=Faults(max_in_flight=1, retry_after=0))
    sessions = [requests.Session(), requests.Session()]
    try:
        statuses = [Api(server, sessions[i % 2]).push("t", {"keys": ["id"], "id": i}).status_code for i in range(1500)]
    finally:
        for session in sessions:
            session.close()
    assert statuses == [201] * 1500
    assert {entry.in_flight for entry in server.request_log()} == {1}
