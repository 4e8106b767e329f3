"""Fixtures for the local Import API tests: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from local_api_support import Api, CliServer

from target_rjmetrics.local_api import LocalImportAPI


@pytest.fixture
def make_server(make_api: Any) -> Any:
    """Factory of started in-process servers: the suite-wide ``make_api`` of tests/conftest.py."""
    return make_api


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def server(make_server: Any) -> LocalImportAPI:
    """An in-memory server with the demo credentials, logging point keys."""
    return make_server(log_point_keys=True)


@pytest.fixture
def api(server: LocalImportAPI, session: requests.Session) -> Api:
    return Api(server, session)


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[Any]:
    """Factory of CLI server subprocesses, all killed at teardown."""
    procs: list[CliServer] = []

    def start(*args: str) -> CliServer:
        srv = CliServer(tmp_path, *args)
        procs.append(srv)
        return srv

    yield start
    for srv in procs:
        srv.kill()
        for stream in (srv.proc.stdout, srv.proc.stderr):
            if stream is not None:
                stream.close()
