"""HTTP client for the RJMetrics Import API: tries, retries and what each answer means.

Knows nothing of Singer: it takes a client id, an API key, a base URL, timeouts and a retry
bound, sends bodies that are already encoded through a transport
(:mod:`target_rjmetrics.transport`), and turns outcomes into the exceptions of
:mod:`target_rjmetrics.exceptions` (:mod:`target_rjmetrics.outcomes`).

What it holds to:

- **Only the documented success is a success.** An upsert is stored only when answered 201,
  a credential check passes only with 200. Redirects are never followed, so the key and the
  data go to no host but the base URL's; any other 1xx/2xx/3xx is a fatal
  :class:`RJMetricsUnexpectedAnswerError` naming what answered.
- **Every wait is bounded.** The transport bounds each try as a whole by ``timeout``. A try
  starts only within ``max_retry_seconds`` of the first, so a request gives up at the latest
  ``max_retry_seconds + timeout`` after it began; a stop ends every wait between tries at once.
- **The fate of each failed try is known or flagged.** A try that may have reached the API
  without a complete answer coming back may still be applied by the API later;
  :meth:`RJMetricsClient.push` returns when the last such try was given up.
- **No secret is shown**: every message goes through the process's scrubber.
"""

from __future__ import annotations

import logging
import threading
import typing as t
from urllib.parse import quote

import backoff

from target_rjmetrics import redaction
from target_rjmetrics.exceptions import (
    RJMetricsConnectError,
    RJMetricsError,
    RJMetricsRetriesExhausted,
    RJMetricsStopped,
    RJMetricsTransientError,
    RJMetricsUnreachableError,
)
from target_rjmetrics.lifecycle import Clock, Stop
from target_rjmetrics.outcomes import check_answer, host_port, transport_failure
from target_rjmetrics.redaction import SCRUBBER, shorten
from target_rjmetrics.transport import DryRunTransport, NetworkTransport, TryFailed, without_userinfo

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Mapping

    from target_rjmetrics.transport import Answer, Transport

PRODUCTION_URL = "https://connect.rjmetrics.com/v2"
SANDBOX_URL = "https://sandbox-connect.rjmetrics.com/v2"

#: The API refuses arrays of more than 100 data points.
MAX_POINTS_PER_REQUEST = 100
#: Bodies over 5 MiB are refused with 413 (the Import API's limit; docs/local-api.md lists the rules).
MAX_REQUEST_BYTES = 5 * 1024 * 1024

#: First retry waits up to this long; each later one doubles the bound (full jitter).
RETRY_INITIAL_SECONDS = 0.5
#: No single wait between two tries is longer than this, unless Retry-After asks for more.
RETRY_MAX_WAIT_SECONDS = 30.0
#: When the credentials are checked at start, a host that refuses connections or whose name
#: does not resolve is retried this long (a server still starting), then the run fails.
CONNECT_RETRY_SECONDS_AT_START = 10.0

_JSON_HEADERS = {"Content-Type": "application/json"}
_NO_HEADERS: dict[str, str] = {}


def retry_waits() -> Generator[float, RJMetricsTransientError, None]:
    """Backoff's exponential schedule with full jitter, with ``Retry-After`` as a floor."""
    schedule = backoff.expo(base=2, factor=RETRY_INITIAL_SECONDS, max_value=RETRY_MAX_WAIT_SECONDS)
    next(schedule)  # backoff's generators yield once before the first value
    failure = yield 0.0
    while True:
        wait = backoff.full_jitter(next(schedule))
        if failure.retry_after is not None:
            wait = max(wait, failure.retry_after)
        failure = yield wait


class RJMetricsClient:
    """Talks to one Import API host on behalf of one client id (thread-safe).

    Args:
        client_id: The RJMetrics client id (a positive integer).
        api_key: The API key; sent only as the ``apikey`` query parameter, only to the base URL's host.
        base_url: API base URL ending in ``/v2``; a user and password in it are sent as basic
            authentication and never shown.
        timeout: Seconds one try may take as a whole, from connecting to the last byte of the answer.
        max_retry_seconds: No try of a request starts later than this after its first.
        logger: Where retries are logged (WARNING, one line each) and failed tries (DEBUG).
        transport: Sends each try (by default the network, or the dry run with ``dry_run_file``).
        dry_run_file: Send nothing: write each upsert to this JSON-lines file.
        on_try: Told after each try: endpoint (``upsert``, ``authenticate``), table or "",
            HTTP status (0: no answer), seconds.
        clock: Time and waits (the run's).
        stop: Ends every wait between tries (the run's); a client of its own by default.
    """

    def __init__(  # noqa: PLR0913
        self,
        *,
        client_id: int,
        api_key: str,
        base_url: str = PRODUCTION_URL,
        timeout: float = 60.0,
        max_retry_seconds: float = 300.0,
        logger: logging.Logger | None = None,
        transport: Transport | None = None,
        dry_run_file: str | None = None,
        on_try: Callable[[str, str, int, float], None] | None = None,
        clock: Clock | None = None,
        stop: Stop | None = None,
    ) -> None:
        redaction.install()
        SCRUBBER.learn(api_key=api_key, url=base_url)
        self.logger = logger or logging.getLogger(__name__)
        self.client_id = client_id
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retry_seconds = max_retry_seconds
        self.host_port = host_port(self.base_url)
        # A user and password of the base URL travel as the Authorization header (see the
        # network transport), never in a request's URL.
        self._request_base = without_userinfo(self.base_url)
        self.dry_run = transport is None and dry_run_file is not None
        if transport is None:
            transport = DryRunTransport(dry_run_file) if dry_run_file else NetworkTransport(self.base_url)
        self._transport = transport
        proxy = getattr(getattr(transport, "environment", None), "proxy", None)
        #: ``HOST:PORT`` of the proxy requests go through (from the environment), for messages.
        self.proxy_host_port = host_port(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        self._on_try = on_try
        self._clock = clock or Clock()
        self._stop = stop or Stop()
        self._key_query = "apikey=" + quote(api_key, safe="")
        self._table_urls: dict[str, str] = {}
        self._unknown_fate_lock = threading.Lock()
        self._last_unknown_fate_at: float | None = None

    # -- what is shown ------------------------------------------------------------------

    def shown_url(self, url: str) -> str:
        """A URL of this client as messages show it: the key as ``***``, no password."""
        return SCRUBBER.scrub(f"{url}?apikey=***")

    def describe(self) -> str:
        """Where this client sends data, without the key or a password."""
        if self.dry_run:
            return f"dry run for client id {self.client_id}"
        return f"client id {self.client_id} at {SCRUBBER.scrub(self.base_url)}"

    @property
    def last_unknown_fate_at(self) -> float | None:
        """The clock time at which the latest try of unknown fate of any push was given up (or None).

        The API may still apply such a try late.
        """
        with self._unknown_fate_lock:
            return self._last_unknown_fate_at

    def _note_unknown_fate(self, moment: float) -> None:
        with self._unknown_fate_lock:
            if self._last_unknown_fate_at is None or moment > self._last_unknown_fate_at:
                self._last_unknown_fate_at = moment

    def cancel_retries(self) -> None:
        """Stop retrying: every wait between tries ends, and no new try starts (for a client of its own)."""
        self._stop.fail(RJMetricsStopped("the client was closed"))

    def close(self) -> None:
        """Let go of connections (and a dry run's file)."""
        self._transport.close()

    # -- tries and retries ----------------------------------------------------------------

    def _url(self, *segments: str) -> str:
        path = "/".join(quote(segment, safe="") for segment in segments)
        return f"{self._request_base}/client/{self.client_id}/{path}"

    def _try(  # noqa: PLR0913, PLR0917 (what a try needs, on the hot path)
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], endpoint: str, table: str
    ) -> Answer:
        """Send one try through the transport; a try without an answer becomes our exception."""
        clock = self._clock
        started = clock.now()
        status = 0
        try:
            answer = self._transport.send(method, f"{url}?{self._key_query}", body, headers, self.timeout)
            status = answer.status
        except TryFailed as failed:
            self.logger.debug(
                "%s %s failed: %s", method, self.shown_url(url), shorten(SCRUBBER.scrub(repr(failed.cause)), 1000)
            )
            raise transport_failure(failed, method, url, self) from None
        finally:
            if self._on_try is not None:
                self._on_try(endpoint, table, status, clock.now() - started)
        return answer

    def _with_retries(
        self,
        what: str,
        attempt: Callable[[], None],
        on_retry: Callable[[str, float], None] | None = None,
        *,
        at_start: bool = False,
    ) -> float | None:
        """Run ``attempt`` until it succeeds, retrying transient failures within the bound."""
        clock, stop = self._clock, self._stop
        started = clock.now()
        waits: Generator[float, RJMetricsTransientError, None] | None = None  # made on the first failure
        unknown_fate_at: float | None = None
        failure: RJMetricsTransientError | None = None
        # At start, a host never reached is a wrong `api_url` or an API that is down: say so
        # soon. Once any try got through, the API is there and the usual bound applies.
        never_connected = at_start
        tries = 0
        while True:
            if stop.requested:
                raise _stopped(what, failure, unknown_fate_at)
            tries += 1
            try:
                attempt()
            except RJMetricsTransientError as exc:
                failure = exc
            except RJMetricsError as exc:
                if exc.unknown_fate_at is None:
                    exc.unknown_fate_at = unknown_fate_at
                raise
            else:
                return unknown_fate_at
            if failure.unknown_fate_at is not None:
                unknown_fate_at = failure.unknown_fate_at
            never_connected = never_connected and isinstance(failure, RJMetricsConnectError)
            budget = self.max_retry_seconds
            if never_connected:
                budget = min(budget, CONNECT_RETRY_SECONDS_AT_START)
            left = budget - (clock.now() - started)
            if waits is None:
                waits = retry_waits()
                next(waits)
            wait = waits.send(failure)
            # A Retry-After past the bound: the API said not to come back before it, so stop now.
            if left <= 0 or (failure.retry_after is not None and failure.retry_after > left):
                raise _exhausted(what, failure, budget, unknown_fate_at, unreachable=never_connected)
            wait = min(wait, left)
            self.logger.warning("Retrying %s in %.2fs (try %d): %s", what, wait, tries + 1, failure)
            if on_retry is not None:
                on_retry(str(failure), wait)
            if not clock.sleep(wait, stop):
                raise _stopped(what, failure, unknown_fate_at)

    # -- the API ---------------------------------------------------------------------------

    def authenticate(self) -> None:
        """Check the credentials with ``GET /client/{cid}/authenticate`` (200 only).

        A host that cannot be connected to is retried for ``CONNECT_RETRY_SECONDS_AT_START``
        at most, as this is meant to run at start; other transient failures for the retry bound.

        Raises:
            RJMetricsAuthError: The API refused the client id and key.
            RJMetricsAPIError: Any other refusal (a 404 says the base URL must end in /v2).
            RJMetricsUnexpectedAnswerError: Something answered other than 200 or an error.
            RJMetricsUnreachableError: No connection could be made to the host.
            RJMetricsRetriesExhausted: Transient failures outlasted the retry bound.
            RJMetricsStopped: The run stopped meanwhile.
        """
        url = self._url("authenticate")
        what = f"authenticate for client id {self.client_id}"

        def attempt() -> None:
            answer = self._try("GET", url, None, _NO_HEADERS, "authenticate", "")
            check_answer(answer, method="GET", expected=200, what=what, url=url, client=self)

        self._with_retries(f"authenticate at {SCRUBBER.scrub(self.base_url)}", attempt, at_start=True)

    def push(self, table: str, body: bytes, on_retry: Callable[[str, float], None] | None = None) -> float | None:
        """Upsert an encoded array of data points into ``table``, retrying transient failures.

        Only a 201 answer counts as stored. ``on_retry(reason, wait)`` is told before each retry.

        Returns:
            The clock time at which the last try of unknown fate ended (the API may still apply
            it, late), or None when every failed try surely changed nothing.

        Raises:
            RJMetricsRequestTooLargeError: The API said 413; split the body and resend.
            RJMetricsAPIError: The API refused the data.
            RJMetricsUnexpectedAnswerError: A redirect or any answer other than 201 or an error.
            RJMetricsRetriesExhausted: Transient failures outlasted the retry bound.
            RJMetricsStopped: The run stopped before the push could be sent or retried.

        Every error raised has ``unknown_fate_at``, with the meaning of the value returned.
        """
        url = self._table_urls.get(table)
        if url is None:
            url = self._table_urls[table] = self._url("table", table, "data")
        what = f"upsert into table '{table}'"

        def attempt() -> None:
            try:
                answer = self._try("POST", url, body, _JSON_HEADERS, "upsert", table)
                check_answer(answer, method="POST", expected=201, what=what, url=url, client=self)
            except (RJMetricsTransientError, RJMetricsError) as exc:
                if isinstance(exc, RJMetricsTransientError) and exc.unknown_fate and exc.unknown_fate_at is None:
                    exc.unknown_fate_at = self._clock.now()
                if exc.unknown_fate_at is not None:
                    self._note_unknown_fate(exc.unknown_fate_at)
                raise

        return self._with_retries(what, attempt, on_retry)


def _stopped(what: str, failure: RJMetricsTransientError | None, unknown_fate_at: float | None) -> RJMetricsStopped:
    if failure is None:
        msg = f"{what} not sent because the run is stopping."
    else:
        msg = f"{what} not retried because the run is stopping: {failure}"
    error = RJMetricsStopped(msg)
    error.unknown_fate_at = unknown_fate_at
    return error


def _exhausted(
    what: str, failure: RJMetricsTransientError, budget: float, unknown_fate_at: float | None, *, unreachable: bool
) -> RJMetricsError:
    error: RJMetricsError
    if unreachable:
        msg = (
            f"{failure}: {what} tried for {budget:g}s. Check `api_url` (or `sandbox`), the network "
            "and any proxy, and that the API is up."
        )
        error = RJMetricsUnreachableError(msg)
    else:
        asked = (
            f" The API asked to wait {failure.retry_after:g}s more (Retry-After)."
            if failure.retry_after is not None and failure.retry_after > 0
            else ""
        )
        msg = (
            f"{what} still failing after retrying for up to {budget:g}s: {failure}.{asked} "
            "Raise `max_retry_seconds` to wait longer, or check the API's status."
        )
        error = RJMetricsRetriesExhausted(msg)
    error.unknown_fate_at = unknown_fate_at
    return error
