"""Errors raised by target-rjmetrics.

The tree hangs off the SDK's own error classes so that anything that already knows
the SDK's retriable/fatal split reads ours the same way::

    SingerSDKError
    ├── FatalAPIError
    │   └── RJMetricsError                 every fatal error of this target
    │       ├── RJMetricsAPIError          the API refused a request (4xx other than 413/429)
    │       │   └── RJMetricsAuthError     401: wrong client id or API key
    │       ├── RJMetricsRetriesExhausted  transient failures outlasted ``max_retry_seconds``
    │       ├── RJMetricsInputError        the input cannot become valid data points
    │       └── RJMetricsOutputError       a STATE could not be written to standard output
    └── RetriableAPIError
        └── RJMetricsTransientError        429, 5xx, timeouts, dropped connections

Messages never contain the API key or record values.
"""

from __future__ import annotations

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError


class RJMetricsError(FatalAPIError):
    """A failure that stops the run: nothing after it is sent and no later STATE is written."""


class RJMetricsAPIError(RJMetricsError):
    """The Import API answered a request with a permanent (4xx) error.

    Attributes:
        status: The HTTP status code.
        reasons: The ``reasons`` list of the API's error body, if any.
    """

    def __init__(self, message: str, *, status: int, reasons: list[str] | None = None) -> None:
        """Create the error.

        Args:
            message: What happened, already redacted.
            status: The HTTP status code.
            reasons: The ``reasons`` of the API's error body.
        """
        super().__init__(message)
        self.status = status
        self.reasons = reasons or []


class RJMetricsAuthError(RJMetricsAPIError):
    """The API refused the client id and API key (401)."""


class RJMetricsRequestTooLargeError(RJMetricsAPIError):
    """The API refused a request body as too large (413); the sender splits and resends."""


class RJMetricsRetriesExhausted(RJMetricsError):
    """Transient failures went on for longer than the retry bound allows."""


class RJMetricsInputError(RJMetricsError):
    """A Singer message cannot be turned into valid Import API data points."""


class RJMetricsOutputError(RJMetricsError):
    """A STATE message could not be written to standard output (closed pipe, full disk)."""


class RJMetricsTransientError(RetriableAPIError):
    """A failure worth retrying: 429, 5xx, a timeout or a dropped connection.

    Attributes:
        retry_after: Seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        """Create the error.

        Args:
            message: What happened, already redacted.
            retry_after: Seconds the server asked us to wait, if it said.
        """
        super().__init__(message)
        self.retry_after = retry_after
