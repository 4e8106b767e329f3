"""The HTTP transport of the client: adapters that never follow a redirect, tries bounded as a whole, dry runs.

The seam between the client and the network is a ``requests`` transport adapter (the
``send(request, stream, timeout, verify, cert, proxies)`` of ``requests.adapters.BaseAdapter``),
made by :func:`new_adapter`. Its contract, whatever the transport behind it:

- it never follows a redirect (a 3xx is an answer like any other);
- with a :class:`Try` set as the current try (``CURRENT_TRY``), the connection it uses
  reports to it, so that the :class:`Watchdog` can cut the try at its deadline, which ends
  even an answer trickling in a byte at a time;
- with a dry-run file, nothing is sent: :class:`DryRunAdapter` writes each upsert to the
  file and answers as the API would on success, so a dry run takes the client's own path.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import socket
import threading
import time
import typing as t
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from target_rjmetrics.redaction import redact_url

if t.TYPE_CHECKING:
    from collections.abc import Mapping

#: At most this much of an answer's body is read; the connection is dropped if there is more.
MAX_ANSWER_BYTES = 1024 * 1024


class Try:
    """One try of one request: its deadline, the socket it uses, and how far it got.

    The connection classes below report to the try running on their thread (found through
    a context variable) as soon as a socket exists, before any proxy tunnel or TLS handshake;
    the watchdog calls :meth:`expire` at the deadline, which shuts that socket down.
    """

    __slots__ = ("deadline", "expired", "lock", "overdue", "reached", "sock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None  # the OS socket under any TLS or tunnel
        # True once a connection to the host is up and the request is about to go out on
        # it: from then on, a failure leaves the request's fate unknown.
        self.reached = False
        self.overdue = False  # the deadline passed
        self.expired = False  # ...and the watchdog cut a socket this try was using

    def attach(self, sock: t.Any) -> None:  # noqa: ANN401 (a socket, an SSL socket, urllib3's TLS-in-TLS)
        """Note the socket this try uses (a new one, or a pooled connection's).

        Args:
            sock: The socket, or anything wrapping one.
        """
        # A TLS socket (or urllib3's TLS-in-TLS transport) wraps the OS socket: keep the OS
        # socket itself, so a read blocked in the TLS layer sees the end of the stream.
        while sock is not None and not isinstance(sock, socket.socket):
            sock = getattr(sock, "socket", None)
        with self.lock:
            self.sock = sock
            if self.overdue:  # made just after the deadline: nothing was sent yet
                self._cut()

    def connected(self) -> None:
        """The connection is up (proxy tunnel and TLS included): the request goes out now."""
        with self.lock:
            if not self.overdue:
                self.reached = True

    def expire(self) -> None:
        """The deadline passed: shut the socket down so that no read or write goes on."""
        with self.lock:
            self.overdue = True
            self._cut()

    def _cut(self) -> None:
        sock = self.sock
        if sock is None:
            return
        # Set before the shutdown: the thread it wakes may read it at once (under the lock).
        self.expired = True
        with contextlib.suppress(OSError):  # already closed: nothing left to wait for
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def outcome(self) -> tuple[bool, bool]:
        """Whether the try reached the host, and whether the watchdog cut it (once any cut is done).

        Returns:
            ``(reached, expired)``.
        """
        with self.lock:
            return self.reached, self.expired


CURRENT_TRY: contextvars.ContextVar[Try | None] = contextvars.ContextVar("rjmetrics_try", default=None)


class _WatchedConnectionMixin:
    """Reports its socket to the try running on this thread: when made, connected, or reused."""

    sock: t.Any

    def _new_conn(self) -> socket.socket:
        # The socket exists before any proxy tunnel or TLS handshake: from here on the
        # watchdog can cut the try, however slowly a proxy answers CONNECT.
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        current = CURRENT_TRY.get()
        if current is not None:
            current.attach(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        current = CURRENT_TRY.get()
        if current is not None:
            current.connected()

    def putrequest(self, *args: t.Any, **kwargs: t.Any) -> None:  # noqa: ANN401 (http.client's signature)
        current = CURRENT_TRY.get()
        if current is not None and self.sock is not None:
            # A pooled connection being reused: already connected, the request goes out on it.
            current.attach(self.sock)
            current.connected()
        super().putrequest(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}


class WatchedAdapter(HTTPAdapter):
    """An adapter whose connections (direct, or through an HTTP proxy) report to the watchdog."""

    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:  # noqa: ANN401 (requests' signature)
        """Make the pools' connections watched ones."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: t.Any) -> t.Any:  # noqa: ANN401
        """Make an HTTP proxy's connections watched ones too."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # SOCKS proxies bring their own connection classes: leave those (per-read timeouts only).
        if manager.pool_classes_by_scheme.get("http") is HTTPConnectionPool:
            manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager


class Watchdog:
    """Cuts the connection of every try that outlives its deadline (one thread per client)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: set[Try] = set()
        self._wake_at: float | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def arm(self, attempt: Try) -> None:
        """Watch a try until it is disarmed; cut its connection if its deadline passes first."""
        with self._cond:
            self._armed.add(attempt)
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="rjmetrics-watchdog", daemon=True)
                self._thread.start()
            if self._wake_at is None or attempt.deadline < self._wake_at:
                self._cond.notify()

    def disarm(self, attempt: Try) -> None:
        """Stop watching a try (it ended)."""
        with self._cond:
            self._armed.discard(attempt)

    def close(self) -> None:
        """Stop the watchdog's thread."""
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


def read_answer(response: requests.Response) -> bytes:
    """Read at most ``MAX_ANSWER_BYTES`` of the body (a longer one is cut, its connection dropped)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)[:MAX_ANSWER_BYTES]


class DryRunAdapter(BaseAdapter):
    """A transport that sends nothing: each upsert becomes a line of a JSON-lines file.

    Each line holds the request's method, its URL with the key replaced by ``***`` (and any
    password of the URL removed), the table, the number of data points, and the exact body.
    Upserts are answered 201 and credential checks 200, as the API answers success.
    """

    def __init__(self, path: str) -> None:
        """Create the file (emptied if it exists).

        Args:
            path: The JSON-lines file to write.
        """
        super().__init__()
        self._lock = threading.Lock()
        self._file = open(path, "wb")  # noqa: SIM115, PTH123 (closed in close())

    def send(  # noqa: PLR0913, PLR0917 (requests' adapter signature)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,  # noqa: ARG002, FBT001, FBT002
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,  # noqa: ARG002
        verify: bool | str = True,  # noqa: ARG002, FBT001, FBT002
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,  # noqa: ARG002
        proxies: Mapping[str, str] | None = None,  # noqa: ARG002
    ) -> requests.Response:
        """Write an upsert to the file instead of sending it; answer as the API would.

        Returns:
            A 201 answer to an upsert, a 200 answer to anything else.
        """
        url = str(request.url)
        if request.method == "POST":
            body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
            segments = urlsplit(url).path.split("/")
            table = unquote(segments[-2]) if len(segments) > 2 and segments[-3] == "table" else ""  # noqa: PLR2004
            head = json.dumps(
                {"method": "POST", "url": redact_url(url), "table": table, "points": len(json.loads(body))}
            )
            with self._lock:
                self._file.write(head[:-1].encode() + b', "body": ' + body + b"}\n")
                self._file.flush()
            return _answer(request, 201, b'{"code": 201, "message": "created"}')
        return _answer(request, 200, b'{"code": 200, "message": "authenticated"}')

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if not self._file.closed:
                self._file.close()


def _answer(request: requests.PreparedRequest, status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = "Created" if status == 201 else "OK"  # noqa: PLR2004
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json", "Content-Length": str(len(body))})
    response.raw = io.BytesIO(body)
    response.request = request
    response.url = str(request.url)
    return response


def new_adapter(dry_run: DryRunAdapter | None = None) -> BaseAdapter:
    """A transport for one sending thread: one pooled connection whose tries the watchdog can cut.

    The client sends prepared requests through it directly (``adapter.send``), never through
    a ``requests.Session``: a transport adapter never follows a redirect (following them is the
    session's job), and the session's per-request work (reading proxies, CA bundles and
    ``.netrc`` from the environment, merging headers, encoding parameters) is done once by the
    client instead.

    Args:
        dry_run: Send nothing, through this adapter, instead.

    Returns:
        The adapter.
    """
    return dry_run or WatchedAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
