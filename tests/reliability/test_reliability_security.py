"""Security: the API key never shows, stream names never steer requests, TLS is verified.

A distinctive key (with characters that URL-encoding changes) is registered with the local
server; every scenario below then looks for any fragment of it in what the target printed
or wrote.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import signal
import ssl
import threading
import time
import typing as t

import pytest

from target_rjmetrics.local_api import Faults
from tests.reliability.scenarios import Workload
from tests.support.checks import SECRET_KEY, leaked
from tests.support.config import SCENARIO_SETTINGS, target_config
from tests.support.expected import sanitise
from tests.support.processes import PIPE
from tests.support.proxy import HostileProxy, Mode
from tests.support.scripted import Reply, ScriptedServer
from tests.support.servers import free_port, start_local_api
from tests.support.targets import TargetProcess, clean_env, run_target
from tests.support.tls import self_signed_cert

if t.TYPE_CHECKING:
    from pathlib import Path

WORKLOAD = Workload(streams=("users", "shop-orders"), n_keys=60, rounds=4, seed=21, state_every=40)


def _assert_no_key(text: str, where: str) -> None:
    found = leaked(text)
    assert not found, f"the API key leaked into {where}: fragments {found}"


def _run(
    config: dict[str, t.Any], tmp_path: Path, env: dict[str, str] | None = None, data: bytes | None = None
) -> TargetProcess:
    proc = TargetProcess(config, tmp_path, stdin=WORKLOAD.text(0) if data is None else data, env=env)
    proc.wait(120)
    return proc


#: name: (Faults fields, target setting overrides, environment additions)
SCENARIOS: dict[str, tuple[dict[str, t.Any], dict[str, t.Any], dict[str, str] | None]] = {
    "load under faults": ({"error_rate": 0.1, "drop_rate": 0.05, "rate_limit_rate": 0.05, "retry_after": 0}, {}, None),
    "permanent 400": ({"fail_after": 3, "fail_status": 400}, {}, None),
    "401 mid-run": ({"fail_after": 3, "fail_status": 401}, {}, None),
    "retries exhausted": ({"fail_after": 3, "fail_status": 503}, {"max_retry_seconds": 1}, None),
    "debug logging": ({"error_rate": 0.1}, {}, {"LOGLEVEL": "DEBUG"}),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_api_key_never_appears_in_output(name: str, tmp_path: Path) -> None:
    fault_fields, overrides, env_extra = SCENARIOS[name]
    server = start_local_api(faults=Faults(seed=2, **fault_fields), credentials={1: SECRET_KEY})
    try:
        config = target_config(server, SCENARIO_SETTINGS, api_key=SECRET_KEY, **overrides)
        proc = _run(config, tmp_path, env=clean_env(**env_extra) if env_extra else None)
    finally:
        server.stop()
    assert proc.exit_code is not None
    if name in ("load under faults", "debug logging"):
        assert proc.exit_code == 0, proc.stderr[-2000:]
    else:
        assert proc.exit_code == 1, proc.stderr[-2000:]
    _assert_no_key(proc.stdout, "stdout")
    _assert_no_key(proc.stderr, "stderr")


def test_the_api_key_never_appears_when_the_host_is_unreachable(tmp_path: Path) -> None:
    config = target_config(
        f"http://127.0.0.1:{free_port()}/v2", SCENARIO_SETTINGS, api_key=SECRET_KEY, max_retry_seconds=1
    )
    proc = _run(config, tmp_path)
    assert proc.exit_code == 1
    assert "127.0.0.1" in proc.stderr, "the error should say which host could not be reached"
    _assert_no_key(proc.stdout + proc.stderr, "the output of a failed connection")


def test_the_api_key_never_appears_in_the_dry_run_file(tmp_path: Path) -> None:
    dry = tmp_path / "dry-run.jsonl"
    config = target_config("http://127.0.0.1:9/v2", SCENARIO_SETTINGS, api_key=SECRET_KEY, dry_run_file=str(dry))
    proc = _run(config, tmp_path)
    assert proc.exit_code == 0, proc.stderr[-2000:]
    text = dry.read_text()
    assert text.count("\n") >= 5, "the dry run wrote no requests"
    _assert_no_key(text, "the dry-run file")
    _assert_no_key(proc.stdout + proc.stderr, "the output of a dry run")
    assert all("apikey=***" in json.loads(line)["url"] for line in text.splitlines())


@pytest.mark.parametrize("fmt", [None, "json", "markdown"])
def test_the_api_key_never_appears_in_about(fmt: str | None, tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(target_config("http://127.0.0.1:9/v2", SCENARIO_SETTINGS, api_key=SECRET_KEY)))
    run = run_target(["--about", *(["--format", fmt] if fmt else [])], config=config_path, timeout=60)
    assert run.exit_code == 0, run.stderr[-2000:]
    assert "api_key" in run.stdout
    _assert_no_key(run.output, f"--about --format {fmt}")


HOSTILE_STREAM_NAMES = [
    "users?apikey=stolen&x=1",
    "users#fragment",
    "../../_local/faults",
    "users/../../authenticate",
    "a%2F..%3F%23",
    "with spaces and\ttab",
    "café/orders",
    "\\windows\\path",
    "%00nul",
    "s" * 300,
]


def test_a_stream_name_never_changes_the_request_path_or_query(tmp_path: Path) -> None:
    server = start_local_api(credentials={1: SECRET_KEY})
    properties = {"id": {"type": "integer"}}
    lines = []
    for name in HOSTILE_STREAM_NAMES:
        lines.append(
            {
                "type": "SCHEMA",
                "stream": name,
                "key_properties": ["id"],
                "schema": {"type": "object", "properties": properties},
            }
        )
        lines.extend({"type": "RECORD", "stream": name, "record": {"id": i}} for i in (1, 2))
    data = "".join(json.dumps(m) + "\n" for m in lines).encode()
    try:
        faults_before = server.faults
        proc = _run(target_config(server, SCENARIO_SETTINGS, api_key=SECRET_KEY), tmp_path, data=data)
        entries = server.request_log()
        tables = server.tables(1)
        faults_after = server.faults
    finally:
        server.stop()
    assert proc.exit_code == 0, proc.stderr[-2000:]
    expected = {sanitise(name) for name in HOSTILE_STREAM_NAMES}
    assert tables == dict.fromkeys(expected, 2)
    posts = [e for e in entries if e.method == "POST"]
    assert {e.path for e in posts} == {f"/v2/client/1/table/{table}/data" for table in expected}
    assert all(e.status == 201 for e in posts)
    others = {e.path for e in entries if e.method != "POST"}
    assert others <= {"/v2/client/1/authenticate"}, others
    assert faults_after == faults_before
    _assert_no_key(proc.stdout + proc.stderr, "output")


def test_tls_certificates_are_verified(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    handled: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handled.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: t.Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        base = f"https://127.0.0.1:{httpd.server_address[1]}/v2"
        for authenticate in (True, False):
            config = target_config(
                base, SCENARIO_SETTINGS, api_key=SECRET_KEY, max_retry_seconds=1, authenticate_on_start=authenticate
            )
            proc = _run(config, tmp_path)
            assert proc.exit_code == 1, f"a self-signed certificate was accepted: {proc.stderr[-2000:]}"
            assert any(w in proc.stderr for w in ("SSL", "certificate", "CERTIFICATE")), proc.stderr[-2000:]
            _assert_no_key(proc.stdout + proc.stderr, "the output of a TLS failure")
            assert not proc.states
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert handled == [], f"requests got through an unverified TLS connection: {handled}"


# -- every failure path, at INFO and DEBUG ------------------------------------------------------

#: A password of `api_url` that must not show either (its fragments are distinctive).
URL_PASSWORD = "pw-Q7x!r9"
PASSWORD_FRAGMENTS = ("Q7x", "r9", "Q7x%21r9")
FAKE_HOST = f"https://etl:{URL_PASSWORD}@api.example.test/v2"


@dataclasses.dataclass
class FailurePath:
    """A way a run fails: what it talks to, and words proving the path was really taken."""

    proxy: Mode | None = None
    proxy_status: int = 403
    api_url: str = FAKE_HOST
    settings: dict[str, t.Any] = dataclasses.field(default_factory=dict)
    expect: tuple[str, ...] = ()
    exit_code: int = 1
    sigterm_after: str | None = None  # send SIGTERM once stderr holds this


FAILURE_PATHS: dict[str, FailurePath] = {
    "proxy refuses CONNECT 403 (authenticate)": FailurePath(proxy="refuse", expect=("refused the tunnel: 403",)),
    "proxy refuses CONNECT 407 (upsert)": FailurePath(
        proxy="refuse", proxy_status=407, settings={"authenticate_on_start": False}, expect=("407",)
    ),
    "proxy refuses CONNECT 502 (retried)": FailurePath(
        proxy="refuse", proxy_status=502, expect=("Retrying", "refused the tunnel: 502")
    ),
    "proxy resets": FailurePath(proxy="reset", expect=("Retrying", "connection reset")),
    "proxy trickles the tunnel": FailurePath(proxy="trickle", expect=("no answer within",)),
    "proxy trickles the tunnel (upsert)": FailurePath(
        proxy="trickle", settings={"authenticate_on_start": False}, expect=("Retrying upsert", "no answer within")
    ),
    "proxy echoes the URL in a 400": FailurePath(
        proxy="echo", proxy_status=400, api_url="http://etl:pw-Q7x!r9@api.example.test/v2", expect=("answered 400",)
    ),
    "proxy echoes the URL in a 503": FailurePath(
        proxy="echo", proxy_status=503, api_url="http://api.example.test/v2", expect=("Retrying", "503")
    ),
    "name not resolved": FailurePath(
        api_url=f"https://etl:{URL_PASSWORD}@rjm-test.invalid/v2", expect=("name not resolved",)
    ),
    "TLS certificate not trusted": FailurePath(api_url="tls", expect=("TLS verification",)),
    "timeout": FailurePath(api_url="hang", settings={"authenticate_on_start": False}, expect=("timed out",)),
    "SIGTERM mid-retry": FailurePath(
        proxy="refuse", proxy_status=502, settings={"max_retry_seconds": 5}, exit_code=143, sigterm_after="Retrying"
    ),
}


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
@pytest.mark.parametrize("name", list(FAILURE_PATHS))
def test_the_key_and_url_password_never_appear_on_any_failure_path(name: str, level: str, tmp_path: Path) -> None:
    path = FAILURE_PATHS[name]
    stops: list[t.Callable[[], None]] = []
    env = clean_env(TARGET_RJMETRICS_LOGLEVEL=level)
    api_url = path.api_url
    if path.proxy is not None:
        proxy = HostileProxy(path.proxy, status=path.proxy_status, interval=1.0)
        stops.append(proxy.stop)
        env.update(proxy.env())
    if api_url == "tls":
        server = ScriptedServer(Reply(status=200), tls=self_signed_cert(tmp_path))
        stops.append(server.stop)
        api_url = server.base_url.replace("https://", f"https://etl:{URL_PASSWORD}@")
    elif api_url == "hang":
        server = ScriptedServer(Reply(how="hang", bound=30))
        stops.append(server.stop)
        api_url = server.base_url.replace("http://", f"http://etl:{URL_PASSWORD}@")
    settings = {"max_retry_seconds": 2, "request_timeout": 1.5, "late_apply_seconds": 0, **path.settings}
    config = target_config(api_url, SCENARIO_SETTINGS, api_key=SECRET_KEY, **settings)
    try:
        proc = TargetProcess(config, tmp_path, stdin=WORKLOAD.text(0) if path.sigterm_after is None else PIPE, env=env)
        if path.sigterm_after is not None:
            proc.send([*WORKLOAD.schemas(), *list(WORKLOAD.messages())[2:40]])
            deadline = time.monotonic() + 30
            while path.sigterm_after not in proc.stderr and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    finally:
        for stop in stops:
            stop()
    output = proc.stdout + proc.stderr
    _assert_no_key(output, f"the output at {level}")
    shown = [fragment for fragment in PASSWORD_FRAGMENTS if fragment in output]
    assert not shown, f"the password of api_url leaked at {level}: {shown}"
    # ...and the path was really taken, within the bounds the settings give.
    assert proc.exit_code == path.exit_code, output[-2000:]
    bound = settings["max_retry_seconds"] + 2 * settings["request_timeout"] + 10  # 10 s for start-up
    assert proc.wall is not None and proc.wall < bound, f"the run took {proc.wall:.0f}s, over {bound:.0f}s"
    for words in path.expect:
        assert words in output, f"the failure path was not taken (no {words!r}): {output[-2000:]}"
    if level == "DEBUG":
        assert "DEBUG" in proc.stderr, "DEBUG logging was not on"
