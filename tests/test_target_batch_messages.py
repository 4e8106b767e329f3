"""BATCH messages (the SDK's batch extension): every record of every file lands as a RECORD would.

Each test feeds the target a BATCH message whose manifest names real files (hand-made, or
written by a real tap from PyPI) and checks the rows that landed in the local Import API,
the STATE lines written, and the words of any error.
"""

from __future__ import annotations

import datetime
import decimal
import gzip
import json
import os
import subprocess
import typing as t

import pytest

from target_rjmetrics.local_api import DEMO_CLIENT_ID, Faults, LocalImportAPI
from tests.support.checks import landed_by_id, points_of, upserts
from tests.support.config import target_config
from tests.support.messages import record, schema, state
from tests.support.real_taps import tap_executable
from tests.support.targets import about, clean_env, run_cli

if t.TYPE_CHECKING:
    from pathlib import Path

CID = DEMO_CLIENT_ID
USER_PROPS = {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "signed_up": {"type": ["string", "null"], "format": "date-time"},
}
USERS = schema("users", USER_PROPS, ["id"])
SECRET_VALUE = "SECRET-ROW-VALUE-4411"


def batch(stream: str, files: list[Path], *, fmt: str = "jsonl", compression: str | None = "gzip") -> dict[str, t.Any]:
    """A BATCH message naming ``files`` by their file:// URLs."""
    encoding: dict[str, t.Any] = {"format": fmt, "compression": compression}
    return {"type": "BATCH", "stream": stream, "encoding": encoding, "manifest": [f.as_uri() for f in files]}


def write_jsonl(path: Path, rows: list[dict[str, t.Any]], *, gzipped: bool) -> Path:
    """Write records as JSON lines, gzipped or plain."""
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


def user(i: int, name: str, when: str | None = "2024-05-01T10:00:00+02:00") -> dict[str, t.Any]:
    return {"id": i, "name": name, "signed_up": when}


def test_batch_files_gzip_and_plain_land_in_order_with_records_before_and_after(
    local_api: LocalImportAPI, tmp_path: Path
) -> None:
    first = write_jsonl(tmp_path / "b1.json.gz", [user(2, "b1"), user(3, "b1"), user(2, "b1-again")], gzipped=True)
    second = write_jsonl(tmp_path / "b2.json.gz", [user(3, "b2"), user(4, "b2")], gzipped=True)
    plain = write_jsonl(tmp_path / "b3.jsonl", [user(4, "b3"), user(5, "b3", None)], gzipped=False)
    messages = [
        USERS,
        record("users", **user(1, "record")),
        record("users", **user(2, "record")),
        state({"at": "before batch"}),
        batch("users", [first, second]),
        state({"at": "after gzip batch"}),
        batch("users", [plain], compression="none"),
        state({"at": "after plain batch"}),
        record("users", **user(5, "record after")),  # a RECORD after the BATCH updates a batch key
        state({"at": "end"}),
    ]

    # One point per request and four in flight: key order between batch rows and RECORDs matters.
    run = run_cli(target_config(local_api, max_points_per_request=1, max_concurrent_requests=4), messages)

    assert run.exit_code == 0, run.stderr
    rows = landed_by_id(local_api, "users")
    assert {i: r["name"] for i, r in rows.items()} == {
        1: "record",
        2: "b1-again",
        3: "b2",
        4: "b3",
        5: "record after",
    }
    assert rows[2]["signed_up"] == "2024-05-01 08:00:00"  # date-times converted as for RECORDs
    given = [{"at": "before batch"}, {"at": "after gzip batch"}, {"at": "after plain batch"}, {"at": "end"}]
    assert run.states[-1] == {"at": "end"}
    assert run.states == [s for s in given if s in run.states]  # in input order; superseded ones may be skipped


def test_batch_rows_go_through_stream_maps_and_merge_like_records(local_api: LocalImportAPI, tmp_path: Path) -> None:
    rows = [user(1, "a"), user(1, "a2"), user(2, "b")]
    path = write_jsonl(tmp_path / "rows.jsonl.gz", rows, gzipped=True)
    maps = {"users": {"__alias__": "people", "name": None, "upper": "name.upper()"}}

    run = run_cli(target_config(local_api, stream_maps=maps), [USERS, batch("users", [path]), state({"done": 1})])

    assert run.exit_code == 0, run.stderr
    landed = landed_by_id(local_api, "people")
    assert {i: r.get("upper") for i, r in landed.items()} == {1: "A2", 2: "B"}
    assert all("name" not in r for r in landed.values())
    assert local_api.rows(CID, "users") == []
    assert run.states == [{"done": 1}]
    # The repeated key in one request is merged, as it would be for RECORD messages.
    assert sum(points_of(e) for e in upserts(local_api, table="people")) == 2


def test_a_batch_row_that_breaks_its_schema_fails_naming_stream_position_and_file(
    local_api: LocalImportAPI, tmp_path: Path
) -> None:
    good = write_jsonl(tmp_path / "good.jsonl.gz", [user(1, "a"), user(2, "b")], gzipped=True)
    bad = write_jsonl(tmp_path / "bad.jsonl.gz", [user(3, "c"), {"id": SECRET_VALUE, "name": "x"}], gzipped=True)
    messages = [USERS, batch("users", [good]), state({"n": 2}), batch("users", [bad]), state({"n": 4})]

    run = run_cli(target_config(local_api), messages)

    assert run.exit_code == 1
    assert "stream 'users' (table 'users'), record #4" in run.stderr
    assert "field 'id'" in run.stderr
    assert f"row 2 of batch file {bad.as_uri()}" in run.stderr
    assert SECRET_VALUE not in run.output
    assert {"n": 4} not in run.states
    assert set(landed_by_id(local_api, "users")) <= {1, 2, 3}


def test_state_after_a_batch_is_not_written_when_its_rows_do_not_land(make_api: t.Any, tmp_path: Path) -> None:
    # The first upsert is accepted; every later one is refused for good (400).
    server = make_api(faults=Faults(fail_after=1, fail_status=400))
    path = write_jsonl(tmp_path / "rows.jsonl.gz", [user(i, "b") for i in range(10, 20)], gzipped=True)
    messages = [USERS, record("users", **user(1, "a")), state({"n": 1}), batch("users", [path]), state({"n": 11})]

    run = run_cli(target_config(server, max_concurrent_requests=1, max_points_per_request=1), messages)

    assert run.exit_code == 1
    assert run.states == [{"n": 1}]
    assert sorted(landed_by_id(server, "users")) == [1]
    assert "The Import API refused record #2 of stream 'users'" in run.stderr


@pytest.mark.parametrize(
    ("make_message", "expected"),
    [
        pytest.param(
            lambda d: batch("users", [d / "missing.jsonl.gz"]),
            "Cannot read batch file {url_missing} of stream 'users': No such file or directory",
            id="missing-file",
        ),
        pytest.param(
            lambda d: batch("users", [d / "plain.jsonl"]),  # plain text announced as gzip
            "Cannot read batch file {url_plain} of stream 'users'",
            id="not-gzip",
        ),
        pytest.param(
            lambda d: batch("users", [d / "notjson.jsonl"], compression="none"),
            "Line 2 of batch file {url_notjson} of stream 'users' is not valid JSON",
            id="line-not-json",
        ),
        pytest.param(
            lambda d: batch("users", [d / "array.jsonl"], compression="none"),
            "Line 1 of batch file {url_array} of stream 'users' is JSON but not an object",
            id="line-not-object",
        ),
        pytest.param(
            lambda d: batch("users", [d / "plain.jsonl"], fmt="avro"),
            "The BATCH message of stream 'users' uses batch format 'avro'",
            id="unknown-format",
        ),
        pytest.param(
            lambda d: batch("users", [d / "plain.jsonl"], compression="zstd"),
            "The BATCH message of stream 'users' uses compression 'zstd'",
            id="unknown-compression",
        ),
    ],
)
def test_unreadable_batch_files_are_one_clear_error_naming_stream_and_file(
    local_api: LocalImportAPI, tmp_path: Path, make_message: t.Callable[[Path], dict[str, t.Any]], expected: str
) -> None:
    write_jsonl(tmp_path / "plain.jsonl", [user(7, SECRET_VALUE)], gzipped=False)
    (tmp_path / "notjson.jsonl").write_text(json.dumps(user(8, "ok")) + "\n{" + SECRET_VALUE + "\n")
    (tmp_path / "array.jsonl").write_text(json.dumps([SECRET_VALUE]) + "\n")
    urls = {
        f"url_{n}": (tmp_path / f).as_uri()
        for n, f in [
            ("missing", "missing.jsonl.gz"),
            ("plain", "plain.jsonl"),
            ("notjson", "notjson.jsonl"),
            ("array", "array.jsonl"),
        ]
    }
    messages = [USERS, record("users", **user(1, "a")), state({"n": 1}), make_message(tmp_path), state({"n": 2})]

    run = run_cli(target_config(local_api), messages)

    assert run.exit_code == 1
    assert expected.format(**urls) in run.stderr
    assert "Traceback" not in run.stderr
    assert SECRET_VALUE not in run.output
    assert {"n": 2} not in run.states
    assert not (tmp_path / "missing.jsonl.gz").exists()


def test_parquet_batch_files_load_when_pyarrow_is_installed(local_api: LocalImportAPI, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    rows = [
        {
            "id": 1,
            "name": "a",
            "signed_up": datetime.datetime(2024, 5, 1, 8, 0, tzinfo=datetime.timezone.utc),
            "price": decimal.Decimal("12345678901234.567890"),
            "tags": ["x", "y"],
        },
        {"id": 2, "name": None, "signed_up": None, "price": None, "tags": []},
        {"id": 1, "name": "a2", "signed_up": None, "price": decimal.Decimal("1.5"), "tags": None},
    ]
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, compression="gzip")
    props = {**USER_PROPS, "price": {"type": ["number", "null"]}, "tags": {"type": ["array", "null"]}}

    run = run_cli(
        target_config(local_api),
        [schema("users", props, ["id"]), batch("users", [path], fmt="parquet"), state({"p": 1})],
    )

    assert run.exit_code == 0, run.stderr
    landed = landed_by_id(local_api, "users")
    assert landed[1]["name"] == "a2" and landed[1]["price"] == 1.5
    assert landed[2] == {"id": 2, "name": None, "signed_up": None, "price": None, "tags": "[]"}
    assert run.states == [{"p": 1}]


def test_parquet_without_pyarrow_says_to_install_it(local_api: LocalImportAPI, tmp_path: Path) -> None:
    blocker = tmp_path / "blocked" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pyarrow is blocked by this test')\n")
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"PAR1 not really parquet PAR1")
    env = clean_env(PYTHONPATH=str(blocker.parent))

    run = run_cli(target_config(local_api), [USERS, batch("users", [path], fmt="parquet"), state({"p": 1})], env=env)

    assert run.exit_code == 1
    assert "holds Parquet files, which need pyarrow: install it beside the target (`pip install pyarrow`)" in run.stderr
    assert run.states == []


def test_about_declares_the_batch_capability() -> None:

    assert "batch" in json.loads(about())["capabilities"]


def test_tap_jsonl_with_batch_config_loads_every_row_through_the_target(
    local_api: LocalImportAPI, tmp_path: Path
) -> None:
    tap = tap_executable("tap-jsonl", "0.3.1")
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"id": i, "name": f"user {i}", "score": i * 1.5} for i in range(1, 251)]
    rows += [{"id": i, "name": f"user {i} updated", "score": 0} for i in range(1, 251, 10)]  # updates across files
    (data / "users.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(
        json.dumps(
            {
                "path": str(data / "*.jsonl"),
                "stream_name": "users",
                "primary_keys": ["id"],
                "batch_config": {
                    "encoding": {"format": "jsonl", "compression": "gzip"},
                    "storage": {"root": (tmp_path / "batches").as_uri(), "prefix": "b-"},
                    "batch_size": 60,
                },
            }
        )
    )
    tap_out = subprocess.run(
        [str(tap), "--config", str(tap_config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("TARGET_RJMETRICS_")},
    ).stdout
    types = [json.loads(line)["type"] for line in tap_out.splitlines() if line.strip()]
    assert types.count("BATCH") >= 4 and "RECORD" not in types  # the tap really sent batches
    tap_states = [
        json.loads(line)["value"] for line in tap_out.splitlines() if '"type":"STATE"' in line.replace(" ", "")
    ]

    run = run_cli(target_config(local_api, max_concurrent_requests=4), tap_out)

    assert run.exit_code == 0, run.stderr
    landed = landed_by_id(local_api, "users")
    assert len(landed) == 250
    assert all(landed[i]["name"] == f"user {i} updated" for i in range(1, 251, 10))
    assert landed[2]["name"] == "user 2" and landed[2]["score"] == 3
    assert run.states and run.states[-1] == tap_states[-1]
