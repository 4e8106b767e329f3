"""How many requests may be in flight: fixed, or found as the API answers (adaptive concurrency).

The Import API publishes no limit; users guess ``max_concurrent_requests``. With
``adaptive_concurrency`` that setting becomes a ceiling and :class:`ConcurrencyLimit` finds the
level the API sustains from the outcome of each try, by additive increase and multiplicative
decrease (as TCP finds a path's capacity):

- each try answered without overload adds ``1 / limit`` (one more request per round of
  ``limit`` tries), and fifty times slower within one of the level where the API last pushed
  back, so that it probes that level seldom (each probe costs a 429, and the retry of the
  refused request waits its backoff: at 20 times, 1% of requests met a 429 and the run lost 7-12%);
- a 429 or 503, or latency grown well past the lowest seen in two windows of tries in a row (a
  queue building up), cuts the limit
  to 86% of the level in flight (one fewer at 7), once per round: a burst of 429s from one
  overload is one decrease. ``Retry-After`` is still honoured by the client's retries.

Pure: no threads and no clock; the sending threads feed it each try's status and duration.
"""

from __future__ import annotations

import collections

#: The limit an adaptive run starts at (or the ceiling, when lower).
START = 4
#: Statuses by which an API says it is overloaded.
OVERLOAD_STATUSES = frozenset({429, 503})
#: Share of the level in flight kept after an overload.
DECREASE = 0.86
#: How much slower the limit grows within one of the level where the API last pushed back.
PROBE_SLOWDOWN = 50
#: Latency counts as grown past this many times the lowest seen, plus this many seconds.
LATENCY_GROWTH = 2.0
LATENCY_SLACK_SECONDS = 0.05
#: Tries whose durations make the recent median, and those that keep the lowest. Latency counts
#: as grown only in this many windows in a row: a machine busy for a moment is not an API's queue.
RECENT_TRIES = 10
LATENCY_STRIKES = 2
BASELINE_TRIES = 200


class ConcurrencyLimit:
    """The number of requests that may be in flight now.

    Args:
        ceiling: ``max_concurrent_requests``.
        adaptive: Find the level (else the limit is the ceiling, always).
    """

    def __init__(self, ceiling: int, *, adaptive: bool) -> None:
        self.ceiling = ceiling
        self.adaptive = adaptive
        self._limit = float(min(START, ceiling) if adaptive else ceiling)
        self._pushed_back_at: float | None = None  # the level at which the API last said stop
        self._calm = 0  # tries to see before another decrease counts
        self._recent: collections.deque[float] = collections.deque(maxlen=RECENT_TRIES)
        self._baseline: collections.deque[float] = collections.deque(maxlen=BASELINE_TRIES)
        self._strikes = 0  # windows in a row whose median latency had grown
        self.decreases = 0

    @property
    def limit(self) -> int:
        """Requests that may be in flight."""
        return max(1, int(self._limit))

    def observe(self, status: int, seconds: float, in_flight: int) -> None:
        """One try ended: its HTTP status (0: no answer), how long it took, and how many were in flight."""
        if not self.adaptive:
            return
        self._calm = max(0, self._calm - 1)
        if status in OVERLOAD_STATUSES:
            self._overloaded(in_flight)
            return
        if not 200 <= status < 300:  # noqa: PLR2004 (refusals and lost answers say nothing of load)
            return
        self._recent.append(seconds)
        self._baseline.append(seconds)
        if len(self._recent) == RECENT_TRIES:  # a window of tries: judge its median, then start anew
            self._strikes = self._strikes + 1 if self._latency_grown() else 0
            self._recent.clear()
            if self._strikes >= LATENCY_STRIKES:
                self._overloaded(in_flight)
                return
        near = self._pushed_back_at is not None and self._limit >= self._pushed_back_at - 1
        self._limit = min(float(self.ceiling), self._limit + 1 / (self._limit * (PROBE_SLOWDOWN if near else 1)))

    def _latency_grown(self) -> bool:
        recent = sorted(self._recent)[len(self._recent) // 2]
        return recent > LATENCY_GROWTH * min(self._baseline) + LATENCY_SLACK_SECONDS

    def _overloaded(self, in_flight: int) -> None:
        if self._calm:
            return  # the same overload, seen by the other tries of its round
        level = max(float(in_flight), self._limit)
        self._pushed_back_at = level
        self._limit = max(1.0, level * DECREASE)
        self._calm = max(1, int(level))
        self._recent.clear()
        self._strikes = 0
        self.decreases += 1
