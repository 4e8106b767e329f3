"""Kill and resume: the target killed at seeded random moments, and the server killed mid-run.

Each killed run is restarted with the input replayed from the last STATE it wrote, as a tap
would; at the end every table must hold the last version of each key, and no STATE of any run
may have been written before its records had landed.
"""

from __future__ import annotations

import signal
import typing as t

import pytest

from tests.reliability.scenarios import Workload, kill_resume_scenario, server_restart_scenario

if t.TYPE_CHECKING:
    from pathlib import Path

WORKLOAD = Workload(streams=("users", "shop-orders", "events"), n_keys=150, rounds=8, seed=4, state_every=97)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_from_the_last_state(tmp_path: Path) -> None:
    result = kill_resume_scenario([signal.SIGKILL] * 3, WORKLOAD, tmp_path, seed=11)
    assert not result.problems, "\n".join(result.problems[:10])
    assert result.correct and result.ahead == 0
    assert [r.exit_code for r in result.runs][:3].count(-signal.SIGKILL) >= 2, "the kills came too late"


@pytest.mark.slow
def test_sigterm_at_random_moments_then_resume_from_the_last_state(tmp_path: Path) -> None:
    result = kill_resume_scenario([signal.SIGTERM] * 3, WORKLOAD, tmp_path, seed=12)
    assert not result.problems, "\n".join(result.problems[:10])
    assert result.correct and result.ahead == 0
    stopped = [r for r in result.runs[:3] if r.exit_code == 128 + signal.SIGTERM]
    assert len(stopped) >= 2, "the signals came too late"
    for run in stopped:
        assert "signal" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_target_retries_through_a_server_killed_and_restarted_mid_run(tmp_path: Path) -> None:
    result = server_restart_scenario(WORKLOAD, tmp_path, outage=2.0, max_retry_seconds=30)
    assert not result.problems, "\n".join(result.problems[:10])
    assert result.correct and result.ahead == 0 and result.exit_code == 0
    assert result.retries > 0


@pytest.mark.slow
def test_target_fails_clearly_when_the_server_stays_down_past_its_retry_bound(tmp_path: Path) -> None:
    result = server_restart_scenario(WORKLOAD, tmp_path, outage=5.0, max_retry_seconds=1.5)
    assert not result.problems, "\n".join(result.problems[:10])
    assert result.ahead == 0
    assert result.exit_code == 1
    assert result.landed < result.sent, "everything landed before the kill: the scenario proved nothing"
