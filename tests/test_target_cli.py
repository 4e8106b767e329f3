"""The command line: --about, --version, ENV config, --input, python -m, dry runs, sandbox.

Also authentication on start, the secrecy of the API key, and the summary table.

The target runs as a real process wherever exit codes or the split between stdout and
stderr matter; the local Import API answers over loopback HTTP.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing as t

import pytest

from target_rjmetrics import __version__
from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, Faults, LocalImportAPI
from tests.support.checks import landed_by_id, upserts
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, lines, record, schema, state, users
from tests.support.targets import clean_env, parse_states, run_cli, run_in_process, run_target

if t.TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.smoke

CID = DEMO_CLIENT_ID
SECRET = "sekret-KEY-4242"
#: Every setting the issue names, by its exact name.
ISSUE_SETTINGS = {
    "client_id",
    "api_key",
    "sandbox",
    "api_url",
    "table_prefix",
    "max_points_per_request",
    "max_request_bytes",
    "max_concurrent_requests",
    "request_timeout",
    "max_retry_seconds",
    "keyless_streams",
    "state_flush_seconds",
    "authenticate_on_start",
    "dry_run_file",
}
INPUT = [USERS_SCHEMA, *users(3), state({"bookmark": 3})]


def secret_config(server: LocalImportAPI, **overrides: t.Any) -> dict[str, t.Any]:
    """Settings for a server that knows client 1 by ``SECRET``."""
    return target_config(server, api_key=SECRET, **overrides)


# -- --about and --version --------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_with_secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("about") / "config.json"
    path.write_text(json.dumps({"client_id": 1, "api_key": SECRET, "api_url": "http://127.0.0.1:9/v2"}))
    return path


def test_about_json_lists_every_setting_marks_api_key_secret_and_prints_no_secret(config_with_secret: Path) -> None:
    proc = run_target(["--about", "--format", "json", "--config", str(config_with_secret)])

    assert proc.exit_code == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    about = json.loads(proc.stdout)
    assert about["name"] == "target-rjmetrics"
    assert about["version"] == __version__
    properties = about["settings"]["properties"]
    assert set(properties) >= ISSUE_SETTINGS
    assert properties["api_key"].get("secret") is True
    assert properties["api_key"].get("writeOnly") is True
    assert {"client_id", "api_key"} <= set(about["settings"]["required"])
    for name in ISSUE_SETTINGS:
        assert properties[name].get("title"), f"{name} has no title"
        assert properties[name].get("description", "").endswith("."), f"{name} description"
    assert not [name for name, spec in properties.items() if name != "api_key" and spec.get("secret")]


def test_about_text_lists_settings_capabilities_and_env_variables(config_with_secret: Path) -> None:
    proc = run_target(["--about", "--config", str(config_with_secret)])

    assert proc.exit_code == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "Capabilities:" in proc.stdout
    assert "stream-maps" in proc.stdout
    for name in ISSUE_SETTINGS:
        assert f"Name: {name}" in proc.stdout
        assert f"TARGET_RJMETRICS_{name.upper()}" in proc.stdout


def test_about_markdown_has_a_settings_table_row_per_setting(config_with_secret: Path) -> None:
    proc = run_target(["--about", "--format", "markdown", "--config", str(config_with_secret)])

    assert proc.exit_code == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "| Setting | Required | Default | Description |" in proc.stdout
    table_rows = {line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert table_rows >= ISSUE_SETTINGS


def test_version_prints_the_package_and_sdk_versions() -> None:
    proc = run_target(["--version"])

    assert proc.exit_code == 0, proc.stderr
    assert f"target-rjmetrics v{__version__}" in proc.stdout
    assert "Meltano SDK" in proc.stdout


# -- ways to start it ----------------------------------------------------------------------------


def test_config_env_reads_the_target_rjmetrics_variables(local_api: LocalImportAPI) -> None:
    env = clean_env(
        TARGET_RJMETRICS_CLIENT_ID=str(CID),
        TARGET_RJMETRICS_API_KEY=DEMO_API_KEY,
        TARGET_RJMETRICS_API_URL=local_api.base_url,
        TARGET_RJMETRICS_TABLE_PREFIX="env_",
    )

    proc = run_target(["--config", "ENV"], stdin=lines(INPUT), env=env)

    assert proc.exit_code == 0, proc.stderr
    assert sorted(landed_by_id(local_api, "env_users")) == [1, 2, 3]
    assert parse_states(proc.stdout) == [{"bookmark": 3}]


def test_input_option_reads_messages_from_a_file(local_api: LocalImportAPI, tmp_path: Path) -> None:
    path = tmp_path / "input.jsonl"
    path.write_text(lines(INPUT))

    run = run_cli(target_config(local_api), "", args=["--input", str(path)])

    assert run.exit_code == 0, run.stderr
    assert sorted(landed_by_id(local_api, "users")) == [1, 2, 3]
    assert run.states == [{"bookmark": 3}]


def test_python_dash_m_runs_the_target(local_api: LocalImportAPI, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(target_config(local_api)))

    proc = subprocess.run(
        [sys.executable, "-m", "target_rjmetrics", "--config", str(config)],
        input=lines(INPUT),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert sorted(landed_by_id(local_api, "users")) == [1, 2, 3]
    assert parse_states(proc.stdout) == [{"bookmark": 3}]


# -- dry run ----------------------------------------------------------------------------------


def raw_bodies(path: Path) -> list[bytes]:
    """The exact body bytes of each request line of a dry-run file."""
    bodies = []
    for line in path.read_bytes().splitlines():
        start = line.index(b', "body": ') + len(b', "body": ')
        assert line.endswith(b"}")
        bodies.append(line[start:-1])
    return bodies


def test_dry_run_writes_exact_bodies_with_the_key_redacted_and_sends_nothing(make_api: t.Any, tmp_path: Path) -> None:
    server = make_api(credentials={CID: SECRET})
    path = tmp_path / "requests.jsonl"
    messages = [
        USERS_SCHEMA,
        *users(3),
        record("users", id=2, email="é@例え.jp", acquisition_source=None, status="v2"),
        state({"bookmark": 4}),
        *users(2, start=10),
    ]

    run = run_in_process(secret_config(server, dry_run_file=str(path), max_points_per_request=3), messages)

    assert [e for e in server.request_log() if e.method == "POST"] == []
    assert server.tables(CID) == {}
    assert run.states == [{"bookmark": 4}]
    text = path.read_text(encoding="utf-8")
    assert SECRET not in text
    requests_ = [json.loads(line) for line in text.splitlines()]
    url = f"{server.base_url}/client/{CID}/table/users/data?apikey=***"
    assert [(r["method"], r["url"], r["table"], r["points"]) for r in requests_] == [
        ("POST", url, "users", 3),
        ("POST", url, "users", 2),
    ]

    def point(i: int, email: str, source: str | None, status: str) -> dict[str, t.Any]:
        return {"keys": ["id"], "id": i, "email": email, "acquisition_source": source, "status": status}

    expected = [
        [
            point(1, "user1@example.com", "PPC", "v1"),
            point(2, "é@例え.jp", None, "v2"),
            point(3, "user3@example.com", "PPC", "v1"),
        ],
        [point(10, "user10@example.com", "PPC", "v1"), point(11, "user11@example.com", "PPC", "v1")],
    ]
    # Byte for byte: compact JSON, UTF-8 text unescaped, the later version of id 2 in the first request.
    assert raw_bodies(path) == [
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() for body in expected
    ]


def test_dry_run_body_is_byte_for_byte_what_a_real_run_sends(make_api: t.Any, tmp_path: Path) -> None:
    real, dry = make_api(), make_api()
    path = tmp_path / "requests.jsonl"
    messages = [USERS_SCHEMA, *users(5), record("users", id=6, email="ünïcødé\u0000\t", status=None)]

    run_in_process(target_config(real), messages)
    run_in_process(target_config(dry, dry_run_file=str(path)), messages)

    (body,) = raw_bodies(path)
    (entry,) = upserts(real)
    assert entry.body_bytes == len(body)
    assert entry.points == 6
    assert [json.loads(body)[5][k] for k in ("email", "status")] == ["ünïcødé\u0000\t", None]


# -- sandbox --------------------------------------------------------------------------------


def test_sandbox_together_with_api_url_is_a_config_error_naming_both(local_api: LocalImportAPI) -> None:
    run = run_cli(target_config(local_api, sandbox=True), INPUT)

    assert run.exit_code != 0
    assert "`sandbox`" in run.stderr
    assert "`api_url`" in run.stderr
    assert run.stdout == ""
    assert local_api.request_log() == []


def test_sandbox_server_run_exits_zero_writes_state_and_stores_nothing(make_api: t.Any) -> None:
    server = make_api(sandbox=True)

    run = run_cli(target_config(server), INPUT)

    assert run.exit_code == 0, run.stderr
    assert run.states == [{"bookmark": 3}]
    assert [e.status for e in upserts(server, status=None)] == [201]
    assert server.tables(CID) == {}


# -- authentication on start -----------------------------------------------------------------


def test_wrong_api_key_stops_before_any_upsert_and_says_which_settings_to_check(make_api: t.Any) -> None:
    server = make_api(credentials={CID: "the-right-key"})
    # A broken line after the records: the run must stop on the credentials, not on this.
    messages: list[dict[str, t.Any] | str] = [*INPUT, "this is not JSON"]

    run = run_cli(secret_config(server), messages)

    assert run.exit_code != 0
    assert "401" in run.stderr
    assert "api_key" in run.stderr
    assert "client_id" in run.stderr
    assert "JSON" not in run.stderr.split("401", 1)[1]
    assert run.states == []
    assert [(e.method, e.path) for e in server.request_log()] == [("GET", f"/v2/client/{CID}/authenticate")]
    assert SECRET not in run.output


def test_the_credentials_are_checked_while_input_is_read_and_nothing_goes_before_they_pass(make_api: t.Any) -> None:
    # A slow authenticate (400 ms): the input is read meanwhile, but no data point may go out
    # before the API accepted the credentials; with a wrong key, none ever does.
    wrong = make_api(credentials={CID: "the-right-key"}, faults=Faults(latency_ms=400))
    messages: list[dict[str, t.Any] | str] = [USERS_SCHEMA, *users(300), "this is not JSON"]
    run = run_cli(secret_config(wrong, max_points_per_request=10), messages)
    assert run.exit_code == 1
    assert "answered 401" in run.stderr and "nothing was sent" in run.stderr
    assert "not valid JSON" not in run.stderr, "the input's error was reported before the credentials"
    assert [e.method for e in wrong.request_log()] == ["GET"]

    right = make_api(credentials={CID: SECRET}, faults=Faults(latency_ms=400))
    run = run_cli(secret_config(right), [USERS_SCHEMA, *users(300)])
    assert run.exit_code == 0, run.stderr
    (check,) = [e for e in right.request_log() if e.method == "GET"]
    posts = upserts(right)
    assert len(posts) == 3 and min(e.arrived for e in posts) >= check.completed


def test_authenticate_on_start_false_sends_no_authenticate_request(make_api: t.Any) -> None:
    server = make_api(credentials={CID: SECRET})

    run = run_in_process(secret_config(server, authenticate_on_start=False), INPUT)

    assert [e.method for e in server.request_log()] == ["POST"]
    assert sorted(landed_by_id(server, "users")) == [1, 2, 3]
    assert run.states == [{"bookmark": 3}]


def test_authenticate_on_start_checks_the_configured_host_once(make_api: t.Any) -> None:
    server = make_api(credentials={CID: SECRET})

    run_in_process(secret_config(server), INPUT)

    paths = [(e.method, e.path, e.status) for e in server.request_log()]
    assert paths[0] == ("GET", f"/v2/client/{CID}/authenticate", 200)
    assert [p for p in paths if p[0] == "GET"] == [paths[0]]


# -- the API key never printed ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("401", "401"),
        ("400", "400"),
        ("5xx retries exhausted", "max_retry_seconds"),
        ("dropped connections", "max_retry_seconds"),
    ],
)
def test_api_key_never_appears_in_the_output_of_a_failing_run(make_api: t.Any, case: str, expected: str) -> None:
    overrides: dict[str, t.Any] = {"max_points_per_request": 2, "max_concurrent_requests": 1}
    if case == "401":
        server = make_api(credentials={CID: "another-key"})
        overrides["authenticate_on_start"] = False
    elif case == "400":
        server = make_api(credentials={CID: SECRET}, faults=Faults(fail_after=1, fail_status=400))
    elif case == "5xx retries exhausted":
        server = make_api(credentials={CID: SECRET}, faults=Faults(error_rate=1.0))
        overrides.update(max_retry_seconds=1, authenticate_on_start=False)
    else:
        server = make_api(credentials={CID: SECRET}, faults=Faults(drop_rate=1.0))
        overrides.update(max_retry_seconds=1)

    run = run_cli(secret_config(server, **overrides), [USERS_SCHEMA, *users(4), state({"b": 4})])

    assert run.exit_code != 0
    assert expected in run.stderr  # the failure itself is reported...
    assert SECRET not in run.output  # ...without the key
    assert run.states == []


def test_api_key_needing_url_encoding_is_redacted_from_transport_errors(make_api: t.Any) -> None:
    key = "sekret KEY/4242+&=%"
    server = make_api(credentials={CID: key})
    server.stop()  # connection refused: requests' error text carries the whole URL with its query

    # Pushes (not the check at start) are retried; DEBUG shows the library's own error text.
    run = run_cli(
        target_config(server, api_key=key, max_retry_seconds=1, authenticate_on_start=False),
        INPUT,
        env=clean_env(LOGLEVEL="DEBUG"),
    )

    assert run.exit_code != 0
    assert "max_retry_seconds" in run.stderr
    assert "apikey=***" in run.stderr  # the URL was there, and redacted
    for form in (key, "sekret+KEY", "sekret%20KEY", "KEY%2F4242", "KEY/4242"):
        assert form not in run.output


# -- progress and summary -------------------------------------------------------------------

#: One summary line per table: table, records, requests, retries, merged.
SUMMARY_LINE = r"Load summary: table (\w+): records (\d+), requests (\d+), retries (\d+), merged (\d+), seconds [\d.]+$"


def test_summary_lists_each_table_with_its_counts_and_never_a_record_value(local_api: LocalImportAPI) -> None:
    props = {"id": {"type": "integer"}, "note": {"type": "string"}}
    messages = [
        schema("orders", props, ["id"]),
        schema("public-users", props, ["id"]),
        *[record("orders", id=i, note=f"ORDER-NOTE-{i}-zq") for i in range(1, 6)],
        *[record("public-users", id=i, note=f"USER-NOTE-{i}-zq") for i in range(1, 4)],
        record("orders", id=1, note="ORDER-NOTE-again-zq"),
        state({"b": 1}),
    ]

    run = run_cli(target_config(local_api, max_points_per_request=2, max_concurrent_requests=1), messages)

    assert run.exit_code == 0, run.stderr
    rows = {
        m.group(1): tuple(int(v) for v in m.groups()[1:5]) for m in re.finditer(SUMMARY_LINE, run.stderr, re.MULTILINE)
    }
    # orders: 6 records in 3 requests (1,2 | 3,4 | 5,1 -- id 1 is not merged into an earlier request).
    assert rows == {"orders": (6, 3, 0, 0), "public_users": (3, 2, 0, 0)}
    assert "zq" not in run.output
    assert "@example.com" not in run.output
    assert DEMO_API_KEY not in run.output


def test_summary_retries_column_counts_the_retried_requests_of_each_table(make_api: t.Any) -> None:
    server = make_api(faults=Faults(error_rate=0.3, error_statuses=(503,), seed=0))

    run = run_cli(
        target_config(server, max_points_per_request=2, max_concurrent_requests=1, authenticate_on_start=False),
        [USERS_SCHEMA, *users(12), state({"b": 12})],
    )

    assert run.exit_code == 0, run.stderr
    failed = [e for e in upserts(server, status=None) if e.status == 503]
    assert failed, "the seed gave no faults; pick another"
    match = re.search(SUMMARY_LINE, run.stderr, re.MULTILINE)
    assert match
    assert match.group(1) == "users"
    assert tuple(int(v) for v in match.groups()[1:5]) == (12, 6, len(failed), 0)
    assert sorted(landed_by_id(server, "users")) == list(range(1, 13))


def test_progress_lines_name_tables_and_in_flight_requests_but_never_values(make_api: t.Any) -> None:
    # Five slow requests in a row keep the run going past the first progress tick (5 s).
    server = make_api(faults=Faults(latency_ms=1300))
    props = {"id": {"type": "integer"}, "note": {"type": "string"}}
    messages = [
        schema("slow-notes", props, ["id"]),
        *[record("slow-notes", id=i, note=f"NOTE-{i}-zq") for i in range(1, 11)],
    ]

    run = run_cli(
        target_config(server, max_points_per_request=2, max_concurrent_requests=1, authenticate_on_start=False),
        messages,
    )

    assert run.exit_code == 0, run.stderr
    progress = [line for line in run.stderr.splitlines() if "Progress:" in line]
    assert progress, "no progress line in a run of more than 5 seconds"
    assert all("slow_notes" in line and "in flight" in line for line in progress)
    assert re.search(r"slow_notes \d+/\d+", progress[0])  # landed/read
    assert "zq" not in run.output
