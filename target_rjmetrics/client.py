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

import contextvars
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import typing as t
from urllib.parse import quote, quote_plus, unquote, urljoin, urlsplit

import backoff
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from target_rjmetrics import __version__
from target_rjmetrics.exceptions import (
    RJMetricsAPIError,
    RJMetricsAuthError,
    RJMetricsConnectError,
    RJMetricsError,
    RJMetricsRequestTooLargeError,
    RJMetricsRetriesExhausted,
    RJMetricsTransientError,
    RJMetricsUnexpectedAnswerError,
    RJMetricsUnreachableError,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator

PRODUCTION_URL = "https://connect.rjmetrics.com/v2"
SANDBOX_URL = "https://sandbox-connect.rjmetrics.com/v2"

#: The API refuses arrays of more than 100 data points.
MAX_POINTS_PER_REQUEST = 100
#: Bodies over 5 MiB are refused with 413 (see the contract in shared/import-api.md).
MAX_REQUEST_BYTES = 5 * 1024 * 1024

#: First retry waits up to this long; each later one doubles the bound (full jitter).
RETRY_INITIAL_SECONDS = 0.5
#: No single wait between two tries is longer than this, unless Retry-After asks for more.
RETRY_MAX_WAIT_SECONDS = 30.0
#: When the credentials are checked at start, a host that refuses connections or whose name
#: does not resolve is retried this long (a server still starting), then the run fails.
CONNECT_RETRY_SECONDS_AT_START = 10.0

#: At most this much of an answer's body is read; the connection is dropped if there is more.
MAX_ANSWER_BYTES = 1024 * 1024
#: What is shown of an answer: each of the message and the reasons is cut to this length...
SHOWN_CHARS = 300
#: ...and at most this many reasons are shown.
SHOWN_REASONS = 5

#: Failed answers after which nothing was applied for sure: the API itself said so.
_CERTAIN_RETRYABLE_STATUSES = frozenset({408, 429, 500, 503})

_APIKEY_PARAM = re.compile(r"(apikey=)[^&\s'\"]*", re.IGNORECASE)
# scheme://userinfo@ : the userinfo ends at the last "@" before the path, query or fragment.
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s'\"<>]*@")
#: A password of the base URL shorter than this is removed only where it stands in a URL.
_MIN_LITERAL_SECRET = 4


def redact_url(url: str) -> str:
    """Make a URL fit to show: its user and password, and any ``apikey`` value, become ``***``.

    Args:
        url: A URL, or any text that may hold URLs.

    Returns:
        The text with every ``scheme://user:password@`` reduced to ``scheme://***@`` and
        every ``apikey=`` value replaced.
    """
    return _APIKEY_PARAM.sub(r"\1***", _URL_USERINFO.sub(r"\1***@", url))


def redact(text: str, secret: str | None) -> str:
    """Remove an API key, and the user and password of any URL, from text.

    Args:
        text: Any text about to be logged or raised.
        secret: The API key.

    Returns:
        The text with the key (also URL-encoded), any ``apikey=`` query value and any URL
        userinfo replaced.
    """
    if secret:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, "***")
    return redact_url(text)


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """Cut ``text`` to about ``limit`` characters, saying how much was cut.

    Args:
        text: Text from elsewhere (an API's answer, a library's error).
        limit: Characters kept.

    Returns:
        The text, or its first ``limit`` characters and how many more there were.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


class RedactingFilter(logging.Filter):
    """Removes ``apikey=`` values and URL passwords from log records, e.g. urllib3's DEBUG lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message without secrets.

        Args:
            record: A log record.

        Returns:
            Always True: the record is kept, redacted.
        """
        message = record.getMessage()
        if "apikey" in message.lower() or "@" in message:
            record.msg = redact(message, None)
            record.args = None
        return True


#: Loggers of the HTTP libraries that can print a URL. A filter on a logger does not apply
#: to records of its children, so each one that logs is named.
_LIBRARY_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
)


def _redact_library_logs() -> None:
    """Make sure the HTTP libraries' own loggers can never print a URL with the key."""
    for name in _LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in library_logger.filters):
            library_logger.addFilter(RedactingFilter())


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


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


# -- bounding each try as a whole ---------------------------------------------------------------


class _Try:
    """One try of one request: its deadline, the connection it uses, and how far it got.

    The connection classes below report to the try running on their thread (found through
    a context variable); the watchdog calls :meth:`expire` at the deadline.
    """

    __slots__ = ("connection", "deadline", "expired", "lock", "overdue", "reached")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.lock = threading.Lock()
        self.connection: HTTPConnection | None = None
        # True once a connection to the host is up and the request is about to go out on
        # it: from then on, a failure leaves the request's fate unknown.
        self.reached = False
        self.overdue = False  # the deadline passed
        self.expired = False  # ...and the watchdog cut a connection this try was using

    def use(self, connection: HTTPConnection, *, connected: bool) -> None:
        """Note the connection this try uses (called by the connection itself).

        Args:
            connection: The connection.
            connected: Whether it is connected (and a request about to be written on it).
        """
        with self.lock:
            self.connection = connection
            if self.overdue:  # connected just after the deadline: nothing was sent yet
                self._cut()
                return
            if connected:
                self.reached = True

    def expire(self) -> None:
        """The deadline passed: shut the connection down so that no read or write goes on."""
        with self.lock:
            self.overdue = True
            self._cut()

    def _cut(self) -> None:
        connection = self.connection
        sock = getattr(connection, "sock", None) if connection is not None else None
        # A TLS socket (or urllib3's TLS-in-TLS transport) wraps the OS socket: shut down the
        # OS socket itself, so a read blocked in the TLS layer sees the end of the stream.
        while sock is not None and not isinstance(sock, socket.socket):
            sock = getattr(sock, "socket", None)
        if sock is None:
            return
        # Set before the shutdown: the thread it wakes may read it at once (under the lock).
        self.expired = True
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: nothing left to wait for

    def outcome(self) -> tuple[bool, bool]:
        """Whether the try reached the host, and whether the watchdog cut it (once any cut is done).

        Returns:
            ``(reached, expired)``.
        """
        with self.lock:
            return self.reached, self.expired


_CURRENT_TRY: contextvars.ContextVar[_Try | None] = contextvars.ContextVar("rjmetrics_try", default=None)


class _WatchedConnectionMixin:
    """Reports the connection to the try running on this thread, when it connects or is reused."""

    sock: t.Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        current = _CURRENT_TRY.get()
        if current is not None:
            current.use(self, connected=True)  # type: ignore[arg-type]

    def putrequest(self, *args: t.Any, **kwargs: t.Any) -> None:
        current = _CURRENT_TRY.get()
        if current is not None:
            # A pooled connection being reused is already connected; a new one connects
            # later, when the request is written (plain HTTP) or has connected already (TLS).
            current.use(self, connected=self.sock is not None)  # type: ignore[arg-type]
        super().putrequest(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection  # type: ignore[assignment]


_WATCHED_POOLS = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections (direct, or through an HTTP proxy) report to the watchdog."""

    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: t.Any) -> t.Any:  # noqa: ANN401
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # SOCKS proxies bring their own connection classes: leave those (per-read timeouts only).
        if manager.pool_classes_by_scheme.get("http") is HTTPConnectionPool:
            manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager


class _NoRedirectSession(requests.Session):
    """A session that sees no redirect in any answer, so that nothing can ever follow one."""

    def get_redirect_target(self, resp: requests.Response) -> None:  # noqa: ARG002
        """Never a redirect target: a 3xx is an answer like any other to this client.

        Args:
            resp: An answer.
        """
        return


class _Watchdog:
    """Cuts the connection of every try that outlives its deadline (one thread per client)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: set[_Try] = set()
        self._wake_at: float | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def arm(self, attempt: _Try) -> None:
        with self._cond:
            self._armed.add(attempt)
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="rjmetrics-watchdog", daemon=True)
                self._thread.start()
            if self._wake_at is None or attempt.deadline < self._wake_at:
                self._cond.notify()

    def disarm(self, attempt: _Try) -> None:
        with self._cond:
            self._armed.discard(attempt)

    def close(self) -> None:
        with self._cond:
            thread, self._thread = self._thread, None
            self._closing = True
            self._cond.notify()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        with self._cond:
            while not self._closing:
                now = time.monotonic()
                for attempt in [a for a in self._armed if a.deadline <= now]:
                    self._armed.discard(attempt)
                    attempt.expire()
                self._wake_at = min((a.deadline for a in self._armed), default=None)
                self._cond.wait(None if self._wake_at is None else self._wake_at - now)
            self._wake_at = None


# -- reading what failed ---------------------------------------------------------------------------


def _causes(exc: BaseException) -> Generator[BaseException, None, None]:
    """The exception and everything it wraps (requests -> urllib3 -> OS), each once."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args):
            if isinstance(inner, BaseException):
                pending.append(inner)


def _connect_failure(exc: BaseException, timeout: float) -> str:
    """Say in a few words why no connection was made."""
    causes = list(_causes(exc))
    if any(isinstance(c, socket.gaierror) or type(c).__name__ == "NameResolutionError" for c in causes):
        return "name not resolved"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError, TimeoutError))
           and not isinstance(c, urllib3.exceptions.NewConnectionError) for c in causes):
        return f"no answer within {timeout:g}s"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    return shorten(str(exc), 200)


def _is_certificate_failure(exc: BaseException) -> bool:
    return any(
        isinstance(c, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(c) for c in _causes(exc)
    )


def _read_answer(response: requests.Response) -> bytes:
    """Read at most ``MAX_ANSWER_BYTES`` of the body (a longer one is cut, its connection dropped)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)[:MAX_ANSWER_BYTES]


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def _location_shown(response: requests.Response, url: str) -> str:
    """Where a redirect points, without its userinfo, query or fragment (they may hold secrets)."""
    location = response.headers.get("Location")
    if not location:
        return " (without a Location)"
    try:
        parts = urlsplit(urljoin(url, location.strip()))
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        target = f"{parts.scheme}://{netloc}{parts.path}"
    except ValueError:
        return " (with a Location that is not a URL)"
    dropped = " (query removed)" if parts.query or parts.fragment else ""
    return f" with Location {shorten(target, 200)}{dropped}"


# -- the client -------------------------------------------------------------------------------------


class RJMetricsClient:
    """Talks to one Import API host on behalf of one client id.

    Thread-safe: each thread gets its own pooled ``requests.Session``.
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
        """
        self._logger = logger or logging.getLogger(__name__)
        self.client_id = client_id
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retry_seconds = max_retry_seconds
        self._host_port = _host_port(self.base_url)
        self._secrets = [api_key]
        try:
            password = urlsplit(self.base_url).password
        except ValueError:
            password = None
        if password and len(unquote(password)) >= _MIN_LITERAL_SECRET:
            self._secrets += [password, unquote(password)]
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._watchdog = _Watchdog()
        self._abandoned_lock = threading.Lock()
        self._last_abandoned_at: float | None = None
        _redact_library_logs()

    # -- plumbing -----------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Remove this client's API key, and any password of a URL, from ``text``.

        Args:
            text: Text about to be logged or raised.

        Returns:
            The redacted text.
        """
        for secret in self._secrets:
            text = redact(text, secret)
        return text

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

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _NoRedirectSession()
            adapter = _WatchedAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = f"target-rjmetrics/{__version__}"
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every pooled connection and stop the watchdog."""
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
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

    def _shown_url(self, url: str) -> str:
        return self.redact(f"{url}?apikey=***")

    def _try_once(self, method: str, url: str, **kwargs: t.Any) -> tuple[requests.Response, bytes, float]:
        """Send one request, bounded as a whole by ``timeout``.

        Returns:
            The answer, its body (at most ``MAX_ANSWER_BYTES``), and when it came.
        """
        attempt = _Try(time.monotonic() + self.timeout)
        token = _CURRENT_TRY.set(attempt)
        self._watchdog.arm(attempt)
        try:
            response = self._session().request(
                method,
                url,
                params={"apikey": self._api_key},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
            try:
                body = _read_answer(response)
            finally:
                response.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            raise self._transport_failure(exc, attempt, method, url) from None
        finally:
            self._watchdog.disarm(attempt)
            _CURRENT_TRY.reset(token)
        return response, body, time.monotonic()

    def _transport_failure(self, exc: BaseException, attempt: _Try, method: str, url: str) -> Exception:
        """Turn a failed try without an answer into our exception, classified by its fate."""
        self._logger.debug("%s %s failed: %s", method, self._shown_url(url), shorten(self.redact(repr(exc)), 1000))
        via_proxy = " through the proxy" if isinstance(exc, requests.exceptions.ProxyError) else ""
        reached, expired = attempt.outcome()
        if expired and reached:
            msg = (
                f"{method} {self._shown_url(url)} timed out: no complete answer within {self.timeout:g}s "
                "(`request_timeout` bounds each try as a whole)"
            )
            return RJMetricsTransientError(msg, maybe_applied=True)
        if not reached:
            if isinstance(exc, requests.exceptions.SSLError) and _is_certificate_failure(exc):
                # A certificate that does not verify will not verify on a retry either.
                msg = self.redact(
                    f"{method} {url} failed TLS verification: {shorten(str(exc), 500)}. Check `api_url` "
                    "(TLS verification is always on)."
                )
                return RJMetricsError(msg)
            if isinstance(exc, (requests.ConnectionError, requests.Timeout, OSError)) or expired:
                reason = f"no answer within {self.timeout:g}s" if expired else _connect_failure(exc, self.timeout)
                return RJMetricsConnectError(f"cannot connect to {self._host_port}{via_proxy} ({reason})")
            msg = self.redact(f"{method} {url} failed: {shorten(str(exc), 500)}")
            return RJMetricsError(msg)
        # The request went out (or may have, in part): the API may have it.
        if any(isinstance(c, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)) for c in _causes(exc)):
            reason = f"timed out: no answer within {self.timeout:g}s"
        else:
            cause = next((c for c in _causes(exc) if isinstance(c, OSError) and c.strerror), None)
            detail = f" ({cause.strerror.lower()})" if cause is not None and cause.strerror else ""
            reason = f"lost its connection before a complete answer{detail}"
        return RJMetricsTransientError(f"{method} {self._shown_url(url)} {reason}", maybe_applied=True)

    def _check_answer(  # noqa: C901, PLR0911
        self,
        response: requests.Response,
        body: bytes,
        answered_at: float,
        *,
        expected: int,
        what: str,
        url: str,
    ) -> None:
        """Raise unless the answer is ``expected``; classify the failure by its fate."""
        status = response.status_code
        if status == expected:
            return
        method = response.request.method if response.request is not None else "GET"
        if status < 200 or 200 <= status < 400 or status >= 600:  # noqa: PLR2004
            if 300 <= status < 400:  # noqa: PLR2004
                msg = (
                    f"{what} was answered {status}{_location_shown(response, url)} instead of {expected}: a "
                    "redirect, never followed (the key and the data go only to `api_url`'s host). Set "
                    "`api_url` to the final URL of the Import API (it ends in /v2)"
                )
            else:
                msg = (
                    f"{what} was answered {status} instead of {expected}: something between the target and "
                    f"the API (a proxy, a captive portal, a load balancer) answered for it, and only a {expected} "
                    "counts. Check `api_url` and proxies (HTTPS_PROXY, HTTP_PROXY)"
                )
            error = RJMetricsUnexpectedAnswerError(self.redact(msg), status=status)
            # Whatever answered may have passed the request on: its fate is unknown.
            error.abandoned_at = answered_at
            raise error
        message, reasons, total = _error_detail(response, body)
        detail = f"{what} answered {status}{f' {message}' if message else ''}"
        if reasons:
            more = total - len(reasons)
            detail += f" ({'; '.join(reasons)}{f'; and {more:,} more reasons' if more > 0 else ''})"
        detail = self.redact(detail)
        if status in _CERTAIN_RETRYABLE_STATUSES:
            raise RJMetricsTransientError(detail, retry_after=_retry_after_seconds(response))
        if status >= 500:  # noqa: PLR2004
            # 502, 504 and the like: a gateway answered for the API, which may still apply it.
            raise RJMetricsTransientError(
                detail, retry_after=_retry_after_seconds(response), maybe_applied=True, abandoned_at=answered_at
            )
        if status == 401:  # noqa: PLR2004
            raise RJMetricsAuthError(detail, status=status, reasons=reasons)
        if status == 413:  # noqa: PLR2004
            raise RJMetricsRequestTooLargeError(detail, status=status, reasons=reasons)
        if status == 404:  # noqa: PLR2004
            detail += (
                f" for {method} {self._shown_url(url)}: `api_url` must be the Import API's base URL, "
                "ending in /v2 (e.g. https://connect.rjmetrics.com/v2)"
            )
        raise RJMetricsAPIError(detail, status=status, reasons=reasons)

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
                raise self._stopped(what, failure, abandoned_at)
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
                raise self._exhausted(what, failure, budget, abandoned_at, unreachable=never_connected)
            wait = min(wait, left)
            self._logger.warning("Retrying %s in %.2fs (try %d): %s", what, wait, tries + 1, failure)
            if on_retry is not None:
                on_retry(str(failure), wait)
            if self._cancelled.wait(wait):
                raise self._stopped(what, failure, abandoned_at)

    def _stopped(
        self, what: str, failure: RJMetricsTransientError | None, abandoned_at: float | None
    ) -> RJMetricsRetriesExhausted:
        if failure is None:
            msg = f"{what} not sent because the run is stopping."
        else:
            msg = f"{what} not retried because the run is stopping: {failure}"
        error = RJMetricsRetriesExhausted(self.redact(msg))
        error.abandoned_at = abandoned_at
        return error

    def _exhausted(
        self,
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
            error = RJMetricsUnreachableError(self.redact(msg))
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
            error = RJMetricsRetriesExhausted(self.redact(msg))
        error.abandoned_at = abandoned_at
        return error

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
            response, body, answered_at = self._try_once("GET", url)
            self._check_answer(response, body, answered_at, expected=200, what=what, url=url)

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
                response, answer, answered_at = self._try_once("POST", url, data=body, headers=headers)
                self._check_answer(response, answer, answered_at, expected=201, what=what, url=url)
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
        return f"client id {self.client_id} at {self.redact(self.base_url)}"


def _error_detail(response: requests.Response, body: bytes) -> tuple[str, list[str], int]:
    """The message of an error answer, its first ``SHOWN_REASONS`` reasons, and how many there are.

    The message and each reason are cut to ``SHOWN_CHARS``.
    """
    reason = shorten(" ".join((response.reason or "").split()))
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        # Not the API's JSON (a proxy's page, or an answer cut at MAX_ANSWER_BYTES): show its
        # start, on one line.
        excerpt = " ".join(text.split())
        return (f"{reason}: {shorten(excerpt)}" if excerpt else reason), [], 0
    if not isinstance(parsed, dict):
        return reason, [], 0
    message = shorten(str(parsed.get("message") or reason).strip())
    raw_reasons = parsed.get("reasons")
    if not isinstance(raw_reasons, list):
        return message, [], 0
    return message, [shorten(str(r)) for r in raw_reasons[:SHOWN_REASONS]], len(raw_reasons)


class CaptureClient:
    """Stands in for :class:`RJMetricsClient` in a dry run: writes each request to a file.

    Each line of the JSON-lines file is one request: its method, its URL with the key
    replaced by ``***``, the table, the number of data points, and the exact body.
    """

    def __init__(self, *, path: str, client_id: int, base_url: str = PRODUCTION_URL) -> None:
        """Create the capture file (emptied if it exists).

        Args:
            path: The JSON-lines file to write.
            client_id: The client id, for the URLs written.
            base_url: The base URL the requests would have gone to.
        """
        self.client_id = client_id
        self.base_url = base_url.rstrip("/")
        self._lock = threading.Lock()
        self._file = open(path, "wb")  # noqa: SIM115 (closed in close())

    @property
    def last_abandoned_at(self) -> float | None:
        """Always None: nothing is sent, so nothing is of unknown fate."""
        return None

    def authenticate(self) -> None:
        """Nothing to check in a dry run."""

    def push(
        self,
        table: str,
        body: bytes,
        on_retry: Callable[[str, float], None] | None = None,  # noqa: ARG002
    ) -> float | None:
        """Write one request line instead of sending it.

        Args:
            table: The table the request would go to.
            body: The exact request body.
            on_retry: Unused: nothing is retried in a dry run.

        Returns:
            None: nothing was sent, so no try is of unknown fate.
        """
        base = redact_url(self.base_url)
        url = f"{base}/client/{self.client_id}/table/{quote(table, safe='')}/data?apikey=***"
        points = len(json.loads(body))
        head = json.dumps({"method": "POST", "url": url, "table": table, "points": points})
        line = head[:-1].encode() + b', "body": ' + body + b"}\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
        return None

    def cancel_retries(self) -> None:
        """Nothing is retried in a dry run."""

    def close(self) -> None:
        """Close the capture file."""
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def describe(self) -> str:
        """Say where the bodies go.

        Returns:
            A short description.
        """
        return f"dry run for client id {self.client_id}"
