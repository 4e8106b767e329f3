"""What a try's outcome means: an answer other than the one expected, or a try without an answer.

Each failure becomes an exception of :mod:`target_rjmetrics.exceptions`, classified by its
fate: certain (nothing was applied: a refused connection, 429, 500, 503, a 4xx) or unknown (the
API may apply it later: a timeout after the request went out, a connection lost before a
complete answer, a gateway's 502/504, an answer that was not the API's). This is where foreign
text (an HTTP library's error, a proxy's page) enters our messages: it is scrubbed, then cut to
a few hundred characters.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import typing as t
from urllib.parse import urljoin, urlsplit

import urllib3

from target_rjmetrics.exceptions import (
    RJMetricsAPIError,
    RJMetricsAuthError,
    RJMetricsConnectError,
    RJMetricsError,
    RJMetricsRequestTooLargeError,
    RJMetricsTransientError,
    RJMetricsUnexpectedAnswerError,
)
from target_rjmetrics.redaction import SCRUBBER, shorten

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from target_rjmetrics.transport import Answer, TryFailed

#: ...and at most this many reasons of an error answer are shown.
SHOWN_REASONS = 5
#: Failed answers after which nothing was applied for sure: the API itself said so.
_CERTAIN_RETRYABLE_STATUSES = frozenset({408, 429, 500, 503})


class Shown(t.Protocol):
    """How a client names what it sends: its timeout, host, proxy, and URLs without the key."""

    timeout: float
    host_port: str
    proxy_host_port: str | None

    def shown_url(self, url: str) -> str:
        """A URL of the client as shown in messages, with the key as ``***``."""
        ...


def transport_failure(failed: TryFailed, method: str, url: str, client: Shown) -> Exception:
    """Turn a try without an answer into our exception, classified by its fate.

    Returns:
        A transient error (``unknown_fate`` when the request may have reached the API), a
        connect error (nothing was sent), or a fatal error (a certificate that does not verify,
        a proxy that refuses the tunnel by policy).
    """
    exc = failed.cause
    proxy = client.proxy_host_port
    via_proxy = f" through the proxy {proxy}" if proxy else ""
    if failed.expired and failed.reached:
        msg = (
            f"{method} {client.shown_url(url)} timed out: no complete answer within {client.timeout:g}s "
            "(`request_timeout` bounds each try as a whole)"
        )
        return RJMetricsTransientError(msg, unknown_fate=True)
    if not failed.reached:
        if is_certificate_failure(exc):
            # A certificate that does not verify will not verify on a retry either.
            return RJMetricsError(
                f"{method} {client.shown_url(url)} failed TLS verification: {_foreign(exc, 500)}. Check "
                "`api_url` (TLS verification is always on)."
            )
        reason = f"no answer within {client.timeout:g}s" if failed.expired else connect_failure(exc, client.timeout)
        msg = f"cannot connect to {client.host_port}{via_proxy} ({reason})"
        if not failed.expired and tunnel_refused_for_good(exc):
            # The proxy's policy, or its credentials: a retry meets the same answer.
            return RJMetricsError(
                f"{msg}. Check HTTPS_PROXY/HTTP_PROXY (and the user and password in it), or add the "
                "API's host to NO_PROXY."
            )
        return RJMetricsConnectError(msg)
    # The request went out (or may have, in part): the API may have it.
    if any(isinstance(c, (urllib3.exceptions.ReadTimeoutError, TimeoutError)) for c in causes(exc)):
        reason = f"timed out: no answer within {client.timeout:g}s"
    else:
        cause = next((c for c in causes(exc) if isinstance(c, OSError) and c.strerror), None)
        detail = f" ({cause.strerror.lower()})" if cause is not None and cause.strerror else ""
        reason = f"lost its connection before a complete answer{detail}"
    return RJMetricsTransientError(f"{method} {client.shown_url(url)} {reason}", unknown_fate=True)


def check_answer(  # noqa: PLR0913 (the answer and what it answered)
    answer: Answer, *, method: str, expected: int, what: str, url: str, client: Shown
) -> None:
    """Raise unless the answer is ``expected``; classify the failure by its fate.

    Raises:
        RJMetricsUnexpectedAnswerError: A redirect, another 1xx/2xx/3xx (fate unknown).
        RJMetricsTransientError: 408, 429, 5xx (``unknown_fate`` for a gateway's 5xx).
        RJMetricsAuthError: 401.
        RJMetricsRequestTooLargeError: 413.
        RJMetricsAPIError: Any other refusal (a 404 says the base URL must end in /v2).
    """
    status = answer.status
    if status == expected:
        return
    if status < 200 or 200 <= status < 400 or status >= 600:  # noqa: PLR2004
        if 300 <= status < 400:  # noqa: PLR2004
            msg = (
                f"{what} was answered {status}{location_shown(answer, url)} instead of {expected}: a "
                "redirect, never followed (the key and the data go only to `api_url`'s host). Set "
                "`api_url` to the final URL of the Import API (it ends in /v2)"
            )
        else:
            msg = (
                f"{what} was answered {status} instead of {expected}: something between the target and "
                f"the API (a proxy, a captive portal, a load balancer) answered for it, and only a {expected} "
                "counts. Check `api_url` and proxies (HTTPS_PROXY, HTTP_PROXY)"
            )
        error = RJMetricsUnexpectedAnswerError(SCRUBBER.scrub(msg), status=status)
        # Whatever answered may have passed the request on: its fate is unknown.
        error.unknown_fate_at = answer.answered_at
        raise error
    message, reasons, total = error_detail(answer)
    detail = f"{what} answered {status}{f' {message}' if message else ''}"
    if reasons:
        more = total - len(reasons)
        detail += f" ({'; '.join(reasons)}{f'; and {more:,} more reasons' if more > 0 else ''})"
    if status in _CERTAIN_RETRYABLE_STATUSES:
        raise RJMetricsTransientError(detail, retry_after=retry_after_seconds(answer))
    if status >= 500:  # noqa: PLR2004
        # 502, 504 and the like: a gateway answered for the API, which may still apply it.
        raise RJMetricsTransientError(
            detail, retry_after=retry_after_seconds(answer), unknown_fate=True, unknown_fate_at=answer.answered_at
        )
    if status == 401:  # noqa: PLR2004
        raise RJMetricsAuthError(detail, status=status, reasons=reasons)
    if status == 413:  # noqa: PLR2004
        raise RJMetricsRequestTooLargeError(detail, status=status, reasons=reasons)
    if status == 404:  # noqa: PLR2004
        detail += (
            f" for {method} {client.shown_url(url)}: `api_url` must be the Import API's base URL, "
            "ending in /v2 (e.g. https://connect.rjmetrics.com/v2)"
        )
    raise RJMetricsAPIError(detail, status=status, reasons=reasons)


def _shown(text: str, limit: int | None = None) -> str:
    """Foreign text as shown: scrubbed first (a cut could split a secret), then cut."""
    scrubbed = SCRUBBER.scrub(text)
    return shorten(scrubbed) if limit is None else shorten(scrubbed, limit)


def _foreign(exc: BaseException, limit: int) -> str:
    return _shown(str(exc), limit)


def error_detail(answer: Answer) -> tuple[str, list[str], int]:
    """The message of an error answer, its first ``SHOWN_REASONS`` reasons, and how many there are.

    Each is scrubbed (an answer may echo the URL, key and all), then cut to ``SHOWN_CHARS``.
    """
    reason = _shown(" ".join(answer.reason.split()))
    text = answer.body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        # Not the API's JSON (a proxy's page, or an answer cut at MAX_ANSWER_BYTES): its start,
        # on one line.
        excerpt = " ".join(text.split())
        return (f"{reason}: {_shown(excerpt)}" if excerpt else reason), [], 0
    if not isinstance(parsed, dict):
        return reason, [], 0
    message = _shown(str(parsed.get("message") or reason).strip())
    raw_reasons = parsed.get("reasons")
    if not isinstance(raw_reasons, list):
        return message, [], 0
    return message, [_shown(str(r)) for r in raw_reasons[:SHOWN_REASONS]], len(raw_reasons)


def retry_after_seconds(answer: Answer) -> float | None:
    """The seconds a ``Retry-After`` header asks for, or None when absent or an HTTP-date."""
    value = answer.header("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


def causes(exc: BaseException) -> Generator[BaseException, None, None]:
    """The exception and everything it wraps (requests -> urllib3 -> OS), each once."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inners = (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args)
        pending.extend(inner for inner in inners if isinstance(inner, BaseException))


#: Why no connection was made, by what the HTTP library raised (first match wins).
_CONNECT_FAILURES: tuple[tuple[Callable[[BaseException], bool], str], ...] = (
    (lambda c: isinstance(c, socket.gaierror) or type(c).__name__ == "NameResolutionError", "name not resolved"),
    (lambda c: isinstance(c, ConnectionRefusedError), "connection refused"),
    (lambda c: isinstance(c, ConnectionResetError), "connection reset"),
    (lambda c: isinstance(c, http.client.RemoteDisconnected), "the connection was closed without an answer"),
    (
        lambda c: (
            isinstance(c, (urllib3.exceptions.ConnectTimeoutError, TimeoutError))
            and not isinstance(c, urllib3.exceptions.NewConnectionError)
        ),
        "no answer within {timeout:g}s",
    ),
)


def connect_failure(exc: BaseException, timeout: float) -> str:
    """Say in a few words why no connection was made (foreign text scrubbed: it may quote the URL)."""
    chain = list(causes(exc))
    refusal = tunnel_refusal(exc)
    if refusal is not None and not any(_CONNECT_FAILURES[0][0](c) or _CONNECT_FAILURES[1][0](c) for c in chain):
        return f"the proxy refused the tunnel: {refusal}"
    for matches, words in _CONNECT_FAILURES:
        if any(matches(c) for c in chain):
            return words.format(timeout=timeout)
    cause = next((c for c in chain if isinstance(c, OSError) and c.strerror), None)
    if cause is not None and cause.strerror:
        return cause.strerror.lower()
    return _foreign(exc, 200)


def tunnel_refusal(exc: BaseException) -> str | None:
    """The status a proxy answered CONNECT with (http.client's words), e.g. ``403 Forbidden``."""
    for cause in causes(exc):
        text = str(cause)
        if isinstance(cause, OSError) and text.startswith("Tunnel connection failed:"):
            return _shown(text.partition(":")[2].strip(), 100)
    return None


def tunnel_refused_for_good(exc: BaseException) -> bool:
    """Whether a proxy answered CONNECT with a 4xx (403 by policy, 407 for credentials)."""
    status = (tunnel_refusal(exc) or "").split()[:1]
    return bool(status) and status[0].isdigit() and 400 <= int(status[0]) < 500  # noqa: PLR2004


def is_certificate_failure(exc: BaseException) -> bool:
    """Whether a connection failed because the server's certificate was not trusted."""
    return any(
        isinstance(c, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(c) for c in causes(exc)
    )


def host_port(url: str) -> str:
    """``HOST:PORT`` of a URL (the scheme's default port when none is given), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def location_shown(answer: Answer, url: str) -> str:
    """Where a redirect points, without its userinfo, query or fragment (they may hold secrets)."""
    location = answer.header("Location")
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
