"""HTTP client for the RJMetrics Import API.

Knows nothing of Singer: it takes a client id, an API key, a base URL, timeouts and a
retry bound, sends bodies that are already encoded, and turns HTTP outcomes into the
exceptions of :mod:`target_rjmetrics.exceptions`.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import typing as t
from urllib.parse import quote

import backoff
import requests
from requests.adapters import HTTPAdapter

from target_rjmetrics import __version__
from target_rjmetrics.exceptions import (
    RJMetricsAPIError,
    RJMetricsAuthError,
    RJMetricsError,
    RJMetricsRequestTooLargeError,
    RJMetricsRetriesExhausted,
    RJMetricsTransientError,
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

_APIKEY_PARAM = re.compile(r"(apikey=)[^&\s'\"]*", re.IGNORECASE)
_REASONS_SHOWN = 5

def redact(text: str, secret: str | None) -> str:
    """Remove an API key from text that may carry a URL or an echo of the key.

    Args:
        text: Any text about to be logged or raised.
        secret: The API key.

    Returns:
        The text with the key and any ``apikey=`` query value replaced.
    """
    if secret:
        text = text.replace(secret, "***")
        quoted = quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, "***")
    return _APIKEY_PARAM.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Removes ``apikey=`` values from log records, e.g. urllib3's DEBUG request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message without the key.

        Args:
            record: A log record.

        Returns:
            Always True: the record is kept, redacted.
        """
        message = record.getMessage()
        if "apikey" in message.lower():
            record.msg = redact(message, None)
            record.args = None
        return True


def _redact_library_logs() -> None:
    """Make sure the HTTP libraries' own loggers can never print a URL with the key."""
    for name in ("urllib3.connectionpool", "urllib3", "requests"):
        library_logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in library_logger.filters):
            library_logger.addFilter(RedactingFilter())


def _retry_waits(
    initial: float,
    cap: float,
    rng: random.Random,
) -> Generator[float, BaseException | None, None]:
    """Exponential backoff with full jitter that honours ``Retry-After``.

    ``backoff`` sends each failure's exception into the generator, which lets the
    server's own ``Retry-After`` set a floor under the jittered wait.

    Args:
        initial: Bound of the first wait, in seconds.
        cap: Largest bound of any wait, in seconds.
        rng: Source of jitter.

    Yields:
        Seconds to wait before the next try.
    """
    exc = yield 0.0
    bound = initial
    while True:
        wait = rng.uniform(0, bound)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, float(retry_after))
        bound = min(cap, bound * 2)
        exc = yield wait


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


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
            api_key: The API key; it is sent only as the ``apikey`` query parameter.
            base_url: API base URL ending in ``/v2``.
            timeout: Seconds to wait for a connection and for each read.
            max_retry_seconds: Give up retrying a request after this many seconds.
            logger: Where retries are logged (WARNING, one line each).
        """
        self._logger = logger or logging.getLogger(__name__)
        self.client_id = client_id
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retry_seconds = max_retry_seconds
        self._rng = random.Random()  # noqa: S311 (jitter, not cryptography)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._cancelled = threading.Event()
        _redact_library_logs()

    # -- plumbing -----------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Remove this client's API key from ``text``.

        Args:
            text: Text about to be logged or raised.

        Returns:
            The redacted text.
        """
        return redact(text, self._api_key)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = f"target-rjmetrics/{__version__}"
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every pooled connection."""
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def cancel_retries(self) -> None:
        """Make requests that are between tries give up instead of trying again."""
        self._cancelled.set()

    def _url(self, *segments: str) -> str:
        path = "/".join(quote(segment, safe="") for segment in segments)
        return f"{self.base_url}/client/{self.client_id}/{path}"

    def _request(self, method: str, url: str, **kwargs: t.Any) -> requests.Response:
        """Send one request; transport failures become our exceptions, redacted."""
        try:
            return self._session().request(
                method,
                url,
                params={"apikey": self._api_key},
                timeout=self.timeout,
                **kwargs,
            )
        except requests.exceptions.SSLError as exc:
            # A certificate that does not verify will not verify on a retry either.
            msg = self.redact(
                f"{method} {url} failed TLS verification: {exc}. Check `api_url` (TLS verification "
                "is always on)."
            )
            raise RJMetricsError(msg) from None
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            kind = "timed out" if isinstance(exc, requests.Timeout) else "lost its connection"
            msg = self.redact(f"{method} {url} {kind}: {exc}")
            raise RJMetricsTransientError(msg) from None
        except requests.RequestException as exc:
            msg = self.redact(f"{method} {url} failed: {exc}")
            raise RJMetricsError(msg) from None

    def _raise_for_status(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:  # noqa: PLR2004
            return
        message, reasons = self._error_detail(response)
        detail = f"{what} answered {status} {message}"
        if reasons:
            shown = "; ".join(reasons[:_REASONS_SHOWN])
            more = len(reasons) - _REASONS_SHOWN
            detail += f" ({shown}{f'; and {more} more' if more > 0 else ''})"
        detail = self.redact(detail)
        if status == 429 or status >= 500 or status == 408:  # noqa: PLR2004
            raise RJMetricsTransientError(detail, retry_after=_retry_after_seconds(response))
        if status == 401:  # noqa: PLR2004
            raise RJMetricsAuthError(detail, status=status, reasons=reasons)
        if status == 413:  # noqa: PLR2004
            raise RJMetricsRequestTooLargeError(detail, status=status, reasons=reasons)
        raise RJMetricsAPIError(detail, status=status, reasons=reasons)

    @staticmethod
    def _error_detail(response: requests.Response) -> tuple[str, list[str]]:
        try:
            body = response.json()
        except ValueError:
            return (response.reason or "").strip(), []
        if not isinstance(body, dict):
            return (response.reason or "").strip(), []
        message = str(body.get("message") or response.reason or "").strip()
        raw_reasons = body.get("reasons")
        reasons = [str(r) for r in raw_reasons] if isinstance(raw_reasons, list) else []
        return message, reasons

    def _with_retries(
        self,
        what: str,
        attempt: Callable[[], None],
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        """Run ``attempt`` until it succeeds, retrying transient failures within the bound."""

        def on_backoff(details: t.Any) -> None:  # noqa: ANN401
            exc = details.get("exception")
            wait = float(details.get("wait") or 0.0)
            reason = str(exc) if exc is not None else "transient failure"
            self._logger.warning("Retrying %s in %.2fs (try %d): %s", what, wait, details["tries"], reason)
            if on_retry is not None:
                on_retry(reason, wait)

        retrying = backoff.on_exception(
            _retry_waits,
            RJMetricsTransientError,
            max_time=self.max_retry_seconds,
            jitter=None,
            giveup=lambda _exc: self._cancelled.is_set(),
            on_backoff=on_backoff,
            logger=None,
            initial=RETRY_INITIAL_SECONDS,
            cap=RETRY_MAX_WAIT_SECONDS,
            rng=self._rng,
        )(attempt)
        try:
            retrying()
        except RJMetricsTransientError as exc:
            if self._cancelled.is_set():
                msg = f"{what} not retried because the run is stopping: {exc}"
            else:
                msg = (
                    f"{what} still failing after retrying for up to {self.max_retry_seconds:g}s: {exc}. "
                    "Raise `max_retry_seconds` to wait longer, or check the API's status."
                )
            raise RJMetricsRetriesExhausted(self.redact(msg)) from None

    # -- API ----------------------------------------------------------------------

    def authenticate(self) -> None:
        """Check the credentials with ``GET /client/{cid}/authenticate``.

        Raises:
            RJMetricsAuthError: The API refused the client id and key.
        """
        url = self._url("authenticate")

        def attempt() -> None:
            response = self._request("GET", url)
            self._raise_for_status(response, f"authenticate for client id {self.client_id}")

        self._with_retries(f"authenticate at {self.base_url}", attempt)

    def push(
        self,
        table: str,
        body: bytes,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        """Upsert an encoded array of data points into ``table``, retrying transient failures.

        Args:
            table: A valid table name (``[A-Za-z0-9_]+``).
            body: The JSON array, already encoded.
            on_retry: Called with (reason, wait seconds) before each retry of this push.

        Raises:
            RJMetricsRequestTooLargeError: The API said 413; split the body and resend.
            RJMetricsAPIError: The API refused the data.
            RJMetricsRetriesExhausted: Transient failures outlasted the retry bound.
        """
        url = self._url("table", table, "data")
        headers = {"Content-Type": "application/json"}

        def attempt() -> None:
            response = self._request("POST", url, data=body, headers=headers)
            self._raise_for_status(response, f"upsert into table '{table}'")

        self._with_retries(f"upsert into table '{table}'", attempt, on_retry)

    def describe(self) -> str:
        """Say where this client sends data, without the key.

        Returns:
            A short description.
        """
        return f"client id {self.client_id} at {self.base_url}"



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

    def authenticate(self) -> None:
        """Nothing to check in a dry run."""

    def push(
        self,
        table: str,
        body: bytes,
        on_retry: Callable[[str, float], None] | None = None,  # noqa: ARG002
    ) -> None:
        """Write one request line instead of sending it.

        Args:
            table: The table the request would go to.
            body: The exact request body.
            on_retry: Unused: nothing is retried in a dry run.
        """
        import json  # noqa: PLC0415

        url = f"{self.base_url}/client/{self.client_id}/table/{quote(table, safe='')}/data?apikey=***"
        points = len(json.loads(body))
        head = json.dumps({"method": "POST", "url": url, "table": table, "points": points})
        line = head[:-1].encode() + b', "body": ' + body + b"}\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

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
