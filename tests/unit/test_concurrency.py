"""Adaptive concurrency against model APIs: it finds the level an API sustains, and keeps to it."""

from __future__ import annotations

import pytest

from target_rjmetrics.concurrency import PROBE_SLOWDOWN, START, ConcurrencyLimit


def _drive(limit: ConcurrencyLimit, capacity: int, tries: int, latency: float = 0.05) -> tuple[list[int], int]:
    """A model API that answers 429 to every request beyond ``capacity`` in flight.

    Each round sends ``limit.limit`` requests at once; returns the limit after each round and the 429s.
    """
    levels: list[int] = []
    overloads = sent = 0
    while sent < tries:
        in_flight = limit.limit
        for i in range(in_flight):
            overloaded = i >= capacity
            overloads += overloaded
            limit.observe(429 if overloaded else 201, latency, in_flight)
        sent += in_flight
        levels.append(limit.limit)
    return levels, overloads


def test_a_fixed_limit_is_the_setting_whatever_happens() -> None:
    limit = ConcurrencyLimit(6, adaptive=False)
    for status in (201, 429, 503, 0, 201):
        limit.observe(status, 9.0, 6)
    assert limit.limit == 6


@pytest.mark.parametrize("ceiling", [1, 3, 8, 32])
def test_without_pushback_the_limit_grows_to_the_ceiling_and_no_further(ceiling: int) -> None:
    limit = ConcurrencyLimit(ceiling, adaptive=True)
    assert limit.limit == min(START, ceiling)
    levels, overloads = _drive(limit, capacity=1000, tries=5000)
    assert overloads == 0 and levels[-1] == ceiling and max(levels) == ceiling


@pytest.mark.parametrize("capacity", [2, 6, 13])
def test_it_finds_the_level_an_api_sustains_with_few_429s(capacity: int) -> None:
    limit = ConcurrencyLimit(32, adaptive=True)
    levels, overloads = _drive(limit, capacity=capacity, tries=20_000)
    settled = levels[len(levels) // 4 :]
    assert sum(settled) / len(settled) >= capacity - 0.5, f"average {sum(settled) / len(settled):.2f} of {capacity}"
    assert max(settled) <= capacity + 1
    assert overloads / 20_000 <= 0.05, f"{overloads} of 20,000 tries answered 429"


def test_a_burst_of_429s_from_one_overload_is_one_decrease() -> None:
    limit = ConcurrencyLimit(32, adaptive=True)
    _drive(limit, capacity=1000, tries=2000)
    assert limit.limit == 32
    for _ in range(10):  # ten requests of the same round answered 429
        limit.observe(429, 0.05, 32)
    assert limit.decreases == 1
    assert limit.limit == int(32 * 0.86)


def test_growing_latency_counts_as_overload() -> None:
    limit = ConcurrencyLimit(32, adaptive=True)
    for _ in range(200):  # the API unloaded: 50 ms
        limit.observe(201, 0.05, limit.limit)
    before = limit.limit
    for _ in range(30):  # a queue builds up: 400 ms
        limit.observe(201, 0.4, limit.limit)
    assert limit.decreases >= 1 and limit.limit < before


def test_refusals_and_lost_answers_say_nothing_of_load() -> None:
    limit = ConcurrencyLimit(32, adaptive=True)
    for status in (400, 401, 413, 0, 500, 502):
        limit.observe(status, 5.0, 4)
    assert limit.limit == START and limit.decreases == 0


def test_near_the_level_where_the_api_pushed_back_it_probes_seldom_and_grows_fast_elsewhere() -> None:
    limit = ConcurrencyLimit(32, adaptive=True)
    while limit.limit < 7:
        limit.observe(201, 0.05, limit.limit)
    limit.observe(429, 0.05, 7)  # pushed back at 7
    assert limit.limit == 6
    tries = 0
    while limit.limit == 6:
        limit.observe(201, 0.05, 6)
        tries += 1
    # Each probe of the level that was refused costs a 429: about one per PROBE_SLOWDOWN rounds.
    assert tries >= PROBE_SLOWDOWN * 6 * 0.9, f"probed 7 again after {tries} tries"
    far = ConcurrencyLimit(32, adaptive=True)
    tries = 0
    while far.limit < START + 3:  # no pushback yet: one more request in flight per round
        far.observe(201, 0.05, far.limit)
        tries += 1
    assert tries <= 2 * (START + (START + 1) + (START + 2)), f"{tries} tries to grow by 3"
