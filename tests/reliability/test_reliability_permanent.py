"""Permanent failures mid-run: a 400, 401 or 404, or a retry budget that runs out.

The run must end with a non-zero exit, a message (not a traceback) naming the stream, the
table and the input positions of the refused request, and no STATE past landed data.
"""

from __future__ import annotations

import typing as t

import pytest

from tests.reliability.scenarios import Workload, permanent_failure_scenario

if t.TYPE_CHECKING:
    from pathlib import Path

WORKLOAD = Workload(streams=("users", "shop-orders"), n_keys=120, rounds=6, seed=9, state_every=50)


@pytest.mark.parametrize("status", [400, 401, 404, None], ids=["400", "401", "404", "retries-exhausted"])
def test_a_permanent_failure_mid_run_stops_with_a_clear_message_and_honest_state(
    status: int | None, tmp_path: Path
) -> None:
    result = permanent_failure_scenario(status, WORKLOAD, tmp_path, fail_after=15)
    assert not result.problems, "\n".join(result.problems[:10])
    assert result.exit_code == 1
    assert result.ahead == 0
    assert 0 < result.landed < result.sent
    assert result.states > 0, "the states covered by the accepted requests should have been written"
