"""HTTP client for the RJMetrics Import API.

Knows nothing of Singer: it takes a client id, an API key, a base URL, timeouts and a
retry bound, sends bodies that are already encoded, and turns HTTP outcomes into the
exceptions of :mod:`target_rjmetrics.exceptions`.

What it holds to:

- **Only the documented success is a success.** An upsert is stored only when answered 201,
  a credential check passes only with 200. Redirects are never followed (no code path of the
  session can follow one), so the key and the data go to no host but the base URL's; any
  other 1xx/2xx/3xx is a fatal :class:`RJMetricsUnexpectedAnswerError` naming what answered.
- **Every wait is bounded.** Each try is bounded as a whole by ``timeout``, from connecting
  to the last byte of the answer: a watchdog shuts the try's socket down when it runs over,
  which also ends an answer trickling in a byte at a time (a per-read timeout never fires
  then). A try starts only within ``max_retry_seconds`` of the first, so a request gives up
  at the latest ``max_retry_seconds + timeout`` after it began. :meth:`RJMetricsClient.cancel_retries`
  ends every wait between tries at once, and no try starts after it.
- **The fate of each failed try is known or flagged.** A try that may have reached the API
  without a complete answer coming back (a read timeout, the whole-try bound, a connection
  closed after the request went out, a gateway's 502/504) may still be applied by the API
  later; :meth:`RJMetricsClient.push` returns when the last such try was given up.
- **No secret is shown.** The API key, and the user and password of a base URL written as
  ``https://user:password@host/v2``, are removed from every message and library log line;
  at most a few KB of an API's answer are shown.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
import typing as t
from urllib.parse import quote, urlsplit

import backoff
import requests
import urllib3
from requests.auth import HTTPBasicAuth
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    default_headers,
    get_auth_from_url,
    get_environ_proxies,
    get_netrc_auth,
    select_proxy,
)

from target_rjmetrics import __version__, redaction
from target_rjmetrics.exceptions import (
    RJMetricsConnectError,
    RJMetricsError,
    RJMetricsRetriesExhausted,
    RJMetricsTransientError,
    RJMetricsUnreachableError,
)
from target_rjmetrics.outcomes import check_answer, host_port, transport_failure
from target_rjmetrics.redaction import SCRUBBER
from target_rjmetrics.transport import (
    CURRENT_TRY,
    DryRunAdapter,
    Try,
    Watchdog,
    new_adapter,
    read_answer,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from requests.adapters import BaseAdapter

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


def _retry_waits() -> Generator[float, RJMetricsTransientError, None]:
    """Backoff's exponential schedule with full jitter, with ``Retry-After`` as a floor.

    Yields:
        Seconds to wait before the next try; each failure is sent in first.
    """
    schedule = backoff.expo(base=2, factor=RETRY_INITIAL_SECONDS, max_value=RETRY_MAX_WAIT_SECONDS)
    next(schedule)  # backoff's generators yield once before the first value
    failure = yield 0.0
    while True:
        wait = backoff.full_jitter(next(schedule))
        if failure.retry_after is not None:
            wait = max(wait, failure.retry_after)
        failure = yield wait


class _Environment:
    """What ``requests.Session`` would read from the environment for every request, read once.

    Proxies (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``...), a CA bundle
    (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) and ``.netrc`` credentials are honoured as a
    session honours them, but looked up when the client is made instead of on every request
    (those lookups cost a third of a request's CPU). A user and password in the base URL are
    sent as basic authentication, as ``requests`` does.
    """

    def __init__(self, base_url: str) -> None:
        self.proxies = get_environ_proxies(base_url)
        self.verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        headers = default_headers()
        headers["User-Agent"] = f"target-rjmetrics/{__version__}"
        user, password = get_auth_from_url(base_url)
        auth = (user, password) if user or password else get_netrc_auth(base_url)
        if auth:
            template = requests.PreparedRequest()
            template.headers = CaseInsensitiveDict()
            HTTPBasicAuth(*auth)(template)
            headers["Authorization"] = template.headers["Authorization"]
        self._headers = dict(headers)

    def prepare(
        self, method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> requests.PreparedRequest:
        """A request ready for an adapter, as ``Session.prepare_request`` would make it.

        Args:
            method: GET or POST.
            url: The full URL, query included, already encoded (its user and password, if
                any, are sent as the Authorization header).
            data: The body.
            headers: Headers of this request.

        Returns:
            The prepared request.
        """
        request = requests.PreparedRequest()
        request.method = method
        request.url = _without_userinfo(url)
        request.headers = CaseInsensitiveDict({**self._headers, **(headers or {})})
        request.body = data
        if data is not None:
            request.headers["Content-Length"] = str(len(data))
        elif method == "POST":
            request.headers["Content-Length"] = "0"
        request.hooks = {"response": []}
        return request


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


class RJMetricsClient:
    """Talks to one Import API host on behalf of one client id.

    Thread-safe: each thread gets its own session (see :mod:`target_rjmetrics.transport`).
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
        dry_run_file: str | None = None,
        on_try: Callable[[str, str, int, float], None] | None = None,
    ) -> None:
        """Create a client.

        Args:
            client_id: The RJMetrics client id (a positive integer).
            api_key: The API key; it is sent only as the ``apikey`` query parameter, and only
                to the host of ``base_url``.
            base_url: API base URL ending in ``/v2``. A user and password in it
                (``https://user:password@host/v2``) are sent as basic authentication and
                never shown.
            timeout: Seconds one try may take as a whole, from connecting to the last byte of
                the answer (also the bound of the connection and of each read).
            max_retry_seconds: No try of a request starts later than this many seconds after
                its first; a request gives up at the latest this plus ``timeout`` after it began.
            logger: Where retries are logged (WARNING, one line each).
            dry_run_file: Send nothing: write each upsert to this JSON-lines file instead
                (see :class:`~target_rjmetrics.transport.DryRunAdapter`).
            on_try: Called after each try with (endpoint: ``upsert`` or ``authenticate``,
                table or "", HTTP status or 0 when no answer came, seconds it took).
        """
        self.logger = logger or logging.getLogger(__name__)
        self.client_id = client_id
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retry_seconds = max_retry_seconds
        self.host_port = host_port(self.base_url)
        redaction.install()
        SCRUBBER.learn(api_key=api_key, url=base_url)
        self._dry_run = DryRunAdapter(dry_run_file) if dry_run_file else None
        self._on_try = on_try
        self._local = threading.local()
        self._adapters: list[BaseAdapter] = []
        self._adapters_lock = threading.Lock()
        self._environment = _Environment(self.base_url)
        proxy = select_proxy(self.base_url, self._environment.proxies)
        #: ``HOST:PORT`` of the proxy requests go through (from the environment), for messages.
        self.proxy_host_port = host_port(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        self._key_query = "apikey=" + quote(api_key, safe="")
        self._cancelled = threading.Event()
        self._watchdog = Watchdog()
        self._abandoned_lock = threading.Lock()
        self._last_abandoned_at: float | None = None

    # -- plumbing -----------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Remove every secret of the process (this client's key, URL passwords) from ``text``.

        Args:
            text: Text about to be logged or raised.

        Returns:
            The scrubbed text.
        """
        return SCRUBBER.scrub(text)

    def shown_url(self, url: str) -> str:
        """A URL of this client as messages show it: the key as ``***``, no password.

        Args:
            url: A URL without its query.

        Returns:
            The URL fit to show.
        """
        return self.redact(f"{url}?apikey=***")

    @property
    def dry_run(self) -> bool:
        """Whether this client sends nothing (a dry run)."""
        return self._dry_run is not None

    @property
    def last_abandoned_at(self) -> float | None:
        """The ``time.monotonic()`` at which the latest try of unknown fate of any push was given up.

        None while no push has had such a try. The API may still apply such a try late.
        """
        with self._abandoned_lock:
            return self._last_abandoned_at

    def _note_abandoned(self, moment: float) -> None:
        with self._abandoned_lock:
            if self._last_abandoned_at is None or moment > self._last_abandoned_at:
                self._last_abandoned_at = moment

    def _adapter(self) -> BaseAdapter:
        adapter: BaseAdapter | None = getattr(self._local, "adapter", None)
        if adapter is None:
            adapter = self._local.adapter = new_adapter(self._dry_run)
            with self._adapters_lock:
                self._adapters.append(adapter)
        return adapter

    def close(self) -> None:
        """Close every pooled connection (and a dry run's file), and stop the watchdog."""
        with self._adapters_lock:
            for adapter in self._adapters:
                adapter.close()
            self._adapters.clear()
        if self._dry_run is not None:
            self._dry_run.close()
        self._watchdog.close()

    def cancel_retries(self) -> None:
        """Stop retrying: every wait between tries ends now, and no new try starts.

        A try already under way finishes (within ``timeout``); the request then fails
        with :class:`RJMetricsRetriesExhausted` saying the run is stopping.
        """
        self._cancelled.set()

    def _url(self, *segments: str) -> str:
        path = "/".join(quote(segment, safe="") for segment in segments)
        return f"{self.base_url}/client/{self.client_id}/{path}"

    def _try_once(
        self,
        method: str,
        url: str,
        endpoint: str,
        table: str = "",
        **kwargs: t.Any,  # noqa: ANN401 (requests' send options)
    ) -> tuple[requests.Response, bytes, float]:
        """Send one request, bounded as a whole by ``timeout``.

        Returns:
            The answer, its body (at most ``MAX_ANSWER_BYTES``), and when it came.
        """
        started = time.monotonic()
        status = 0
        try:
            response, body, answered_at = self._send_once(method, url, started, **kwargs)
            status = response.status_code
        finally:
            if self._on_try is not None:
                self._on_try(endpoint, table, status, time.monotonic() - started)
        return response, body, answered_at

    def _send_once(
        self,
        method: str,
        url: str,
        started: float,
        **kwargs: t.Any,  # noqa: ANN401 (requests' send options)
    ) -> tuple[requests.Response, bytes, float]:
        attempt = Try(started + self.timeout)
        token = CURRENT_TRY.set(attempt)
        self._watchdog.arm(attempt)
        try:
            environment = self._environment
            request = environment.prepare(method, f"{url}?{self._key_query}", **kwargs)
            response = self._adapter().send(
                request, stream=True, timeout=self.timeout, verify=environment.verify, proxies=environment.proxies
            )
            try:
                body = read_answer(response)
            finally:
                response.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            raise transport_failure(exc, attempt, method, url, self) from None
        finally:
            self._watchdog.disarm(attempt)
            CURRENT_TRY.reset(token)
        return response, body, time.monotonic()

    def _with_retries(
        self,
        what: str,
        attempt: Callable[[], None],
        on_retry: Callable[[str, float], None] | None = None,
        *,
        at_start: bool = False,
    ) -> float | None:
        """Run ``attempt`` until it succeeds, retrying transient failures within the bound.

        Backoff's wait generator gives the waits; they are waited out on an event, so that
        :meth:`cancel_retries` ends them at once.

        Returns:
            When the last try of unknown fate was given up, or None if there was none.
        """
        started = time.monotonic()
        waits = _retry_waits()
        next(waits)
        abandoned_at: float | None = None
        failure: RJMetricsTransientError | None = None
        # At start, a host never reached is a wrong `api_url` or an API that is down: say so
        # soon. Once any try got through, the API is there and the usual bound applies.
        never_connected = at_start
        tries = 0
        while True:
            if self._cancelled.is_set():
                raise _stopped(self.redact, what, failure, abandoned_at)
            tries += 1
            try:
                attempt()
            except RJMetricsTransientError as exc:
                failure = exc
            except RJMetricsError as exc:
                if exc.abandoned_at is None:
                    exc.abandoned_at = abandoned_at
                raise
            else:
                return abandoned_at
            if failure.abandoned_at is not None:
                abandoned_at = failure.abandoned_at
            never_connected = never_connected and isinstance(failure, RJMetricsConnectError)
            budget = self.max_retry_seconds
            if never_connected:
                budget = min(budget, CONNECT_RETRY_SECONDS_AT_START)
            left = budget - (time.monotonic() - started)
            wait = waits.send(failure)
            # A Retry-After past the bound: the API said not to come back before it, so stop now.
            if left <= 0 or (failure.retry_after is not None and failure.retry_after > left):
                raise _exhausted(self.redact, what, failure, budget, abandoned_at, unreachable=never_connected)
            wait = min(wait, left)
            self.logger.warning("Retrying %s in %.2fs (try %d): %s", what, wait, tries + 1, failure)
            if on_retry is not None:
                on_retry(str(failure), wait)
            if self._cancelled.wait(wait):
                raise _stopped(self.redact, what, failure, abandoned_at)

    # -- API ----------------------------------------------------------------------

    def authenticate(self) -> None:
        """Check the credentials with ``GET /client/{cid}/authenticate`` (200 only).

        A host that cannot be connected to is retried for ``CONNECT_RETRY_SECONDS_AT_START``
        at most, as this is meant to run at start; other transient failures for the
        retry bound.

        Raises:
            RJMetricsAuthError: The API refused the client id and key.
            RJMetricsAPIError: Any other refusal (a 404 says the base URL must end in /v2).
            RJMetricsUnexpectedAnswerError: Something answered other than 200 or an error.
            RJMetricsUnreachableError: No connection could be made to the host.
            RJMetricsRetriesExhausted: Transient failures outlasted the retry bound.
        """
        url = self._url("authenticate")
        what = f"authenticate for client id {self.client_id}"

        def attempt() -> None:
            response, body, answered_at = self._try_once("GET", url, "authenticate")
            check_answer(response, body, answered_at, expected=200, what=what, url=url, client=self)

        self._with_retries(f"authenticate at {self.redact(self.base_url)}", attempt, at_start=True)

    def push(
        self,
        table: str,
        body: bytes,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> float | None:
        """Upsert an encoded array of data points into ``table``, retrying transient failures.

        Only a 201 answer counts as stored.

        Args:
            table: A valid table name (``[A-Za-z0-9_]+``).
            body: The JSON array, already encoded.
            on_retry: Called with (reason, wait seconds) before each retry of this push.

        Returns:
            The ``time.monotonic()`` at which the last try of unknown fate of this push was
            given up (the API may still apply it, late), or None if every failed try was
            surely not applied.

        Raises:
            RJMetricsRequestTooLargeError: The API said 413; split the body and resend.
            RJMetricsAPIError: The API refused the data.
            RJMetricsUnexpectedAnswerError: A redirect or any answer other than 201 or an error.
            RJMetricsRetriesExhausted: Transient failures outlasted the retry bound, or the
                run is stopping (:meth:`cancel_retries`).

        Every error raised has ``abandoned_at``, with the meaning of the value returned.
        """
        url = self._url("table", table, "data")
        headers = {"Content-Type": "application/json"}
        what = f"upsert into table '{table}'"

        def attempt() -> None:
            try:
                response, answer, answered_at = self._try_once("POST", url, "upsert", table, data=body, headers=headers)
                check_answer(response, answer, answered_at, expected=201, what=what, url=url, client=self)
            except (RJMetricsTransientError, RJMetricsError) as exc:
                if exc.abandoned_at is not None:
                    self._note_abandoned(exc.abandoned_at)
                raise

        return self._with_retries(what, attempt, on_retry)

    def describe(self) -> str:
        """Say where this client sends data, without the key or a password.

        Returns:
            A short description.
        """
        if self._dry_run is not None:
            return f"dry run for client id {self.client_id}"
        return f"client id {self.client_id} at {self.redact(self.base_url)}"


def _stopped(
    redact_text: Callable[[str], str], what: str, failure: RJMetricsTransientError | None, abandoned_at: float | None
) -> RJMetricsRetriesExhausted:
    if failure is None:
        msg = f"{what} not sent because the run is stopping."
    else:
        msg = f"{what} not retried because the run is stopping: {failure}"
    error = RJMetricsRetriesExhausted(redact_text(msg))
    error.abandoned_at = abandoned_at
    return error


def _exhausted(  # noqa: PLR0913 (what the message says)
    redact_text: Callable[[str], str],
    what: str,
    failure: RJMetricsTransientError,
    budget: float,
    abandoned_at: float | None,
    *,
    unreachable: bool,
) -> RJMetricsError:
    error: RJMetricsError
    if unreachable:
        msg = (
            f"{failure}: {what} tried for {budget:g}s. Check `api_url` (or `sandbox`), the network "
            "and any proxy, and that the API is up."
        )
        error = RJMetricsUnreachableError(redact_text(msg))
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
        error = RJMetricsRetriesExhausted(redact_text(msg))
    error.abandoned_at = abandoned_at
    return error
