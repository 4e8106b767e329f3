"""Stand-ins at the package's two seams: a clock a test moves, and a transport a test scripts.

Real loopback servers are the rule in these tests; these are for what only a seam can give: time
that passes instantly (retry budgets, late-apply windows) and a try's outcome chosen exactly
(a connection refused on the tenth try, a redirect, a timeout after the request went out).
"""

from __future__ import annotations

import datetime
import typing as t
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from target_rjmetrics.lifecycle import Clock, Stop
from target_rjmetrics.transport import Answer, TryFailed

if t.TYPE_CHECKING:
    import threading


class FakeClock(Clock):
    """A clock that moves only when told to, or when something sleeps on it (instantly)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    def wall(self) -> datetime.datetime:
        return datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=self.time)

    def advance(self, seconds: float) -> None:
        self.time += seconds

    def sleep(self, seconds: float, stop: Stop | None = None) -> bool:
        if stop is not None and stop.requested:
            return False
        self.slept.append(seconds)
        self.time += seconds
        return not (stop is not None and stop.requested)

    def wait_for(
        self,
        condition: threading.Condition,
        done: Callable[[], bool],
        stop: Stop | None = None,
        timeout: float | None = None,
    ) -> bool:
        del condition, timeout
        return done() and not (stop is not None and stop.requested)


@dataclass
class Sent:
    """One try a :class:`MockTransport` received."""

    method: str
    url: str
    body: bytes | None
    headers: Mapping[str, str]


#: What a scripted try does: answer, or fail as a transport fails.
Outcome = Answer | TryFailed


@dataclass
class MockTransport:
    """A transport whose every try is answered by ``script`` (a list consumed in order, or a function).

    A function gets the try and returns its outcome; a list's last outcome repeats.
    """

    script: list[Outcome] | Callable[[Sent], Outcome]
    clock: FakeClock | None = None
    #: Seconds each try takes on the clock (its time passes before the outcome).
    try_seconds: float = 0.0
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float) -> Answer:
        del timeout
        request = Sent(method, url, body, headers)
        self.sent.append(request)
        if self.clock is not None:
            self.clock.advance(self.try_seconds)
        if callable(self.script):
            outcome = self.script(request)
        else:
            outcome = self.script[min(len(self.sent) - 1, len(self.script) - 1)]
        if isinstance(outcome, TryFailed):
            raise outcome
        if self.clock is not None and not outcome.answered_at:
            outcome = Answer(outcome.status, outcome.reason, outcome.headers, outcome.body, self.clock.now())
        return outcome

    def close(self) -> None:
        self.closed = True


def answer(status: int, body: bytes | str = b"", **headers: str) -> Answer:
    """An answer of ``status`` with a body and headers (``Retry_After`` becomes ``Retry-After``)."""
    data = body.encode() if isinstance(body, str) else body
    return Answer(status, "", {k.replace("_", "-"): v for k, v in headers.items()}, data)


def no_answer(cause: BaseException, *, reached: bool = False, expired: bool = False) -> TryFailed:
    """A try that got no answer, having got as far as ``reached``/``expired`` say."""
    return TryFailed(cause, reached=reached, expired=expired)


Script = t.Union[list[Outcome], Callable[[Sent], Outcome]]  # noqa: UP007 (a runtime alias)
