"""The STATE path: held until its records landed, written by a thread of its own, sent early for.

- :class:`StateLedger` (no threads, no clock): the STATE messages waiting for the records before
  them to land, in input order. It says which may be written once told the lowest place in the
  input that has not landed.
- :class:`StateOutput`: one thread writes STATE lines to standard output. Whoever reads that
  output may stop reading; then only this thread waits, and the run can still be stopped (a
  signal) and say that a STATE could not be written.
- :func:`flush_due`: when a STATE has waited half of ``state_flush_seconds`` for records still
  filling a request, those requests are sealed early.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import typing as t

from target_rjmetrics.exceptions import RJMetricsOutputError

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from target_rjmetrics.lifecycle import Clock, Stop

#: STATE messages waiting for their records are thinned out above this many bytes.
PENDING_STATES_MAX_BYTES = 8 << 20


class StateLedger:
    """STATE messages in input order, each waiting for every record before it to land.

    NB: a state superseded before it may be written is skipped, and one equal to the last one
    handed out is not repeated. The states held are bounded in bytes: over ``max_bytes``, every
    other state between the oldest and the newest is dropped; writing an older state where a
    dropped one would have been ready is still honest (it covers fewer records), and the newest
    state, written last, is never dropped.
    """

    def __init__(self, max_bytes: int = PENDING_STATES_MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._pending: list[tuple[int, str, float]] = []  # (records before it, line, arrived)
        self._pending_bytes = 0
        self._last: str | None = None
        self.thinned = 0
        #: ``(records before it, arrived)`` of the oldest waiting state, read without a lock.
        self.oldest: tuple[int, float] | None = None

    def add(self, records_before: int, line: str, now: float) -> None:
        """Take a STATE that arrived after ``records_before`` records, serialized as its line."""
        pending = self._pending
        pending.append((records_before, line, now))
        self._pending_bytes += len(line)
        while self._pending_bytes > self._max_bytes and len(pending) > 2:  # noqa: PLR2004
            kept = [pending[0], *pending[2:-1:2], pending[-1]]
            self.thinned += len(pending) - len(kept)
            self._pending = pending = kept
            self._pending_bytes = sum(len(entry[1]) for entry in kept)
        self.oldest = (pending[0][0], pending[0][2])

    def ready(self, lowest_unlanded: float) -> str | None:
        """The newest state whose records all landed, if it is new; the states before it are done."""
        pending = self._pending
        ready = 0
        while ready < len(pending) and pending[ready][0] <= lowest_unlanded:
            ready += 1
        if ready == 0:
            return None
        line = pending[ready - 1][1]
        del pending[:ready]
        self._pending_bytes = sum(len(entry[1]) for entry in pending)
        self.oldest = (pending[0][0], pending[0][2]) if pending else None
        if line == self._last:
            return None
        self._last = line
        return line

    @property
    def waiting(self) -> int:
        """How many states wait for their records."""
        return len(self._pending)


def flush_due(oldest: tuple[int, float] | None, open_oldest_seq: float, now: float, flush_seconds: float) -> bool:
    """Whether the batches still filling must be sealed so that a waiting STATE can be written.

    Sealed at half of ``state_flush_seconds``, leaving the other half for the requests to land.
    """
    return oldest is not None and open_oldest_seq < oldest[0] and now - oldest[1] >= flush_seconds / 2


class StateOutput:
    """Writes STATE lines to standard output from a thread of its own.

    Lines are offered with an ordinal (their order in the input); the thread writes the newest
    offered, so a slow reader sees fewer, never older, states. A write that fails (a closed pipe,
    a full disk) becomes the run's failure through ``on_failure``.
    """

    def __init__(self, stream: t.TextIO, on_failure: Callable[[BaseException], None]) -> None:
        self._stream = stream
        self._on_failure = on_failure
        self._cond = threading.Condition()
        self._offered: tuple[int, str] | None = None
        self._written_ordinal = -1
        self._writing = False
        self._closed = False
        self.written = 0
        self.failure: RJMetricsOutputError | None = None
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # a stream of the program embedding us
            self._fd = None
        self._thread = threading.Thread(target=self._run, name="rjmetrics-state-output", daemon=True)

    def start(self) -> None:
        """Start the writing thread."""
        self._thread.start()

    def offer(self, ordinal: int, line: str) -> None:
        """Have ``line`` written, unless a newer line is written first (never blocks)."""
        with self._cond:
            if self._offered is None or ordinal > self._offered[0]:
                self._offered = (ordinal, line)
                self._cond.notify()

    def flush(self, clock: Clock, stop: Stop | None, timeout: float | None = None) -> bool:
        """Wait until every line offered is written (or cannot be); give up on a stop or at ``timeout``."""
        with self._cond:
            done = clock.wait_for(
                self._cond,
                lambda: self.failure is not None or (self._offered is None and not self._writing),
                stop,
                timeout,
            )
            return done and self.failure is None

    @property
    def blocked(self) -> bool:
        """Whether a line is being, or waits to be, written."""
        with self._cond:
            return self._writing or self._offered is not None

    def close(self) -> None:
        """Stop the thread once it is idle (a write stuck on a reader that went away stays stuck)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._offered is None and not self._closed:
                    self._cond.wait()
                if self._offered is None:
                    return
                ordinal, line = self._offered
                self._offered = None
                self._writing = True
            try:
                if self.failure is None:
                    self._write(line)
                    self.written += 1
            except OSError as exc:
                failure = _output_error(exc)
                # The run's stop first: whoever then sees ``failure`` (a flush) finds the run
                # stopped too. In the other order a run ending just then exited 0 with no STATE.
                self._on_failure(failure)
                with self._cond:
                    self.failure = failure
                self._detach()
            finally:
                with self._cond:
                    self._written_ordinal = ordinal
                    self._writing = False
                    self._cond.notify_all()

    def _write(self, line: str) -> None:
        if self._fd is None:
            self._stream.write(line)
            self._stream.flush()
            return
        data = memoryview(line.encode())
        while data:  # os.write holds no Python lock: only this thread waits on a slow reader
            data = data[os.write(self._fd, data) :]

    def _detach(self) -> None:
        """Nothing more can reach standard output: keep interpreter shutdown from tripping on it."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)


def _output_error(exc: OSError) -> RJMetricsOutputError:
    reason = {
        errno.EPIPE: "broken pipe: whatever reads the target's output stopped reading",
        errno.ENOSPC: "no space left on the device standard output writes to",
    }.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return RJMetricsOutputError(
        f"Cannot write STATE to standard output ({reason}). Records sent so far were accepted, but "
        "no STATE after them could be recorded: keep the target's output readable (a file with "
        "room, or a reader that reads to the end) and rerun from the last STATE that was saved."
    )


def unwritten_error() -> RJMetricsOutputError:
    """The failure of a run that stopped while standard output was not being read."""
    return RJMetricsOutputError(
        "Cannot write STATE to standard output: whatever reads it stopped reading, so the last STATE "
        "could not be written. Records sent so far were accepted; rerun from the last STATE that was saved."
    )
