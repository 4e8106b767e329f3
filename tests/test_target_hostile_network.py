"""What a hostile network does to a run, reproduced with the local server's faults.

A late "ghost" apply of an abandoned request, an answer that trickles in a byte at a time,
a stop while a request is stuck: each test checks what landed, what STATE was written and
how long the run took, never only the exit code.
"""

from __future__ import annotations

import signal
import time
import typing as t

import pytest

from target_rjmetrics.local_api import Faults
from tests.support.checks import landed_by_id, upserts
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, record, state
from tests.support.targets import TargetProcess, run_cli

if t.TYPE_CHECKING:
    from pathlib import Path

    from target_rjmetrics.local_api import LocalImportAPI


def _user(i: int, status: str) -> dict[str, t.Any]:
    return record("users", id=i, email=f"u{i}@example.com", status=status)


def test_a_late_applied_ghost_never_overwrites_a_newer_version(make_api: t.Callable[..., LocalImportAPI]) -> None:
    # The first upsert is held without an answer and applied 4 s after it arrived; the target
    # gives up on it after 1 s and retries (201). The newer version of id 1 must not land
    # before the ghost has been applied, or the ghost overwrites it.
    server = make_api(faults=Faults(ghost_delay=4.0, ghost_table="users", ghost_count=1))
    messages = [
        USERS_SCHEMA,
        _user(1, "old"),
        *[_user(i, "other") for i in range(2, 6)],
        _user(1, "new"),
        state({"n": 6}),
    ]
    config = target_config(
        server, request_timeout=1, max_points_per_request=1, max_concurrent_requests=1, late_apply_seconds=6
    )

    run = run_cli(config, messages, timeout=60)

    assert run.exit_code == 0, run.stderr
    (ghost,) = [e for e in server.request_log() if e.fault == "ghost"]
    assert ghost.ghost_applied is not None, "the ghost was never applied: the test proves nothing"
    newer = [e for e in upserts(server, table="users") if e.key_values == [[1]]][-1]
    assert newer.arrived > ghost.ghost_applied, "the newer version went out before the ghost could land"
    assert landed_by_id(server, "users")[1]["status"] == "new"
    assert run.states == [{"n": 6}]


def test_without_late_apply_protection_the_ghost_wins(make_api: t.Callable[..., LocalImportAPI]) -> None:
    # The same run with late_apply_seconds 0: shows the fault really overwrites (so the test
    # above would catch a target that ignores abandoned tries).
    server = make_api(faults=Faults(ghost_delay=4.0, ghost_table="users", ghost_count=1))
    messages = [USERS_SCHEMA, _user(1, "old"), *[_user(i, "other") for i in range(2, 6)], _user(1, "new")]
    config = target_config(
        server, request_timeout=1, max_points_per_request=1, max_concurrent_requests=1, late_apply_seconds=0
    )

    run = run_cli(config, messages, timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e.ghost_applied for e in server.request_log()):
        time.sleep(0.1)

    assert run.exit_code == 0, run.stderr
    assert landed_by_id(server, "users")[1]["status"] == "old"


def test_nothing_waits_when_nothing_fails(make_api: t.Callable[..., LocalImportAPI]) -> None:
    server = make_api()
    messages = [USERS_SCHEMA, *[_user(i % 7, f"v{i}") for i in range(300)], state({"n": 300})]
    started = time.monotonic()

    run = run_cli(target_config(server, max_points_per_request=5, late_apply_seconds=120), messages)

    assert run.exit_code == 0, run.stderr
    assert time.monotonic() - started < 30  # nothing waited out a 120 s window
    assert "may still be applied" not in run.stderr


def test_an_answer_that_trickles_forever_is_cut_off_and_retried(make_api: t.Callable[..., LocalImportAPI]) -> None:
    # One byte every 2 s never trips a 3 s read timeout; the attempt as a whole must end.
    server = make_api(faults=Faults(trickle_interval=2.0, trickle_table="users", trickle_count=1))
    started = time.monotonic()

    run = run_cli(
        target_config(server, request_timeout=3, late_apply_seconds=1),
        [USERS_SCHEMA, _user(1, "a"), state({"n": 1})],
        timeout=120,
    )

    assert run.exit_code == 0, run.stderr
    assert time.monotonic() - started < 30, "the trickling answer was waited out"
    assert landed_by_id(server, "users")[1]["status"] == "a"
    assert run.states == [{"n": 1}]


@pytest.mark.slow
def test_sigterm_during_a_trickling_answer_exits_promptly_without_new_requests(
    make_api: t.Callable[..., LocalImportAPI], tmp_path: Path
) -> None:
    server = make_api(faults=Faults(trickle_interval=2.0, trickle_table="users"))
    target = TargetProcess(
        target_config(server, request_timeout=20, max_points_per_request=1, late_apply_seconds=1), tmp_path
    )
    try:
        target.send([USERS_SCHEMA, *[_user(i, "a") for i in range(1, 30)]])
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and not upserts(server, table="users", status=None)
            and not any(e.status in (None, 0) for e in server.request_log())
        ):
            time.sleep(0.05)
        time.sleep(0.5)
        before = len([e for e in server.request_log() if e.method == "POST"])
        stopped = time.monotonic()
        target.send_signal(signal.SIGTERM)
        code = target.finish(timeout=60)
        took = time.monotonic() - stopped
    finally:
        target.kill()

    assert code == 128 + signal.SIGTERM, target.stderr[-2000:]
    assert took < 20, f"exit took {took:.0f} s after SIGTERM (requests in flight get 10 s)"
    assert "may still be applied by the API until" in target.stderr  # it gave up on a trickling request
    after = len([e for e in server.request_log() if e.method == "POST"])
    assert after <= before, "requests were sent after the stop"
