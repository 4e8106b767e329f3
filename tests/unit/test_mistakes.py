"""Every mistake a sentence: settings and messages the SDK hands us, worded by setting or stream and rule."""

from __future__ import annotations

import typing as t

import pytest
from singer_sdk.exceptions import ConfigValidationError

from target_rjmetrics.reader import schema_message_problem
from target_rjmetrics.target import TargetRJMetrics

BASE = {"client_id": 1, "api_key": "k3y-for-tests", "api_url": "http://127.0.0.1:9/v2"}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"api_url": "http://[::1/v2"}, "`api_url` must be a URL such as https://host/v2, but a '[' of an IPv6"),
        ({"api_url": "http://h:99999/v2"}, "`api_url` must be a URL such as https://host/v2, but its port"),
        ({"api_url": "http://h:abc/v2"}, "but its port is not a number from 1 to 65535"),
        ({"api_url": "http:///v2"}, "`api_url` must name a host"),
        ({"api_url": "http://h/v2?apikey=x"}, "`api_url` must not have a query or fragment"),
        ({"api_url": "ftp://h/v2"}, "`api_url` must start with http:// or https://"),
        ({"api_key": ""}, "`api_key` is empty"),
        ({"stream_maps": {"users": "notadict"}}, '`stream_maps.users` must be "__NULL__" or null or a JSON object'),
        ({"stream_maps": {"users": {"__key_properties__": "id"}}}, "`stream_maps.users.__key_properties__` must be a"),
        ({"stream_maps": {"users": {"x": 5}}}, '`stream_maps.users.x` must be "__NULL__" or null or a string'),
        ({"max_points_per_request": 101}, "`max_points_per_request` must be at most 100 (the API's limit)"),
        ({"keyless_streams": "drop"}, "`keyless_streams` must be one of 'hash', 'fail'"),
        ({"request_timeout": "1e3"}, '`request_timeout` must be a plain number of seconds, such as 30 or "0.5"'),
        ({"sandbox": True}, "Both `sandbox` and `api_url` are set"),
    ],
)
def test_each_wrong_setting_is_one_sentence_naming_it(settings: dict[str, t.Any], expected: str) -> None:
    with pytest.raises(ConfigValidationError) as raised:
        TargetRJMetrics(config={**BASE, **settings}, validate_config=True)
    message = str(raised.value)
    assert expected in message, message
    assert "k3y-for-tests" not in message and "Error" not in message


def _schema(**fields: t.Any) -> dict[str, t.Any]:
    message = {"type": "SCHEMA", "stream": "users", "schema": {"properties": {"id": {"type": "integer"}}}}
    message.update(fields)
    return message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            _schema(key_properties="id"),
            """'key_properties' that is a string, not an array of field names (such as ["id"])""",
        ),
        (_schema(key_properties=[1]), "'key_properties' that is an array holding something other than strings"),
        (_schema(key_properties={"id": 1}), "'key_properties' that is an object"),
        (_schema(schema={"properties": []}), "the SCHEMA of stream 'users' has 'properties' that is an array"),
        (_schema(schema={"type": "string"}), "the SCHEMA of stream 'users' has no 'properties' in its schema"),
        (_schema(schema="users"), "has a 'schema' that is a string, not a JSON Schema object"),
        (_schema(stream=5), "the SCHEMA message's 'stream' is a number, not a string"),
        (_schema(stream=None), "the SCHEMA message's 'stream' is null"),
    ],
)
def test_a_schema_message_the_sdk_would_misread_is_named(message: dict[str, t.Any], expected: str) -> None:
    problem = schema_message_problem(message)
    assert problem is not None and expected in problem, problem


@pytest.mark.parametrize("keys", [None, [], ["id"], ["id", "email"]])
def test_a_good_schema_message_has_no_problem(keys: list[str] | None) -> None:
    assert schema_message_problem(_schema(key_properties=keys)) is None
