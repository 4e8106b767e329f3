"""Sending: key order under concurrency, retries of each transient kind, fast permanent failures."""

from __future__ import annotations

import decimal
import itertools
import json
import random
import threading
import time
import typing as t

import pytest

from target_rjmetrics.local_api import DEMO_CLIENT_ID, Faults
from tests.support.checks import keys_of, upserts
from tests.support.config import target_config
from tests.support.expected import last_versions_by_id
from tests.support.messages import USERS_SCHEMA, record, schema, state, users
from tests.support.targets import TargetProcess, run_cli, run_in_process

if t.TYPE_CHECKING:
    from pathlib import Path

    from target_rjmetrics.local_api import LocalImportAPI, RequestLogEntry


pytestmark = pytest.mark.smoke


def _versioned_updates(n_keys: int, n_updates: int, seed: int) -> tuple[list[dict[str, t.Any]], dict[int, str]]:
    """Records that update ``n_keys`` keys ``n_updates`` times in a shuffled order.

    Returns the messages and, computed independently, the status of each key's last version.
    """
    rng = random.Random(seed)
    messages: list[dict[str, t.Any]] = [USERS_SCHEMA]
    for version in range(n_updates):
        ids = list(range(1, n_keys + 1))
        rng.shuffle(ids)
        messages += [
            record("users", id=i, email=f"{i}@example.com", status=f"v{version}")
            for i in ids[: rng.randint(n_keys // 2, n_keys)]
        ]
    return messages, {key: rec["status"] for key, rec in last_versions_by_id(messages, "users").items()}


def _as_doubles(values: t.Sequence[t.Any]) -> tuple[t.Any, ...]:
    """A key as a reader holding numbers as doubles reads it (the API may be one)."""
    return tuple(
        float(v) if isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool) else v for v in values
    )


def _assert_no_key_overlap(server: LocalImportAPI, table: str) -> None:
    """No two requests holding the same key, read as doubles, were in flight at the same time."""
    by_key: dict[t.Any, list[RequestLogEntry]] = {}
    for entry in upserts(server, table=table, status=None):
        for values in {_as_doubles(values) for values in keys_of(entry)}:
            by_key.setdefault(values, []).append(entry)
    for key, entries in by_key.items():
        entries.sort(key=lambda e: e.arrived)
        for earlier, later in itertools.pairwise(entries):
            assert earlier.completed <= later.arrived, f"requests with key {key} overlapped"


def test_an_older_version_never_overwrites_a_newer_one_under_concurrency(
    make_api: t.Callable[..., LocalImportAPI],
) -> None:
    server = make_api(faults=Faults(seed=11, latency_ms=5, jitter_ms=80, error_rate=0.1, drop_rate=0.05))
    messages, last = _versioned_updates(n_keys=150, n_updates=12, seed=5)
    config = target_config(server, max_concurrent_requests=8, max_points_per_request=37)
    run_in_process(config, messages)
    rows = {row["id"]: row for row in server.rows(DEMO_CLIENT_ID, "users")}
    assert len(rows) == len(last)
    wrong = {i: rows[i]["status"] for i, status in last.items() if rows[i]["status"] != status}
    assert not wrong, f"{len(wrong)} keys hold an older version"
    _assert_no_key_overlap(server, "users")
    in_flight = max(e.in_flight for e in upserts(server, status=None))
    assert in_flight > 1, "requests were never concurrent, so the test proved nothing"
    assert in_flight <= 8


#: Keys the API may read as one number: equal as doubles, not certainly one key (see the contract).
ALIASES = [
    ("0.1", "0.1000000000000000055511151231257827"),
    ("12345678901234567.0", "12345678901234568"),
    ("9007199254740993", "9007199254740992"),
]


def test_keys_the_api_may_read_as_one_number_are_sent_in_input_order(
    make_api: t.Callable[..., LocalImportAPI],
) -> None:
    server = make_api(faults=Faults(seed=3, latency_ms=20, jitter_ms=60))
    schema_message = {
        "type": "SCHEMA",
        "stream": "prices",
        "key_properties": ["id"],
        "schema": {"type": "object", "properties": {"id": {"type": "number"}, "v": {"type": "integer"}}},
    }
    lines_out = [json.dumps(schema_message)]
    newest: dict[float, int] = {}
    for version in range(12):
        for pair in ALIASES:
            text = pair[version % 2]
            lines_out.append(f'{{"type": "RECORD", "stream": "prices", "record": {{"id": {text}, "v": {version}}}}}')
            newest[float(text)] = version
    lines_out.append(json.dumps(state({"done": True})))
    config = target_config(server, max_concurrent_requests=8, max_points_per_request=2)

    run = run_cli(config, "\n".join(lines_out) + "\n")

    assert run.exit_code == 0, run.stderr
    _assert_no_key_overlap(server, "prices")
    assert max(e.in_flight for e in upserts(server, status=None)) > 1, "nothing was concurrent: the test proves nothing"
    stored = {float(row["id"]): row["v"] for row in server.rows(DEMO_CLIENT_ID, "prices")}
    assert stored == newest, "an older version of a key the API reads as one number landed last"
    assert run.states == [{"done": True}]


def test_adaptive_concurrency_finds_the_level_the_api_sustains(make_api: t.Callable[..., LocalImportAPI]) -> None:
    server = make_api(faults=Faults(latency_ms=30, max_in_flight=6, retry_after=0))
    config = target_config(server, max_concurrent_requests=32, adaptive_concurrency=True, max_points_per_request=40)

    run = run_cli(config, [USERS_SCHEMA, *users(6000), state({"done": True})])

    assert run.exit_code == 0, run.stderr[-2000:]
    assert len(server.rows(DEMO_CLIENT_ID, "users")) == 6000
    posts = upserts(server, status=None)
    refused = [e for e in posts if e.status == 429]
    assert len(refused) <= 0.05 * len(posts), f"{len(refused)} of {len(posts)} requests answered 429"
    assert max(e.in_flight for e in posts) >= 6, "it never reached the level the API sustains"
    assert run.states == [{"done": True}]


def test_requests_without_shared_keys_go_out_concurrently_across_streams(
    make_api: t.Callable[..., LocalImportAPI],
) -> None:
    server = make_api(faults=Faults(latency_ms=150))
    orders = {
        "type": "SCHEMA",
        "stream": "orders",
        "key_properties": ["id"],
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
    }
    messages = [USERS_SCHEMA, orders, *users(400)]
    messages += [record("orders", id=i) for i in range(1, 401)]
    run_in_process(target_config(server, max_concurrent_requests=4), messages)
    entries = upserts(server)
    assert len(entries) == 8
    assert max(e.in_flight for e in entries) == 4
    assert len(server.rows(DEMO_CLIENT_ID, "orders")) == 400


@pytest.mark.parametrize(
    ("faults", "what"),
    [
        (Faults(seed=1, error_rate=0.4, error_statuses=(500,)), "500"),
        (Faults(seed=2, error_rate=0.4, error_statuses=(502,)), "502"),
        (Faults(seed=3, error_rate=0.4, error_statuses=(503,)), "503"),
        (Faults(seed=4, error_rate=0.4, error_statuses=(504,)), "504"),
        (Faults(seed=5, rate_limit_rate=0.4, retry_after=0), "429"),
        (Faults(seed=6, drop_rate=0.4), "dropped connection"),
        (Faults(seed=7, max_in_flight=2, latency_ms=60), "in-flight limit"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_transient_failures_are_retried_until_everything_lands(
    make_api: t.Callable[..., LocalImportAPI], faults: Faults, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_api(faults=faults)
    messages = [USERS_SCHEMA, *users(600), state({"users": 600})]
    run = run_in_process(target_config(server, max_concurrent_requests=4), messages)
    faulted = [e for e in server.request_log() if e.fault]
    assert faulted, f"no {what} was injected, so nothing was retried"
    rows = server.rows(DEMO_CLIENT_ID, "users")
    assert len(rows) == 600
    assert run.states == [{"users": 600}]
    assert "Retrying upsert into table 'users'" in caplog.text


def test_timeouts_are_retried(make_api: t.Callable[..., LocalImportAPI], caplog: pytest.LogCaptureFixture) -> None:
    server = make_api(faults=Faults(seed=8, jitter_ms=1200))  # about half the answers come after 0.6 s
    run = run_in_process(
        target_config(server, request_timeout=0.6, max_concurrent_requests=4),
        [USERS_SCHEMA, *users(500), state({"users": 500})],
    )
    assert "timed out" in caplog.text
    assert len(server.rows(DEMO_CLIENT_ID, "users")) == 500
    assert run.states == [{"users": 500}]


def test_retry_after_is_honoured(make_api: t.Callable[..., LocalImportAPI]) -> None:
    server = make_api(faults=Faults(rate_limit_rate=1.0, retry_after=2))

    def lift_the_limit_after_one_429() -> None:
        while not any(e.status == 429 for e in server.request_log()):
            time.sleep(0.01)
        server.set_faults(rate_limit_rate=0.0)

    lifter = threading.Thread(target=lift_the_limit_after_one_429, daemon=True)
    lifter.start()
    run_in_process(
        target_config(server, max_concurrent_requests=1, authenticate_on_start=False), [USERS_SCHEMA, *users(3)]
    )
    lifter.join(timeout=5)
    log = upserts(server, status=None)
    first_429 = next(e for e in log if e.status == 429)
    accepted = next(e for e in log if e.status == 201)
    assert accepted.arrived - first_429.completed >= 1.9, "the retry came before Retry-After allowed"


@pytest.mark.parametrize("status", [400, 401, 404])
def test_a_permanent_error_mid_run_fails_fast_naming_stream_table_and_positions(
    local_api: LocalImportAPI, status: int
) -> None:
    local_api.set_faults(fail_after=2, fail_status=status)
    config = target_config(local_api, max_concurrent_requests=1, max_retry_seconds=60)
    run = run_cli(config, [USERS_SCHEMA, *users(500), state({"users": 500})])
    assert run.exit_code == 1
    assert f"answered {status}" in run.stderr
    assert "stream 'users'" in run.stderr and "table 'users'" in run.stderr
    assert "records #201-#300" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states == []
    failed = [e for e in upserts(local_api, status=None) if e.status == status]
    assert len(failed) == 1, "a permanent error must not be retried"
    if status == 401:
        assert "`client_id` and `api_key`" in run.stderr


def test_an_exhausted_retry_budget_fails_with_the_setting_to_change(local_api: LocalImportAPI) -> None:
    local_api.set_faults(error_rate=1.0, error_statuses=(503,))
    config = target_config(local_api, max_retry_seconds=1.5, authenticate_on_start=False)
    run = run_cli(config, [USERS_SCHEMA, *users(20), state({"users": 20})])
    assert run.exit_code == 1
    assert "max_retry_seconds" in run.stderr
    assert "records #1-#20 of stream 'users' (table 'users')" in run.stderr
    assert run.states == []
    assert len(upserts(local_api, status=None)) >= 2


def test_the_target_retries_through_a_short_outage(make_api: t.Callable[..., LocalImportAPI]) -> None:
    server = make_api(faults=Faults(error_rate=1.0, error_statuses=(502,)))
    threading.Timer(1.5, lambda: server.set_faults(error_rate=0.0)).start()
    started = time.monotonic()
    run = run_in_process(
        target_config(server, authenticate_on_start=False, max_retry_seconds=30),
        [USERS_SCHEMA, *users(50), state({"users": 50})],
    )
    assert time.monotonic() - started >= 1.4
    assert len(server.rows(DEMO_CLIENT_ID, "users")) == 50
    assert run.states == [{"users": 50}]


def test_a_stream_updating_recent_keys_still_keeps_requests_in_flight_together(
    make_api: t.Callable[..., LocalImportAPI],
) -> None:
    # Every 100 records, 10 update keys of the previous 100: without holding those back, each
    # request would wait for the one before it to land.
    server = make_api(faults=Faults(latency_ms=100))
    messages: list[dict[str, t.Any]] = [USERS_SCHEMA]
    for block in range(20):
        messages += [record("users", id=block * 90 + i + 1, status=f"b{block}") for i in range(90)]
        messages += [record("users", id=max(1, (block - 1) * 90 + i + 1), status=f"b{block}-update") for i in range(10)]
    last = {key: rec["status"] for key, rec in last_versions_by_id(messages, "users").items()}
    run_in_process(target_config(server, max_concurrent_requests=4), messages)
    rows = {row["id"]: row["status"] for row in server.rows(DEMO_CLIENT_ID, "users")}
    assert rows == last
    _assert_no_key_overlap(server, "users")
    assert max(e.in_flight for e in upserts(server)) >= 3


def test_two_targets_on_disjoint_tables_at_once_both_land_exactly(
    make_api: t.Callable[..., LocalImportAPI], tmp_path: Path
) -> None:
    # Scaling out as the README says: two pipelines, one API, each table fed by one of them.
    server = make_api(faults=Faults(seed=8, latency_ms=20, jitter_ms=30, error_rate=0.05))
    orders_schema = schema("orders", {"id": {"type": "integer"}, "v": {"type": "string"}}, ["id"])
    users_messages, users_last = _versioned_updates(n_keys=120, n_updates=6, seed=1)
    orders_messages = [orders_schema] + [record("orders", id=i % 90, v=f"v{i}") for i in range(900)]
    orders_messages.append(state({"orders": 900}))
    config = target_config(server, max_concurrent_requests=4, max_points_per_request=25)

    first, second = TargetProcess(config, tmp_path), TargetProcess(config, tmp_path)
    deadline = time.monotonic() + 30
    while not all("Authenticated" in p.stderr for p in (first, second)) and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send(users_messages)  # both are up: their input comes at once, so they send side by side
    second.send(orders_messages)
    codes = (first.close_input(120), second.close_input(120))

    assert codes == (0, 0), first.stderr[-1500:] + second.stderr[-1500:]
    users = {row["id"]: row["status"] for row in server.rows(DEMO_CLIENT_ID, "users")}
    assert users == users_last
    orders = {row["id"]: row["v"] for row in server.rows(DEMO_CLIENT_ID, "orders")}
    assert orders == {i: f"v{810 + i}" for i in range(90)}
    posts = upserts(server, status=None)
    spans = {
        table: (min(e.arrived for e in posts if e.table == table), max(e.completed for e in posts if e.table == table))
        for table in ("users", "orders")
    }
    overlapped = spans["users"][0] < spans["orders"][1] and spans["orders"][0] < spans["users"][1]
    assert overlapped, "the two runs never sent at the same time: the test proves nothing"
    assert second.states and second.states[-1][1] == {"orders": 900}
