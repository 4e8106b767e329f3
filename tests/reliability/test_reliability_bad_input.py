"""Bad input corpus: each file under ``bad_input/`` gets its documented behaviour (README).

Either it lands correctly (the rows are checked), or the run stops with exit code 1 and a
message that is not part of a traceback and names what is wrong. Never a hang (every run has
a timeout), never a traceback as the only message, never the API key in the output.
"""

from __future__ import annotations

import json
import re
import tempfile
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from target_rjmetrics.local_api import DEMO_CLIENT_ID, LocalImportAPI
from tests.support.checks import SECRET_KEY, leaked, traceback_free_lines
from tests.support.config import SCENARIO_SETTINGS, target_config
from tests.support.expected import sanitise
from tests.support.servers import start_local_api
from tests.support.targets import Run, run_target

# How hostile input reads is up to the JSON reader, msgspec: scripts/test-latest.sh runs this
# corpus on its newest release.
pytestmark = pytest.mark.reader

CORPUS = Path(__file__).with_name("bad_input")


@dataclass
class Lands:
    """The run succeeds and these rows (first-seen order) are all that is stored."""

    rows: dict[str, list[dict[str, t.Any]]] | None = None
    states: list[t.Any] = field(default_factory=list)
    stderr: str | None = None  # a pattern the log must show (a documented warning)
    check: t.Callable[[LocalImportAPI], None] | None = None


@dataclass
class Fails:
    """The run stops with exit code 1 and a clear message matching ``message``."""

    message: str
    config: dict[str, t.Any] = field(default_factory=dict)


@dataclass
class Either:
    """Behaviour the README leaves open: land as ``lands``, or fail clearly as ``fails``."""

    lands: Lands
    fails: Fails


def _record_of(case: str, index: int) -> dict[str, t.Any]:
    """The ``index``-th RECORD's values as written in the case file (the expected data)."""
    records = [json.loads(line) for line in (CORPUS / f"{case}.jsonl").read_text().splitlines() if '"RECORD"' in line]
    return t.cast("dict[str, t.Any]", records[index]["record"])


def _deep_value_lands(server: LocalImportAPI) -> None:
    (row,) = server.rows(DEMO_CLIENT_ID, "items")
    assert json.loads(row["deep"]) == _record_of("26_deeply_nested_value", 0)["deep"]


def _huge_string_lands(server: LocalImportAPI) -> None:
    (row,) = server.rows(DEMO_CLIENT_ID, "items")
    assert row["blob"] == _record_of("29_huge_string", 0)["blob"]


def _control_characters_land(server: LocalImportAPI) -> None:
    (row,) = server.rows(DEMO_CLIENT_ID, "items")
    assert row["s"] == "a\u0000b\u0001c\u001fd\u007fe\u2028f\ttab\nnl\r"


def _numbers_keep_digits(server: LocalImportAPI) -> None:
    """Every digit is sent as written: look at the request body itself (a dry run of the same file)."""
    del server
    with tempfile.TemporaryDirectory() as tmp:
        dry = Path(tmp, "dry.jsonl")
        config = {"client_id": 1, "api_key": SECRET_KEY, "dry_run_file": str(dry)}
        run = run_target(config=config, stdin=CORPUS / "25_nan_and_infinity.jsonl", timeout=60)
        assert run.exit_code == 0, run.stderr[-2000:]
        text = dry.read_text()
    assert "12345678901234567890.123456789" in text, text


def _keyless_rows(server: LocalImportAPI) -> None:
    rows = server.rows(DEMO_CLIENT_ID, "items")
    assert len(rows) == 2, rows  # two identical records land once, the changed one as a new row
    assert all(len(row.get("_record_hash", "")) == 64 for row in rows)
    assert sorted(row["name"] for row in rows) == ["a", "b"]


EXPECTED: dict[str, Lands | Fails | Either] = {
    "01_malformed_json_line": Fails(r"(?i)json"),
    "02_not_json_at_all": Fails(r"(?i)json"),
    "03_json_value_not_object": Fails(r"(?i)(object|type)"),
    "04_unknown_message_type": Fails(r"Input line 2 is a message of unknown type 'BOGUS'"),
    "05_missing_type_field": Fails(r"(?i)type"),
    "06_record_before_schema": Fails(r"stream 'items'.*before a corresponding schema"),
    "07_schema_not_valid_json_schema": Fails(r"SCHEMA is not valid JSON Schema"),
    "08_schema_without_schema_field": Fails(r"(?i)(missing|required|no)\b.*'schema'"),
    "09_record_violates_type": Fails(r"record #2.*field 'id' does not satisfy type"),
    "10_record_violates_enum": Fails(r"record #1.*field 'color' does not satisfy enum"),
    "11_missing_key_property": Fails(
        r"stream 'items' \(table 'items'\), record #2.*key property 'id' is missing or null"
    ),
    "12_null_key_property": Fails(r"stream 'items' \(table 'items'\), record #2.*key property 'id' is missing or null"),
    "13_key_properties_change_midstream": Fails(r"changed its key properties from \['id'\] to \['name'\]"),
    "14_field_named_keys": Lands(
        {"items": [{"id": 1, "keys_": "k1"}, {"id": 2, "keys_": "k2"}]}, stderr=r"field 'keys' .* loaded as 'keys_'"
    ),
    "15_fields_keys_and_keys_": Fails(r"record #1.*'keys'.*'keys_'"),
    "16_key_property_named_keys": Lands({"items": [{"keys_": 7, "v": "x"}]}),
    "17_streams_collide_after_sanitising": Fails(r"'public-users' and 'public_users' both map to table 'public_users'"),
    "18_stream_name_with_slash": Lands({sanitise("a/../b"): [{"id": 1, "name": "slash"}]}),
    "19_stream_name_with_question_mark": Lands({sanitise("x?apikey=stolen&y=1"): [{"id": 1, "name": "q"}]}),
    "20_stream_name_with_percent": Lands({sanitise("p%2F..%3Fq"): [{"id": 1, "name": "pct"}]}),
    "21_stream_name_dot_dot": Lands({sanitise("../../_local/faults"): [{"id": 1, "name": "dots"}]}),
    "22_stream_name_with_spaces": Lands({"my_stream_name": [{"id": 1, "name": "sp"}]}),
    "23_stream_name_unicode": Lands({"caf__orders": [{"id": 1, "name": "ü"}], "__": [{"id": 2, "name": "jp"}]}),
    "24_stream_name_300_chars": Lands({"s" * 300: [{"id": 1, "name": "long"}]}),
    "25_nan_and_infinity": Lands(
        {
            "items": [
                {"id": 1, "x": None, "y": None, "z": None},
                {"id": 2, "x": None, "y": 1.5, "z": float("12345678901234567890.123456789")},
            ]
        },
        stderr=r"NaN, infinite or beyond what a double can hold",
        check=_numbers_keep_digits,
    ),
    "26_deeply_nested_value": Lands(check=_deep_value_lands),
    "27_nesting_beyond_parser_limit": Fails(r"Input line 2 nests objects or arrays too deeply to read"),
    "28_single_record_over_byte_limit": Fails(
        r"record #2: the data point is [\d,]+ bytes encoded, over `max_request_bytes`",
        config={"max_request_bytes": 2048},
    ),
    "29_huge_string": Lands(check=_huge_string_lands),
    "30_nul_and_control_characters": Lands(check=_control_characters_land),
    "31_empty_input": Lands({}),
    "32_state_only": Lands({}, states=[{"bookmarks": {"items": 1}}, {"bookmarks": {"items": 2}}]),
    "33_blank_and_whitespace_lines": Either(
        Lands({"items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}),
        Fails(r"(?i)(blank|empty) line|line 2 is not valid JSON"),
    ),
    "34_lone_surrogate": Lands({"items": [{"id": 1, "s": "bad\ud800half"}]}),
    "35_invalid_utf8_bytes": Fails(r"Input line 2 is not valid UTF-8 \(an invalid byte at character 68\)"),
    "36_record_without_stream": Fails(r"(?i)(missing|required|no)\b.*'stream'"),
    "37_record_value_not_object": Fails(r"(?i)record.*(object|dict)"),
    "38_key_property_not_in_schema_or_record": Fails(r"record #1.*key property 'uid' is missing or null"),
    "39_object_as_key_value": Fails(r"record #1: key property 'id' is an object or array"),
    "40_activate_version_ignored": Lands(
        {"items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, stderr=r"ACTIVATE_VERSION .* ignored"
    ),
    "41_keyless_stream_hashed": Lands(check=_keyless_rows, stderr=r"no key properties"),
    "42_last_line_without_newline": Lands({"items": [{"id": 1, "name": "a"}]}),
    "43_state_null_and_empty": Lands({"items": [{"id": 1, "name": "a"}]}, states=[{"bookmarks": {"items": 1}}]),
    "44_schema_is_not_an_object": Fails(r"(?i)schema.*(object|dict)"),
    "45_state_without_value": Fails(r"(?i)STATE.*'value'|'value'.*STATE"),
    "46_state_nested_beyond_parser_limit": Fails(r"Input line 3 nests objects or arrays too deeply to read"),
    "47_record_nested_too_deep_to_load": Fails(
        r"record #1: field 'deep' nests objects or arrays too deeply to load \(more than 256 levels\)"
    ),
    "48_state_nested_900_deep": Lands(
        {"items": [{"id": 1, "deep": 1}]},
        states=[json.loads((CORPUS / "48_state_nested_900_deep.jsonl").read_text().splitlines()[2])["value"]],
    ),
}


def test_the_corpus_has_at_least_30_cases_each_with_an_expectation() -> None:
    files = sorted(p.stem for p in CORPUS.glob("*.jsonl"))
    assert len(files) >= 30
    assert files == sorted(EXPECTED), set(files) ^ set(EXPECTED)


def _run(case: str, config_extra: dict[str, t.Any]) -> tuple[Run, LocalImportAPI]:
    server = start_local_api(credentials={1: SECRET_KEY})
    config = target_config(server, SCENARIO_SETTINGS, api_key=SECRET_KEY, state_flush_seconds=1, **config_extra)
    try:
        run = run_target(config=config, stdin=CORPUS / f"{case}.jsonl", timeout=60)
    except TimeoutError:
        server.stop()
        pytest.fail(f"{case}: the target hung (no exit within 60 s)")
    return run, server


def _check_lands(case: str, exp: Lands, proc: Run, server: LocalImportAPI) -> None:
    assert proc.exit_code == 0, f"{case}: exit {proc.exit_code}\n{proc.stderr[-3000:]}"
    # A state superseded before it could be written may be skipped; the last one never is.
    written = iter(exp.states)
    assert all(state in written for state in proc.states), f"{case}: states out of order: {proc.states}"
    assert proc.states[-1:] == exp.states[-1:], f"{case}: the last state was not written: {proc.states}"
    if exp.rows is not None:
        assert server.tables(DEMO_CLIENT_ID) == {table: len(rows) for table, rows in exp.rows.items()}
        for table, rows in exp.rows.items():
            assert server.rows(DEMO_CLIENT_ID, table) == rows, table
    if exp.check is not None:
        exp.check(server)
    if exp.stderr is not None:
        assert re.search(exp.stderr, proc.stderr), f"{case}: expected a log line matching {exp.stderr!r}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _check_fails(case: str, exp: Fails, proc: Run) -> None:
    assert proc.exit_code == 1, f"{case}: exit {proc.exit_code}\n{proc.stderr[-3000:]}"
    clear = traceback_free_lines(proc.stderr)
    assert any(re.search(exp.message, line) for line in clear), (
        f"{case}: no message outside a traceback matches {exp.message!r}; the target printed:\n{proc.stderr[-3000:]}"
    )
    assert not proc.stdout.strip(), f"{case}: a STATE was written although nothing landed: {proc.stdout}"


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input_gets_its_documented_behaviour(case: str) -> None:
    exp = EXPECTED[case]
    config = exp.config if isinstance(exp, Fails) else exp.fails.config if isinstance(exp, Either) else {}
    proc, server = _run(case, config)
    try:
        assert not leaked(proc.output), f"{case}: the API key leaked"
        if isinstance(exp, Lands):
            _check_lands(case, exp, proc, server)
        elif isinstance(exp, Fails):
            _check_fails(case, exp, proc)
        elif proc.exit_code == 0:
            _check_lands(case, exp.lands, proc, server)
        else:
            _check_fails(case, exp.fails, proc)
    finally:
        server.stop()
