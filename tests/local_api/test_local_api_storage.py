"""Durable storage: SIGKILL and restart, file-backed restarts, the CLI's tables and dump."""

from __future__ import annotations

import csv
import gc
import io
import json
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
import requests

from target_rjmetrics.local_api import DEMO_API_KEY, LocalImportAPI
from target_rjmetrics.local_api.cli import parse_credentials
from tests.support.servers import local_api_cli

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.smoke


def _push(base_url: str, table: str, body: Any, key: str = DEMO_API_KEY, client_id: int = 1) -> int:
    url = f"{base_url}/client/{client_id}/table/{table}/data"
    return requests.post(url, params={"apikey": key}, json=body, timeout=10).status_code


def test_data_acknowledged_with_201_survives_sigkill_and_restart(cli_server: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = cli_server("--data-dir", str(data_dir))
    points = [{"keys": ["id"], "id": i, "v": f"v{i}"} for i in range(100)]
    assert _push(first.base_url, "users", points) == 201
    assert _push(first.base_url, "users", {"keys": ["id"], "id": 0, "v": "replaced"}) == 201
    first.kill(signal.SIGKILL)  # no chance to checkpoint or close anything
    assert first.exit_code == -signal.SIGKILL

    second = cli_server("--data-dir", str(data_dir))
    rows = requests.get(f"{second.root_url}/_local/tables/1/users/rows", timeout=10).json()
    assert len(rows) == 100
    assert rows[0] == {"id": 0, "v": "replaced"}
    assert rows[99] == {"id": 99, "v": "v99"}


def test_cli_prints_the_demo_key_but_never_a_user_supplied_one(cli_server: Any) -> None:
    demo = cli_server("--in-memory")
    demo.kill(signal.SIGTERM)
    assert f"key {DEMO_API_KEY}" in demo.stdout

    srv = cli_server("--in-memory", "--credentials", "5:very-secret-key,6:other-secret")
    assert _push(srv.base_url, "t", {"keys": ["id"], "id": 1}, key="very-secret-key", client_id=5) == 201
    assert _push(srv.base_url, "t", {"keys": ["id"], "id": 1}, key="very-secret-key", client_id=6) == 401
    srv.kill(signal.SIGTERM)
    out = srv.stdout + srv.stderr
    assert "client ids 5, 6" in out
    assert "secret" not in out
    assert srv.exit_code == 0  # SIGTERM is a clean stop


def test_credentials_parse_pairs_and_reject_garbage_without_echoing_it() -> None:
    assert parse_credentials("1:a, 2:b:c") == {1: "a", 2: "b:c"}
    for bad in ["", "x:s3cret", "1", "0:s3cret", "1:", "1:ok,s3cret"]:
        with pytest.raises(ValueError, match="credentials") as info:
            parse_credentials(bad)
        assert "s3cret" not in str(info.value)


def test_file_backed_server_keeps_data_across_in_process_restarts(tmp_path: Path) -> None:
    with LocalImportAPI(data_dir=tmp_path) as srv:
        assert _push(srv.base_url, "t", [{"keys": ["id"], "id": 2}, {"keys": ["id"], "id": 1}]) == 201
    assert (tmp_path / "import-api.sqlite3").exists()
    # Readable after stop, and by a new server on the same directory.
    assert srv.rows(1, "t") == [{"id": 2}, {"id": 1}]
    with LocalImportAPI(data_dir=tmp_path) as again:
        assert _push(again.base_url, "t", {"keys": ["id"], "id": 3}) == 201
        assert again.rows(1, "t") == [{"id": 2}, {"id": 1}, {"id": 3}]


def test_an_in_memory_database_is_closed_once_its_server_is_collected() -> None:
    # Python 3.13 warns about a SQLite connection collected open (a test error under -W error).
    srv = LocalImportAPI().start()
    storage = srv._storage
    assert storage is not None
    srv.stop()
    assert storage.tables(1) == []  # still readable after stop, as documented
    del srv
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        storage.tables(1)


def test_in_memory_server_stores_with_real_sql_and_stays_readable_after_stop() -> None:
    with LocalImportAPI() as srv:
        assert _push(srv.base_url, "t", {"keys": ["id"], "id": 1}) == 201
    assert srv.tables(1) == {"t": 1}


def test_cli_lists_tables_and_dumps_jsonl_and_csv_while_the_server_runs(cli_server: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    srv = cli_server("--data-dir", str(data_dir))
    body = [
        {"keys": ["id"], "id": 1, "name": "a,b", "n": None},
        {"keys": ["id"], "id": 2, "name": "c", "extra": {"x": 1}},
    ]
    assert _push(srv.base_url, "users", body) == 201
    assert _push(srv.base_url, "orders", {"keys": ["id"], "id": 9}) == 201

    tables = local_api_cli("tables", "--data-dir", str(data_dir))
    assert tables.returncode == 0
    lines = tables.stdout.splitlines()
    assert any(line.split() == ["1", "orders", "1"] for line in lines)
    assert any(line.split() == ["1", "users", "2"] for line in lines)

    jsonl = local_api_cli("dump", "users", "--data-dir", str(data_dir))
    assert [json.loads(line) for line in jsonl.stdout.splitlines()] == [
        {"id": 1, "name": "a,b", "n": None},
        {"id": 2, "name": "c", "extra": {"x": 1}},
    ]

    as_csv = local_api_cli("dump", "users", "--format", "csv", "--data-dir", str(data_dir))
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["id", "name", "n", "extra"],
        ["1", "a,b", "", ""],
        ["2", "c", "", '{"x":1}'],
    ]


def test_cli_tables_on_an_empty_data_dir_says_so_without_creating_it(tmp_path: Path) -> None:
    result = local_api_cli("tables", "--data-dir", str(tmp_path / "none"))
    assert result.returncode == 0
    assert "No data yet" in result.stderr
    assert not (tmp_path / "none").exists()


def test_cli_dump_of_a_missing_table_exits_1_and_names_the_tables_that_exist(cli_server: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    srv = cli_server("--data-dir", str(data_dir))
    assert _push(srv.base_url, "users", {"keys": ["id"], "id": 1}) == 201
    assert _push(srv.base_url, "orders", {"keys": ["id"], "id": 1}) == 201

    missing = local_api_cli("dump", "NO_SUCH_TABLE", "--data-dir", str(data_dir))
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "no table 'NO_SUCH_TABLE' of client 1" in missing.stderr
    assert "its tables: orders, users" in missing.stderr

    other_client = local_api_cli("dump", "users", "--client-id", "2", "--data-dir", str(data_dir))
    assert other_client.returncode == 1
    assert "no table 'users' of client 2" in other_client.stderr
    assert "tables exist for client id(s) 1 (use --client-id)" in other_client.stderr

    bad_name = local_api_cli("dump", "a-b", "--data-dir", str(data_dir))
    assert bad_name.returncode == 1 and "letters, digits and underscores" in bad_name.stderr

    assert local_api_cli("dump", "users", "--data-dir", str(data_dir)).returncode == 0
    none_of_client = local_api_cli("tables", "--client-id", "2", "--data-dir", str(data_dir))
    assert none_of_client.returncode == 0 and none_of_client.stdout == "No tables of client 2.\n"


def test_cli_dump_without_a_database_exits_1(tmp_path: Path) -> None:
    result = local_api_cli("dump", "users", "--data-dir", str(tmp_path / "none"))
    assert result.returncode == 1 and "No data yet" in result.stderr


def test_cli_refuses_an_explicitly_empty_credentials_flag() -> None:
    result = local_api_cli("serve", "--in-memory", "--port", "0", "--credentials", "")
    assert result.returncode == 2
    assert "credentials are empty" in result.stderr
