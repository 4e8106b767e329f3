"""A first run that explains itself.

Settings errors, unknown settings, unreadable config files, schema violations reported once,
how to turn on DEBUG, and the summary.

Every test runs the real command line against a local Import API on loopback (or a dry
run), and checks the words a user reads, the exit code, that no traceback is printed, and
what was sent, landed or written as STATE.
"""

from __future__ import annotations

import json
import re
import typing as t
from pathlib import Path

import pytest

from target_rjmetrics.client import PRODUCTION_URL
from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, LocalImportAPI
from tests.support.checks import landed_by_id
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, lines, record, schema, state, users
from tests.support.targets import Run, about, clean_env, run_cli, run_target

CID = DEMO_CLIENT_ID
#: A key distinctive enough that finding it anywhere in the output means it leaked.
SECRET = "sk-firstrun-Zq81xVv0pL"
INPUT = [USERS_SCHEMA, *users(3), state({"bookmark": 3})]
README = Path(__file__).resolve().parent.parent / "README.md"


def assert_refused_before_start(run: Run, server: LocalImportAPI) -> None:
    """Exit 1, no traceback, no STATE, and not a single request reached the server."""
    assert run.exit_code == 1, run.output
    assert "Traceback" not in run.output
    assert run.stdout == ""
    assert server.request_log() == []


def error_lines(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if "| ERROR" in line]


def run_with_config_file(path: Path, messages: t.Iterable[dict[str, t.Any] | str]) -> Run:
    """Run the target on a config file as written (which may not be JSON)."""
    return run_target(config=path, stdin=lines(messages))


def env_run(messages: t.Iterable[dict[str, t.Any]], **variables: str) -> Run:
    """Run with ``--config ENV`` only: every setting comes from ``TARGET_RJMETRICS_*`` variables."""
    env = clean_env(**{f"TARGET_RJMETRICS_{name.upper()}": value for name, value in variables.items()})
    return run_target(config="ENV", stdin=lines(messages), env=env)


# -- item 4: settings errors name the setting and the rule ------------------------------------


def test_a_missing_client_id_is_named_and_nothing_is_sent(local_api: LocalImportAPI) -> None:
    config = target_config(local_api, api_key=SECRET)
    del config["client_id"]

    run = run_cli(config, INPUT)

    assert_refused_before_start(run, local_api)
    assert "`client_id` is required" in run.stderr
    assert "Config validation failed" not in run.stderr
    assert len(error_lines(run)) == 1  # one paragraph
    assert SECRET not in run.output


def test_each_wrong_setting_names_the_setting_and_the_rule_it_breaks(local_api: LocalImportAPI) -> None:
    config = target_config(local_api, client_id="abc", max_points_per_request=500, keyless_streams="hsah")

    run = run_cli(config, INPUT)

    assert_refused_before_start(run, local_api)
    (line,) = error_lines(run)
    assert "`client_id` must be an integer (got a string)" in line
    assert "`max_points_per_request` must be at most 100 (the API's limit)" in line
    assert "`keyless_streams` must be one of 'hash', 'fail'" in line
    assert "hsah" not in line  # values are never quoted, only the rule


def test_an_api_key_of_the_wrong_type_is_named_but_its_value_never_printed(local_api: LocalImportAPI) -> None:
    secret_number = 918273645546372819
    config = target_config(local_api, api_key=secret_number, client_id=0)

    run = run_cli(config, INPUT)

    assert_refused_before_start(run, local_api)
    assert "`api_key` must be a string (got an integer)" in run.stderr
    assert "`client_id` must be at least 1" in run.stderr
    assert str(secret_number) not in run.output
    assert "918273645" not in run.output


def test_a_setting_from_the_environment_names_its_variable(local_api: LocalImportAPI) -> None:
    run = env_run(INPUT, client_id="abc", api_key=SECRET, api_url=local_api.base_url)

    assert_refused_before_start(run, local_api)
    assert "`client_id` must be an integer (TARGET_RJMETRICS_CLIENT_ID is not one)" in run.stderr
    assert SECRET not in run.output
    assert "abc" not in run.stderr


def test_a_misspelt_boolean_in_the_environment_is_an_error_not_false(local_api: LocalImportAPI) -> None:
    # The SDK reads any text but true/1/yes/on as false: "ture" would quietly mean "not the sandbox".
    run = env_run(INPUT, client_id=str(CID), api_key=DEMO_API_KEY, api_url=local_api.base_url, validate_records="ture")

    assert_refused_before_start(run, local_api)
    assert "`validate_records` must be true or false (TARGET_RJMETRICS_VALIDATE_RECORDS is neither)" in run.stderr


def test_number_settings_from_the_environment_load(local_api: LocalImportAPI) -> None:
    # SDK 0.54 passes number settings from the environment on as text, which then fails validation.
    run = env_run(
        INPUT,
        client_id=str(CID),
        api_key=DEMO_API_KEY,
        api_url=local_api.base_url,
        request_timeout="12.5",
        max_retry_seconds="20",
        state_flush_seconds="1e1",
    )

    assert run.exit_code == 0, run.stderr
    assert sorted(landed_by_id(local_api, "users")) == [1, 2, 3]
    assert run.states == [{"bookmark": 3}]


def test_a_number_setting_from_the_environment_that_is_no_number_is_named(local_api: LocalImportAPI) -> None:
    run = env_run(INPUT, client_id=str(CID), api_key=DEMO_API_KEY, api_url=local_api.base_url, request_timeout="1m")

    assert_refused_before_start(run, local_api)
    assert "`request_timeout` must be a number (TARGET_RJMETRICS_REQUEST_TIMEOUT is not one)" in run.stderr


# -- item 5: unknown setting names are never silent --------------------------------------------


def unknown_warnings(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if "| WARNING" in line and "Unknown setting" in line]


def test_a_misspelt_setting_warns_once_with_the_closest_name_and_the_run_goes_on(local_api: LocalImportAPI) -> None:
    run = run_cli(target_config(local_api, table_prefx="shop_"), INPUT)

    assert run.exit_code == 0, run.stderr
    (warning,) = unknown_warnings(run)
    assert "Unknown setting `table_prefx` is ignored; did you mean `table_prefix`?" in warning
    # The warning said it is ignored, and it was: the rows are in the unprefixed table.
    assert local_api.tables(CID) == {"users": 3}
    assert run.states == [{"bookmark": 3}]


def test_a_misspelt_api_url_says_that_data_goes_to_production(local_api: LocalImportAPI, tmp_path: Path) -> None:
    # A dry run, so that nothing can reach the production host this warning is about.
    dry = tmp_path / "dry.jsonl"
    config = target_config(local_api, dry_run_file=str(dry))
    config["apiurl"] = config.pop("api_url")

    run = run_cli(config, INPUT)

    assert run.exit_code == 0, run.stderr
    (warning,) = unknown_warnings(run)
    assert "Unknown setting `apiurl` is ignored; did you mean `api_url`?" in warning
    assert f"data goes to the PRODUCTION host {PRODUCTION_URL}" in warning
    # Where the requests were addressed: production, as the warning said; the local server saw nothing.
    urls = [json.loads(line)["url"] for line in dry.read_text().splitlines()]
    assert urls
    assert all(url.startswith(PRODUCTION_URL + "/") for url in urls)
    assert local_api.request_log() == []


@pytest.mark.parametrize("how", ["config file", "environment"])
def test_a_password_of_api_url_never_shows_in_the_warning_about_where_data_goes(
    local_api: LocalImportAPI, tmp_path: Path, how: str
) -> None:
    dry = tmp_path / "dry.jsonl"
    api_url = local_api.base_url.replace("http://", "http://etl:Pw-Of-Api-Url@")
    if how == "config file":
        config = {**target_config(api_url, dry_run_file=str(dry)), "api_host": "typo.example"}
        run = run_cli(config, INPUT)
    else:
        variables = {"CLIENT_ID": str(CID), "API_KEY": SECRET, "API_URL": api_url, "DRY_RUN_FILE": str(dry)}
        run = env_run(INPUT, API_HOST="typo.example", **variables)

    assert run.exit_code == 0, run.stderr
    (warning,) = unknown_warnings(run)
    assert "As set, data goes to the `api_url` host http://***@127.0.0.1:" in warning, warning
    assert "Pw-Of-Api-Url" not in run.output


def test_an_unknown_setting_variable_is_named_with_the_closest_variable(local_api: LocalImportAPI) -> None:
    run = env_run(INPUT, client_id=str(CID), api_key=DEMO_API_KEY, api_url=local_api.base_url, table_prefx="shop_")

    assert run.exit_code == 0, run.stderr
    (warning,) = unknown_warnings(run)
    assert (
        "Unknown setting variable TARGET_RJMETRICS_TABLE_PREFX is ignored; did you mean TARGET_RJMETRICS_TABLE_PREFIX?"
        in warning
    )
    assert local_api.tables(CID) == {"users": 3}


def test_every_setting_about_lists_is_known_the_sdk_ones_too(local_api: LocalImportAPI) -> None:
    names = set(json.loads(about())["settings"]["properties"])
    assert {"batch_size_rows", "stream_maps", "flattening_enabled", "validate_records"} <= names
    config = target_config(
        local_api, batch_size_rows=50, validate_records=True, flattening_enabled=False, add_record_metadata=False
    )

    run = run_cli(config, INPUT)

    assert run.exit_code == 0, run.stderr
    assert unknown_warnings(run) == []


# -- item 6: a config file that is not JSON, or is missing -------------------------------------


def test_a_config_file_that_is_not_json_is_named_with_line_and_column(
    local_api: LocalImportAPI, tmp_path: Path
) -> None:
    path = tmp_path / "config.json"
    path.write_text(f'{{\n  "client_id": {CID},\n  "api_key": "{SECRET}"\n  "api_url": "{local_api.base_url}"\n}}\n')

    run = run_with_config_file(path, INPUT)

    assert_refused_before_start(run, local_api)
    (line,) = error_lines(run)
    assert f"Cannot read the config file '{path}': it is not valid JSON at line 4, column 3" in line
    assert len(run.stderr.splitlines()) <= 2
    assert SECRET not in run.output


def test_a_missing_config_file_is_named(local_api: LocalImportAPI, tmp_path: Path) -> None:
    path = tmp_path / "no-such-config.json"

    run = run_with_config_file(path, INPUT)

    assert_refused_before_start(run, local_api)
    (line,) = error_lines(run)
    assert f"Cannot read the config file '{path}': it does not exist." in line


def test_a_config_file_that_is_json_but_not_an_object_is_named(local_api: LocalImportAPI, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps([{"client_id": CID, "api_key": SECRET}]))

    run = run_with_config_file(path, INPUT)

    assert_refused_before_start(run, local_api)
    (line,) = error_lines(run)
    assert f"Cannot read the config file '{path}': it holds a JSON array, not an object of settings" in line
    assert SECRET not in run.output


# -- item 9: a record that breaks its schema is reported once ---------------------------------


def test_a_record_that_breaks_its_schema_is_reported_once_without_its_value(local_api: LocalImportAPI) -> None:
    messages = [
        USERS_SCHEMA,
        *users(1),
        state({"bookmark": 1}),
        record("users", id="not-a-number-7319", email="x@example.com"),
        state({"bookmark": 2}),
    ]

    run = run_cli(target_config(local_api), messages)

    assert run.exit_code == 1
    assert "Traceback" not in run.output
    assert "Record validation failed" not in run.stderr
    reports = [line for line in run.stderr.splitlines() if "does not satisfy" in line]
    assert len(reports) == 1, reports
    assert "stream 'users' (table 'users'), record #2: field 'id' does not satisfy type='integer'" in reports[0]
    assert "`validate_records`" in reports[0]
    assert "7319" not in run.output
    assert {"bookmark": 2} not in run.states


# -- item 10: "run with log level DEBUG" says how ----------------------------------------------


def test_the_debug_hint_names_the_variable_and_the_variable_shows_the_details(local_api: LocalImportAPI) -> None:
    # A stream map expression that divides by zero fails while the record is mapped: an error
    # whose own words could quote record values, so the target reports it by type and points
    # to DEBUG for the details.
    messages = [schema("trees", {"id": {"type": "integer"}}, ["id"]), record("trees", id=1)]
    config = target_config(local_api, stream_maps={"trees": {"ratio": "id / 0"}})

    run = run_cli(config, messages)

    assert run.exit_code == 1
    (error,) = error_lines(run)
    assert "record #1: ZeroDivisionError (run with TARGET_RJMETRICS_LOGLEVEL=DEBUG for details)" in error

    debug = run_cli(config, messages, env=clean_env(TARGET_RJMETRICS_LOGLEVEL="DEBUG"))

    assert debug.exit_code == 1
    assert "| DEBUG" in debug.stderr
    assert "Details of the input error" in debug.stderr
    assert "ZeroDivisionError: division by zero" in debug.stderr


def test_the_readme_says_how_to_turn_on_debug_logging() -> None:
    assert "TARGET_RJMETRICS_LOGLEVEL=DEBUG" in README.read_text()


# -- item 11: the summary is one log line per table, without removed streams -------------------

SUMMARY_LINE = re.compile(
    r"Load summary: table (\w+): records ([\d,]+), requests ([\d,]+), retries ([\d,]+), merged ([\d,]+), "
    r"seconds [\d.]+$"
)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \| ")


def test_the_summary_is_one_log_line_per_table(local_api: LocalImportAPI) -> None:
    props = {"id": {"type": "integer"}}
    messages = [
        USERS_SCHEMA,
        schema("orders", props, ["id"]),
        *users(3),
        *[record("orders", id=i) for i in (1, 2, 1)],
        state({"b": 1}),
    ]

    run = run_cli(target_config(local_api), messages)

    assert run.exit_code == 0, run.stderr
    # Every line on stderr is a log line of its own: nothing Meltano would relay without its prefix.
    assert all(LOG_LINE.match(line) for line in run.stderr.splitlines()), run.stderr
    matches = [m for m in map(SUMMARY_LINE.search, run.stderr.splitlines()) if m]
    rows = {m.group(1): tuple(int(v) for v in m.groups()[1:]) for m in matches}
    assert rows == {"orders": (3, 1, 0, 1), "users": (3, 1, 0, 0)}
    assert "Load summary: 2 tables, 6 records, 1 STATE message written." in run.stderr


def test_streams_removed_by_a_null_stream_map_claim_no_table_and_stay_out_of_the_summary(
    local_api: LocalImportAPI,
) -> None:
    props = {"id": {"type": "integer"}}
    messages = [
        schema("public_users", props, ["id"]),
        schema("public-users", props, ["id"]),  # the same table name, but removed below
        schema("audit", props, []),  # keyless, but removed: `keyless_streams: fail` does not apply
        *[record("public_users", id=i) for i in (1, 2)],
        *[record("public-users", id=i) for i in (7, 8, 9)],
        record("audit", id=5),
        state({"b": 1}),
    ]
    config = target_config(local_api, keyless_streams="fail", stream_maps={"public-users": None, "audit": "__NULL__"})

    run = run_cli(config, messages)

    assert run.exit_code == 0, run.stderr
    assert local_api.tables(CID) == {"public_users": 2}
    assert sorted(landed_by_id(local_api, "public_users")) == [1, 2]
    summary = [line for line in run.stderr.splitlines() if "Load summary" in line]
    assert [m.group(1) for m in map(SUMMARY_LINE.search, summary) if m] == ["public_users"]
    assert not any("audit" in line for line in summary)
    assert "no key properties" not in run.stderr
    assert run.states == [{"b": 1}]


# -- every mistake a sentence: the cases users met ---------------------------------------------


def test_a_malformed_api_url_is_a_sentence_naming_the_setting(local_api: LocalImportAPI) -> None:
    run = run_cli(target_config(local_api, api_url="http://etl:PW-secret@[::1/v2"), INPUT)

    assert_refused_before_start(run, local_api)
    (error,) = error_lines(run)
    assert "`api_url` must be a URL such as https://host/v2" in error, error
    assert "unexpected" not in run.output and "ValueError" not in run.output
    assert "PW-secret" not in run.output


def test_key_properties_given_as_a_string_are_not_read_letter_by_letter(local_api: LocalImportAPI) -> None:
    message = {**schema("users", {"id": {"type": "integer"}}, ["id"]), "key_properties": "id"}

    run = run_cli(target_config(local_api), [message, *users(2)])

    assert run.exit_code == 1 and run.stdout == ""
    (error,) = error_lines(run)
    assert "Input line 1: the SCHEMA of stream 'users' has 'key_properties' that is a string" in error, error
    assert 'such as ["id"]' in error
    assert "'i'" not in run.output and "Traceback" not in run.output
    assert [e for e in local_api.request_log() if e.method == "POST"] == []


def test_properties_given_as_an_array_is_a_sentence_not_a_type_error(local_api: LocalImportAPI) -> None:
    message = {"type": "SCHEMA", "stream": "users", "schema": {"properties": []}, "key_properties": ["id"]}

    run = run_cli(target_config(local_api), [message, *users(1)])

    assert run.exit_code == 1 and run.stdout == ""
    (error,) = error_lines(run)
    assert "the SCHEMA of stream 'users' has 'properties' that is an array" in error, error
    assert "TypeError" not in run.output and "Traceback" not in run.output
