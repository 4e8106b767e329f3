"""A hostile environment: answers that are not the API's, a reader that goes away, a stop while stuck.

Each run must end as documented (exit code and message), lose nothing that was accepted,
and never write a STATE ahead of landed data.
"""

from __future__ import annotations

import typing as t

import pytest

from tests.reliability.scenarios import (
    Workload,
    broken_stdout_scenario,
    sigterm_while_stuck_scenario,
    unexpected_answer_scenario,
)

if t.TYPE_CHECKING:
    from pathlib import Path

WORKLOAD = Workload(streams=("users", "shop-orders"), n_keys=120, rounds=6, seed=9, state_every=50)


@pytest.mark.parametrize("status", [200, 204, 302, 307])
def test_an_answer_other_than_201_lands_nothing_and_stops_the_run(status: int, tmp_path: Path) -> None:
    result = unexpected_answer_scenario(status, WORKLOAD, tmp_path, after=15)
    assert not result.problems, "\n".join(result.problems[:10])
    assert result.exit_code == 1 and result.ahead == 0
    assert 0 < result.landed < result.sent


def test_a_reader_that_goes_away_fails_the_run_after_settling(tmp_path: Path) -> None:
    result = broken_stdout_scenario(WORKLOAD, tmp_path)
    assert not result.problems, "\n".join(result.problems[:10])
    assert result.ahead == 0


@pytest.mark.slow
def test_sigterm_while_answers_trickle_exits_promptly_and_sends_nothing_new(tmp_path: Path) -> None:
    result = sigterm_while_stuck_scenario(WORKLOAD, tmp_path)
    assert not result.problems, "\n".join(result.problems[:10])
    assert result.ahead == 0
