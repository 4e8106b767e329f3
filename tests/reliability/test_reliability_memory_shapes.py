"""Memory stays bounded whatever the shape of the input: many open streams, large states, wide schemas.

Each test compares the peak resident memory (``VmHWM``) of two runs of the target process
that differ only in the shape under test, so what the SDK and Python take for themselves
cancels out, and checks that what landed and the STATE written are still right.
"""

from __future__ import annotations

import json
import typing as t

import pytest

from target_rjmetrics.batches import OPEN_BATCHES_MAX_BYTES
from target_rjmetrics.local_api import DEMO_CLIENT_ID, Faults, LocalImportAPI
from tests.support.config import SCENARIO_SETTINGS, target_config
from tests.support.messages import lines, record, schema
from tests.support.servers import start_local_api
from tests.support.targets import TargetProcess, run_in_process

if t.TYPE_CHECKING:
    from pathlib import Path

MIB = 1024 * 1024


def _schema(stream: str, properties: dict[str, t.Any]) -> str:
    return lines([schema(stream, properties, ["id"])])


def _record(stream: str, **values: t.Any) -> str:
    return lines([record(stream, **values)])


def _peak(
    path: Path, workdir: Path, *, latency_ms: float = 0, **config: t.Any
) -> tuple[int, TargetProcess, LocalImportAPI]:
    server = start_local_api(faults=Faults(latency_ms=latency_ms, seed=1))
    proc = TargetProcess(target_config(server, SCENARIO_SETTINGS, **config), workdir, stdin=path)
    code = proc.wait(300)
    assert code == 0, proc.stderr[-2000:]
    assert proc.peak_rss_kib > 0, "peak memory could not be read from /proc"
    return proc.peak_rss_kib * 1024, proc, server


@pytest.mark.slow
def test_open_batches_of_many_streams_stay_within_their_byte_budget(tmp_path: Path) -> None:
    streams = [f"s{i}" for i in range(400)]
    props = {"id": {"type": "integer"}, "pad": {"type": "string"}}
    few = tmp_path / "few.jsonl"
    few.write_text(
        "".join(_schema(s, props) for s in streams) + "".join(_record(s, id=0, pad="x" * 4000) for s in streams)
    )
    many = tmp_path / "many.jsonl"
    with many.open("w") as f:
        f.writelines(_schema(s, props) for s in streams)
        for i in range(99):  # 99 records of 4 KB per stream: every stream's batch stays open (100 points)
            f.writelines(_record(s, id=i, pad=f"{i:08d}" * 500) for s in streams)

    base_peak, _, base_server = _peak(few, tmp_path, max_points_per_request=100)
    base_server.stop()
    peak, _, server = _peak(many, tmp_path, max_points_per_request=100)
    try:
        tables = server.tables(DEMO_CLIENT_ID)
        assert len(tables) == 400 and set(tables.values()) == {99}
        assert server.rows(DEMO_CLIENT_ID, "s399")[-1]["pad"] == f"{98:08d}" * 500
    finally:
        server.stop()
    # 160 MB of points were open at once without the budget; with it, the budget and change.
    assert peak - base_peak <= OPEN_BATCHES_MAX_BYTES + 64 * MIB, (
        f"peak grew by {(peak - base_peak) / MIB:.0f} MiB over the same streams with one record each"
    )


@pytest.mark.slow
def test_large_states_after_every_record_on_a_slow_api_stay_bounded(tmp_path: Path) -> None:
    props = {"id": {"type": "integer"}}

    def write(path: Path, state_bytes: int) -> Path:
        with path.open("w") as f:
            f.write(_schema("s", props))
            for i in range(1500):
                f.write(_record("s", id=i))
                f.write(
                    json.dumps({"type": "STATE", "value": {"i": i, "blob": f"{i:08d}" * (state_bytes // 8)}}) + "\n"
                )
        return path

    base_peak, _, base_server = _peak(write(tmp_path / "small.jsonl", 8), tmp_path, latency_ms=300)
    base_server.stop()
    peak, proc, server = _peak(write(tmp_path / "large.jsonl", 200_000), tmp_path, latency_ms=300)
    server.stop()
    assert proc.states, "no STATE was written"
    assert proc.states[-1][1]["i"] == 1499  # the last state is never dropped
    assert [value["i"] for _, value in proc.states] == sorted({value["i"] for _, value in proc.states})
    # Up to 800 states of 200 KB (160 MB) wait for their records on this slow API without the bound.
    assert peak - base_peak <= 32 * MIB, f"peak grew by {(peak - base_peak) / MIB:.0f} MiB with 200 KB states"


@pytest.mark.slow
def test_a_schema_with_10000_properties_costs_memory_in_proportion(tmp_path: Path) -> None:
    def write(path: Path, columns: int) -> Path:
        props = {"id": {"type": "integer"}, **{f"c{i}": {"type": ["string", "null"]} for i in range(columns)}}
        path.write_text(_schema("wide", props) + "".join(_record("wide", id=i, c1=f"v{i}") for i in range(3)))
        return path

    base_peak, _, base_server = _peak(write(tmp_path / "narrow.jsonl", 10), tmp_path)
    base_server.stop()
    peak, _, server = _peak(write(tmp_path / "wide.jsonl", 10_000), tmp_path)
    try:
        assert [row["c1"] for row in server.rows(DEMO_CLIENT_ID, "wide")] == ["v0", "v1", "v2"]
    finally:
        server.stop()
    # Compiling the whole schema into one function took ~370 MiB more; column by column, a few.
    assert peak - base_peak <= 48 * MIB, f"peak grew by {(peak - base_peak) / MIB:.0f} MiB for 10,000 columns"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": 1, "c7": 5}, "field 'c7' does not satisfy type=['string', 'null']"),
        ({"id": 1, "obj": {"n": "x"}}, "field 'obj.n' does not satisfy type='integer'"),
        ({"c1": "x"}, "field '(the record)' does not satisfy required=['id']"),
        ({"id": 1, "unknown": 1}, "field 'unknown' does not satisfy the schema rule 'additionalProperties'"),
    ],
)
def test_wide_schemas_still_name_the_field_and_rule_a_record_breaks(
    local_api: LocalImportAPI, record: dict[str, t.Any], message: str
) -> None:
    props = {
        "id": {"type": "integer"},
        "obj": {"type": "object", "properties": {"n": {"type": "integer"}}},
        **{f"c{i}": {"type": ["string", "null"]} for i in range(500)},
    }
    wide = schema("wide", props, ["id"])
    wide["schema"]["required"] = ["id"]
    wide["schema"]["additionalProperties"] = False
    good = {"type": "RECORD", "stream": "wide", "record": {"id": 2, "c1": "ok", "obj": {"n": 3}}}

    with pytest.raises(Exception) as failure:  # noqa: PT011 (the message is what is checked)
        run_in_process(target_config(local_api), [wide, good, {"type": "RECORD", "stream": "wide", "record": record}])

    assert message in str(failure.value)
    assert "record #2" in str(failure.value)
