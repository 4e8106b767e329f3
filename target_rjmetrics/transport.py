"""The client's seam to the world: a transport sends one try of one request and says how it ended.

A :class:`Transport` takes a method, a URL (query included), a body and headers, and either
returns the :class:`Answer` or raises :class:`TryFailed` saying how far the try got. Its
contract, whatever is behind it:

- it never follows a redirect: a 3xx is an answer like any other;
- a try is bounded as a whole by ``timeout``, proxy tunnel, TLS handshake, request and answer
  included (name resolution is left to the system's resolver);
- at most :data:`MAX_ANSWER_BYTES` of an answer is read.

:class:`NetworkTransport` is the real one: the connection pool of a ``requests`` transport
adapter (one per sending thread), driven through urllib3 directly, with the environment
(proxies, CA bundle, ``.netrc``) read once as a ``requests.Session`` would read it, and a
:class:`Watchdog` that shuts a try's socket down at its deadline. :class:`DryRunTransport` sends
nothing: it writes each upsert to a file and answers as the API would. Tests hand the client a
transport of their own.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import json
import os
import socket
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers, get_auth_from_url, get_environ_proxies, get_netrc_auth
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.proxy import connection_requires_http_tunnel

from target_rjmetrics import __version__
from target_rjmetrics.redaction import redact_url

if t.TYPE_CHECKING:
    from collections.abc import Mapping

#: At most this much of an answer's body is read; the connection is dropped if there is more.
MAX_ANSWER_BYTES = 1024 * 1024


@dataclass
class Answer:
    """What answered a try: status, reason, headers, the body (at most ``MAX_ANSWER_BYTES``), when."""

    status: int
    reason: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    answered_at: float = 0.0

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


class TryFailed(Exception):  # noqa: N818 (a fact about a try, not an error of ours)
    """A try that got no answer.

    Attributes:
        cause: What the HTTP library raised.
        reached: Whether the request may have reached the host (the connection was up and the
            request was going out): from then on the API may apply it, now or later.
        expired: Whether the try ran out of its time (``timeout``).
    """

    def __init__(self, cause: BaseException, *, reached: bool, expired: bool) -> None:
        super().__init__(repr(cause))
        self.cause = cause
        self.reached = reached
        self.expired = expired


class Transport(t.Protocol):
    """Sends one try of one request (see the module's docstring for the contract)."""

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float) -> Answer:
        """Send a try; return its answer or raise :class:`TryFailed`."""
        ...

    def close(self) -> None:
        """Let go of connections and files."""
        ...


# -- tries bounded as a whole -----------------------------------------------------------------


class Try:
    """One try of one request: its deadline, the socket it uses, and how far it got.

    The connection classes below report to the try running on their thread (found through a
    context variable) as soon as a socket exists, before any proxy tunnel or TLS handshake; the
    watchdog calls :meth:`expire` at the deadline, which shuts that socket down.
    """

    __slots__ = ("deadline", "expired", "lock", "overdue", "reached", "sock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None  # a handle on the connection's TCP socket
        self.reached = False  # the connection was up and the request going out on it
        self.overdue = False  # the deadline passed
        self.expired = False  # ...and the watchdog cut a socket this try was using

    def attach(self, sock: socket.socket) -> None:
        """Note a handle on the connection this try uses (a new one, or a pooled connection's)."""
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
        self.expired = True  # set before the shutdown: the thread it wakes reads it at once
        with contextlib.suppress(OSError):  # already closed: nothing left to wait for
            sock.shutdown(socket.SHUT_RDWR)

    def outcome(self) -> tuple[bool, bool]:
        """``(reached, expired)``, once any cut is done."""
        with self.lock:
            return self.reached, self.expired


CURRENT_TRY: contextvars.ContextVar[Try | None] = contextvars.ContextVar("rjmetrics_try", default=None)


class _WatchedConnectionMixin:
    """Gives the try running on this thread a handle on its connection's socket, to cut it by.

    The handle is a second descriptor of the connection's TCP socket (``os.dup``), made as soon
    as the socket exists: shutting it down ends every read and write on the connection, before
    or after a proxy tunnel or a TLS handshake wraps (and detaches) the socket object itself,
    and, unlike a descriptor number kept aside, it can never name a later, unrelated socket.
    It is closed with the connection.
    """

    sock: t.Any
    _handle: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        self._close_handle()
        self._handle = socket.socket(fileno=os.dup(sock.fileno()))
        current = CURRENT_TRY.get()
        if current is not None:
            current.attach(self._handle)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        current = CURRENT_TRY.get()
        if current is not None:
            current.connected()

    def putrequest(self, *args: t.Any, **kwargs: t.Any) -> None:  # noqa: ANN401 (http.client's signature)
        current = CURRENT_TRY.get()
        if current is not None and self.sock is not None and self._handle is not None:
            # A pooled connection being reused: already connected, the request goes out on it.
            current.attach(self._handle)
            current.connected()
        super().putrequest(*args, **kwargs)  # type: ignore[misc]

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        self._close_handle()

    def _close_handle(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()


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
    """A ``requests`` adapter whose connections (direct, or through an HTTP proxy) report to the watchdog."""

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
    """Cuts the connection of every try that outlives its deadline (one thread per transport)."""

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


# -- the network ------------------------------------------------------------------------------


class Environment:
    """What ``requests.Session`` would read from the environment for every request, read once.

    Proxies (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``...), a CA bundle
    (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) and ``.netrc`` credentials are honoured as a
    session honours them, but looked up when the transport is made. A user and password in the
    base URL are sent as basic authentication, as ``requests`` does.
    """

    def __init__(self, base_url: str) -> None:
        self.proxies = get_environ_proxies(base_url)
        self.verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        headers = default_headers()
        headers["User-Agent"] = f"target-rjmetrics/{__version__}"
        headers["Accept-Encoding"] = "identity"  # answers are read as they come: nothing to decode
        user, password = get_auth_from_url(base_url)
        auth = (user, password) if user or password else get_netrc_auth(base_url)
        if auth:
            template = requests.PreparedRequest()
            template.headers = CaseInsensitiveDict()
            HTTPBasicAuth(*auth)(template)
            headers["Authorization"] = template.headers["Authorization"]
        self.headers = dict(headers)
        self.proxy = requests.utils.select_proxy(base_url, self.proxies)


def without_userinfo(url: str) -> str:
    """The URL without ``user:password@``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


class _Connection:
    """One sending thread's way to the host: a pool of one connection, and how to address it."""

    def __init__(self, pool: HTTPConnectionPool, *, absolute: bool, tunnel: bool, headers: dict[str, str]) -> None:
        self.pool = pool
        self.absolute = absolute  # through an HTTP proxy without a tunnel: absolute URLs
        self.tunnel = tunnel  # through an HTTP proxy's CONNECT tunnel (HTTPS)
        self.headers = headers  # the environment's, and a plain HTTP proxy's own


#: urllib3's private names the network transport relies on (tests/unit/test_sdk_fence.py checks
#: them): the pool's ``_get_conn`` (a pooled connection, reset if the server dropped it, or a new
#: one), ``_put_conn`` and ``_prepare_proxy`` (a new connection's CONNECT tunnel), as its
#: ``urlopen`` uses them.
URLLIB3_PRIVATE_NAMES = ("_get_conn", "_put_conn", "_prepare_proxy")


class NetworkTransport:
    """The real transport: the connection pool of a ``requests`` adapter, one per sending thread.

    ``requests`` chooses and holds the connection (proxies, TLS settings, the pool); a try takes
    the pool's connection, as urllib3's ``urlopen`` would (a dropped one is reset, a new one
    tunnelled through a proxy), and speaks HTTP/1.1 on it with ``http.client`` directly. That
    leaves out the per-request work of a ``Session``, of ``urlopen`` and of the two response
    objects built on top of ``http.client``'s: about two thirds of a request's CPU.
    """

    def __init__(self, base_url: str) -> None:
        self._base_url = without_userinfo(base_url.rstrip("/"))
        self.environment = Environment(base_url)
        self._local = threading.local()
        self._adapters: list[WatchedAdapter] = []
        self._lock = threading.Lock()
        self._watchdog = Watchdog()

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            env = self.environment
            adapter = WatchedAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            template = requests.PreparedRequest()
            template.prepare(method="GET", url=self._base_url)
            pool = adapter.get_connection_with_tls_context(template, env.verify, proxies=env.proxies)
            adapter.cert_verify(pool, self._base_url, env.verify, None)  # type: ignore[no-untyped-call]
            absolute = adapter.request_url(template, env.proxies) != template.path_url
            # Always an HTTP(S) pool: the base URL's scheme is http or https (settings check it).
            http_pool = t.cast("HTTPConnectionPool", pool)
            tunnel = http_pool.proxy is not None and connection_requires_http_tunnel(
                http_pool.proxy, http_pool.proxy_config, http_pool.scheme
            )
            headers = {k: v for k, v in env.headers.items() if k not in _IMPLIED_HEADERS}
            if absolute:
                headers.update(http_pool.proxy_headers)
            connection = _Connection(http_pool, absolute=absolute, tunnel=tunnel, headers=headers)
            self._local.connection = connection
            with self._lock:
                self._adapters.append(adapter)
        return connection

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float) -> Answer:
        """Send one try, bounded as a whole by ``timeout`` (see the module's docstring)."""
        attempt = Try(time.monotonic() + timeout)
        token = CURRENT_TRY.set(attempt)
        self._watchdog.arm(attempt)
        try:
            connection = self._connection()
            pool = connection.pool
            url = without_userinfo(url)
            target = url if connection.absolute else url[url.index("/", url.index("//") + 2) :]
            # Our pools make only urllib3's HTTP(S) connections, which are http.client's too.
            conn = t.cast("HTTPConnection", pool._get_conn())  # noqa: SLF001 (see URLLIB3_PRIVATE_NAMES)
            reusable = False
            try:
                if conn.sock is None:
                    conn.timeout = timeout  # connect, and each read after it
                    if connection.tunnel:
                        pool._prepare_proxy(conn)  # noqa: SLF001
                http.client.HTTPConnection.request(conn, method, target, body, {**connection.headers, **headers})
                response = http.client.HTTPConnection.getresponse(conn)
                answer_body = response.read(MAX_ANSWER_BYTES + 1)
                reusable = len(answer_body) <= MAX_ANSWER_BYTES and not response.will_close
                if attempt.outcome()[1]:  # cut at its deadline: what came is not the whole answer
                    reusable = False
                    raise TimeoutError("cut at the try's deadline")
            finally:
                if not reusable:  # cut short, closed by the server, or failed: never reused
                    conn.close()
                pool._put_conn(conn)  # noqa: SLF001
            return Answer(
                status=response.status,
                reason=response.reason or "",
                headers=dict(response.getheaders()),
                body=answer_body[:MAX_ANSWER_BYTES],
                answered_at=time.monotonic(),
            )
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
            reached, expired = attempt.outcome()
            raise TryFailed(exc, reached=reached, expired=expired) from None
        finally:
            self._watchdog.disarm(attempt)
            CURRENT_TRY.reset(token)

    def close(self) -> None:
        """Close every pooled connection and stop the watchdog."""
        with self._lock:
            for adapter in self._adapters:
                adapter.close()
            self._adapters.clear()
        self._watchdog.close()


#: Headers HTTP/1.1 implies, left out of every request: keep-alive is its default, and an answer
#: of any type is read.
_IMPLIED_HEADERS = frozenset({"Connection", "Accept"})


_JSON = {"Content-Type": "application/json"}


class DryRunTransport:
    """A transport that sends nothing: each upsert becomes a line of a JSON-lines file.

    Each line holds the request's method, its URL with the key replaced by ``***`` (and any
    password of the URL removed), the table, the number of data points, and the exact body.
    Upserts are answered 201 and credential checks 200, as the API answers success.
    """

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._file = open(path, "wb")  # noqa: SIM115, PTH123 (closed in close())

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float) -> Answer:
        """Write an upsert to the file instead of sending it; answer as the API would."""
        del headers, timeout
        if method == "POST":
            data = body or b""
            segments = urlsplit(url).path.split("/")
            table = unquote(segments[-2]) if len(segments) > 2 and segments[-3] == "table" else ""  # noqa: PLR2004
            head = json.dumps(
                {"method": "POST", "url": redact_url(url), "table": table, "points": len(json.loads(data))}
            )
            with self._lock:
                self._file.write(head[:-1].encode() + b', "body": ' + data + b"}\n")
                self._file.flush()
            return Answer(201, "Created", _JSON, b'{"code": 201, "message": "created"}', time.monotonic())
        return Answer(200, "OK", _JSON, b'{"code": 200, "message": "authenticated"}', time.monotonic())

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if not self._file.closed:
                self._file.close()
