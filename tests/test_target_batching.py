"""How records are gathered into requests: point and byte limits, merging, and 413 splits.

Every test runs the target against the local Import API over loopback HTTP and reads
the server's request log (``points`` and ``body_bytes`` of each upsert) and its rows.
"""

from __future__ import annotations

import re
import typing as t

import pytest

from target_rjmetrics.exceptions import RJMetricsInputError
from target_rjmetrics.local_api import DEMO_CLIENT_ID, Faults, LocalImportAPI
from tests.support.checks import keys_of, landed_by_id, points_of, upserts
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, record, state, users
from tests.support.targets import run_cli, run_in_process

CID = DEMO_CLIENT_ID


def big_users(n: int, size: int = 1000, *, start: int = 1) -> list[dict[str, t.Any]]:
    """User records whose email field alone is ``size`` characters."""
    return [record("users", id=i, email=f"{i:06d}" + "x" * (size - 6), status="big") for i in range(start, start + n)]


def accepted_ids(server: LocalImportAPI) -> list[int]:
    """Ids of every point in every accepted upsert, in request order."""
    return [kv[0] for entry in upserts(server) for kv in keys_of(entry)]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(100, [100, 100, 50]), (7, [7] * 35 + [5])],
    ids=["limit-100", "limit-7"],
)
def test_requests_never_exceed_max_points_per_request(
    local_api: LocalImportAPI, limit: int, expected: list[int]
) -> None:
    run_in_process(target_config(local_api, max_points_per_request=limit), [USERS_SCHEMA, *users(250)])

    log = upserts(local_api, status=None)
    assert sorted((points_of(e) for e in log), reverse=True) == expected
    assert all(e.status == 201 for e in log)
    assert sorted(accepted_ids(local_api)) == list(range(1, 251))
    assert local_api.tables(CID) == {"users": 250}


def test_requests_never_exceed_max_request_bytes(local_api: LocalImportAPI) -> None:
    limit = 4096
    run_in_process(target_config(local_api, max_request_bytes=limit), [USERS_SCHEMA, *big_users(60)])

    log = upserts(local_api, status=None)
    assert all(e.status == 201 for e in log)
    assert all(e.body_bytes <= limit for e in log)
    # ~1 KB points: three fit under 4 KiB, four do not; batches are filled, not one point each.
    assert max(points_of(e) for e in log) == 3
    assert len(log) == 20
    assert sorted(accepted_ids(local_api)) == list(range(1, 61))
    assert len(local_api.rows(CID, "users")) == 60


def test_byte_limit_and_point_limit_apply_together(local_api: LocalImportAPI) -> None:
    small = users(30)
    large = big_users(10, size=3000, start=31)
    run_in_process(
        target_config(local_api, max_request_bytes=8000, max_points_per_request=10),
        [USERS_SCHEMA, *small, *large],
    )

    log = upserts(local_api)
    assert all(points_of(e) <= 10 and e.body_bytes <= 8000 for e in log)
    assert sorted(accepted_ids(local_api)) == list(range(1, 41))


def test_batch_size_rows_lowers_the_points_per_request(local_api: LocalImportAPI) -> None:
    run_in_process(
        target_config(local_api, batch_size_rows=30, max_concurrent_requests=1),
        [USERS_SCHEMA, *users(100)],
    )

    assert [e.points for e in upserts(local_api, status=None)] == [30, 30, 30, 10]
    assert accepted_ids(local_api) == list(range(1, 101))


def test_144_records_become_two_posts_of_100_and_44_as_in_rjmetrics_py(local_api: LocalImportAPI) -> None:
    run_in_process(target_config(local_api, max_concurrent_requests=1), [USERS_SCHEMA, *users(144)])

    log = upserts(local_api, status=None)
    assert [e.points for e in log] == [100, 44]
    assert [e.status for e in log] == [201, 201]
    assert len(local_api.rows(CID, "users")) == 144


def test_1001_records_become_11_posts_as_in_rjmetrics_ruby(local_api: LocalImportAPI) -> None:
    run_in_process(target_config(local_api), [USERS_SCHEMA, *users(1001)])

    log = upserts(local_api, status=None)
    assert len(log) == 11
    assert sorted(points_of(e) for e in log) == [1] + [100] * 10
    assert len(local_api.rows(CID, "users")) == 1001


def summary_row(stderr: str, table: str) -> dict[str, float]:
    """The summary line of ``table``: records, requests, retries, merged, seconds."""
    match = re.search(
        rf"Load summary: table {re.escape(table)}: records ([\d,]+), requests ([\d,]+), retries ([\d,]+), "
        r"merged ([\d,]+), seconds ([\d.]+)$",
        stderr,
        re.MULTILINE,
    )
    assert match, f"no summary row for {table}"
    names = ("records", "requests", "retries", "merged", "seconds")
    return {name: float(value.replace(",", "")) for name, value in zip(names, match.groups(), strict=True)}


def test_duplicate_keys_within_one_request_keep_the_last_version_and_count_as_merged(
    local_api: LocalImportAPI,
) -> None:
    messages = [
        USERS_SCHEMA,
        *users(5, version="v1"),
        *users(2, version="v2", start=2),  # ids 2, 3
        *users(1, version="v3", start=3),  # id 3 again
        state({"done": 1}),
    ]

    run = run_cli(target_config(local_api), messages)

    assert run.exit_code == 0, run.stderr
    (entry,) = upserts(local_api, status=None)
    assert entry.points == 5
    assert sorted(kv[0] for kv in keys_of(entry)) == [1, 2, 3, 4, 5]
    rows = landed_by_id(local_api, "users")
    assert {i: r["status"] for i, r in rows.items()} == {1: "v1", 2: "v2", 3: "v3", 4: "v1", 5: "v1"}
    row = summary_row(run.stderr, "users")
    assert row["merged"] == 3
    assert row["requests"] == 1
    assert row["records"] == 8
    assert run.states == [{"done": 1}]


def test_a_data_point_larger_than_max_request_bytes_is_a_clear_error(local_api: LocalImportAPI) -> None:
    messages = [USERS_SCHEMA, *big_users(2, size=500), *big_users(1, size=5000, start=3), *big_users(1, start=4)]

    with pytest.raises(RJMetricsInputError) as failure:
        run_in_process(target_config(local_api, max_request_bytes=4096), messages)

    message = str(failure.value)
    assert "stream 'users'" in message
    assert "record #3" in message
    assert "max_request_bytes" in message
    sent = [kv[0] for e in upserts(local_api, status=None) for kv in e.key_values or [] if kv is not None]
    assert 3 not in sent
    assert 4 not in sent


def test_413_splits_the_request_and_resends_the_halves_until_everything_lands(make_api: t.Any) -> None:
    server = make_api(faults=Faults(max_body_bytes=5000))

    run = run_in_process(
        target_config(server, max_request_bytes=1024 * 1024, max_concurrent_requests=1),
        [USERS_SCHEMA, *big_users(40), state({"done": 1})],
    )

    log = upserts(server, status=None)
    refused = [e for e in log if e.status == 413]
    accepted = [e for e in log if e.status == 201]
    assert refused, "the server never answered 413, so nothing was split"
    assert len(refused) + len(accepted) == len(log)
    assert all(e.body_bytes <= 5000 for e in accepted)
    # Each point was accepted exactly once, in input order.
    assert accepted_ids(server) == list(range(1, 41))
    assert len(server.rows(CID, "users")) == 40
    assert run.states == [{"done": 1}]


def test_a_single_point_refused_with_413_is_a_clear_error_naming_it(make_api: t.Any) -> None:
    server = make_api(faults=Faults(max_body_bytes=3000))
    messages = [USERS_SCHEMA, *big_users(1, size=1000), *big_users(1, size=5000, start=2), state({"s": 1})]

    with pytest.raises(RJMetricsInputError) as failure:
        run_in_process(target_config(server, max_request_bytes=1024 * 1024), messages)

    message = str(failure.value)
    assert "413" in message
    assert "stream 'users'" in message
    assert "table 'users'" in message
    assert "record #2" in message  # the refused point, not only the range of its request
    assert 2 not in landed_by_id(server, "users")
