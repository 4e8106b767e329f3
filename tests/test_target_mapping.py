"""How Singer streams and records become Import API tables and data points, over loopback HTTP.

Each test runs the target on Singer input against the local Import API and checks what
landed there, what the server's request log recorded, and what the target printed.
"""

from __future__ import annotations

import decimal
import json
import logging
import typing as t

import pytest

from target_rjmetrics.exceptions import RJMetricsInputError
from target_rjmetrics.local_api import DEMO_CLIENT_ID, LocalImportAPI
from tests.support.checks import keys_of, landed_by_id, points_of, upserts
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, record, schema, state, users
from tests.support.targets import about, run_cli, run_in_process

if t.TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.smoke

CID = DEMO_CLIENT_ID
ID_AND_VALUE = {"id": {"type": "integer"}, "v": {"type": ["string", "null"]}}


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Messages of every WARNING the target logged during the test."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def posted_paths(server: LocalImportAPI) -> list[str]:
    """Paths of every upsert the server received, whatever its answer."""
    return [entry.path for entry in upserts(server, status=None)]


def sent_keys(server: LocalImportAPI) -> list[list[t.Any]]:
    """Key values of every point of every upsert the server received."""
    return [kv for entry in upserts(server, status=None) for kv in keys_of(entry)]


# -- table names -------------------------------------------------------------------------


def test_table_is_prefix_plus_stream_name_with_unsafe_characters_turned_to_underscores(
    local_api: LocalImportAPI,
) -> None:
    streams = {
        "public-users": "acme_public_users",
        "test:SpecialChars!in?attributes": "acme_test_SpecialChars_in_attributes",
        "Already_Safe_123": "acme_Already_Safe_123",
    }
    messages: list[dict[str, t.Any]] = []
    for n, stream in enumerate(streams, start=1):
        messages += [schema(stream, ID_AND_VALUE, ["id"]), record(stream, id=n, v=stream)]

    run_in_process(target_config(local_api, table_prefix="acme_"), messages)

    assert local_api.tables(CID) == dict.fromkeys(streams.values(), 1)
    for n, (stream, table) in enumerate(streams.items(), start=1):
        assert local_api.rows(CID, table) == [{"id": n, "v": stream}]
    assert sorted(posted_paths(local_api)) == sorted(f"/v2/client/{CID}/table/{t}/data" for t in streams.values())


def test_hostile_stream_names_never_change_the_request_path(local_api: LocalImportAPI) -> None:
    streams = {
        "a/b": "a_b",
        "q?apikey=stolen&x=1": "q_apikey_stolen_x_1",
        "100%2F%00": "100_2F_00",
        "../../etc/passwd": "______etc_passwd",
        "with space\tand tab": "with_space_and_tab",
        "ünï©ødé-表": "_n___d___",
        "#frag": "_frag",
        "long" + "x" * 296: "long" + "x" * 296,
        "é" * 300: "_" * 300,
    }
    messages: list[dict[str, t.Any]] = []
    for n, stream in enumerate(streams, start=1):
        messages += [schema(stream, ID_AND_VALUE, ["id"]), record(stream, id=n)]

    run_in_process(target_config(local_api), messages)

    expected_paths = sorted(f"/v2/client/{CID}/table/{table}/data" for table in streams.values())
    assert sorted(posted_paths(local_api)) == expected_paths
    assert all(entry.status == 201 for entry in upserts(local_api, status=None))
    for n, table in enumerate(streams.values(), start=1):
        assert local_api.rows(CID, table) == [{"id": n}]


def test_two_streams_mapping_to_one_table_fail_before_the_second_stream_is_sent(
    local_api: LocalImportAPI,
) -> None:
    messages = [
        schema("public-users", ID_AND_VALUE, ["id"]),
        *[record("public-users", id=i) for i in range(1, 4)],
        state({"step": 1}),
        schema("public_users", ID_AND_VALUE, ["id"]),
        record("public_users", id=900),
        state({"step": 2}),
    ]

    run = run_cli(target_config(local_api, max_points_per_request=1), messages)

    assert run.exit_code != 0
    assert "'public-users'" in run.stderr
    assert "'public_users'" in run.stderr
    assert "stream_maps" in run.stderr
    assert [900] not in sent_keys(local_api)
    assert {"step": 2} not in run.states


def test_streams_renamed_to_one_name_by_stream_maps_are_a_clear_error(local_api: LocalImportAPI) -> None:
    """Two input streams aliased to one name would overwrite each other's rows in one table."""
    messages = [
        schema("shop_a", ID_AND_VALUE, ["id"]),
        record("shop_a", id=1, v="from shop_a"),
        schema("shop_b", ID_AND_VALUE, ["id"]),
        record("shop_b", id=1, v="from shop_b"),
    ]
    config = target_config(
        local_api,
        stream_maps={"shop_a": {"__alias__": "orders"}, "shop_b": {"__alias__": "orders"}},
    )

    with pytest.raises(RJMetricsInputError) as failure:
        run_in_process(config, messages)

    message = str(failure.value)
    assert "shop_a" in message
    assert "shop_b" in message
    assert "stream_maps" in message
    assert local_api.rows(CID, "orders") == []


def test_empty_stream_name_is_a_clear_error_and_nothing_is_sent(local_api: LocalImportAPI) -> None:
    messages = [schema("", ID_AND_VALUE, ["id"]), record("", id=1), state({"s": 1})]

    with pytest.raises(RJMetricsInputError, match="empty table name") as failure:
        run_in_process(target_config(local_api), messages)

    assert "table_prefix" in str(failure.value)
    assert upserts(local_api, status=None) == []


def test_empty_stream_name_loads_into_the_table_prefix_alone(local_api: LocalImportAPI) -> None:
    run_in_process(
        target_config(local_api, table_prefix="raw_"),
        [schema("", ID_AND_VALUE, ["id"]), record("", id=1, v="x")],
    )

    assert local_api.tables(CID) == {"raw_": 1}
    assert posted_paths(local_api) == [f"/v2/client/{CID}/table/raw_/data"]


# -- keys ------------------------------------------------------------------------------


def test_composite_key_properties_become_the_keys_of_each_point(local_api: LocalImportAPI) -> None:
    props = {"shop": {"type": "integer"}, "sku": {"type": "string"}, "qty": {"type": "integer"}}
    messages = [
        schema("stock", props, ["shop", "sku"]),
        record("stock", shop=1, sku="A", qty=1),
        record("stock", shop=1, sku="B", qty=2),  # same shop, other sku: a new row
        record("stock", shop=2, sku="A", qty=3),  # same sku, other shop: a new row
        record("stock", shop=1, sku="A", qty=4),  # both parts equal: replaces the first
    ]

    run_in_process(target_config(local_api, max_points_per_request=1, max_concurrent_requests=1), messages)

    rows = local_api.rows(CID, "stock", with_keys=True)
    assert sorted((r["shop"], r["sku"], r["qty"]) for r in rows) == [(1, "A", 4), (1, "B", 2), (2, "A", 3)]
    assert all(r["keys"] == ["shop", "sku"] for r in rows)


@pytest.mark.parametrize("per_request", [100, 1])
def test_keys_are_told_apart_as_the_api_does_true_is_not_1_and_1_is_1_point_0(
    local_api: LocalImportAPI, per_request: int
) -> None:
    # In one request (100) the target merges points itself; one point per request (1) lets the
    # API merge them. Both must keep exactly the rows the API keeps apart.
    messages = [
        schema("flags", {"id": {}, "v": {"type": "string"}}, ["id"]),
        record("flags", id=True, v="true"),
        record("flags", id=1, v="one"),
        record("flags", id=False, v="false"),
        record("flags", id=0, v="zero"),
        record("flags", id=1.0, v="one again, as 1.0"),
        record("flags", id="1", v="the string 1"),
        schema("pairs", {"a": {}, "b": {}, "v": {"type": "string"}}, ["a", "b"]),
        record("pairs", a=1, b=True, v="1,true"),
        record("pairs", a=True, b=1, v="true,1"),
        record("pairs", a=1, b=1, v="1,1"),
        record("pairs", a=1.0, b=1, v="1.0,1 replaces 1,1"),
    ]

    run = run_cli(target_config(local_api, max_points_per_request=per_request), messages)

    assert run.exit_code == 0, run.stderr
    flags = {json.dumps(r["id"]): r["v"] for r in local_api.rows(CID, "flags")}
    assert flags == {"true": "true", "1.0": "one again, as 1.0", "false": "false", "0": "zero", '"1"': "the string 1"}
    pairs = sorted(r["v"] for r in local_api.rows(CID, "pairs"))
    assert pairs == ["1,true", "1.0,1 replaces 1,1", "true,1"]
    # Only 1 and 1.0 are one key: in one request the target merges them, so 5 of 6 points go out.
    sent = sum(points_of(entry) for entry in upserts(local_api, table="flags"))
    assert sent == (5 if per_request == 100 else 6)


def test_record_missing_its_key_field_fails_naming_stream_table_position_and_field(
    local_api: LocalImportAPI,
) -> None:
    messages = [
        schema("users", ID_AND_VALUE, ["id"]),
        record("users", id=1, v="a"),
        state({"after": 1}),
        record("users", id=2, v="b"),
        state({"after": 2}),
        record("users", v="no id here"),
        state({"after": 3}),
        record("users", id=4, v="d"),
        state({"after": 4}),
    ]

    run = run_cli(target_config(local_api, max_points_per_request=1, max_concurrent_requests=1), messages)

    assert run.exit_code != 0
    assert "stream 'users'" in run.stderr
    assert "table 'users'" in run.stderr
    assert "record #3" in run.stderr
    assert "'id'" in run.stderr
    landed = set(landed_by_id(local_api, "users"))
    assert landed <= {1, 2}
    assert [4] not in sent_keys(local_api)
    # Only states whose records all landed, and nothing past the failing record.
    assert run.states in ([], [{"after": 1}], [{"after": 1}, {"after": 2}], [{"after": 2}])
    for written in run.states:
        assert set(range(1, written["after"] + 1)) <= landed


def test_record_with_a_null_key_fails_naming_stream_table_position_and_field(local_api: LocalImportAPI) -> None:
    messages = [
        schema("users", {"id": {"type": ["integer", "null"]}}, ["id"]),
        record("users", id=1),
        record("users", id=2),
        record("users", id=None),
        record("users", id=4),
    ]

    with pytest.raises(RJMetricsInputError) as failure:
        run_in_process(target_config(local_api), messages)

    message = str(failure.value)
    assert "stream 'users'" in message
    assert "table 'users'" in message
    assert "record #3" in message
    assert "'id'" in message
    assert "null" in message
    assert [4] not in sent_keys(local_api)


def test_record_field_named_keys_is_loaded_as_keys_underscore_with_a_warning(
    local_api: LocalImportAPI, caplog: pytest.LogCaptureFixture
) -> None:
    props = {"id": {"type": "integer"}, "keys": {"type": "string"}}
    messages = [
        schema("locks", props, ["id"]),
        record("locks", id=1, keys="front door"),
        record("locks", id=2, keys=""),
    ]

    run_in_process(target_config(local_api), messages)

    rows = local_api.rows(CID, "locks", with_keys=True)
    assert rows == [{"keys": ["id"], "id": 1, "keys_": "front door"}, {"keys": ["id"], "id": 2, "keys_": ""}]
    renamed = [w for w in warnings_logged(caplog) if "'keys'" in w and "'keys_'" in w]
    assert len(renamed) == 1


def test_record_fields_keys_and_keys_underscore_together_are_a_clear_error(local_api: LocalImportAPI) -> None:
    props = {"id": {"type": "integer"}, "keys": {"type": "string"}, "keys_": {"type": "string"}}
    messages = [schema("locks", props, ["id"]), record("locks", id=1, keys="a", keys_="b")]

    with pytest.raises(RJMetricsInputError) as failure:
        run_in_process(target_config(local_api), messages)

    message = str(failure.value)
    assert "'keys'" in message
    assert "'keys_'" in message
    assert "stream 'locks'" in message
    assert "record #1" in message
    assert upserts(local_api, status=None) == []


def test_key_property_named_keys_upserts_on_that_field(local_api: LocalImportAPI) -> None:
    props = {"keys": {"type": "integer"}, "v": {"type": "string"}}
    messages = [
        schema("locks", props, ["keys"]),
        record("locks", keys=1, v="old"),
        record("locks", keys=2, v="two"),
        record("locks", keys=1, v="new"),
    ]

    run_in_process(target_config(local_api, max_points_per_request=1, max_concurrent_requests=1), messages)

    rows = local_api.rows(CID, "locks", with_keys=True)
    assert sorted((r["keys_"], r["v"]) for r in rows) == [(1, "new"), (2, "two")]
    assert all(r["keys"] == ["keys_"] for r in rows)


# -- keyless streams -------------------------------------------------------------------------


def test_keyless_stream_is_keyed_by_a_content_hash_so_identical_records_land_once(
    local_api: LocalImportAPI, caplog: pytest.LogCaptureFixture
) -> None:
    messages = [
        schema("events", ID_AND_VALUE, []),
        record("events", id=1, v="a"),
        record("events", id=1, v="b"),
        record("events", id=1, v="a"),  # identical to the first, in another request
        schema("clicks", ID_AND_VALUE, []),
        record("clicks", id=1, v="a"),
        record("clicks", id=2, v="a"),
    ]
    config = target_config(local_api, max_points_per_request=1, max_concurrent_requests=1)

    run_in_process(config, messages)
    first_hashes = sorted(r["_record_hash"] for r in local_api.rows(CID, "events"))
    run_in_process(config, messages)  # a rerun of the same input adds nothing

    events = local_api.rows(CID, "events", with_keys=True)
    assert sorted((r["id"], r["v"]) for r in events) == [(1, "a"), (1, "b")]
    assert all(r["keys"] == ["_record_hash"] for r in events)
    assert sorted(r["_record_hash"] for r in events) == first_hashes
    assert len(set(first_hashes)) == 2
    assert local_api.tables(CID) == {"events": 2, "clicks": 2}
    hash_warnings = [w for w in warnings_logged(caplog) if "_record_hash" in w]
    # Once per stream per run: two streams, two runs.
    assert len(hash_warnings) == 4
    assert sum("'events'" in w for w in hash_warnings) == 2


def test_keyless_streams_fail_stops_with_an_error_naming_the_setting(local_api: LocalImportAPI) -> None:
    messages = [schema("events", ID_AND_VALUE, []), record("events", id=1, v="a")]

    with pytest.raises(RJMetricsInputError) as failure:
        run_in_process(target_config(local_api, keyless_streams="fail"), messages)

    assert "keyless_streams" in str(failure.value)
    assert "'events'" in str(failure.value)
    assert upserts(local_api, status=None) == []


# -- values ----------------------------------------------------------------------------------


def test_date_times_land_in_utc_as_the_api_format_and_dates_as_iso(local_api: LocalImportAPI) -> None:
    dt = {"type": ["string", "null"], "format": "date-time"}
    props = {"id": {"type": "integer"}, "at": dt, "day": {"type": ["string", "null"], "format": "date"}}
    messages = [
        schema("ev", props, ["id"]),
        record("ev", id=1, at="2024-06-01T12:30:45+02:00", day="2024-02-29"),
        record("ev", id=2, at="2024-06-01T12:30:45Z", day="1999-12-31"),
        record("ev", id=3, at="2024-01-01T01:00:00+02:00", day="2024-01-01"),  # back into 2023 in UTC
        record("ev", id=4, at="2024-03-01T20:15:00.987654-05:00", day=None),  # forward a day, fraction dropped
    ]

    run_in_process(target_config(local_api), messages)

    rows = landed_by_id(local_api, "ev")
    assert {i: (r["at"], r["day"]) for i, r in rows.items()} == {
        1: ("2024-06-01 10:30:45", "2024-02-29"),
        2: ("2024-06-01 12:30:45", "1999-12-31"),
        3: ("2023-12-31 23:00:00", "2024-01-01"),
        4: ("2024-03-02 01:15:00", None),
    }


def test_every_year_from_0001_to_9999_is_sent_with_four_digits(local_api: LocalImportAPI) -> None:
    dt = {"type": ["string", "null"], "format": "date-time"}
    props = {"id": {"type": "integer"}, "at": dt, "day": {"type": ["string", "null"], "format": "date"}}
    messages = [
        schema("ev", props, ["id"]),
        record("ev", id=1, at="0001-01-01T00:00:00", day="0001-01-01"),  # the common "zero date"
        record("ev", id=2, at="0999-06-01T12:00:00Z", day="0999-06-01"),
        record("ev", id=3, at="0099-02-03T04:05:06+00:00", day="0009-09-09"),
        record("ev", id=4, at="9999-12-31T23:59:59Z", day="9999-12-31"),
        record("ev", id=5, at="0001-01-01T05:00:00+05:00", day=None),  # exactly the first second in UTC
    ]

    run_in_process(target_config(local_api), messages)

    rows = landed_by_id(local_api, "ev")
    assert {i: (r["at"], r["day"]) for i, r in rows.items()} == {
        1: ("0001-01-01 00:00:00", "0001-01-01"),
        2: ("0999-06-01 12:00:00", "0999-06-01"),
        3: ("0099-02-03 04:05:06", "0009-09-09"),
        4: ("9999-12-31 23:59:59", "9999-12-31"),
        5: ("0001-01-01 00:00:00", None),
    }


@pytest.mark.parametrize("value", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00"])
def test_a_date_time_that_leaves_years_1_to_9999_in_utc_is_a_clear_error(local_api: LocalImportAPI, value: str) -> None:
    dt = {"type": "string", "format": "date-time"}
    messages = [
        schema("ev", {"id": {"type": "integer"}, "at": dt}, ["id"]),
        record("ev", id=1, at="2024-01-01T00:00:00Z"),
        state({"after": 1}),
        record("ev", id=2, at=value),
        state({"after": 2}),
    ]

    run = run_cli(target_config(local_api), messages)

    assert run.exit_code == 1
    assert "stream 'ev' (table 'ev'), record #2: field 'at' is a date-time that falls outside the years 0001-9999" in (
        run.stderr
    )
    assert "OverflowError" not in run.stderr and "Traceback" not in run.stderr
    assert value not in run.output and value[:10] not in run.output
    assert {"after": 2} not in run.states
    assert [r["id"] for r in local_api.rows(CID, "ev")] in ([], [1])


def test_decimals_are_sent_digit_for_digit(local_api: LocalImportAPI, tmp_path: t.Any) -> None:
    dry_run = tmp_path / "bodies.jsonl"
    props = {"id": {"type": "integer"}, "amount": {"type": "number"}, "big": {"type": "integer"}}
    text = (
        json.dumps(schema("money", props, ["id"]))
        + "\n"
        + '{"type": "RECORD", "stream": "money", "record": {"id": 1, "amount": 12345678901234567890.123456789, '
        '"big": 123456789012345678901234567890}}\n'
        + '{"type": "RECORD", "stream": "money", "record": {"id": 2, "amount": 0.1, "big": -1}}\n'
        + '{"type": "RECORD", "stream": "money", "record": {"id": 3, "amount": 1.10, "big": 0}}\n'
    )

    run_in_process(target_config(local_api, dry_run_file=str(dry_run)), text)

    body = dry_run.read_bytes()
    assert b'"amount":12345678901234567890.123456789' in body
    assert b'"big":123456789012345678901234567890' in body
    assert b'"amount":0.1,' in body
    assert b'"amount":1.10,' in body  # trailing zero kept: the digits are the tap's


def test_nan_and_infinities_become_null_with_one_warning_and_a_count_in_the_summary(
    local_api: LocalImportAPI,
) -> None:
    props = {"id": {"type": "integer"}, "x": {"type": ["number", "null"]}, "o": {"type": ["object", "null"]}}
    raw = '{{"type": "RECORD", "stream": "m", "record": {{"id": {i}, "x": {x}, "o": {o}}}}}'
    messages: list[dict[str, t.Any] | str] = [
        schema("m", props, ["id"]),
        raw.format(i=1, x="NaN", o="null"),
        raw.format(i=2, x="Infinity", o="null"),
        raw.format(i=3, x="-Infinity", o="null"),
        raw.format(i=4, x="1e400", o="null"),
        raw.format(i=5, x="2.5", o='{"inner": NaN, "ok": 1}'),
        state({"done": True}),
    ]

    run = run_cli(target_config(local_api), messages)

    assert run.exit_code == 0, run.stderr
    rows = landed_by_id(local_api, "m")
    assert [rows[i]["x"] for i in range(1, 6)] == [None, None, None, None, 2.5]
    assert json.loads(rows[5]["o"]) == {"inner": None, "ok": 1}
    warning_lines = [line for line in run.stderr.splitlines() if "WARNING" in line and "NaN, infinite or" in line]
    assert len(warning_lines) == 1
    assert "5 numbers that are NaN, infinite or beyond a double's range were sent as null" in run.stderr
    assert run.states == [{"done": True}]


def test_the_largest_doubles_are_sent_as_numbers_and_only_what_no_double_holds_becomes_null(
    local_api: LocalImportAPI, tmp_path: Path
) -> None:
    # PostgreSQL's largest double, as tap-postgres writes it, is finite: it must land as a number.
    props = {"id": {"type": "integer"}, "x": {"type": ["number", "null"]}}
    raw = '{{"type": "RECORD", "stream": "m", "record": {{"id": {i}, "x": {x}}}}}'
    values = ["1.7976931348623157e308", "-1.7976931348623157e308", "1.7976931348623158e308", "2.2250738585072014e-308"]
    beyond = ["1.8e308", "-1e309", "1" + "0" * 400]
    dry_run = tmp_path / "dry.jsonl"
    messages: list[dict[str, t.Any] | str] = [schema("m", props, ["id"])]
    messages += [raw.format(i=i, x=x) for i, x in enumerate(values + beyond)]

    run = run_cli(target_config(local_api, dry_run_file=str(dry_run)), messages)

    assert run.exit_code == 0, run.stderr
    sent = {
        point["id"]: point["x"]
        for line in dry_run.read_text().splitlines()
        for point in json.loads(line, parse_float=decimal.Decimal)["body"]
    }
    for i, text in enumerate(values):
        assert sent[i] == decimal.Decimal(text), (text, sent[i])
    for i in range(len(values), len(values) + len(beyond)):
        assert sent[i] is None, (i, sent[i])
    assert f"{len(beyond)} numbers that are NaN, infinite or beyond a double's range were sent as null" in run.stderr
    assert "record #1:" not in run.stderr  # the first warning names the first value sent as null
    assert f"record #{len(values) + 1}: field 'x' is NaN, infinite or beyond" in run.stderr


NESTED_SCHEMA = schema(
    "orders",
    {
        "id": {"type": "integer"},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "address": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
        "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
    },
    ["id"],
)
NESTED_RECORD = record(
    "orders",
    id=1,
    customer={"name": "Zoë", "address": {"city": "Köln"}},
    items=[{"sku": "A"}, {"sku": "B"}],
)


def test_nested_objects_and_arrays_land_as_json_text(local_api: LocalImportAPI) -> None:
    run_in_process(target_config(local_api), [NESTED_SCHEMA, NESTED_RECORD])

    (row,) = local_api.rows(CID, "orders")
    assert isinstance(row["customer"], str)
    assert isinstance(row["items"], str)
    assert json.loads(row["customer"]) == {"name": "Zoë", "address": {"city": "Köln"}}
    assert json.loads(row["items"]) == [{"sku": "A"}, {"sku": "B"}]
    assert "Köln" in row["customer"]  # non-ASCII kept as text, not \u escapes


def test_flattening_turns_nested_objects_into_columns_down_to_max_depth(make_api: t.Any) -> None:
    shallow, deep = make_api(), make_api()

    run_in_process(
        target_config(shallow, flattening_enabled=True, flattening_max_depth=1), [NESTED_SCHEMA, NESTED_RECORD]
    )
    run_in_process(target_config(deep, flattening_enabled=True, flattening_max_depth=3), [NESTED_SCHEMA, NESTED_RECORD])

    (row,) = shallow.rows(CID, "orders")
    assert set(row) == {"id", "customer__name", "customer__address", "items"}
    assert row["customer__name"] == "Zoë"
    assert json.loads(row["customer__address"]) == {"city": "Köln"}
    (row,) = deep.rows(CID, "orders")
    assert set(row) == {"id", "customer__name", "customer__address__city", "items"}
    assert row["customer__address__city"] == "Köln"
    assert json.loads(row["items"]) == [{"sku": "A"}, {"sku": "B"}]


def test_control_characters_nul_and_non_ascii_text_survive_intact(local_api: LocalImportAPI) -> None:
    texts = {
        1: "nul\x00inside",
        2: "".join(chr(c) for c in range(1, 32)) + "\x7f",
        3: "Grüße, 東京, Ελληνικά, עברית, 😀 \U0010ffff",
        4: "line\u2028sep\u2029para \ufeffbom",
        5: 'quote " backslash \\ slash /',
    }
    messages = [schema("texts", ID_AND_VALUE, ["id"]), *[record("texts", id=i, v=v) for i, v in texts.items()]]

    run_in_process(target_config(local_api), messages)

    rows = landed_by_id(local_api, "texts")
    assert {i: r["v"] for i, r in rows.items()} == texts


# -- messages and SDK features -----------------------------------------------------------------


def test_activate_version_is_ignored_with_a_warning_and_deletes_nothing(
    local_api: LocalImportAPI, caplog: pytest.LogCaptureFixture
) -> None:
    messages = [
        USERS_SCHEMA,
        *users(3),
        {"type": "ACTIVATE_VERSION", "stream": "users", "version": 2},
        *users(1, start=4),
        state({"s": 1}),
    ]

    run = run_in_process(target_config(local_api), messages)

    assert sorted(landed_by_id(local_api, "users")) == [1, 2, 3, 4]
    assert any("ACTIVATE_VERSION" in w and "'users'" in w for w in warnings_logged(caplog))
    assert run.states == [{"s": 1}]


def test_about_does_not_advertise_activate_version() -> None:
    capabilities = json.loads(about())["capabilities"]
    assert "activate-version" not in capabilities
    assert "stream-maps" in capabilities  # the list itself is there


def test_stream_maps_rename_the_stream_drop_a_field_and_set_key_properties(local_api: LocalImportAPI) -> None:
    props = {"id": {"type": "integer"}, "email": {"type": "string"}, "password": {"type": "string"}}
    messages = [
        schema("public-users", props, ["id"]),
        record("public-users", id=1, email="a@example.com", password="pw1"),
        record("public-users", id=2, email="a@example.com", password="pw2"),
        record("public-users", id=3, email="b@example.com", password="pw3"),
    ]
    stream_maps = {"public-users": {"__alias__": "customers", "password": "__NULL__", "__key_properties__": ["email"]}}

    run_in_process(target_config(local_api, stream_maps=stream_maps, max_points_per_request=1), messages)

    assert set(local_api.tables(CID)) == {"customers"}
    rows = local_api.rows(CID, "customers", with_keys=True)
    assert sorted((r["email"], r["id"]) for r in rows) == [("a@example.com", 2), ("b@example.com", 3)]
    assert all("password" not in r for r in rows)
    assert all(r["keys"] == ["email"] for r in rows)
    assert all("pw" not in repr(entry) for entry in local_api.request_log())


def test_add_record_metadata_adds_sdc_columns(make_api: t.Any) -> None:
    plain, with_metadata = make_api(), make_api()

    run_in_process(target_config(plain), [USERS_SCHEMA, *users(2)])
    run_in_process(target_config(with_metadata, add_record_metadata=True), [USERS_SCHEMA, *users(2)])

    assert not any(k.startswith("_sdc_") for r in plain.rows(CID, "users") for k in r)
    rows = with_metadata.rows(CID, "users")
    assert len(rows) == 2
    for row in rows:
        sdc = {k for k in row if k.startswith("_sdc_")}
        assert {"_sdc_received_at", "_sdc_batched_at", "_sdc_sequence"} <= sdc
        assert len(row["_sdc_received_at"]) == len("YYYY-MM-DD HH:MM:SS")


STRICT_SCHEMA = schema("people", {"id": {"type": "integer"}, "age": {"type": "integer"}}, ["id"])
BAD_RECORDS = [record("people", id=1, age=30), record("people", id=2, age="SECRET-VALUE-8317")]


def test_validate_records_rejects_a_bad_record_naming_the_field_and_not_the_value(
    local_api: LocalImportAPI,
) -> None:
    with pytest.raises(Exception) as failure:  # noqa: PT011 (the message is what is checked)
        run_in_process(target_config(local_api, validate_records=True), [STRICT_SCHEMA, *BAD_RECORDS])

    message = str(failure.value)
    assert "'age'" in message
    assert "record #2" in message
    assert "SECRET-VALUE-8317" not in message
    assert [2] not in sent_keys(local_api)


def test_validate_records_false_lets_a_record_that_breaks_its_schema_through(local_api: LocalImportAPI) -> None:
    run_in_process(target_config(local_api, validate_records=False), [STRICT_SCHEMA, *BAD_RECORDS])

    assert landed_by_id(local_api, "people")[2]["age"] == "SECRET-VALUE-8317"
