"""Sending: threads around the key-order core, and one batch sent (split in halves on a 413).

:class:`Sender` is the thin shell around :class:`~target_rjmetrics.keyorder.KeyOrder`: one lock
guards the core and the STATE ledger; the reading thread seals batches into it (waiting while
too many are sealed and not landed: back-pressure), sending threads take batches from it, send
them outside the lock and report how each ended. After every event the ledger is asked which
STATE may be written, and the line is offered to the STATE output. Every wait watches the
run's stop.

:func:`send_batch` sends one batch through the client: a 413 splits it in halves (a single
point refused as too large is an input error naming its record), and an error names the input
range of the batch.
"""

from __future__ import annotations

import threading
import typing as t

from target_rjmetrics.concurrency import ConcurrencyLimit
from target_rjmetrics.exceptions import (
    RJMetricsAPIError,
    RJMetricsError,
    RJMetricsInputError,
    RJMetricsRequestTooLargeError,
    RJMetricsRetriesExhausted,
    RJMetricsStopped,
    RJMetricsUnexpectedAnswerError,
    TerminationRequested,
)
from target_rjmetrics.lifecycle import POLL_SECONDS
from target_rjmetrics.points import record_place

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from target_rjmetrics.batches import Batch, Point
    from target_rjmetrics.client import RJMetricsClient
    from target_rjmetrics.keyorder import KeyOrder
    from target_rjmetrics.lifecycle import Clock, Stop
    from target_rjmetrics.state import StateLedger, StateOutput
    from target_rjmetrics.stats import LoadStats


class Sender:
    """Sealed batches out on a pool of threads, in key order, with back-pressure and STATE.

    Args:
        core: Decides what may be sent.
        ledger: The STATE messages waiting for their records.
        output: Writes STATE lines.
        send: Sends one batch; returns when a try of it with no answer can no longer be
            applied (or None), raises to fail the run.
        threads: Sending threads (requests in flight at most).
        max_sealed: Batches sealed and not landed before ``seal`` waits.
        clock: The run's clock.
        stop: The run's stop.
        on_landed: Told of each batch that landed (on its sending thread, outside the lock).
        limit: How many requests may be in flight (all the threads by default).
    """

    def __init__(  # noqa: PLR0913
        self,
        *,
        core: KeyOrder,
        ledger: StateLedger,
        output: StateOutput,
        send: Callable[[Batch], float | None],
        threads: int,
        max_sealed: int,
        clock: Clock,
        stop: Stop,
        on_landed: Callable[[Batch], None],
        limit: ConcurrencyLimit | None = None,
    ) -> None:
        self._core = core
        self._limit = limit or ConcurrencyLimit(threads, adaptive=False)
        self._ledger = ledger
        self._output = output
        self._send = send
        self._max_sealed = max(max_sealed, threads)
        self._clock = clock
        self._stop = stop
        self._on_landed = on_landed
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the reading thread's waits: room to seal, settling
        # The sending threads wait apart, so that a landed batch wakes at most one of them rather
        # than every idle one (32 with adaptive concurrency's ceiling: a herd taking the GIL).
        self._work_cond = threading.Condition(lock)
        self._states = 0  # STATE messages taken, in input order
        self._idle = 0  # sending threads waiting for work
        self._closed = False
        self._held = False  # nothing is taken until released (the credentials being checked)
        self._workers = [
            threading.Thread(target=self._work, name=f"rjmetrics-send-{i}", daemon=True) for i in range(threads)
        ]

    def start(self) -> None:
        """Start the sending threads (daemons: a request stuck on the network never holds the process)."""
        for worker in self._workers:
            worker.start()

    # -- the reading thread's side ------------------------------------------------------------

    def open(self, table: str, seq: int) -> None:
        """A table's batch got its first record."""
        with self._cond:
            self._core.open(table, seq)

    def seal(self, batch: Batch) -> None:
        """Hand a sealed batch to the core, waiting while too many are sealed and not landed.

        Raises:
            TerminationRequested: A signal stopped the run meanwhile.
            BaseException: The failure that stopped the run.
        """
        core = self._core
        with self._cond:
            self._clock.wait_for(self._cond, lambda: core.sealed < self._max_sealed, self._stop)
            self._raise_stop()
            core.seal(batch)
            self._wake()
            self._emit()

    def add_state(self, records_before: int, line: str) -> None:
        """Take a STATE that arrived after ``records_before`` records; it is written once they landed."""
        with self._cond:
            self._ledger.add(records_before, line, self._clock.now())
            self._emit()

    def settle(self, timeout: float | None = None, *, watch_stop: bool = True) -> bool:
        """Wait until nothing is left to send or in flight (or the run stopped sending)."""
        core = self._core
        with self._cond:

            def settled() -> bool:
                return core.in_flight == 0 and (core.halted or core.settled)

            return self._clock.wait_for(self._cond, settled, self._stop if watch_stop else None, timeout)

    def hold(self) -> None:
        """Take nothing until :meth:`release` (batches are still sealed and wait)."""
        with self._cond:
            self._held = True

    def release(self) -> None:
        """Send what waits, and what comes."""
        with self._cond:
            self._held = False
            self._notify_all()

    def halt(self) -> None:
        """Send nothing new; requests in flight finish."""
        with self._cond:
            self._core.halt()
            self._notify_all()

    def emit(self) -> None:
        """Offer the STATE the landed records allow, if any (when a late-apply window ends)."""
        with self._cond:
            self._core.tick(self._clock.now())
            self._emit()

    def observe(self, status: int, seconds: float) -> None:
        """A try of an upsert ended (its status, 0 without an answer, and duration): adapt the concurrency."""
        with self._cond:
            before = self._limit.limit
            self._limit.observe(status, seconds, self._core.in_flight)
            if self._limit.limit > before:
                self._wake()

    @property
    def concurrency(self) -> int:
        """Requests that may be in flight now."""
        return self._limit.limit

    @property
    def in_flight(self) -> int:
        """Requests being sent now."""
        return self._core.in_flight

    @property
    def waiting(self) -> int:
        """Points waiting in slots."""
        with self._cond:
            return self._core.waiting

    def close(self) -> None:
        """Stop the sending threads once idle."""
        with self._cond:
            self._closed = True
            self._notify_all()

    # -- the sending threads ------------------------------------------------------------------

    def _work(self) -> None:
        core, clock = self._core, self._clock
        while True:
            with self._cond:
                while True:
                    if self._stop.requested:
                        core.halt()
                    room = core.in_flight < self._limit.limit and not self._held
                    batch = core.take(clock.now()) if room and not self._closed else None
                    if batch is not None or self._closed:
                        break
                    wake = core.next_wake()
                    wait = POLL_SECONDS if wake is None else max(0.0, min(wake - clock.now(), POLL_SECONDS))
                    self._idle += 1
                    self._work_cond.wait(wait)
                    self._idle -= 1
                if batch is None:
                    return
            self._finish(batch)

    def _finish(self, batch: Batch) -> None:
        try:
            late_apply_until = self._send(batch)
        except BaseException as exc:  # noqa: BLE001 (the run's failure, raised on the reading thread)
            with self._cond:
                self._core.failed(batch)
                self._stop.fail(exc)
                self._notify_all()
            return
        with self._cond:
            self._core.landed(batch, self._clock.now(), late_apply_until)
            self._emit()
            self._cond.notify_all()  # the reading thread: room for a sealed batch, or settled
            self._wake()  # released points, or room: this thread takes the next batch itself
        try:
            self._on_landed(batch)
        except BaseException as exc:  # noqa: BLE001 (a bug in the counters must still stop the run)
            self._stop.fail(exc)

    # -- under the lock ------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._idle and self._core.ready and self._core.in_flight < self._limit.limit:
            self._work_cond.notify()  # one idle thread: it takes every batch ready before it waits again

    def _notify_all(self) -> None:
        """Wake everyone: the run halts, ends, or may send again."""
        self._cond.notify_all()
        self._work_cond.notify_all()

    def _emit(self) -> None:
        line = self._ledger.ready(self._core.lowest_unlanded())
        if line is not None:
            self._states += 1
            self._output.offer(self._states, line)

    def _raise_stop(self) -> None:
        stop = self._stop
        if stop.failure is not None:
            raise stop.failure
        if stop.signum is not None:
            raise TerminationRequested(stop.signum)


def send_batch(
    client: RJMetricsClient,
    batch: Batch,
    stats: LoadStats,
    *,
    late_apply_seconds: float,
) -> float | None:
    """Upsert a batch, splitting it in halves whenever the API answers 413.

    Raises:
        RJMetricsInputError: A single data point was refused as too large.
        RJMetricsError: The API refused the batch; the message names its input range.
    """
    pending: list[list[Point]] = [list(batch.points.values())]
    unknown_fate_at: float | None = None
    table = batch.table
    while pending:
        points = pending.pop()
        body = batch.body(points)
        try:
            when = client.push(table, body, on_retry=lambda _reason, _wait: stats.retry(table))
        except RJMetricsRequestTooLargeError as exc:
            if len(points) == 1:
                msg = (
                    f"The API refused a single data point of {len(body):,} bytes as too large (413): "
                    f"{record_place(batch.stream, table, points[0].position)}: {exc}. Drop or shorten large "
                    "fields with `stream_maps`, or lower `max_request_bytes`."
                )
                raise RJMetricsInputError(msg) from None
            middle = len(points) // 2
            pending.extend([points[middle:], points[:middle]])  # the first half goes first
            continue
        except RJMetricsError as exc:
            raise with_positions(exc, batch, points) from None
        if when is not None:
            unknown_fate_at = when if unknown_fate_at is None else max(unknown_fate_at, when)
        stats.request(table)
    if unknown_fate_at is None or late_apply_seconds <= 0:  # the usual case: nothing may apply late
        return None
    return unknown_fate_at + late_apply_seconds


def with_positions(exc: RJMetricsError, batch: Batch, points: list[Point]) -> RJMetricsError:
    """The same error, its message naming the input range of the points that failed."""
    where = batch.positions(points)
    error: RJMetricsError
    if isinstance(exc, RJMetricsUnexpectedAnswerError):
        error = type(exc)(f"Could not send {where}: {exc}", status=exc.status, reasons=exc.reasons)
    elif isinstance(exc, RJMetricsAPIError):
        hint = " Check `client_id` and `api_key`." if exc.status == 401 else ""  # noqa: PLR2004
        error = type(exc)(f"The Import API refused {where}: {exc}.{hint}", status=exc.status, reasons=exc.reasons)
    elif isinstance(exc, (RJMetricsRetriesExhausted, RJMetricsStopped)):
        error = type(exc)(f"Could not send {where}: {exc}")
    else:
        return exc
    error.unknown_fate_at = exc.unknown_fate_at
    return error
