"""Memory under load: with a slow server, the target's peak memory does not grow with the input.

The same shape of input, five times longer, must not raise the peak resident memory of the
target process by more than a quarter: reading pauses while requests are slow (back-pressure)
instead of buffering the input.
"""

from __future__ import annotations

import typing as t

import pytest

from tests.reliability.scenarios import memory_scenario

if t.TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_input_length_while_the_server_is_slow(tmp_path: Path) -> None:
    small_peak, small = memory_scenario(8_000, tmp_path, latency_ms=60)
    large_peak, large = memory_scenario(40_000, tmp_path, latency_ms=60)
    for result in (small, large):
        assert not result.problems, "\n".join(result.problems[:5])
        assert result.correct and result.ahead == 0
    assert small_peak > 0 and large_peak > 0, "peak memory could not be read from /proc"
    assert large.sent >= 4 * small.sent
    assert large_peak <= small_peak * 1.25, (
        f"peak memory grew from {small_peak / 1024:.1f} MiB ({small.sent:,} records) to "
        f"{large_peak / 1024:.1f} MiB ({large.sent:,} records)"
    )
