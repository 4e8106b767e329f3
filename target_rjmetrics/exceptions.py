"""Errors raised by target-rjmetrics.

The tree hangs off the SDK's own error classes so that anything that already knows
the SDK's retriable/fatal split reads ours the same way::

    SingerSDKError
    ├── FatalAPIError
    │   └── RJMetricsError                      every fatal error of this target
    │       ├── RJMetricsAPIError               the API refused a request (4xx other than 408/429)
    │       │   ├── RJMetricsAuthError          401: wrong client id or API key
    │       │   └── RJMetricsRequestTooLargeError   413: the sender splits and resends
    │       ├── RJMetricsUnexpectedAnswerError  not the API's answer: a redirect, another 2xx, a 1xx
    │       ├── RJMetricsUnreachableError       cannot connect to the API's host at start
    │       ├── RJMetricsRetriesExhausted       transient failures outlasted ``max_retry_seconds``
    │       ├── RJMetricsStopped                the run stopped before a request could be sent or retried
    │       ├── RJMetricsInputError             the input cannot become valid data points
    │       └── RJMetricsOutputError            a STATE could not be written to standard output
    └── RetriableAPIError
        └── RJMetricsTransientError             408, 429, 5xx, timeouts, dropped connections
            └── RJMetricsConnectError           no connection: refused, name not resolved, no answer

A request whose fate is unknown (it may have reached the API, but no complete answer came
back: a timeout, a dropped connection, a gateway's 502/504) may still be applied by the API
later. ``RJMetricsTransientError.unknown_fate`` says so for one try, and ``unknown_fate_at``
(on every error here) gives the clock time (monotonic seconds) at which the last such try was given up.

Messages never contain the API key, a password of the API URL, or record values.
"""

from __future__ import annotations

import signal
import typing as t

from singer_sdk.exceptions import (
    ConfigValidationError,
    FatalAPIError,
    MappingError,
    RetriableAPIError,
    SingerSDKError,
)
from singer_sdk.singerlib.exceptions import InvalidInputLine

if t.TYPE_CHECKING:
    import logging


class RJMetricsError(FatalAPIError):
    """A failure that stops the run: nothing after it is sent and no later STATE is written.

    Attributes:
        unknown_fate_at: When raised by a request: the clock time (monotonic seconds) at which its last try
            of unknown fate was given up (the API may still apply that try), or None if no try
            of it was of unknown fate.
    """

    unknown_fate_at: float | None = None


class RJMetricsAPIError(RJMetricsError):
    """The Import API answered a request with a permanent (4xx) error.

    Attributes:
        status: The HTTP status code.
        reasons: The ``reasons`` list of the API's error body, if any (each one shortened).
    """

    def __init__(self, message: str, *, status: int, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reasons = reasons or []


class RJMetricsAuthError(RJMetricsAPIError):
    """The API refused the client id and API key (401)."""


class RJMetricsRequestTooLargeError(RJMetricsAPIError):
    """The API refused a request body as too large (413); the sender splits and resends."""


class RJMetricsUnexpectedAnswerError(RJMetricsError):
    """An answer that is not the API's: not a landing, and not one of its documented errors.

    A redirect (never followed, so the key and the data go nowhere but the configured host),
    a 2xx other than the one expected (201 for an upsert, 200 for authenticate), or a 1xx:
    something between the target and the API (a proxy, a captive portal, a load balancer)
    answered for it, or ``api_url`` names the wrong place. Its fate is unknown: whatever
    answered may have passed the request on.

    Attributes:
        status: The HTTP status code.
        reasons: Always empty (kept so that code reading an API error's reasons reads this too).
    """

    def __init__(self, message: str, *, status: int, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reasons = reasons or []


class RJMetricsUnreachableError(RJMetricsError):
    """The API's host could not be connected to when the run started (refused, no such name)."""


class RJMetricsRetriesExhausted(RJMetricsError):  # noqa: N818 (a public name since the first release)
    """Transient failures went on for longer than the retry bound allows."""


class RJMetricsStopped(RJMetricsError):  # noqa: N818 (says what happened to the run)
    """The run stopped (a signal, or a failure elsewhere) before a request could be sent or retried."""


class RJMetricsInputError(RJMetricsError):
    """A Singer message cannot be turned into valid Import API data points."""


class RJMetricsOutputError(RJMetricsError):
    """A STATE message could not be written to standard output (closed pipe, full disk)."""


class RJMetricsTransientError(RetriableAPIError):
    """A failure worth retrying: 408, 429, 5xx, a timeout or a dropped connection.

    Attributes:
        retry_after: Seconds the server asked us to wait (``Retry-After``), if any.
        unknown_fate: True when the try may have reached the API but no complete answer
            came back (a read timeout, the whole-try bound, a connection closed after the
            request was sent, a gateway's 502 or 504): the API may still apply it, later.
            False when nothing was applied for sure (no connection; 408, 429, 500, 503).
        unknown_fate_at: The clock time (monotonic seconds) at which a try with ``unknown_fate`` was given
            up; None otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        unknown_fate: bool = False,
        unknown_fate_at: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unknown_fate = unknown_fate
        self.unknown_fate_at = unknown_fate_at if unknown_fate else None


class RJMetricsConnectError(RJMetricsTransientError):
    """No connection to the API's host: refused, name not resolved, or no answer to connect.

    Nothing was sent, so nothing can be applied (``unknown_fate`` is always False).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)


class TerminationRequested(BaseException):
    """SIGTERM or SIGINT arrived: stop reading, settle, write the last landed STATE."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received signal {signum}")
        self.signum = signum


def input_error(where: str, exc: Exception, logger: logging.Logger) -> Exception:
    """Put the input position in front of an error, keeping the SDK's class where it has one."""
    if isinstance(exc, MappingError):
        msg = f"Cannot load {where}: {exc} Check `stream_maps`."
        return RJMetricsInputError(msg)
    if isinstance(exc, (SingerSDKError, InvalidInputLine)):
        msg = f"Cannot load {where}: {exc}"
        try:
            return type(exc)(msg)
        except TypeError:  # a class that wants more than a message
            return RJMetricsInputError(msg)
    if isinstance(exc, RecursionError):
        msg = (
            f"Cannot load {where}: a field nests objects or arrays too deeply to load (hundreds of "
            "levels). Drop or flatten it with `stream_maps`."
        )
        return RJMetricsInputError(msg)
    logger.debug("Details of the input error", exc_info=exc)
    msg = f"Cannot load {where}: {type(exc).__name__} (run with TARGET_RJMETRICS_LOGLEVEL=DEBUG for details)"
    return RJMetricsInputError(msg)


def report(exc: BaseException, logger: logging.Logger) -> int:
    """Log how a run ended badly in one short paragraph (no traceback), and give its exit code."""
    if isinstance(exc, TerminationRequested):
        logger.error(
            "Stopped by signal %d before the input ended; the last STATE written is safe to resume from.", exc.signum
        )
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        logger.error("Interrupted.")
        return 128 + signal.SIGINT
    if isinstance(exc, ConfigValidationError):
        logger.error("Invalid settings: %s", exc)
    elif isinstance(exc, (SingerSDKError, InvalidInputLine)):
        # Each of these is a sentence naming what is wrong and where; the SDK's own words too.
        logger.error("%s", exc)
    else:  # a bug of ours or of a library: its words could quote values
        logger.error(
            "Stopped by an unexpected %s; the last STATE written is safe to resume from. Run with "
            "TARGET_RJMETRICS_LOGLEVEL=DEBUG to see where it happened.",
            type(exc).__name__,
        )
        logger.debug("Details of the unexpected error", exc_info=exc)
    return 1
