"""Metrics the SDK's way: METRIC lines Meltano and structured logging can read, counted when records land."""

from __future__ import annotations

import json
import typing as t
from collections import defaultdict

from target_rjmetrics.local_api import Faults
from tests.support.checks import upserts
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, record, schema, state, users
from tests.support.targets import clean_env, run_cli

if t.TYPE_CHECKING:
    from pathlib import Path

    from target_rjmetrics.local_api import LocalImportAPI

ORDERS = schema("orders", {"id": {"type": "integer"}, "total": {"type": "number"}}, ["id"])


def metrics_of(stderr: str) -> list[dict[str, t.Any]]:
    """Every METRIC point the target logged (console format)."""
    return [json.loads(line.split("METRIC: ", 1)[1]) for line in stderr.splitlines() if "METRIC: " in line]


def _input() -> list[t.Any]:
    orders = [record("orders", id=i, total=i * 1.5) for i in range(1, 8)]
    # users 1-5 twice in a row: within one request the later version wins (merged).
    return [USERS_SCHEMA, ORDERS, *users(30), *users(5, version="v2"), *orders, state({"n": 42})]


def test_metrics_count_requests_retries_and_records_as_they_land(make_api: t.Callable[..., LocalImportAPI]) -> None:
    server = make_api(faults=Faults(seed=11, error_rate=0.4, error_statuses=(503,)))

    config = target_config(server, max_points_per_request=40, max_concurrent_requests=1, metrics_per_request=True)
    run = run_cli(config, _input())

    assert run.exit_code == 0, run.stderr
    points = metrics_of(run.stderr)
    sent = upserts(server, status=None)
    tries = [p for p in points if p["metric"] == "http_request_duration" and p["tags"]["endpoint"] == "upsert"]
    # One duration per try, with the status the server answered, in the order it answered.
    assert [(p["tags"]["table"], p["tags"]["http_status_code"]) for p in tries] == [(e.table, e.status) for e in sent]
    assert all(
        p["tags"]["status"] == ("succeeded" if p["tags"]["http_status_code"] == 201 else "failed") for p in tries
    )
    assert all(p["value"] >= 0 for p in tries)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for p in points:
        if p["type"] == "counter" and "table" in p["tags"]:
            totals[(p["metric"], p["tags"]["table"])] += p["value"]
    failed = sum(1 for e in sent if e.status != 201)
    assert failed > 0, "the fault never fired: the retry count proves nothing"
    assert totals[("retry_count", "users")] + totals[("retry_count", "orders")] == failed
    assert totals[("http_request_count", "users")] + totals[("http_request_count", "orders")] == len(sent)
    assert totals[("record_count", "users")] == 35 and totals[("record_count", "orders")] == 7
    assert totals[("merged_record_count", "users")] == 5 and totals[("merged_record_count", "orders")] == 0
    summaries = {p["tags"]["table"]: p for p in points if p["metric"] == "load_summary"}
    assert set(summaries) == {"users", "orders"}
    assert summaries["users"]["value"] == 35 and summaries["users"]["tags"]["merged"] == 5
    assert summaries["users"]["tags"]["requests"] == sum(1 for e in sent if e.table == "users" and e.status == 201)
    # The SDK's own timer of sealing (not sending) is not logged.
    assert not [p for p in points if p["metric"] == "batch_processing_time"]


def test_by_default_request_durations_are_summarised_per_table_not_logged_per_request(
    make_api: t.Callable[..., LocalImportAPI],
) -> None:
    server = make_api(faults=Faults(seed=4, error_rate=0.2, error_statuses=(503,)))
    messages = [USERS_SCHEMA, ORDERS, *users(400), *[record("orders", id=i, total=1.5) for i in range(1, 101)]]

    run = run_cli(target_config(server, max_points_per_request=5, max_concurrent_requests=2), messages)

    assert run.exit_code == 0, run.stderr
    sent = upserts(server, status=None)
    durations = [
        p
        for p in metrics_of(run.stderr)
        if p["metric"] == "http_request_duration" and p["tags"]["endpoint"] == "upsert"
    ]
    # One line per table per 5-second interval, not one per request.
    assert len(sent) > 100 and 2 <= len(durations) <= 6, [p["tags"] for p in durations]
    by_table: dict[str, dict[str, t.Any]] = {}
    for point in durations:
        tags = point["tags"]
        assert 0 <= tags["p50"] <= tags["p95"] <= tags["max"] and point["value"] == tags["p50"]
        seen = by_table.setdefault(tags["table"], {"count": 0, "http_status_codes": defaultdict(int)})
        seen["count"] += tags["count"]
        for status, count in tags["http_status_codes"].items():
            seen["http_status_codes"][status] += count
    for table in ("users", "orders"):
        tries = [e for e in sent if e.table == table]
        assert by_table[table]["count"] == len(tries)
        statuses = {str(status): sum(1 for e in tries if e.status == status) for status in {e.status for e in tries}}
        assert dict(by_table[table]["http_status_codes"]) == statuses
    assert {"503", "201"} <= set(by_table["users"]["http_status_codes"]), "the fault never fired"


def test_record_count_counts_only_records_that_landed(make_api: t.Callable[..., LocalImportAPI]) -> None:
    # The first request is accepted, then everything is refused for good.
    server = make_api(faults=Faults(fail_after=1, fail_status=400))

    run = run_cli(
        target_config(server, max_points_per_request=10, max_concurrent_requests=1), [USERS_SCHEMA, *users(50)]
    )

    assert run.exit_code == 1
    landed = sum(p["value"] for p in metrics_of(run.stderr) if p["metric"] == "record_count")
    assert landed == 10 == len(server.rows(1, "users"))


def test_structured_logging_gives_one_parseable_summary_event_per_table(
    local_api: LocalImportAPI, tmp_path: Path
) -> None:
    config = tmp_path / "logging.yml"
    config.write_text(
        "version: 1\n"
        "disable_existing_loggers: false\n"
        "formatters:\n"
        "  structured:\n"
        "    (): singer_sdk.logging.StructuredFormatter\n"
        "handlers:\n"
        "  console:\n"
        "    class: logging.StreamHandler\n"
        "    formatter: structured\n"
        "    stream: ext://sys.stderr\n"
        "root:\n"
        "  level: INFO\n"
        "  handlers: [console]\n"
    )
    env = clean_env(SINGER_SDK_LOG_CONFIG=str(config))

    run = run_cli(target_config(local_api), _input(), env=env)

    assert run.exit_code == 0, run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert events, "no structured event was logged"
    summaries = [
        e["metric_info"]
        for e in events
        if e.get("message") == "METRIC" and e["metric_info"]["metric"] == "load_summary"
    ]
    assert sorted((s["tags"]["table"], s["value"]) for s in summaries) == [("orders", 7), ("users", 35)]
    assert all(set(s["tags"]) >= {"records", "requests", "retries", "merged", "seconds"} for s in summaries)
