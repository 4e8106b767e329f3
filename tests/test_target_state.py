"""STATE rules: written only after its records landed, in order, promptly, never past a failure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import typing as t

import pytest

from target_rjmetrics.local_api import DEMO_CLIENT_ID, Faults
from tests.support.checks import landed_by_id, landed_keys_by, points_of, upserts
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, lines, record, schema, state, users
from tests.support.targets import TARGET_BIN, TargetProcess, clean_env, run_cli, run_in_process

if t.TYPE_CHECKING:
    from pathlib import Path

    from target_rjmetrics.local_api import LocalImportAPI


pytestmark = pytest.mark.smoke


def _wait_until(condition: t.Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _wait_until_started(server: LocalImportAPI) -> None:
    """Wait until the target has checked its credentials, i.e. is about to read input."""
    _wait_until(lambda: any("authenticate" in e.path for e in server.request_log()))


def _checkpointed_users(total: int, every: int) -> list[dict[str, t.Any]]:
    """Users 1..total with a STATE ``{"users": n}`` after every ``every`` records."""
    messages: list[dict[str, t.Any]] = [USERS_SCHEMA]
    for rec in users(total):
        messages.append(rec)
        n = rec["record"]["id"]
        if n % every == 0:
            messages.append(state({"users": n}))
    return messages


def test_state_is_not_written_before_its_records_land(
    make_api: t.Callable[..., LocalImportAPI], tmp_path: Path
) -> None:
    server = make_api(faults=Faults(seed=3, latency_ms=30, jitter_ms=120))
    live = TargetProcess(target_config(server, max_concurrent_requests=6, state_flush_seconds=1), tmp_path)
    try:
        live.send(_checkpointed_users(1200, 50))
        assert live.close_input() == 0, live.stderr
    finally:
        live.kill()
    assert live.states, "no STATE was written"
    for stamp, value in live.states:
        needed = set(range(1, value["users"] + 1))
        missing = needed - landed_keys_by(server, "users", stamp)
        assert not missing, f"STATE {value} was written before {len(missing)} of its records had landed"
    assert live.states[-1][1] == {"users": 1200}


def test_states_come_out_in_input_order_without_repeats_or_empties(local_api: LocalImportAPI) -> None:
    messages: list[dict[str, t.Any] | str] = [USERS_SCHEMA, state(None), state({})]
    for i in range(1, 301):
        messages.append(record("users", id=i, email=f"u{i}@example.com"))
        if i % 10 == 0:
            messages.extend([state({"users": i}), state({"users": i})])  # each state arrives twice
    messages.append(state({"users": 300}))
    run = run_in_process(target_config(local_api, max_points_per_request=10, max_concurrent_requests=4), messages)
    values = [s["users"] for s in run.states]
    assert values, "no STATE written"
    assert values == sorted(values), f"states out of order: {values}"
    assert len(values) == len(set(values)), f"a state was repeated: {values}"
    assert values[-1] == 300
    assert all(s for s in run.states), "an empty or null state was written"


def test_state_is_written_promptly_when_the_tap_goes_quiet(local_api: LocalImportAPI, tmp_path: Path) -> None:
    live = TargetProcess(target_config(local_api, state_flush_seconds=1), tmp_path)
    try:
        _wait_until_started(local_api)  # time the STATE, not the target's start-up
        live.send([USERS_SCHEMA, *users(5), state({"users": 5})])  # far from a full request
        sent_at = time.time()
        stamp = live.wait_for_state(lambda v: v == {"users": 5}, timeout=10)
        assert stamp is not None, "the STATE never came while the input stayed open"
        assert stamp - sent_at < 3, f"the STATE took {stamp - sent_at:.1f}s with state_flush_seconds=1"
        assert live.running(), "the target should still be waiting for input"
        assert live.close_input() == 0
    finally:
        live.kill()
    assert len(local_api.rows(DEMO_CLIENT_ID, "users")) == 5


def test_state_is_written_promptly_while_input_keeps_flowing(local_api: LocalImportAPI, tmp_path: Path) -> None:
    events = schema("events", {"id": {"type": "integer"}}, ["id"])
    live = TargetProcess(target_config(local_api, state_flush_seconds=1), tmp_path)
    try:
        _wait_until_started(local_api)
        live.send([USERS_SCHEMA, events, *users(3), state({"users": 3})])
        sent_at = time.time()
        stamp = None
        for i in range(1, 80):  # a trickle of another stream, never filling a request
            live.send([record("events", id=i)])
            time.sleep(0.05)
            stamp = live.wait_for_state(lambda v: v == {"users": 3}, timeout=0)
            if stamp is not None:
                break
        assert stamp is not None, "the STATE did not come while input kept flowing"
        assert stamp - sent_at < 3
        assert live.close_input() == 0
    finally:
        live.kill()


def test_after_a_failure_no_state_passes_the_last_landed_data(local_api: LocalImportAPI) -> None:
    # Three requests of 100 are accepted, then every request gets a 400.
    local_api.set_faults(fail_after=3, fail_status=400)
    config = target_config(local_api, max_concurrent_requests=1)
    run = run_cli(config, _checkpointed_users(1000, 50))
    assert run.exit_code != 0
    assert run.states, "the states covered by the three accepted requests should be written"
    assert max(s["users"] for s in run.states) <= 300
    assert run.states[-1] == {"users": 300}
    assert len(local_api.rows(DEMO_CLIENT_ID, "users")) == 300
    assert "stream 'users'" in run.stderr and "table 'users'" in run.stderr
    assert "#301-#400" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr


def test_sigterm_settles_in_flight_requests_and_writes_the_last_landed_state(
    make_api: t.Callable[..., LocalImportAPI], tmp_path: Path
) -> None:
    server = make_api(faults=Faults(latency_ms=300))
    live = TargetProcess(target_config(server, max_concurrent_requests=2, state_flush_seconds=60), tmp_path)
    try:
        live.send(_checkpointed_users(450, 100))  # 4 full requests go out; 50 records stay buffered
        _wait_until(lambda: any(e.method == "POST" for e in server.request_log()))
        live.send_signal(signal.SIGTERM)  # requests are in flight now (300 ms each)
        code = live.finish(timeout=30)
    finally:
        live.kill()
    assert code == 128 + signal.SIGTERM, live.stderr[-2000:]
    assert "Traceback" not in live.stderr
    assert "signal" in live.stderr
    landed = len(server.rows(DEMO_CLIENT_ID, "users"))
    assert live.states, "in-flight requests were settled, so their state must be written"
    last = live.states[-1][1]["users"]
    # Only full requests of 100 were sealed before the signal; the last 50 records stay unsent,
    # and the last state is the newest one that all landed rows cover.
    assert landed % 100 == 0 and landed >= 100, landed
    assert last == landed, f"last state {last}, {landed} rows landed"
    in_flight_after = [e for e in upserts(server, status=None) if e.completed > live.states[-1][0]]
    assert not in_flight_after, "a request finished after the last STATE was written"


def test_sigint_stops_with_its_own_exit_code(local_api: LocalImportAPI, tmp_path: Path) -> None:
    live = TargetProcess(target_config(local_api), tmp_path)
    try:
        live.send([USERS_SCHEMA, *users(10)])
        _wait_until_started(local_api)
        time.sleep(0.3)  # now blocked on its input
        live.send_signal(signal.SIGINT)
        code = live.finish(timeout=20)
    finally:
        live.kill()
    assert code == 128 + signal.SIGINT
    assert "Traceback" not in live.stderr


def test_a_failure_while_the_tap_is_quiet_ends_the_run_without_waiting_for_input(
    local_api: LocalImportAPI, tmp_path: Path
) -> None:
    local_api.set_faults(fail_after=0, fail_status=400)
    live = TargetProcess(target_config(local_api, state_flush_seconds=1, authenticate_on_start=False), tmp_path)
    try:
        live.send([USERS_SCHEMA, *users(5), state({"users": 5})])  # then the tap goes quiet
        code = live.finish(timeout=20)  # standard input stays open
    finally:
        live.kill()
    assert code == 1
    assert "records #1-#5 of stream 'users' (table 'users')" in live.stderr
    assert "answered 400" in live.stderr
    assert live.states == []


def test_sigterm_while_requests_are_failing_still_exits_as_stopped_by_the_signal(
    make_api: t.Callable[..., LocalImportAPI], tmp_path: Path
) -> None:
    server = make_api(faults=Faults(seed=4, error_rate=1.0, error_statuses=(502,), latency_ms=200, jitter_ms=1500))
    config = target_config(
        server, max_concurrent_requests=4, max_retry_seconds=60, state_flush_seconds=1, authenticate_on_start=False
    )
    live = TargetProcess(config, tmp_path)
    try:
        live.send([USERS_SCHEMA, *users(1000)])
        _wait_until(lambda: len(upserts(server, status=None)) >= 4)
        live.send_signal(signal.SIGTERM)
        code = live.finish(timeout=30)
    finally:
        live.kill()
    assert code == 128 + signal.SIGTERM, live.stderr[-1500:]
    assert "Stopping on signal 15" in live.stderr
    assert "Stopped by signal 15" in live.stderr
    assert "Traceback" not in live.stderr
    assert live.states == []


def _run_into(stdout_sink: str, config: dict[str, t.Any], messages: list[t.Any], tmp_path: Path) -> tuple[int, str]:
    """Run the CLI with its standard output going to ``stdout_sink`` (a shell redirection or pipe)."""
    config_path, input_path = tmp_path / "config.json", tmp_path / "input.jsonl"
    config_path.write_text(json.dumps(config))
    input_path.write_text(lines(messages))
    command = f'"{TARGET_BIN}" --config "{config_path}" < "{input_path}" {stdout_sink}; exit ${{PIPESTATUS[0]}}'
    proc = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, env=clean_env(), check=False
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("latency_ms", [0, 150])  # 150: STATE is written by a sending thread as records land
@pytest.mark.parametrize(
    ("stdout_sink", "reason"),
    [
        ("> /dev/full", "no space left on the device standard output writes to"),
        # A reader gone before the first STATE (a reader that reads some and then goes away may
        # have taken every line into the pipe's buffer first: then nothing failed).
        ("| true", "broken pipe"),
    ],
)
def test_a_state_that_cannot_be_written_fails_the_run_after_settling(
    make_api: t.Callable[..., LocalImportAPI], tmp_path: Path, stdout_sink: str, reason: str, latency_ms: int
) -> None:
    server = make_api(faults=Faults(latency_ms=latency_ms))
    messages: list[t.Any] = [USERS_SCHEMA]
    for i in range(6):
        messages += [*users(10, start=10 * i + 1), state({"after": 10 * (i + 1)})]

    code, stderr = _run_into(stdout_sink, target_config(server, max_points_per_request=5), messages, tmp_path)

    assert code == 1, stderr
    assert f"Cannot write STATE to standard output ({reason}" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    # What was sent was settled, not abandoned: every request that went out got its answer.
    sent = upserts(server, status=None)
    assert sent and all(entry.status == 201 for entry in sent)
    assert sum(points_of(entry) for entry in sent) == len(landed_by_id(server, "users"))


def test_sigterm_ends_the_run_when_nothing_reads_its_output(local_api: LocalImportAPI, tmp_path: Path) -> None:
    # A pipe nobody drains and STATE lines of ~100 KB: the first one fills the pipe (64 KB) and
    # the writing blocks for good. A signal must still end the run, saying what happened.
    config_path = tmp_path / "config.json"
    config = target_config(local_api, max_points_per_request=5, state_flush_seconds=1)
    config_path.write_text(json.dumps(config))
    big = "x" * 100_000
    messages: list[t.Any] = [USERS_SCHEMA]
    for i in range(20):
        messages += [*users(5, start=5 * i + 1), state({"after": 5 * (i + 1), "pad": big})]
    reader, writer = os.pipe()
    log = tmp_path / "stderr.log"
    try:
        with log.open("wb") as stderr_file:
            proc = subprocess.Popen(  # stdout: a pipe whose reader never reads
                [str(TARGET_BIN), "--config", str(config_path)],
                stdin=subprocess.PIPE,
                stdout=writer,
                stderr=stderr_file,
                env=clean_env(),
            )
        os.close(writer)
        stdin = proc.stdin
        assert stdin is not None

        def feed() -> None:  # in a thread: a target that stops reading must not hang the test
            with contextlib.suppress(OSError):
                stdin.write(lines(messages).encode())
                stdin.flush()  # the input stays open: the tap is still there

        threading.Thread(target=feed, daemon=True).start()
        deadline = time.monotonic() + 20
        while len(landed_by_id(local_api, "users")) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(landed_by_id(local_api, "users")) == 100, "the records never landed"
        time.sleep(0.5)  # STATE lines are being written now, into the full pipe
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("SIGTERM was not acted on within 20 s while standard output was blocked")
        took = time.monotonic() - signalled
        stderr = log.read_text()
    finally:
        os.close(reader)
        with contextlib.suppress(OSError, AttributeError):
            proc.stdin.close()  # type: ignore[union-attr]
    assert code == 143, stderr[-2000:]
    assert took < 15, f"the run took {took:.1f}s to stop"
    assert "Cannot write STATE to standard output: whatever reads it stopped reading" in stderr, stderr[-2000:]
    assert "Stopped by signal 15" in stderr
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr
