"""A run's lifecycle: its phase, the one stop that every wait watches, and the one clock.

A stop is asked for by a signal (SIGTERM, SIGINT) or by a failure on any thread. A signal
handler runs on the main thread between two bytecodes, perhaps while that thread holds a lock,
so :meth:`Stop.signal` only sets an attribute; every blocking wait of a run looks at
:attr:`Stop.requested` at least every :data:`POLL_SECONDS` (a wait on a condition, on a queue,
between retries), so none outlives a stop by more than that.

Time comes from one :class:`Clock`: monotonic seconds for deadlines and the wall clock for
what users read. Tests give a run a clock of their own.
"""

from __future__ import annotations

import datetime
import enum
import threading
import time
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Callable

#: Longest a blocking wait goes without looking at the stop.
POLL_SECONDS = 0.1


class Phase(enum.Enum):
    """Where a run is."""

    NEW = "new"  #: built; nothing started, nothing sent
    RUNNING = "running"  #: sending threads and the STATE output are up; input is read
    STOPPING = "stopping"  #: a failure or a signal: nothing new goes out, requests in flight settle
    CLOSED = "closed"  #: everything let go; the summary is logged


class Stop:
    """The one stop of a run: the signal or the first failure that ends it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        #: Whether the run must stop (a plain attribute: the reading thread looks at it per record).
        self.requested = False

    def signal(self, signum: int) -> None:
        """Ask for a stop from a signal handler (no lock is taken: see the module's docstring)."""
        if self.signum is None:
            self.signum = signum
        self.requested = True

    def fail(self, error: BaseException) -> None:
        """Stop because of a failure; the first one is the one the run reports."""
        with self._lock:
            if self._failure is None:
                self._failure = error
            self.requested = True

    @property
    def failure(self) -> BaseException | None:
        """The failure that stops the run, if any."""
        return self._failure


class Clock:
    """Monotonic seconds for deadlines, the wall clock for messages, and waits that a stop ends."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def wall(self) -> datetime.datetime:
        """The time of day, in UTC."""
        return datetime.datetime.now(datetime.timezone.utc)

    def sleep(self, seconds: float, stop: Stop | None = None) -> bool:
        """Wait ``seconds``; return False at once if ``stop`` is asked for meanwhile."""
        deadline = self.now() + seconds
        event = threading.Event()
        while True:
            if stop is not None and stop.requested:
                return False
            left = deadline - self.now()
            if left <= 0:
                return True
            event.wait(min(left, POLL_SECONDS))

    def wait_for(
        self,
        condition: threading.Condition,
        done: Callable[[], bool],
        stop: Stop | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Wait on ``condition`` (held by the caller) until ``done()``; give up on a stop or at ``timeout``."""
        deadline = None if timeout is None else self.now() + timeout
        while not done():
            if stop is not None and stop.requested:
                return False
            left = POLL_SECONDS if deadline is None else min(deadline - self.now(), POLL_SECONDS)
            if left <= 0:
                return False
            condition.wait(left)
        return True
