"""Fixtures for the local Import API tests: real servers on free loopback ports."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from tests.support.api import Api
from tests.support.servers import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from target_rjmetrics.local_api import LocalImportAPI


@pytest.fixture
def make_server(make_api: Callable[..., LocalImportAPI]) -> Callable[..., LocalImportAPI]:
    """Factory of started in-process servers: the suite-wide ``make_api`` of tests/conftest.py."""
    return make_api


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def server(make_server: Callable[..., LocalImportAPI]) -> LocalImportAPI:
    """An in-memory server with the demo credentials, logging point keys."""
    return make_server(log_point_keys=True)


@pytest.fixture
def api(server: LocalImportAPI, session: requests.Session) -> Api:
    return Api(server, session)


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory of ``rjmetrics-local-api serve`` processes (flags as arguments), all killed at teardown."""
    servers: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(tmp_path, *args)
        servers.append(server)
        return server.start(timeout=15)

    yield start
    for server in servers:
        if server.running():
            server.kill()
