"""StateOutput, the thread that writes STATE lines: a failed write stops the run before anyone can see it."""

from __future__ import annotations

import errno
import io

from target_rjmetrics.lifecycle import Clock, Stop
from target_rjmetrics.state import StateOutput


class _ClosedPipe(io.StringIO):
    """Standard output whose reader went away: every write is a broken pipe."""

    def fileno(self) -> int:
        raise io.UnsupportedOperation  # written through write(), as a program embedding us would

    def write(self, text: str) -> int:  # noqa: ARG002 (nothing is written)
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_a_failed_write_stops_the_run_before_the_failure_is_visible() -> None:
    stop = Stop()
    seen_when_stopped: list[object] = []

    def on_failure(error: BaseException) -> None:
        seen_when_stopped.append(output.failure)  # what a flush could see at this moment
        stop.fail(error)

    output = StateOutput(_ClosedPipe(), on_failure=on_failure)
    output.start()
    try:
        output.offer(1, '{"a":1}\n')
        assert output.flush(Clock(), None, timeout=10) is False
    finally:
        output.close()
    # The run was stopped while the failure was not yet visible: once a flush sees it, a check of
    # the stop raises it. In the other order a run ending at that moment exited 0 with no STATE.
    assert seen_when_stopped == [None]
    assert stop.requested and stop.failure is output.failure
    assert "broken pipe" in str(output.failure)
    assert output.written == 0
