"""What the request handlers of one local server share, behind the interface they use.

:class:`ServerState` is the request handler's whole view of the server (``server.py`` never
reaches into :class:`~target_rjmetrics.local_api.server.LocalImportAPI`): the credentials, the
fault injector, the storage, the request log and the bookkeeping around them. Each API request
goes through it as::

    entry, decision = state.arrive(method, path, routed)   # seq, in-flight count, fault draws
    ... state.injector / state.key_is_valid / state.store / state.schedule_ghost ...
    state.record(entry.finish(status, fault, time.time()))  # once the answer is decided
    state.depart()                                           # always, even if no answer was sent

The handler also registers its connection (so ``stop()`` can close it), asks whether a request's
``Host`` and ``Origin`` are accepted, reads tables for ``/_local`` and waits on ``stopping``.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from target_rjmetrics.local_api.faults import Decision, FaultInjector, Faults, fault_of_field
from target_rjmetrics.local_api.requestlog import PendingEntry, RequestLog, RequestLogEntry

if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping, Sequence

    from target_rjmetrics.local_api.points import DataPoint
    from target_rjmetrics.local_api.storage import Storage

#: Host names always accepted in the ``Host`` header (besides every loopback IP literal).
LOOPBACK_NAMES = ("localhost",)
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 (names of the wildcard addresses, not a bind)


def _host_name(header: str) -> str:
    """Return the host of a ``Host`` header value, lower-cased, without port or brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name
    return value


def _ip_literal(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class ServerState:
    """The state every request handler of one server shares (thread-safe).

    Args:
        credentials: Client id to API key.
        faults: The initial fault settings.
        sandbox: Validate and answer like production, store nothing.
        log_point_keys: Put each point's key values in request-log entries.
        log: The request log.
        host: The interface the server listens on (accepted in ``Host`` besides loopback).
        allowed_hosts: More accepted host names, lower-cased.
        access_log: Stream receiving one line per API request (never the query string).

    Attributes:
        injector: The fault injector (its methods are thread-safe).
        log: The request log.
        storage: The open database; ``None`` in sandbox mode and when not serving.
        stopping: Set by ``stop()``: wakes every wait of a handler or ghost.
    """

    def __init__(  # noqa: PLR0913 (the server's settings, keyword-only)
        self,
        credentials: Mapping[int, str],
        faults: Faults,
        *,
        sandbox: bool,
        log_point_keys: bool,
        log: RequestLog,
        host: str,
        allowed_hosts: Sequence[str],
        access_log: TextIO | None,
    ) -> None:
        self.sandbox = sandbox
        self.log_point_keys = log_point_keys
        self.injector = FaultInjector(faults)
        self.log = log
        self.storage: Storage | None = None
        self.stopping = threading.Event()
        self.host = host
        self.allowed_hosts = tuple(allowed_hosts)
        self.access_log = access_log
        self._credentials = dict(credentials)
        self._arrival_lock = threading.Lock()
        self._seq = 0
        self._in_flight = 0
        self._conn_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        # Held while a ghost commits, so the database is never closed under it.
        self.ghost_lock = threading.Lock()
        self._ghost_threads: list[threading.Thread] = []

    # -- connections ---------------------------------------------------------------------

    def register_connection(self, conn: socket.socket) -> None:
        """Note an open connection and the thread serving it."""
        with self._conn_lock:
            self._connections[conn] = threading.current_thread()

    def unregister_connection(self, conn: socket.socket) -> None:
        """Forget a closed connection."""
        with self._conn_lock:
            self._connections.pop(conn, None)

    def open_connections(self) -> dict[socket.socket, threading.Thread]:
        """The connections open now, with the thread serving each."""
        with self._conn_lock:
            return dict(self._connections)

    # -- one request ---------------------------------------------------------------------

    def arrive(self, method: str, path: str, *, routed: bool) -> tuple[PendingEntry, Decision | None]:
        """Number a request, count it in flight and draw its faults (only a routed API request)."""
        with self._arrival_lock:
            self._seq += 1
            self._in_flight += 1
            entry = PendingEntry(
                seq=self._seq,
                arrived=time.time(),
                method=method,
                path=path,
                in_flight=self._in_flight,
                sandbox=self.sandbox,
            )
            # Drawn under the arrival lock so the seeded draws follow arrival order.
            decision = self.injector.draw(self._in_flight) if routed else None
        return entry, decision

    def depart(self) -> None:
        """Count a request out of flight (whatever happened to it)."""
        with self._arrival_lock:
            self._in_flight -= 1

    def record(self, entry: RequestLogEntry) -> None:
        """Log a finished request (and print its access-log line)."""
        self.log.append(entry)
        if self.access_log is not None:
            points = "" if entry.points is None else f" {entry.points} points"
            fault = "" if entry.fault is None else f" fault={entry.fault}"
            print(f"{entry.method} {entry.path} {entry.status}{points}{fault}", file=self.access_log, flush=True)

    def key_is_valid(self, client_id: int | None, key: str) -> bool:
        """Whether ``key`` is the API key of ``client_id`` (compared in constant time)."""
        expected = self._credentials.get(client_id) if client_id else None
        given = key.encode("utf-8", "surrogatepass")
        return expected is not None and hmac.compare_digest(given, expected.encode("utf-8"))

    def store(self, client_id: int, table: str, points: list[DataPoint]) -> None:
        """Upsert accepted points in one transaction (nothing in sandbox mode).

        An upsert that fails is taken back from the injector's count of accepted upserts.
        """
        if self.storage is None:
            return
        try:
            self.storage.upsert(client_id, table, points)
        except BaseException:
            self.injector.unaccept()
            raise

    def schedule_ghost(self, entry: PendingEntry, client_id: int, table: str, points: list[DataPoint]) -> None:
        """Store ``points`` at ``entry.ghost_due`` in the background (dropped if the server stops first).

        A ghost without a due time is due at its arrival.
        """
        seq, path, due_at = entry.seq, entry.path, entry.ghost_due or entry.arrived
        due = time.monotonic() + max(0.0, due_at - time.time())
        self.log.expect_ghost(seq)

        def apply() -> None:
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                return  # stopped first: a pending ghost is dropped
            with self.ghost_lock:
                if self.stopping.is_set():
                    return
                if self.storage is not None:
                    self.storage.upsert(client_id, table, points)
                self.log.ghost_applied(seq, time.time())
                if self.access_log is not None:
                    line = f"GHOST {path} applied {len(points)} points (seq {seq})"
                    print(line, file=self.access_log, flush=True)

        thread = threading.Thread(target=apply, name=f"ghost-{seq}", daemon=True)
        with self.ghost_lock:
            self._ghost_threads = [t for t in self._ghost_threads if t.is_alive()]
            self._ghost_threads.append(thread)
        thread.start()

    def ghost_threads(self) -> list[threading.Thread]:
        """The ghost threads that may still be running."""
        with self.ghost_lock:
            return list(self._ghost_threads)

    def set_faults(self, **changes: Any) -> Faults:  # noqa: ANN401 (fields of several types)
        """Change fault settings (see ``LocalImportAPI.set_faults``); return the settings now in force."""
        faults = self.injector.current().replace(**changes)
        restarted = {fault_of_field(name) for name in changes} - {None}
        self.injector.set(
            faults,
            reseed="seed" in changes,
            reset_fail_after="fail_after" in changes,
            reset_selection=frozenset(n for n in restarted if n is not None),
        )
        return faults

    # -- reading -------------------------------------------------------------------------

    def table_listing(self, client_id: int | None) -> list[tuple[int, str, int]]:
        """``(client_id, table, rows)`` of the tables stored now (empty in sandbox mode)."""
        return self.storage.tables(client_id) if self.storage is not None else []

    def rows_json(self, client_id: int, table: str) -> list[str]:
        """The stored points of a table as their JSON text, without ``keys`` (empty in sandbox mode)."""
        return self.storage.rows_json(client_id, table) if self.storage is not None else []

    # -- Host and Origin -------------------------------------------------------------------

    def _accepts_host(self, name: str) -> bool:
        ip = _ip_literal(name)
        bind = self.host.strip().lower().strip("[]")
        return (
            name in LOOPBACK_NAMES
            or (ip is not None and ip.is_loopback)
            or name == bind
            or name in self.allowed_hosts
            or (ip is not None and bind in _WILDCARD_HOSTS)
        )

    def host_refusal(self, hosts: list[str], origins: list[str]) -> str | None:
        """Return why a request's ``Host`` or ``Origin`` is refused, or None when accepted.

        A browser always sends the name it resolved; DNS rebinding gives it an attacker's
        name that resolves to 127.0.0.1. Loopback names and IP literals cannot be rebound.
        A page of another site can still send a "simple" POST to 127.0.0.1 itself, but then
        the browser sends that site's ``Origin`` (API clients send none).
        """
        also = "" if self.host in ("127.0.0.1", "localhost", "::1") else f", {self.host}"
        accepted = f"127.0.0.1, localhost or [::1]{also}"
        if len(hosts) > 1:
            return "more than one Host header"
        # No Host: HTTP/1.0 tools; no browser omits it.
        if hosts and not self._accepts_host(_host_name(hosts[0])):
            return (
                f"Host {hosts[0].strip()[:100]!r} is not accepted: this local server answers "
                f"only requests addressed to {accepted} (this blocks DNS rebinding); "
                "to accept another name, start it with --allow-host NAME"
            )
        for origin in origins:
            try:
                origin_host = urlsplit(origin.strip()).hostname
            except ValueError:
                origin_host = None
            if origin_host is None or not self._accepts_host(origin_host.lower()):
                return (
                    f"Origin {origin.strip()[:100]!r} is not accepted: a web page of another "
                    f"site may not use this local server (only pages of {accepted}); "
                    "to accept another name, start it with --allow-host NAME"
                )
        return None
