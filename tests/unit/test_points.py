"""Records to data points, table by table of cases: the pure mapping of ``target_rjmetrics.points``."""

from __future__ import annotations

import datetime
import decimal
import json
import typing as t

import msgspec
import pytest

from target_rjmetrics.exceptions import RJMetricsInputError
from target_rjmetrics.points import (
    PointMapper,
    datelike_fields,
    datelike_text,
    format_datetime,
    key_part,
    nested_plain,
    order_key,
    table_name,
)

UTC = datetime.timezone.utc


@pytest.mark.parametrize(
    ("stream", "prefix", "table"),
    [
        ("users", "", "users"),
        ("public-users", "", "public_users"),
        ("test:SpecialChars!in?attributes", "", "test_SpecialChars_in_attributes"),
        ("café/orders", "", "caf__orders"),
        ("x?apikey=stolen&y=1", "", "x_apikey_stolen_y_1"),
        ("users", "shop_", "shop_users"),
        ("", "", ""),
        ("", "only_", "only_"),
    ],
)
def test_table_names(stream: str, prefix: str, table: str) -> None:
    assert table_name(stream, prefix) == table


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (1, 1.0, True),
        (1, decimal.Decimal("1.0"), True),
        (decimal.Decimal("1.50"), 1.5, True),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        (False, False, True),
        (True, False, False),
        ("1", 1, False),
        ("a", "a", True),
        (2**64 + 1, 2**64 + 1, True),
        (2**64 + 1, 2**64, False),
    ],
)
def test_key_identity_is_the_apis(a: t.Any, b: t.Any, same: bool) -> None:
    assert (key_part(a) == key_part(b)) is same
    if same:
        assert hash(key_part(a)) == hash(key_part(b))


D = decimal.Decimal


@pytest.mark.parametrize(
    ("a", "b", "one_for_ordering", "one_for_merging"),
    [
        # Certainly one key: merged, and ordered as one.
        (1, D("1.0"), True, True),
        ("x", "x", True, True),
        # Equal as doubles, not certainly one key: ordered as one, never merged.
        (D("0.1"), D("0.1000000000000000055511151231257827"), True, False),
        (D("12345678901234567.0"), 12345678901234568, True, False),
        (2**53, 2**53 + 1, True, False),
        (0, D("-0.0"), True, True),
        # Two keys by any reading.
        (D("0.1"), D("0.2"), False, False),
        (True, 1, False, False),
        ("1", 1, False, False),
        (2**53 + 2, 2**53, False, False),
        # Composite keys compare element by element.
        (("a", D("0.1")), ("a", D("0.1000000000000000055511151231257827")), True, False),
        (("a", 1), ("b", 1), False, False),
        ((1, "x"), (D("1.0"), "x"), True, True),
        (("a", 2**53), ("a", 2**53 + 1), True, False),
        (("a", 2**53 + 2), ("a", 2**53), False, False),
    ],
)
def test_keys_the_api_may_read_as_one_are_ordered_as_one_and_merged_only_when_certain(
    a: t.Any, b: t.Any, one_for_ordering: bool, one_for_merging: bool
) -> None:
    def key(value: t.Any) -> t.Any:
        return tuple(key_part(v) for v in value) if isinstance(value, tuple) else key_part(value)

    assert (order_key(key(a)) == order_key(key(b))) is one_for_ordering
    assert (key(a) == key(b)) is one_for_merging


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            datetime.datetime(2024, 6, 1, 12, 30, 45, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            "2024-06-01 10:30:45",
        ),
        (
            datetime.datetime(2024, 1, 1, 1, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            "2023-12-31 23:00:00",
        ),
        (
            datetime.datetime(2024, 3, 1, 20, 15, 0, 987654, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
            "2024-03-02 01:15:00",
        ),
        (datetime.datetime(1, 1, 1), "0001-01-01 00:00:00"),  # noqa: DTZ001 (naive: taken as UTC)
        (datetime.datetime(999, 6, 1, 12, tzinfo=UTC), "0999-06-01 12:00:00"),
        (datetime.datetime(99, 2, 3, 4, 5, 6), "0099-02-03 04:05:06"),  # noqa: DTZ001 (naive)
        (datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "9999-12-31 23:59:59"),
    ],
)
def test_date_times_in_the_api_format(value: datetime.datetime, text: str) -> None:
    assert format_datetime(value) == text


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(9999, 12, 31, 23, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        datetime.datetime(1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
    ],
)
def test_date_times_outside_years_1_to_9999_in_utc_overflow(value: datetime.datetime) -> None:
    with pytest.raises(OverflowError):
        format_datetime(value)


def _mapper(keys: list[str], warnings: list[tuple[str, t.Any]] | None = None) -> PointMapper:
    seen = warnings if warnings is not None else []
    return PointMapper(
        stream="s",
        table="t",
        key_properties=keys,
        on_nonfinite=lambda name, position: seen.append(("nonfinite", (name, position))),
        on_renamed_keys=lambda: seen.append(("renamed", None)),
    )


@pytest.mark.parametrize(
    ("record", "point"),
    [
        ({"id": 1, "s": "x", "b": True, "n": None}, {"keys": ["id"], "id": 1, "s": "x", "b": True, "n": None}),
        ({"id": 1, "d": decimal.Decimal("12345678901234567890.123456789")}, {"keys": ["id"], "id": 1, "d": "DEC"}),
        ({"id": 1, "f": 1.5}, {"keys": ["id"], "id": 1, "f": 1.5}),
        ({"id": 1, "day": datetime.date(1, 1, 1)}, {"keys": ["id"], "id": 1, "day": "0001-01-01"}),
        ({"id": 1, "at": datetime.time(12, 30)}, {"keys": ["id"], "id": 1, "at": "12:30:00"}),
        ({"id": 1, "o": {"a": [1, 2], "b": None}}, {"keys": ["id"], "id": 1, "o": '{"a":[1,2],"b":null}'}),
        ({"id": 1, "l": []}, {"keys": ["id"], "id": 1, "l": "[]"}),
        ({"id": 1, "keys": "k"}, {"keys": ["id"], "id": 1, "keys_": "k"}),
    ],
)
def test_values_become_what_the_api_surely_takes(record: dict[str, t.Any], point: dict[str, t.Any]) -> None:
    key, encoded = _mapper(["id"]).to_point(record, 1)
    assert key == 1
    text = encoded.decode()
    if "d" in record:  # every digit of a decimal goes out as written
        assert '"d":12345678901234567890.123456789' in text
        return
    assert json.loads(text) == point


@pytest.mark.parametrize(
    "bad",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        decimal.Decimal("NaN"),
        decimal.Decimal("1e400"),
        decimal.Decimal("1.8e308"),  # rounds to infinity as a double
        decimal.Decimal("-1.7976931348623159e308"),
        2**1024,
        -(2**1024 - 2**970),  # halfway to 2**1024 rounds to it
    ],
)
def test_nonfinite_numbers_become_null_and_are_reported(bad: t.Any) -> None:
    seen: list[tuple[str, t.Any]] = []
    _, encoded = _mapper(["id"], seen).to_point({"id": 1, "x": bad, "nested": [bad]}, 7)
    assert json.loads(encoded) == {"keys": ["id"], "id": 1, "x": None, "nested": "[null]"}
    assert seen == [("nonfinite", ("x", 7)), ("nonfinite", ("nested", 7))]


@pytest.mark.parametrize(
    "finite",
    [
        decimal.Decimal("1.7976931348623157e308"),  # the largest double, as PostgreSQL writes it
        decimal.Decimal("-1.7976931348623157e308"),
        decimal.Decimal("1.7976931348623158e308"),  # rounds down to the largest double
        decimal.Decimal("9.99e307"),
        decimal.Decimal("4.9e-324"),
        2**1024 - 2**970 - 1,
        1.7976931348623157e308,
    ],
)
def test_every_number_a_double_can_hold_is_sent_as_a_number(finite: t.Any) -> None:
    seen: list[tuple[str, t.Any]] = []
    _, encoded = _mapper(["id"], seen).to_point({"id": 1, "x": finite}, 7)
    assert seen == []
    sent = json.loads(encoded, parse_float=decimal.Decimal)["x"]
    assert (float(sent) if isinstance(finite, float) else sent) == finite


def test_a_key_no_double_can_hold_is_named_as_such() -> None:
    with pytest.raises(RJMetricsInputError, match="key property 'id' is a number no double can hold"):
        _mapper(["id"]).to_point({"id": 2**1100}, 3)


def test_composite_keys_and_the_keys_field() -> None:
    seen: list[tuple[str, t.Any]] = []
    mapper = _mapper(["keys", "b"], seen)
    key, encoded = mapper.to_point({"keys": 3, "b": True, "v": 1}, 1)
    assert key == (3, key_part(True))
    assert json.loads(encoded) == {"keys": ["keys_", "b"], "keys_": 3, "b": True, "v": 1}
    assert seen == [("renamed", None)]


def test_keyless_streams_are_keyed_by_a_hash_of_the_content() -> None:
    mapper = _mapper([])
    key_a, point_a = mapper.to_point({"a": 1, "b": "x"}, 1)
    key_b, point_b = mapper.to_point({"b": "x", "a": 1}, 2)  # the same content in another order
    key_c, _ = mapper.to_point({"a": 2, "b": "x"}, 3)
    assert key_a == key_b != key_c
    assert json.loads(point_a)["keys"] == ["_record_hash"] and len(key_a) == 64  # type: ignore[arg-type]
    assert json.loads(point_a)["_record_hash"] == json.loads(point_b)["_record_hash"] == key_a


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"v": 1}, "key property 'id' is missing or null"),
        ({"id": None}, "key property 'id' is missing or null"),
        ({"id": {"a": 1}}, "key property 'id' is an object or array"),
        ({"id": [1]}, "key property 'id' is an object or array"),
        ({"id": 1, "keys": 1, "keys_": 2}, "has a field named 'keys' (the API's control field) and also 'keys_'"),
        (
            {
                "id": 1,
                "at": datetime.datetime(9999, 12, 31, 23, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
            },
            "field 'at' is a date-time that falls outside the years 0001-9999",
        ),
    ],
)
def test_records_that_cannot_become_points_are_named_never_shown(record: dict[str, t.Any], words: str) -> None:
    with pytest.raises(RJMetricsInputError) as failure:
        _mapper(["id"]).to_point(record, 42)
    assert str(failure.value).startswith("stream 's' (table 't'), record #42: ")
    assert words in str(failure.value)


def test_date_like_fields_are_found_once_per_schema() -> None:
    schema = {
        "properties": {
            "at": {"type": ["string", "null"], "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "t": {"type": "string", "format": "time"},
            "s": {"type": "string"},
            "odd": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        }
    }
    assert dict(datelike_fields(schema)) == {"at": "date-time", "day": "date", "t": "time", "odd": "date-time"}


@pytest.mark.parametrize(
    ("kind", "text", "sent"),
    [
        ("date-time", "2024-03-10T12:30:45.999+02:00", "2024-03-10 10:30:45"),
        ("date-time", "2024-03-10T12:30:45Z", "2024-03-10 12:30:45"),
        ("date-time", "2024-03-10 12:30:45", "2024-03-10 12:30:45"),
        ("date-time", "2024-03-10T00:15:00+00:30", "2024-03-09 23:45:00"),  # back across midnight
        ("date-time", "2024-02-29T23:30:00-01:00", "2024-03-01 00:30:00"),  # forward across a month
        ("date-time", "0999-01-01T10:00:00+01:00", "0999-01-01 09:00:00"),  # four digits below 1000
        ("date-time", "0001-01-01T01:30:00+01:00", "0001-01-01 00:30:00"),
        ("date-time", "9999-12-31T22:59:59.999999-01:00", "9999-12-31 23:59:59"),
        ("date-time", "2024-03-10T12:30:45.5-00:00", "2024-03-10 12:30:45"),
        ("date-time", "20240310T123045+0200", "2024-03-10 10:30:45"),  # the basic layout
        ("date", "2024-03-10", "2024-03-10"),
        ("time", "12:30:00.250", "12:30:00.250"),  # a time is text at the API: as the tap wrote it
        ("time", "12:30", "12:30"),
        ("time", "23:15:01.123456+02:00", "23:15:01.123456+02:00"),
    ],
)
def test_date_likes_become_the_documented_text(kind: str, text: str, sent: str) -> None:
    assert datelike_text(kind, text) == sent


@pytest.mark.parametrize("text", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_date_time_text_outside_years_1_to_9999_in_utc_overflows(text: str) -> None:
    with pytest.raises(OverflowError):
        datelike_text("date-time", text)


@pytest.mark.parametrize(
    ("first", "second", "same_key", "same_order"),
    [
        ({"a": "x", "b": 1}, {"a": "x", "b": 1}, True, True),
        ({"a": "x", "b": 1}, {"a": "x", "b": D("1.0")}, True, True),
        ({"a": "x", "b": 1}, {"a": "x", "b": True}, False, False),
        ({"a": "x", "b": 2**60}, {"a": "x", "b": 2**60}, True, True),
        ({"a": "x", "b": 2**53}, {"a": "x", "b": 2**53 + 1}, False, True),
        ({"a": "x", "b": "1"}, {"a": "x", "b": 1}, False, False),
    ],
)
def test_composite_keys_of_records_are_the_apis(
    first: dict[str, t.Any], second: dict[str, t.Any], same_key: bool, same_order: bool
) -> None:
    mapper = _mapper(["a", "b"])
    key_1, _ = mapper.to_point(dict(first), 1)
    key_2, _ = mapper.to_point(dict(second), 2)
    assert (key_1 == key_2) is same_key
    assert (order_key(key_1) == order_key(key_2)) is same_order


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"s": "x", "b": False, "n": None, "i": 2**1000, "d": D("1.5e307"), "l": [1, {"z": "y"}]}, True),
        ([D("NaN")], False),
        ({"a": [D("1e400")]}, False),
        ([D("1.7976931348623157e308")], False),  # at the edge: left to the rebuild, which keeps it
        ({"a": 2**1024}, False),
        ([float("nan")], False),
        ([1.5], False),  # a float never comes from JSON input: rebuilt as any other value
        ({"at": datetime.datetime(2024, 1, 1, tzinfo=UTC)}, False),
    ],
)
def test_a_nested_value_is_encoded_as_it_is_only_when_nothing_in_it_needs_replacing(value: t.Any, plain: bool) -> None:
    assert nested_plain(value) is plain
    _, encoded = _mapper(["id"]).to_point({"id": 1, "v": value}, 1)
    sent = json.loads(encoded)["v"]
    if plain:
        assert sent == msgspec.json.Encoder(decimal_format="number").encode(value).decode()
    else:  # rebuilt: what the API cannot take replaced, and still JSON
        assert json.loads(sent) is not None


@pytest.mark.parametrize(("kind", "text"), [("time", "25:00"), ("time", "noon"), ("date", "2024-13-01")])
def test_a_date_like_that_is_not_iso_8601_is_refused(kind: str, text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        datelike_text(kind, text)


def test_values_nest_up_to_256_levels_on_every_python() -> None:
    def nested(levels: int) -> t.Any:
        value: t.Any = 1
        for _ in range(levels):
            value = [value]
        return value

    _, encoded = _mapper(["id"]).to_point({"id": 1, "deep": nested(256)}, 1)
    assert json.loads(json.loads(encoded)["deep"]) == nested(256)
    with pytest.raises(RJMetricsInputError, match=r"record #4: field 'deep' nests .* \(more than 256 levels\)"):
        _mapper(["id"]).to_point({"id": 1, "deep": {"a": nested(256)}}, 4)


@pytest.mark.parametrize(
    "value",
    ["x", True, None, 5, -(2**1023), 2**1024, D("1.5"), D("1.7976931348623157e308"), D("1e400"), D("NaN"), 1.5],
)
def test_a_value_is_sent_as_it_is_by_the_same_rule_at_the_top_and_nested(
    value: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PointMapper.point keeps its copy of nested_plain's rule inline (it runs once a field): they must agree."""
    mapper = _mapper(["id"])
    replaced: list[t.Any] = []

    def value_replaced(name: str, v: t.Any, position: int) -> t.Any:
        del name, position
        replaced.append(v)
        return v

    monkeypatch.setattr(mapper, "_value", value_replaced)
    mapper.point({"id": 1, "x": value}, 1)
    assert nested_plain([value]) == (not replaced)
