"""The local server keeps what was sent: each number's text, and key identity as the contract says.

Every way a point is shown (``rows_json()``, the ``/_local`` rows in each format, ``dump`` in
each format, the request log's key values) shows each number as the client wrote it. Two points
are one row when their key values are equal JSON values of one type, numbers as IEEE doubles.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sqlite3
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_rjmetrics.local_api import LocalImportAPI, jsontext
from target_rjmetrics.local_api.points import parse_json, validate_points
from target_rjmetrics.local_api.storage import StorageVersionError
from tests.support.api import Api, assert_error
from tests.support.servers import local_api_cli

if TYPE_CHECKING:
    from pathlib import Path

    import requests

#: Fields of one point, each value as the client writes it: numbers Python's json would write
#: otherwise (and two it writes back the same), a string of digits, and a nested value.
VALUES = [
    ("large_decimal", "1234567890123456789012345678.1234567891"),
    ("long_fraction", "0.1000000000000000055511151231257827"),
    ("trailing_zero", "1.50"),
    ("exponent", "1E5"),
    ("small_exponent", "2.5e-3"),
    ("signed_exponent", "1.5E+300"),
    ("underflow", "1e-400"),
    ("negative_zero", "-0"),
    ("negative_zero_fraction", "-0.0"),
    ("one_point_zero", "1.0"),
    ("big_integer", "123456789012345678901234567890"),
    ("big_integer_with_fraction", "12345678901234567890.0"),
    ("integer_in_exponent_form", "12e2"),
    ("digits_in_a_string", '"1.50"'),
    ("nested", '{"list":[0.10,-0,1E-7,{"deep":100e-2}],"flag":true,"none":null,"s":"\\u00e9"}'),
]
FIELDS = "".join(f',"{name}":{text}' for name, text in VALUES)
#: The body pushed, and the point as stored and shown (without ``keys``).
BODY = '{"keys":["id"],"id":1' + FIELDS + "}"
STORED = '{"id":1' + FIELDS + "}"
#: The CSV row of the point: strings as they are, anything else as its JSON text.
CSV_ROW = ["1"] + [json.loads(text) if text.startswith('"') else text for _, text in VALUES]


def _rows_text(api: Api, fmt: str = "jsonl", table: str = "t") -> str:
    response = api.local(f"tables/1/{table}/rows?format={fmt}")
    assert response.status_code == 200, response.text
    return response.text


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# -- each way a point is shown -------------------------------------------------------------------


def test_rows_json_gives_each_point_as_sent(api: Api) -> None:
    assert api.push("t", None, raw=BODY.encode()).status_code == 201
    assert api.server.rows_json(1, "t") == [STORED]
    assert api.server.rows_json(1, "t", with_keys=True) == [BODY]
    # rows() stays the Python view: the values json.loads reads from that text.
    assert api.server.rows(1, "t") == [json.loads(STORED)]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("json", f"[{STORED}]"), ("jsonl", f"{STORED}\n"), ("csv", None)],
)
def test_the_rows_endpoint_shows_each_number_as_sent(api: Api, fmt: str, expected: str | None) -> None:
    assert api.push("t", None, raw=BODY.encode()).status_code == 201
    text = _rows_text(api, fmt)
    if expected is not None:
        assert text == expected
    else:
        assert _csv(text) == [["id"] + [name for name, _ in VALUES], CSV_ROW]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), f"{STORED}\n"),
        (("--format", "json"), f"[{STORED}]\n"),
        (("--with-keys",), f"{BODY}\n"),
        (("--format", "csv"), None),
    ],
    ids=["jsonl", "json", "jsonl-with-keys", "csv"],
)
def test_dump_shows_each_number_as_sent(
    tmp_path: Path, session: requests.Session, args: tuple[str, ...], expected: str | None
) -> None:
    with LocalImportAPI(data_dir=tmp_path) as server:
        assert Api(server, session).push("t", None, raw=BODY.encode()).status_code == 201
    result = local_api_cli("dump", "t", "--data-dir", str(tmp_path), *args)
    assert result.returncode == 0, result.stderr
    if expected is not None:
        assert result.stdout == expected
    else:
        assert _csv(result.stdout) == [["id"] + [name for name, _ in VALUES], CSV_ROW]


def test_the_request_log_shows_key_values_as_sent(api: Api) -> None:
    body = '[{"keys":["id","at"],"id":1.50,"at":-0},{"keys":["id","at"],"id":12345678901234567,"at":"1E5"},{"id":1}]'
    assert api.push("t", None, raw=body.encode()).status_code == 400  # the last point has no keys
    exact = '[[1.50,-0],[12345678901234567,"1E5"],null]'
    assert f'"key_values":{exact}' in api.local("requests").text
    entry = api.server.request_log()[-1]
    assert entry.key_values_json == exact
    # key_values stays the Python view (what the tests of the target compare with).
    assert entry.key_values == [[1.5, 0], [12345678901234567, "1E5"], None]


def test_a_ghost_stores_each_number_as_sent(api: Api) -> None:
    api.server.set_faults(ghost_delay=0.0, ghost_answer=504, ghost_count=1)
    assert api.push("t", None, raw=BODY.encode()).status_code == 504
    deadline = time.monotonic() + 10
    while not api.server.tables(1) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _rows_text(api) == f"{STORED}\n"


# -- key identity ------------------------------------------------------------------------------

#: Key values that are one key (equal as doubles), the first pushed and then the second.
SAME_KEY = [
    ("1", "1.00"),
    ("1.0", "1e0"),
    ("0.1", "0.1000000000000000055511151231257827"),
    ("12345678901234568", "12345678901234567.0"),
    ("12345678901234567", "12345678901234568"),
    ("9007199254740993", "9007199254740992"),
    ("0", "-0"),
    ("100", "1E2"),
    ("0", "1e-400"),
]


@pytest.mark.parametrize("one_request", [False, True], ids=["two-requests", "one-request"])
@pytest.mark.parametrize(("first", "second"), SAME_KEY)
def test_keys_equal_as_doubles_are_one_row_that_shows_the_latest_text(
    api: Api, first: str, second: str, one_request: bool
) -> None:
    points = [f'{{"keys":["id"],"id":{first},"v":"first"}}', f'{{"keys":["id"],"id":{second},"v":"second"}}']
    bodies = [f"[{','.join(points)}]"] if one_request else points
    for body in bodies:
        assert api.push("t", None, raw=body.encode()).status_code == 201
    assert _rows_text(api) == f'{{"id":{second},"v":"second"}}\n'


#: Key values of other JSON types, or numbers of other doubles: two rows, each shown as sent.
APART = [
    ("true", "1.0E0"),
    ('"1"', "1.00"),
    ("false", "-0"),
    ('"12345678901234567"', "12345678901234567.0"),
    ("0.10", "0.100000000000000019"),
]


@pytest.mark.parametrize(("first", "second"), APART)
def test_keys_of_other_types_or_other_doubles_are_two_rows(api: Api, first: str, second: str) -> None:
    body = f'[{{"keys":["id"],"id":{first}}},{{"keys":["id"],"id":{second}}}]'
    assert api.push("t", None, raw=body.encode()).status_code == 201
    assert _rows_text(api) == f'{{"id":{first}}}\n{{"id":{second}}}\n'


@pytest.mark.parametrize(
    ("points", "shown"),
    [
        # Element-wise: equal as doubles in every position is one row, the latest shown.
        (
            ['"a":12345678901234567,"b":"x","v":1', '"a":12345678901234568.0,"b":"x","v":2'],
            ['"a":12345678901234568.0,"b":"x","v":2'],
        ),
        (
            ['"a":1,"b":0.10,"v":1', '"a":1.0,"b":0.1000000000000000055511151231257827,"v":2'],
            ['"a":1.0,"b":0.1000000000000000055511151231257827,"v":2'],
        ),
        # One position apart (as doubles, or by type) is two rows.
        (['"a":1.0,"b":"x"', '"a":1.00,"b":"y"'], ['"a":1.0,"b":"x"', '"a":1.00,"b":"y"']),
        (['"a":1E0,"b":"1"', '"a":"1","b":1E0'], ['"a":1E0,"b":"1"', '"a":"1","b":1E0']),
    ],
)
def test_composite_keys_compare_element_wise(api: Api, points: list[str], shown: list[str]) -> None:
    body = "[" + ",".join(f'{{"keys":["a","b"],{p}}}' for p in points) + "]"
    assert api.push("t", None, raw=body.encode()).status_code == 201
    assert _rows_text(api) == "".join(f"{{{s}}}\n" for s in shown)


def _spellings(x: float) -> list[str]:
    """JSON texts that all read as the double ``x``."""
    texts = [repr(x), f"{x:.17g}", f"{x:.25e}".replace("e", "E"), str(Decimal(x))]
    if x.is_integer():
        texts.append(str(int(x)))
        if math.ulp(x) >= 4:  # the integer next to it rounds to it too
            texts.append(str(int(x) + 1))
    return texts


@settings(max_examples=300, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False), data=st.data())
def test_two_numbers_are_one_key_exactly_when_they_read_as_one_double(x: float, data: st.DataObject) -> None:
    first, second = (data.draw(st.sampled_from(_spellings(x))) for _ in range(2))
    body = f'[{{"keys":["id"],"id":{first},"v":1}},{{"keys":["id"],"id":{second},"v":2}}]'
    points = validate_points(parse_json(body.encode()))
    assert [p.data_json for p in points] == [f'{{"id":{second},"v":2}}']
    other = math.nextafter(x, 0.0) if x != 0 else 5e-324  # the next double toward zero
    body = f'[{{"keys":["id"],"id":{first}}},{{"keys":["id"],"id":{other!r}}}]'
    assert len(validate_points(parse_json(body.encode()))) == 2


number_texts = st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,3})?", fullmatch=True).filter(
    lambda t: math.isfinite(float(t))
)
documents = st.recursive(
    st.one_of(number_texts, st.sampled_from(["true", "false", "null", '"1.50"', '"\\u00e9"', '"\\u0000"'])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(st.sampled_from(["a", "b", "1"]), inner, max_size=3).map(
            lambda d: "{" + ",".join(f'"{k}":{v}' for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(text=documents)
def test_jsontext_writes_back_what_it_read(text: str) -> None:
    document = jsontext.read(text)
    assert jsontext.dumps(document.value) == text
    assert jsontext.dumps_exact(document.value) == text
    assert jsontext._python_dumps(document.value) == text  # the encoder of interpreters without _json
    assert json.loads(jsontext.dumps(document.value)) == json.loads(text)
    # A number is kept as text exactly when the standard library would not write it back.
    assert document.kept_text == (json.dumps(json.loads(text), separators=(",", ":")) != text)


# -- what stays as it was ------------------------------------------------------------------------


# A guard, not a new behaviour: it passes on the release before exact numbers too.
@pytest.mark.parametrize(
    ("body", "status", "shown"),
    [
        (b'{"keys":["id"],"id":1,"x":NaN}', 400, None),
        (b'{"keys":["id"],"id":1,"x":-Infinity}', 400, None),
        (b'{"keys":["id"],"id":1,"x":1e400}', 400, None),
        (b'{"keys":["id"],"id":1,"x":-1.8E+308}', 400, None),
        (b'{"keys":["id"],"id":1,"x":' + b"9" * 4301 + b"}", 400, None),
        # An integer beyond the doubles' range is stored (its digits exact), and is a key of its own.
        (
            b'[{"keys":["id"],"id":1' + b"0" * 400 + b'},{"keys":["id"],"id":1' + b"0" * 399 + b"1}]",
            201,
            '{"id":1' + "0" * 400 + '}\n{"id":1' + "0" * 399 + "1}\n",
        ),
    ],
    ids=["NaN", "-Infinity", "1e400", "-1.8E+308", "4301-digit-integer", "400-digit-integers"],
)
def test_numbers_refused_before_are_refused_and_huge_integers_kept(
    api: Api, body: bytes, status: int, shown: str | None
) -> None:
    response = api.push("t", None, raw=body)
    if status == 400:
        assert any("not valid JSON" in r for r in assert_error(response, 400))
        assert api.server.tables(1) == {}
    else:
        assert response.status_code == status
        assert _rows_text(api) == shown


# -- data directories of other releases -------------------------------------------------------------

#: The table as earlier releases created it (storage version 0: no user_version).
EARLIER_RELEASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY,
    client_id INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    key_json TEXT NOT NULL,
    keys_json TEXT NOT NULL,
    data_json TEXT NOT NULL,
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (client_id, tbl, key_json)
);
"""


def _earlier_release_data_dir(path: Path, rows: list[tuple[Any, ...]], user_version: int = 0) -> Path:
    path.mkdir()
    with sqlite3.connect(path / "import-api.sqlite3") as conn:
        conn.executescript(EARLIER_RELEASE_SCHEMA)
        conn.executemany(
            "INSERT INTO points (id, client_id, tbl, key_json, keys_json, data_json, first_seen, updated_at) "
            "VALUES (?, 1, ?, ?, '[\"id\"]', ?, ?, ?)",
            rows,
        )
        conn.execute(f"PRAGMA user_version = {user_version}")
    conn.close()
    return path


def test_a_data_dir_of_an_earlier_release_is_upgraded_merging_integer_keys_now_one(
    tmp_path: Path, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    # As earlier releases stored them: integers beyond 2**53 exactly (two keys), floats as reprs.
    data_dir = _earlier_release_data_dir(
        tmp_path / "old",
        [
            (1, "t", "[12345678901234567]", '{"id":12345678901234567,"v":"older"}', 10.0, 20.0),
            (2, "t", "[1]", '{"id":1.0,"v":1.2345678901234569e+27}', 11.0, 11.0),
            (3, "t", "[12345678901234568]", '{"id":12345678901234568,"v":"newer"}', 12.0, 30.0),
            (4, "t", '["12345678901234567"]', '{"id":"12345678901234567"}', 13.0, 13.0),
            (5, "u", "[12345678901234567]", '{"id":12345678901234567}', 14.0, 14.0),
        ],
    )
    with caplog.at_level(logging.WARNING), LocalImportAPI(data_dir=data_dir) as server:
        api = Api(server, session)
        assert server.tables(1) == {"t": 3, "u": 1}
        # One row of the two integer keys: the latest written, in the place of the first.
        assert server.rows_json(1, "t") == [
            '{"id":12345678901234568,"v":"newer"}',
            '{"id":1.0,"v":1.2345678901234569e+27}',
            '{"id":"12345678901234567"}',
        ]
        assert server.rows_json(1, "u") == ['{"id":12345678901234567}']
        # A push of either integer now replaces that row.
        assert api.push("t", None, raw=b'{"keys":["id"],"id":12345678901234567,"v":"pushed"}').status_code == 201
        assert api.push("u", None, raw=b'{"keys":["id"],"id":12345678901234568}').status_code == 201
        assert server.tables(1) == {"t": 3, "u": 1}
        assert server.rows_json(1, "t")[0] == '{"id":12345678901234567,"v":"pushed"}'
    assert "(2 row(s) re-keyed, 1 merged" in caplog.text and str(data_dir) in caplog.text
    with sqlite3.connect(data_dir / "import-api.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    conn.close()


def test_a_data_dir_of_a_newer_release_is_refused_naming_the_directory(tmp_path: Path) -> None:
    data_dir = _earlier_release_data_dir(tmp_path / "newer", [(1, "t", "[1]", '{"id":1}', 1.0, 1.0)], user_version=7)
    server = LocalImportAPI(data_dir=data_dir)
    with pytest.raises(StorageVersionError, match="newer release") as info:
        server.start()
    assert str(data_dir) in str(info.value) and "--data-dir" in str(info.value)

    for args in (("serve", "--port", "0"), ("dump", "t"), ("tables",)):
        result = local_api_cli(*args, "--data-dir", str(data_dir))
        assert result.returncode == 1, (args, result.stderr)
        assert f"the data directory {data_dir} was written by a newer release" in result.stderr
        assert "Traceback" not in result.stderr
    with sqlite3.connect(data_dir / "import-api.sqlite3") as conn:
        assert conn.execute("SELECT data_json FROM points").fetchall() == [('{"id":1}',)]
    conn.close()
