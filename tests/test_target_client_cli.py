"""The client's promises seen from the command line: what a user reads, what landed, what was written.

Each test runs ``target-rjmetrics`` as a process against the local server or a scripted loopback
server (``tests.support.scripted.ScriptedServer``) for answers the local server cannot give.
"""

from __future__ import annotations

import json
import time
import typing as t

import pytest

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, Faults, LocalImportAPI
from tests.support.checks import landed_by_id
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, state, users
from tests.support.scripted import Reply, ScriptedServer
from tests.support.servers import free_port
from tests.support.targets import clean_env, run_cli

if t.TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "S3cretPass"
TWO_BATCHES = [USERS_SCHEMA, *users(2), state({"b": "first"}), *users(2, start=3), state({"b": "second"})]


@pytest.fixture
def scripted() -> Iterator[t.Callable[..., ScriptedServer]]:
    """Factory of scripted loopback servers, all stopped at teardown."""
    servers: list[ScriptedServer] = []

    def make(script: t.Any, **kwargs: t.Any) -> ScriptedServer:
        server = ScriptedServer(script, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def config_for(base_url: str, **overrides: t.Any) -> dict[str, t.Any]:
    """Settings for the demo client at ``base_url``."""
    config: dict[str, t.Any] = {
        "client_id": DEMO_CLIENT_ID,
        "api_key": DEMO_API_KEY,
        "api_url": base_url,
        "max_retry_seconds": 20,
        "request_timeout": 10,
    }
    config.update(overrides)
    return config


def traceback_free(stderr: str) -> bool:
    """No Python traceback and no 'please report' in what the target printed."""
    return "Traceback" not in stderr and "please report" not in stderr


# -- only a 201 is a landing -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 204, 301, 302, 303, 307, 308])
def test_an_upsert_answered_anything_but_201_fails_the_run_without_a_state_past_it(
    scripted: t.Any, status: int
) -> None:
    elsewhere = scripted(Reply(status=201))
    posts: list[int] = []

    def script(method: str, target: str) -> Reply:
        if method == "GET":
            return Reply(status=200, body=b'{"code": 200}')
        posts.append(1)
        if len(posts) == 1:
            return Reply(status=201)  # the first batch lands
        # A hostile redirect carries the query (and so the key) to another host.
        query = target.partition("?")[2]
        location = f"http://127.0.0.1:{elsewhere.port}/v2/client/1/table/users/data?{query}"
        return Reply(status=status, headers={"Location": location}, body=b"")

    server = scripted(script)
    run = run_cli(config_for(server.base_url, max_points_per_request=2, max_concurrent_requests=1), TWO_BATCHES)

    assert run.exit_code == 1, run.stderr[-2000:]
    assert {"b": "second"} not in run.states and run.states in ([], [{"b": "first"}])
    assert elsewhere.connections == 0, "a redirect was followed"
    assert len(posts) == 2, "the refused batch was sent again"
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert errors and f"answered {status}" in errors[-1]
    if status >= 300:
        assert (
            f"with Location http://127.0.0.1:{elsewhere.port}/v2/client/1/table/users/data (query removed)"
            in errors[-1]
        )
        assert "Set `api_url` to the final URL" in errors[-1]
    else:
        assert "instead of 201" in errors[-1] and "proxy" in errors[-1] and "`api_url`" in errors[-1]
    assert "records #3-#4 of stream 'users'" in errors[-1]
    assert DEMO_API_KEY not in run.output
    assert traceback_free(run.stderr)


@pytest.mark.parametrize("status", [201, 204, 302])
def test_a_credential_check_answered_anything_but_200_fails_before_reading(scripted: t.Any, status: int) -> None:
    server = scripted(Reply(status=status, headers={"Location": "https://127.0.0.1:9/v2?apikey=x"}, body=b""))

    run = run_cli(config_for(server.base_url), TWO_BATCHES)

    assert run.exit_code == 1
    assert run.states == []
    assert [m for m, _ in server.requests] == ["GET"]
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert errors and f"authenticate for client id {DEMO_CLIENT_ID} was answered {status}" in errors[-1]
    assert "instead of 200" in errors[-1] and "`api_url`" in errors[-1]
    assert "apikey=x" not in run.stderr
    assert traceback_free(run.stderr)


# -- an unreachable API, a base URL without /v2 ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("host", "reason"),
    [("127.0.0.1", "connection refused"), ("rjmetrics-target-test.invalid", "name not resolved")],
)
def test_an_unreachable_api_at_start_fails_within_seconds_naming_host_port_and_reason(host: str, reason: str) -> None:
    port = free_port()

    started = time.monotonic()
    run = run_cli(config_for(f"http://{host}:{port}/v2", max_retry_seconds=300), TWO_BATCHES, timeout=60)
    took = time.monotonic() - started

    assert run.exit_code == 1
    assert took < 20, f"took {took:.0f}s"
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert errors and f"cannot connect to {host}:{port} ({reason})" in errors[-1]
    assert "`api_url`" in errors[-1]
    assert "max_retry_seconds" not in run.stderr and "lost its connection" not in run.stderr
    assert run.states == []
    assert traceback_free(run.stderr)


def test_an_api_url_without_v2_gets_a_hint_with_the_url_tried(local_api: LocalImportAPI) -> None:
    root = local_api.base_url.removesuffix("/v2")

    run = run_cli(config_for(root), TWO_BATCHES)

    assert run.exit_code == 1
    assert f"GET {root}/client/{DEMO_CLIENT_ID}/authenticate?apikey=***:" in run.stderr
    assert "ending in /v2 (e.g. https://connect.rjmetrics.com/v2)" in run.stderr
    assert DEMO_API_KEY not in run.output
    assert local_api.rows(DEMO_CLIENT_ID, "users") == []


# -- a password in api_url is never shown -----------------------------------------------------------------


@pytest.mark.parametrize("case", ["success", "401", "retries exhausted", "debug logging"])
def test_a_password_in_api_url_appears_nowhere(make_api: t.Any, case: str) -> None:
    overrides: dict[str, t.Any] = {}
    env = clean_env()
    if case == "401":
        server = make_api(credentials={DEMO_CLIENT_ID: "another-key"})
    elif case == "retries exhausted":
        server = make_api(faults=Faults(error_rate=1.0))
        overrides.update(max_retry_seconds=1, authenticate_on_start=False)
    elif case == "debug logging":
        server = make_api(faults=Faults(seed=3, error_rate=0.3, drop_rate=0.1))
        env = clean_env(LOGLEVEL="DEBUG")
    else:
        server = make_api()
    api_url = server.base_url.replace("http://", f"http://user:{PASSWORD}@")

    run = run_cli(target_config(server, api_url=api_url, **overrides), TWO_BATCHES, env=env)

    assert PASSWORD not in run.output
    assert DEMO_API_KEY not in run.output
    if case in ("success", "debug logging"):
        assert run.exit_code == 0, run.stderr[-2000:]
        assert sorted(landed_by_id(server, "users")) == [1, 2, 3, 4]
        assert f"at http://***@127.0.0.1:{server.port}/v2" in run.stderr, "the URL was not shown at all"
    else:
        assert run.exit_code == 1
    if case == "debug logging":
        assert "DEBUG" in run.stderr and "Retrying" in run.stderr


# -- a huge answer is shown bounded --------------------------------------------------------------------------


def test_a_400_with_megabytes_of_reasons_prints_a_few_kb(scripted: t.Any) -> None:
    answer = {
        "code": 400,
        "message": "Bad Request " + "M" * 50_000,
        "reasons": [f"reason {i}: " + "R" * 200_000 for i in range(10)],
    }

    def script(method: str, _target: str) -> Reply:
        if method == "GET":
            return Reply(status=200, body=b"{}")
        return Reply(status=400, body=json.dumps(answer).encode())

    server = scripted(script)
    baseline = run_cli(config_for(server.base_url), [USERS_SCHEMA])  # nothing to send: the usual chatter

    run = run_cli(config_for(server.base_url), TWO_BATCHES)

    assert run.exit_code == 1
    assert len(run.stderr) - len(baseline.stderr) < 6000, len(run.stderr)
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert errors and "answered 400 Bad Request" in errors[-1]
    assert "more characters" in errors[-1]
