"""The main thread's side of a run's end: signals, and sending failures that must interrupt it.

The main thread reads input and handles messages; sending happens on other threads. A stop
(SIGTERM, SIGINT) or a failure on a sending thread must reach the main thread whether it is
handling a message (it then checks after the message) or blocked reading a quiet tap (it is
then interrupted). :class:`MainThread` keeps what that needs: whether a message is being
handled, the signal that asked for a stop, and whether a SIGINT was sent to wake it for a
failure rather than to stop it.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
import typing as t

from target_rjmetrics.connector import Phase
from target_rjmetrics.exceptions import TerminationRequested

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from target_rjmetrics.connector import ImportAPIConnector


class MainThread:
    """How stops and sending failures reach the main thread of a run."""

    def __init__(self, connector: ImportAPIConnector) -> None:
        self._connector = connector
        self.in_message = False  # handling a message (not blocked reading)
        self.pending_signal: int | None = None
        self._waking_for_failure = False

    @contextlib.contextmanager
    def handling_message(self) -> Iterator[None]:
        """Mark the main thread busy with a message while the block runs."""
        self.in_message = True
        try:
            yield
        finally:
            self.in_message = False

    def after_message(self) -> None:
        """Raise what ends the run, if anything does: a stop asked for, or a sending failure.

        Raises:
            TerminationRequested: A signal asked for a stop.
        """
        if self.pending_signal is not None:
            raise TerminationRequested(self.pending_signal)
        failure = self._connector.failure
        if failure is not None:
            raise failure

    def on_signal(self, signum: int) -> None:
        """Handle SIGTERM/SIGINT on the main thread (the target's signal handler calls this).

        Args:
            signum: The signal.

        Raises:
            TerminationRequested: A stop while the main thread was not busy with a message.
        """
        connector = self._connector
        if self._waking_for_failure:
            self._waking_for_failure = False
            failure = connector.failure
            if failure is not None and not self.in_message and connector.phase is Phase.RUNNING:
                raise failure
            return  # the message being processed, or the stop under way, sees the failure
        self.pending_signal = signum
        connector.request_stop()
        if not self.in_message:
            raise TerminationRequested(signum)
        # Busy with a message, perhaps waiting for room to send while requests retry: with
        # retries stopped and no batch accepted, it returns soon and sees the signal.

    def wake_for_failure(self, handler: Callable[..., None]) -> None:
        """Sending failed while the main thread may be blocked reading a quiet tap: wake it.

        A real SIGINT aimed at the main thread interrupts its blocking read; ``handler`` (the
        target's signal handler, when installed) then raises the failure instead of stopping.

        Args:
            handler: The target's signal handler.
        """
        if self.in_message or self._connector.phase is not Phase.RUNNING:
            return  # the main thread is busy, or already stopping, and sees the failure itself
        self._waking_for_failure = True
        if signal.getsignal(signal.SIGINT) == handler:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        else:  # embedded without our handler (e.g. in tests): the flag wakes it at the next line
            _thread.interrupt_main()
