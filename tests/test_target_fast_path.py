"""The fast path for plain streams and the SDK's path land the same rows, STATE, errors and warnings.

Each case runs the same input twice against fresh local servers, once with the fast path
(``TargetRJMetrics.fast_path``, the default) and once with every record through the SDK's
``Target._process_record_message``, and compares what landed, what was written and what was
said.
"""

from __future__ import annotations

import io
import json
import logging
import typing as t

import pytest

from target_rjmetrics.target import TargetRJMetrics
from tests.support.config import target_config
from tests.support.messages import lines, record, schema, state
from tests.support.targets import run_in_process

if t.TYPE_CHECKING:
    from target_rjmetrics.local_api import LocalImportAPI

DT = {"type": ["string", "null"], "format": "date-time"}
PROPS = {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "at": DT,
    "day": {"type": ["string", "null"], "format": "date"},
    "amount": {"type": ["number", "null"]},
    "tags": {"type": ["array", "null"]},
    "meta": {"type": ["object", "null"]},
}


def _plain_input() -> list[t.Any]:
    messages: list[t.Any] = [
        schema("users", PROPS, ["id"]),
        schema("events", {**PROPS, "seq": {"type": "integer"}}, ["id", "seq"]),
    ]
    for i in range(1, 301):
        messages.append(
            record(
                "users",
                id=i % 40,
                name=f"n{i}",
                at=f"2024-0{1 + i % 9}-1{i % 10}T0{i % 10}:30:00{'+02:00' if i % 2 else 'Z'}",
                day=f"0{1 + i % 9:03d}-01-01" if i % 7 == 0 else "2024-02-29",
                amount=float(f"{i}.{i:03d}"),
                tags=[i, "x"],
                meta={"a": {"b": i}} if i % 3 else None,
            )
        )
        messages.append(
            record("events", id=i % 11, seq=i % 5, name=None, at=None, day=None, amount=None, tags=None, meta=None)
        )
        if i % 50 == 0:
            messages.append(state({"at": i}))
    return messages


CASES: dict[str, tuple[list[t.Any], dict[str, t.Any]]] = {
    "plain streams": (_plain_input(), {}),
    "keyless stream": (
        [
            schema("log", {"line": {"type": "string"}}),
            *[record("log", line=f"l{i % 13}") for i in range(60)],
            state({"n": 60}),
        ],
        {},
    ),
    "stream map": (_plain_input(), {"stream_maps": {"users": {"name": None, "upper": "str(id) + '!'"}}}),
    "flattening": (_plain_input(), {"flattening_enabled": True, "flattening_max_depth": 2}),
    "record metadata": (_plain_input(), {"add_record_metadata": True}),
    "sdc fields in records": (
        [
            schema("s", {"id": {"type": "integer"}, "_sdc_extracted_at": DT, "_sdc_sequence": {}}, ["id"]),
            record("s", id=1, _sdc_extracted_at="2024-01-01T00:00:00Z", _sdc_sequence=5),
            record("s", id=2),
            state({"n": 2}),
        ],
        {},
    ),
    "unknown fields and keys field": (
        [
            schema("s", {"id": {"type": "integer"}}, ["id"]),
            record("s", id=1, extra="x", keys="k"),
            record("s", id=2, extra=None),
            record("s", id=3, more=1),
            state({"n": 3}),
        ],
        {},
    ),
    "nan and infinity": (
        [
            schema("s", {"id": {"type": "integer"}, "x": {}}, ["id"]),
            '{"type": "RECORD", "stream": "s", "record": {"id": 1, "x": NaN}}',
            '{"type": "RECORD", "stream": "s", "record": {"id": 2, "x": [Infinity, 1.5]}}',
            state({"n": 2}),
        ],
        {},
    ),
}

FAILURES: dict[str, list[t.Any]] = {
    "invalid record": [
        schema("s", {"id": {"type": "integer"}}, ["id"]),
        record("s", id=1),
        state({"n": 1}),
        record("s", id="two"),
        state({"n": 2}),
    ],
    "unparsable date": [
        schema("s", {"id": {"type": "integer"}, "at": DT}, ["id"]),
        record("s", id=1, at="2024-01-01"),
        record("s", id=2, at="not a date"),
        state({"n": 2}),
    ],
    "missing key": [
        schema("s", {"id": {"type": "integer"}, "v": {}}, ["id"]),
        record("s", id=1, v=1),
        record("s", v=2),
    ],
    "null key": [schema("s", {"id": {"type": ["integer", "null"]}}, ["id"]), record("s", id=None)],
    "nested key": [schema("s", {"id": {}}, ["id"]), record("s", id=[1])],
    "keys and keys_": [schema("s", {"id": {"type": "integer"}}, ["id"]), record("s", id=1, keys=1, keys_=2)],
    "date out of range": [
        schema("s", {"id": {"type": "integer"}, "at": DT}, ["id"]),
        record("s", id=1, at="9999-12-31T23:00:00-05:00"),
    ],
}


_CLOCK_FIELDS = frozenset({"_sdc_received_at", "_sdc_batched_at", "_sdc_sync_started_at", "_sdc_sequence"})


def _same_states(written: list[t.Any], other: list[t.Any], messages: list[t.Any]) -> bool:
    """Whether both runs wrote the last state and only states of the input, in input order.

    Which earlier states were superseded before they could be written depends on timing.
    """
    given = [m["value"] for m in messages if isinstance(m, dict) and m.get("type") == "STATE"]
    for states in (written, other):
        if states != [v for v in given if v in states]:
            return False
    return written[-1:] == other[-1:]


def _run(
    api: LocalImportAPI,
    messages: list[t.Any],
    extra: dict[str, t.Any],
    *,
    fast: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> dict[str, t.Any]:
    monkeypatch.setattr(TargetRJMetrics, "fast_path", fast)
    caplog.clear()
    error: str | None = None
    states: list[t.Any] = []
    try:
        states = run_in_process(target_config(api, max_points_per_request=17, **extra), messages).states
    except Exception as exc:  # noqa: BLE001 (the error itself is compared)
        error = f"{type(exc).__name__}: {exc}"
    warnings = sorted({r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING})
    # Rows by content: the order keys were first stored in depends on which request was faster,
    # and the SDK's metadata times (when a record was received, its batch made) on the clock.
    rows = {
        table: sorted(
            json.dumps({k: v for k, v in r.items() if k not in _CLOCK_FIELDS}, sort_keys=True)
            for r in api.rows(1, table)
        )
        for table in sorted(api.tables(1))
    }
    return {"rows": rows, "states": states, "error": error, "warnings": warnings}


@pytest.mark.parametrize("case", list(CASES))
def test_the_fast_path_lands_what_the_sdk_path_lands(
    case: str,
    make_api: t.Callable[..., LocalImportAPI],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages, extra = CASES[case]
    fast = _run(make_api(), messages, extra, fast=True, monkeypatch=monkeypatch, caplog=caplog)
    slow = _run(make_api(), messages, extra, fast=False, monkeypatch=monkeypatch, caplog=caplog)
    assert fast["error"] is None, fast["error"]
    assert fast["rows"] and fast["rows"] == slow["rows"]
    assert fast["states"] and _same_states(fast["states"], slow["states"], messages)
    assert fast["warnings"] == slow["warnings"]


@pytest.mark.parametrize("case", list(FAILURES))
def test_the_fast_path_fails_with_the_sdk_paths_words(
    case: str,
    make_api: t.Callable[..., LocalImportAPI],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fast = _run(make_api(), FAILURES[case], {}, fast=True, monkeypatch=monkeypatch, caplog=caplog)
    slow = _run(make_api(), FAILURES[case], {}, fast=False, monkeypatch=monkeypatch, caplog=caplog)
    assert fast["error"] is not None
    assert fast["error"] == slow["error"]
    assert _same_states(fast["states"], slow["states"], FAILURES[case])
    assert fast["warnings"] == slow["warnings"]


def test_plain_streams_take_the_fast_path_and_others_do_not(make_api: t.Callable[..., LocalImportAPI]) -> None:
    messages = [
        schema("plain", {"id": {"type": "integer"}}, ["id"]),
        schema("mapped", {"id": {"type": "integer"}}, ["id"]),
        record("plain", id=1),
        record("mapped", id=1),
    ]
    target = TargetRJMetrics(config=target_config(make_api(), stream_maps={"mapped": {"__alias__": "renamed"}}))
    target.listen(io.StringIO(lines(messages)))
    assert set(target._plain_streams) == {"plain"}
