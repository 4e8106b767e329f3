"""Fixtures for the target's tests: a real local Import API on a free loopback port."""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import pytest

from tests.support.servers import start_local_api
from tests.support.targets import ENV_PREFIXES

if t.TYPE_CHECKING:
    from target_rjmetrics.local_api import LocalImportAPI


UNIT_TESTS = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in tests/unit `unit`: pure code, no process, socket or server."""
    for item in items:
        if item.path.is_relative_to(UNIT_TESTS):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _no_target_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's own TARGET_RJMETRICS_* variables out of every test."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES[0]):
            monkeypatch.delenv(name)


@pytest.fixture
def make_api() -> t.Iterator[t.Callable[..., LocalImportAPI]]:
    """Factory of started in-process local servers (logging point keys), all stopped at teardown."""
    servers: list[LocalImportAPI] = []

    def make(**kwargs: t.Any) -> LocalImportAPI:
        server = start_local_api(**kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def local_api(make_api: t.Callable[..., LocalImportAPI]) -> LocalImportAPI:
    """An in-memory local server with the demo credentials."""
    return make_api()
