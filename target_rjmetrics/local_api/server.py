"""The local Import API: HTTP routing, authentication, fault application, and the server's lifecycle.

:class:`LocalImportAPI` owns the lifecycle (start, stop, URLs) and the public inspection API; the
request handler sees the server only through :class:`~target_rjmetrics.local_api.state.ServerState`
(credentials, faults, storage, the request log and their bookkeeping).

API endpoints (the real Import API's; docs/local-api.md describes them and the rules)::

    GET  /                                      status, 200
    GET  /v2/client/{cid}/authenticate          200 valid key, 401 otherwise
    POST /v2/client/{cid}/table/{table}/data    upsert, 201

Inspection endpoints under ``/_local`` (not part of the real API, no key, never faulted)::

    GET    /_local/tables[?client_id=N]
    GET    /_local/tables/{cid}/{table}/rows[?format=json|jsonl|csv]
    GET    /_local/requests[?since=SEQ]
    DELETE /_local/requests
    GET    /_local/faults
    PUT    /_local/faults                        JSON object of changes

Every request, ``/_local`` included, must name a loopback host in its ``Host`` header (or
the bind address, or a name given in ``allowed_hosts``), else it gets 403: this keeps a web
page from reaching the server through DNS rebinding.

Order of checks on an upsert: ``Host`` (403), route (404), method (405), ``Content-Length``
(411 when missing or chunked, 400 when malformed), size (413, refused before the body is
read), faults, API key (401), table name (400), body (400), hostile faults, then one
committed transaction and 201.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO
from urllib.parse import parse_qsl, unquote

from target_rjmetrics.local_api.export import FORMATS, render
from target_rjmetrics.local_api.faults import (
    CONTRACT_MAX_BODY_BYTES,
    REDIRECT_STATUSES,
    Decision,
    Faults,
)
from target_rjmetrics.local_api.jsontext import Document
from target_rjmetrics.local_api.points import (
    DataPoint,
    InvalidUpsertError,
    is_valid_table_name,
    key_values_json,
    parse_json,
    point_count,
    validate_points,
)
from target_rjmetrics.local_api.requestlog import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    PendingEntry,
    RequestLog,
    RequestLogEntry,
)
from target_rjmetrics.local_api.state import ServerState
from target_rjmetrics.local_api.storage import Storage, database_path

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

    from typing_extensions import Self

    #: A ``/_local`` endpoint: called with the path's segments after ``/_local`` and the query.
    _LocalHandler = Callable[[list[str], dict[str, str]], None]

DEMO_CLIENT_ID = 1
DEMO_API_KEY = "local-demo-key"
#: Largest client id SQLite can store; ids are positive integers up to this.
MAX_CLIENT_ID = 2**63 - 1
#: Keep-alive connections idle this long are closed by the server.
IDLE_TIMEOUT_S = 300.0
#: Bodies of /_local PUT requests above this size are refused.
LOCAL_MAX_BODY_BYTES = 1024 * 1024
#: After refusing a body without reading it, discard at most this much before closing.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_S = 2.0
_DRAIN_CHUNK = 65536
#: How often a held ghost looks whether its client has given up.
GHOST_POLL_S = 0.05
#: Longest ``stop()`` waits for connection and ghost threads.
STOP_JOIN_S = 5.0

_CLIENT_ID_PATTERN = re.compile(r"[1-9][0-9]*")
_CLIENT_ID_MAX_DIGITS = len(str(MAX_CLIENT_ID))
# Segments of a split path: "", "v2", "client", id, "authenticate" / ..., "table", name, "data".
_AUTHENTICATE_SEGMENTS = 5
_UPSERT_SEGMENTS = 7
# Segments of /_local/tables/{cid}/{table}/rows after "/_local".
_ROWS_SEGMENTS = 4
#: Longest request line read (the standard library's own limit).
MAX_REQUEST_LINE = 65536
_CONTENT_LENGTH_PATTERN = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class _Route:
    kind: str  # "status", "authenticate" or "upsert"
    allowed: tuple[str, ...]
    cid_raw: str | None = None
    table_raw: str | None = None


class _Parsed(NamedTuple):
    """An upsert's body as parsed: the document, or why it is not JSON (answered after the faults)."""

    doc: Document
    error: InvalidUpsertError | None


def _match_route(path: str) -> _Route | None:
    # Split the raw path before percent-decoding, so an encoded "/" stays inside its segment.
    if path == "/":
        return _Route("status", ("GET",))
    segs = path.split("/")
    if (
        len(segs) == _AUTHENTICATE_SEGMENTS
        and segs[1:3] == ["v2", "client"]
        and segs[4] == "authenticate"
        and _CLIENT_ID_PATTERN.fullmatch(segs[3])
    ):
        return _Route("authenticate", ("GET",), cid_raw=segs[3])
    if (
        len(segs) == _UPSERT_SEGMENTS
        and segs[1:3] == ["v2", "client"]
        and segs[4] == "table"
        and segs[6] == "data"
        and _CLIENT_ID_PATTERN.fullmatch(segs[3])
    ):
        return _Route("upsert", ("POST",), cid_raw=segs[3], table_raw=segs[5])
    return None


def _client_id(raw: str | None) -> int | None:
    if raw is None or len(raw) > _CLIENT_ID_MAX_DIGITS:
        return None
    value = int(raw)
    return value if value <= MAX_CLIENT_ID else None


def _error(status: int, reasons: list[str]) -> dict[str, Any]:
    return {"code": status, "message": HTTPStatus(status).phrase, "reasons": reasons}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that vanishes mid-request is not a server error worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Exchange(BaseHTTPRequestHandler):
    """One connection's requests: reading each, its log entry, writing its answer (JSON, trickled or not).

    Subclasses route a parsed request in ``_dispatch``.
    """

    protocol_version = "HTTP/1.1"
    server_version = "rjmetrics-local-api"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    server: _HTTPServer

    # -- connection lifecycle -------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.state.register_connection(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.state.unregister_connection(self.connection)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002, ARG002 (the base class's names)
        # The stdlib access log prints the request line, query string (API key) included.
        return

    def handle_expect_100(self) -> bool:
        # Defer "100 Continue" until the body is known to be wanted, so a client that waits
        # for it never sends a body that is refused (413, 411).
        self._expect_continue = True
        return True

    def handle_one_request(self) -> None:
        self._entry: PendingEntry | None = None
        self.headers = None  # type: ignore[assignment]  # no stale headers of the last request
        self._body_consumed = False
        self._expect_continue = False
        self._responded = False
        self._in_flight = False
        self._trickle_s: float | None = None
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._dispatch()
        except OSError:
            # Timeout of an idle keep-alive connection, or the client went away.
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer the stdlib parser's errors (bad request line, headers) as JSON too."""
        self.close_connection = True
        if not getattr(self, "command", None):
            self.command = ""
        own_entry = self._entry is None
        if own_entry:
            self._begin_entry(path="", route=None)
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            # Every answer of this server is 2xx/4xx unless a fault is injected.
            code, message = HTTPStatus.BAD_REQUEST, f"HTTP version not supported: {message}"
        try:
            reason = explain or message or _phrase(code)
            payload = {"code": int(code), "message": _phrase(code), "reasons": [reason]}
            self._respond(int(code), payload)
        finally:
            if own_entry:
                self._depart()

    def _dispatch(self) -> None:
        raise NotImplementedError

    def _guarded(self, handler: Callable[[], None]) -> None:
        try:
            handler()
        except OSError:
            raise
        except Exception:  # noqa: BLE001 (a bug: report it, never leave the client hanging)
            traceback.print_exc(file=sys.stderr)
            if not self._responded:
                self.close_connection = True
                self._respond(500, _error(500, ["internal error of the local server"]))

    def _pending(self) -> PendingEntry:
        """The log entry of the request being handled."""
        if self._entry is None:
            msg = "no request is being handled"
            raise RuntimeError(msg)
        return self._entry

    def _begin_entry(self, path: str, route: _Route | None) -> None:
        self._entry, self._decision = self.server.state.arrive(self.command or "", path, routed=route is not None)
        self._in_flight = True
        if route is not None:
            self._entry.client_id = _client_id(route.cid_raw)
            if route.table_raw is not None:
                self._entry.table = unquote(route.table_raw, errors="replace")

    # -- responses -----------------------------------------------------------------------

    def _has_unread_body(self) -> bool:
        if self._body_consumed:
            return False
        headers = getattr(self, "headers", None)
        if headers is None:
            return False
        if headers.get("Transfer-Encoding") is not None:
            return True
        length = headers.get("Content-Length")
        return length is not None and length.strip() != "0"

    def _finish_entry(self, status: int, fault: str | None) -> None:
        entry = self._entry
        if entry is None or self._responded:
            return
        self._responded = True
        # Completed: taken after any commit and just before the answer is written (see requestlog).
        self.server.state.record(entry.finish(status, fault, time.time()))

    def _depart(self) -> None:
        """Count this request out of flight, once: just before the last byte of its answer is written.

        A client that sends its next request the moment an answer arrives must never find the
        answered one still counted (it was, briefly, as a fifth request of a client sending four
        at a time). A request that ends unanswered departs when its handling ends.
        """
        if self._in_flight:
            self._in_flight = False
            self.server.state.depart()

    def _respond(
        self,
        status: int,
        payload: object,
        *,
        headers: Mapping[str, str] | None = None,
        fault: str | None = None,
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self._respond_raw(status, body, "application/json", headers=headers, fault=fault)

    def _respond_raw(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        headers: Mapping[str, str] | None = None,
        fault: str | None = None,
    ) -> None:
        self._finish_entry(status, fault)
        self._responded = True
        unread = self._has_unread_body()
        if unread:
            # The body was refused unread; the connection cannot carry another request.
            self.close_connection = True
        lines = [
            f"HTTP/1.1 {status} {_phrase(status)}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
        ]
        if status == HTTPStatus.NO_CONTENT:
            body = b""  # a 204 has neither body nor Content-Length (RFC 9110, 8.6)
        else:
            lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        if self.close_connection:
            lines.append("Connection: close")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        answer = head if self.command == "HEAD" else head + body
        if self._trickle_s is not None:
            self._trickle(answer, self._trickle_s)
            return
        # One write: headers and body in a single segment (no Nagle/delayed-ACK stall).
        self._depart()
        self.wfile.write(answer)
        if unread:
            self._drain()

    def _trickle(self, answer: bytes, interval: float) -> None:
        """Send ``answer`` one byte every ``interval`` seconds.

        Ends when the last byte is sent, when a write fails (the client went away) or at
        ``stop()``; so the thread is busy at most ``len(answer) * interval`` seconds.
        """
        stop = self.server.state.stopping
        last = len(answer) - 1
        for i in range(len(answer)):
            if i and stop.wait(interval):
                self.close_connection = True
                return
            if i == last:
                self._depart()
            self.wfile.write(answer[i : i + 1])

    def _drain(self) -> None:
        """Discard an unread body for a bounded time so the client can read our answer.

        Closing a socket with unread input sends a TCP reset, which can destroy the answer
        before the client reads it; so: send FIN, then discard input until EOF or a bound.
        """
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + DRAIN_MAX_S
            drained = 0
            while time.monotonic() < deadline and drained < DRAIN_MAX_BYTES:
                chunk = self.rfile.read1(_DRAIN_CHUNK)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass


_LOCAL_INDEX = {
    "GET /_local/tables[?client_id=N]": "tables with row counts",
    "GET /_local/tables/{client_id}/{table}/rows[?format=json|jsonl|csv]": "stored points",
    "GET /_local/requests[?since=SEQ]": "the request log (entries with seq > SEQ)",
    "DELETE /_local/requests": "clear the request log",
    "GET /_local/faults": "fault settings",
    "PUT /_local/faults": "change fault settings (JSON object of changes)",
}


class _Inspection(_Exchange):
    """The ``/_local`` endpoints: tables, rows, the request log and the fault settings."""

    # -- /_local inspection -------------------------------------------------------------

    def _handle_local(self, raw_path: str, query: str) -> None:
        params = dict(parse_qsl(query, keep_blank_values=True))
        segs = raw_path.rstrip("/").split("/")[2:]  # after "", "_local"
        route = self._local_route(segs)
        if route is None:
            self._respond(404, _error(404, [f"unknown path {raw_path[:200]!r}"]))
            return
        methods, handler = route
        if self.command not in methods:
            allowed = ", ".join(methods)
            reason = f"method {self.command} not allowed here; use {allowed}"
            self._respond(405, _error(405, [reason]), headers={"Allow": allowed})
            return
        handler(segs, params)

    def _local_route(self, segs: list[str]) -> tuple[tuple[str, ...], _LocalHandler] | None:
        """The methods a ``/_local`` path allows and its handler, or None for an unknown path."""
        if not segs:
            return ("GET",), self._local_index
        if segs == ["tables"]:
            return ("GET",), self._local_tables
        if len(segs) == _ROWS_SEGMENTS and segs[0] == "tables" and segs[3] == "rows":
            return ("GET",), self._local_rows
        if segs == ["requests"]:
            return ("GET", "DELETE"), self._local_requests
        if segs == ["faults"]:
            return ("GET", "PUT"), self._local_faults
        return None

    def _local_index(self, _segs: list[str], _params: dict[str, str]) -> None:
        self._respond(200, {"endpoints": _LOCAL_INDEX, "sandbox": self.server.state.sandbox})

    def _local_tables(self, _segs: list[str], params: dict[str, str]) -> None:
        client_id = None
        if "client_id" in params:
            client_id = _client_id(params["client_id"])
            if client_id is None or not _CLIENT_ID_PATTERN.fullmatch(params["client_id"]):
                self._respond(400, _error(400, ["client_id must be a positive integer"]))
                return
        listing = self.server.state.table_listing(client_id)
        self._respond(200, [{"client_id": c, "table": t, "rows": n} for c, t, n in listing])

    def _local_rows(self, segs: list[str], params: dict[str, str]) -> None:
        client_id = _client_id(segs[1]) if _CLIENT_ID_PATTERN.fullmatch(segs[1]) else None
        table = unquote(segs[2], errors="replace")
        fmt = params.get("format", "json")
        if client_id is None or not is_valid_table_name(table) or fmt not in FORMATS:
            reason = "need /_local/tables/{client_id}/{table}/rows?format=json|jsonl|csv"
            self._respond(400, _error(400, [reason]))
            return
        text, content_type = render(self.server.state.rows_json(client_id, table), fmt)
        self._respond_raw(200, text.encode("utf-8"), content_type)

    def _local_requests(self, _segs: list[str], params: dict[str, str]) -> None:
        state = self.server.state
        if self.command == "DELETE":
            self._respond(200, {"cleared": state.log.clear()})
            return
        since = params.get("since")
        if since is not None and not re.fullmatch(r"-?[0-9]{1,18}", since):
            self._respond(400, _error(400, ["since must be an integer"]))
            return
        entries = state.log.entries(int(since) if since is not None else None)
        # Written by each entry, so key values keep the numbers' text (json.dumps would not).
        text = "[" + ",".join(e.to_json(with_key_values=state.log_point_keys) for e in entries) + "]"
        self._respond_raw(200, text.encode("utf-8"), "application/json")

    def _local_faults(self, _segs: list[str], _params: dict[str, str]) -> None:
        if self.command == "PUT":
            self._put_faults()
        else:
            self._respond(200, self.server.state.injector.current().to_dict())

    def _put_faults(self) -> None:
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) != 1 or not _CONTENT_LENGTH_PATTERN.fullmatch(lengths[0].strip()):
            self._respond(411, _error(411, ["a single valid Content-Length header is required"]))
            return
        length = int(lengths[0])
        if length > LOCAL_MAX_BODY_BYTES:
            self._respond(413, _error(413, ["fault settings body is too large"]))
            return
        body = self.rfile.read(length)
        self._body_consumed = len(body) == length
        try:
            changes = json.loads(body)
        except (ValueError, RecursionError) as exc:
            self._respond(400, _error(400, [str(exc)[:300]]))
            return
        if not isinstance(changes, dict):
            self._respond(400, _error(400, ["body must be a JSON object of fault settings"]))
            return
        try:
            faults = self.server.state.set_faults(**changes)
        except (ValueError, TypeError) as exc:
            self._respond(400, _error(400, [str(exc)[:300]]))
            return
        self._respond(200, faults.to_dict())


class _Handler(_Inspection):
    """Routes each request: ``/_local``, or the real API with its faults."""

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        raw_path, _, query = self.path.partition("?")
        is_local = raw_path == "/_local" or raw_path.startswith("/_local/")
        refusal = self.server.state.host_refusal(
            self.headers.get_all("Host") or [], self.headers.get_all("Origin") or []
        )
        if refusal is not None:
            if is_local:
                self._respond(403, _error(403, [refusal]))
                return
            # Logged like any API request, but drawing nothing from the fault generators.
            self._begin_entry(path=raw_path, route=None)
            try:
                self._respond(403, _error(403, [refusal]))
            finally:
                self._depart()
            return
        if is_local:
            self._guarded(lambda: self._handle_local(raw_path, query))
            return
        route = _match_route(raw_path)
        self._begin_entry(path=raw_path, route=route)
        try:
            self._guarded(lambda: self._handle_api(route, query))
        finally:
            self._depart()

    # -- the real API --------------------------------------------------------------------

    def _handle_api(self, route: _Route | None, query: str) -> None:
        if route is None:
            self._respond(404, _error(404, [f"unknown path {self._entry_path()!r}"]))
            return
        if self.command not in route.allowed:
            allowed = ", ".join(route.allowed)
            reason = f"method {self.command} not allowed here; use {allowed}"
            self._respond(405, _error(405, [reason]), headers={"Allow": allowed})
            return
        decision = self._decision
        if decision is None:
            msg = "a routed request has no fault decision"  # drawn for every one in _begin_entry
            raise RuntimeError(msg)
        parsed: _Parsed | None = None
        if route.kind == "upsert":
            parsed = self._read_and_parse(decision.faults)
            if parsed is None:
                return
        if self._apply_faults(decision):
            return
        if route.kind == "status":
            self._respond(200, {"code": 200, "message": "OK"})
            return
        client_id = self._authenticate(route, query)
        if client_id is None:
            return
        if parsed is None:
            self._answer_authenticate(decision, query)
        else:
            self._answer_upsert(route, decision, client_id, query, parsed)

    def _read_and_parse(self, faults: Faults) -> _Parsed | None:
        """Read an upsert's body and parse it (its failure kept for later); None if it was refused."""
        body = self._read_upsert_body(faults)
        if body is None:
            return None
        try:
            doc = parse_json(body)
        except InvalidUpsertError as exc:
            return _Parsed(Document(None, kept_text=False), exc)
        entry = self._pending()
        entry.points = point_count(doc.value)
        if self.server.state.log_point_keys:
            entry.key_values_json = key_values_json(doc.value)
        return _Parsed(doc, None)

    def _answer_authenticate(self, decision: Decision, query: str) -> None:
        hits, faults = self.server.state.injector.select(decision, None)
        if faults.trickle_authenticate and faults.trickle_interval is not None:
            self._trickle_s = faults.trickle_interval
        if "authenticate_status" in hits:
            self._answer_substitute(faults, faults.authenticate_status, query, "authenticate_status")
            return
        self._respond(200, {"code": 200, "message": "authenticated"}, fault=self._trickle_fault())

    def _answer_upsert(self, route: _Route, decision: Decision, client_id: int, query: str, parsed: _Parsed) -> None:
        state = self.server.state
        table = unquote(route.table_raw or "", errors="replace")
        if not is_valid_table_name(table):
            reason = f"table name {table[:100]!r} must match ^[A-Za-z0-9_]+$"
            self._respond(400, _error(400, [reason]))
            return
        try:
            if parsed.error is not None:
                raise parsed.error
            points = validate_points(parsed.doc)
        except InvalidUpsertError as exc:
            self._respond(400, _error(400, exc.reasons))
            return
        if state.injector.fail_after_reached():
            self._answer_fail_after(decision.faults)
            return
        # The hostile stage: only requests that would otherwise land get here.
        hits, faults = state.injector.select(decision, table)
        if "trickle" in hits and faults.trickle_interval is not None:
            self._trickle_s = faults.trickle_interval
        if "upsert_status" in hits and "ghost" not in hits:
            self._answer_substitute(faults, faults.upsert_status, query, "upsert_status")
        elif not state.injector.try_accept():
            self._answer_fail_after(decision.faults)
        elif "ghost" in hits and faults.ghost_delay is not None:
            self._ghost(faults, client_id, table, points)
        else:
            state.store(client_id, table, points)
            self._respond(201, {"code": 201, "message": "created"}, fault=self._trickle_fault())

    def _entry_path(self) -> str:
        return self._entry.path if self._entry is not None else ""

    def _read_upsert_body(self, faults: Faults) -> bytes | None:
        """Read the body after checking its declared size; answer and return None if refused."""
        if self.headers.get("Transfer-Encoding") is not None:
            reason = "chunked bodies are not accepted; send a Content-Length"
            self._respond(411, _error(411, [reason]))
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self._respond(411, _error(411, ["a Content-Length header is required"]))
            return None
        if len(set(lengths)) != 1 or not _CONTENT_LENGTH_PATTERN.fullmatch(lengths[0].strip()):
            self._respond(400, _error(400, ["invalid Content-Length header"]))
            return None
        length = int(lengths[0])
        self._pending().body_bytes = length
        if length > faults.max_body_bytes:
            lowered = length <= CONTRACT_MAX_BODY_BYTES
            reason = f"body of {length} bytes is over the limit of {faults.max_body_bytes} bytes"
            fault = "max_body_bytes" if lowered else None
            self._respond(413, _error(413, [reason]), fault=fault)
            return None
        if self._expect_continue:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.rfile.read(length)
        if len(body) < length:
            # The client went away mid-body: nobody is left to answer.
            self.close_connection = True
            self._finish_entry(0, None)
            return None
        self._body_consumed = True
        return body

    def _apply_faults(self, decision: Decision) -> bool:
        """Apply the request's injected faults; return True when one of them answered."""
        state = self.server.state
        faults = decision.faults
        retry_after = {"Retry-After": str(faults.retry_after)}
        if decision.over_in_flight:
            reason = f"more than {faults.max_in_flight} requests in flight"
            self._respond(429, _error(429, [reason]), headers=retry_after, fault="max_in_flight")
            return True
        if decision.delay_s > 0:
            self._pending().delay_ms = round(decision.delay_s * 1000.0, 3)
            time.sleep(decision.delay_s)
        if decision.drop:
            self._close_without_answer("drop")
            return True
        if state.injector.fail_after_reached():
            self._answer_fail_after(faults)
            return True
        if decision.rate_limited:
            reason = "injected fault: rate limited"
            self._respond(429, _error(429, [reason]), headers=retry_after, fault="rate_limit")
            return True
        if decision.error_status is not None:
            status = decision.error_status
            self._respond(status, _error(status, ["injected fault: error_rate"]), fault="error_rate")
            return True
        return False

    def _trickle_fault(self) -> str | None:
        return "trickle" if self._trickle_s is not None else None

    def _answer_substitute(self, faults: Faults, status: int | None, query: str, fault: str) -> None:
        """Answer ``status`` instead of a success, as a proxy or captive portal would."""
        if status is None:
            msg = f"{fault} hit while switched off"  # select() hits a fault only while it is on
            raise RuntimeError(msg)
        headers: dict[str, str] = {}
        if status in REDIRECT_STATUSES:
            # The query (with apikey) goes along: a client that follows it leaks the key.
            target = self._entry_path() + (f"?{query}" if query else "")
            base = faults.redirect_url
            headers["Location"] = base.rstrip("/") + target if base is not None else target
        if self._trickle_s is not None:
            fault = f"{fault}+trickle"
        message = f"injected fault: {fault.split('+')[0]} (nothing was stored)"
        payload = {"code": status, "message": _phrase(status), "reasons": [message]}
        self._respond(status, payload, headers=headers, fault=fault)

    def _ghost(self, faults: Faults, client_id: int, table: str, points: list[DataPoint]) -> None:
        """Answer a ghost as ``ghost_answer`` says; its points are stored later."""
        state = self.server.state
        entry = self._pending()
        entry.ghost_due = entry.arrived + (faults.ghost_delay or 0.0)
        state.schedule_ghost(entry, client_id, table, points)
        answer = faults.ghost_answer
        if answer == "drop":
            self._close_without_answer("ghost")
            return
        if answer == "hold":
            if self._hold_until_client_leaves(faults.ghost_hold_max):
                self.close_connection = True
                self._finish_entry(0, "ghost")
                return
            answer = HTTPStatus.GATEWAY_TIMEOUT
        status = int(answer)  # a 5xx by now: Faults refuses any other text
        reason = "injected fault: ghost (the points will be stored late)"
        fault = "ghost+trickle" if self._trickle_s is not None else "ghost"
        self._respond(status, _error(status, [reason]), fault=fault)

    def _hold_until_client_leaves(self, max_s: float) -> bool:
        """Wait until the client closes the connection; False if it is still there after ``max_s``."""
        state = self.server.state
        deadline = time.monotonic() + max_s
        conn = self.connection
        previous = conn.gettimeout()
        try:
            while not state.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                conn.settimeout(min(GHOST_POLL_S, remaining))
                try:
                    if not conn.recv(1, socket.MSG_PEEK):
                        return True  # EOF: the client gave up
                except TimeoutError:
                    continue  # still connected, nothing sent
                except OSError:
                    return True  # reset: the client gave up
                # Bytes of a next request: the client is still there; don't spin on them.
                state.stopping.wait(GHOST_POLL_S)
            return True
        finally:
            with contextlib.suppress(OSError):
                conn.settimeout(previous)

    def _close_without_answer(self, fault: str) -> None:
        self.close_connection = True
        self._finish_entry(0, fault)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _answer_fail_after(self, faults: Faults) -> None:
        status = faults.fail_status
        reason = f"injected fault: failing every request after {faults.fail_after} accepted upserts"
        headers = {"Retry-After": str(faults.retry_after)} if status in (429, 503) else None
        self._respond(status, _error(status, [reason]), headers=headers, fault="fail_after")

    def _authenticate(self, route: _Route, query: str) -> int | None:
        """Return the client id when the request's key is that client's, else answer 401."""
        keys = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "apikey"]
        client_id = _client_id(route.cid_raw)
        reason = None
        if not keys:
            reason = "the apikey query parameter is missing"
        elif len(keys) > 1:
            reason = "the apikey query parameter is given more than once"
        elif not self.server.state.key_is_valid(client_id, keys[0]):
            reason = f"authorization failed: the API key is not valid for client {route.cid_raw}"
        if reason is not None:
            self._respond(401, _error(401, [reason]))
            return None
        return client_id


class LocalImportAPI:
    """A local, faithful RJMetrics Import API server, usable in-process or from the CLI.

    Args:
        data_dir: Directory of the SQLite database (``<dir>/import-api.sqlite3``); ``None``
            keeps it in memory.
        credentials: Client id to API key; ``None`` is the demo pair
            ``{DEMO_CLIENT_ID: DEMO_API_KEY}``.
        sandbox: Validate and answer exactly like production, but store nothing.
        faults: Initial fault settings; ``None`` is no faults.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        log_point_keys: Add ``key_values`` (each point's key values, in body order) to
            request-log entries.
        synchronous: SQLite ``synchronous`` mode, ``"FULL"`` or ``"NORMAL"``.
        max_log_entries: Request-log entries kept in memory.
        access_log: Stream receiving one line per API request (never the query string).
        max_log_bytes: Bytes of request-log entries (as compact JSON) kept in memory.
        allowed_hosts: Host names accepted in the ``Host`` header besides the loopback
            names, loopback IP literals and ``host`` itself (every IP literal too when
            ``host`` is a wildcard such as ``0.0.0.0``).
    """

    def __init__(  # noqa: PLR0913, PLR0917 (the public signature, kept for compatibility)
        self,
        data_dir: Path | str | None = None,
        credentials: Mapping[int, str] | None = None,
        sandbox: bool = False,  # noqa: FBT001, FBT002
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_point_keys: bool = False,  # noqa: FBT001, FBT002
        *,
        synchronous: str = "FULL",
        max_log_entries: int = DEFAULT_MAX_ENTRIES,
        access_log: TextIO | None = None,
        max_log_bytes: int = DEFAULT_MAX_BYTES,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        """Configure the server; nothing is opened until ``start()``."""
        creds = dict(credentials) if credentials is not None else {DEMO_CLIENT_ID: DEMO_API_KEY}
        for client_id, key in creds.items():
            if isinstance(client_id, bool) or not isinstance(client_id, int):
                msg = f"client ids must be integers, got {client_id!r}"
                raise ValueError(msg)  # noqa: TRY004 (one kind of error for every bad argument)
            if not 1 <= client_id <= MAX_CLIENT_ID:
                msg = f"client id {client_id} must be a positive integer below 2**63"
                raise ValueError(msg)
            if not isinstance(key, str) or not key:
                msg = f"the API key of client {client_id} must be a non-empty string"
                raise ValueError(msg)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self.log_point_keys = log_point_keys
        self.synchronous = synchronous
        self.access_log = access_log
        self.allowed_hosts = tuple(h.strip().lower().strip("[]") for h in allowed_hosts)
        self._state = ServerState(
            creds,
            faults if faults is not None else Faults(),
            sandbox=sandbox,
            log_point_keys=log_point_keys,
            log=RequestLog(max_log_entries, max_log_bytes),
            host=host,
            allowed_hosts=self.allowed_hosts,
            access_log=access_log,
        )
        # Open from start() to stop(): the state's storage; then kept for reads of an
        # in-memory database, which lives only as long as its connection.
        self._storage: Storage | None = None
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalImportAPI:
        """Open storage, bind the port and serve in background threads."""
        if self._httpd is not None or self._stopped:
            msg = "a LocalImportAPI can be started once"
            raise RuntimeError(msg)
        if not self.sandbox:
            self._storage = Storage(self.data_dir, synchronous=self.synchronous)
        try:
            self._httpd = _HTTPServer((self.host, self.port), self._state)
        except BaseException:
            if self._storage is not None:
                self._storage.close()
            raise
        self._state.storage = self._storage
        if self._storage is not None and self._storage.path is None:
            # An in-memory database outlives stop() (rows stay readable) until this server is
            # collected; then close it, as SQLite connections must be (Python 3.13 warns).
            weakref.finalize(self, self._storage.close)
        self.port = self._httpd.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"rjmetrics-local-api:{self.port}",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and the database (idempotent).

        An in-memory database stays readable through ``rows()``/``tables()`` after stop.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopped = True
        # Wakes trickles, held ghosts and pending ghosts (which are dropped, not applied).
        self._state.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        connections = self._state.open_connections()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + STOP_JOIN_S
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._serve_thread is not None:
            self._serve_thread.join(max(0.0, deadline - time.monotonic()))
        for thread in self._state.ghost_threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        # Under the ghost lock: a ghost committing right now finishes before the close.
        with self._state.ghost_lock:
            self._state.storage = None
            if self._storage is not None and self._storage.path is not None:
                self._storage.close()
                self._storage = None

    def __enter__(self) -> Self:
        """Start the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def root_url(self) -> str:
        """The status URL, e.g. ``http://127.0.0.1:8765``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:8765/v2``."""
        return f"{self.root_url}/v2"

    # -- inspection ------------------------------------------------------------------------

    def rows(self, client_id: int, table: str, *, with_keys: bool = False) -> list[dict[str, Any]]:
        """Return the stored points of a table (without ``keys``), in first-insertion order.

        Values are as :func:`json.loads` reads them, so a number with a fraction or exponent is
        a ``float`` (its exact text is in :meth:`rows_json`).
        """
        storage, temporary = self._reader()
        if storage is None:
            return []
        try:
            return storage.rows(client_id, table, with_keys=with_keys)
        finally:
            if temporary:
                storage.close()

    def rows_json(self, client_id: int, table: str, *, with_keys: bool = False) -> list[str]:
        """Return the stored points of a table as JSON text, in first-insertion order.

        Each point is the compact JSON the inspection endpoints and ``dump`` show, every number
        as the client wrote it (``rows()`` gives them as :func:`json.loads` reads this text).
        """
        storage, temporary = self._reader()
        if storage is None:
            return []
        try:
            return storage.rows_json(client_id, table, with_keys=with_keys)
        finally:
            if temporary:
                storage.close()

    def tables(self, client_id: int) -> dict[str, int]:
        """Return ``{table: row count}`` of one client (empty in sandbox mode)."""
        return {t: n for _, t, n in self._table_listing(client_id)}

    def _table_listing(self, client_id: int | None) -> list[tuple[int, str, int]]:
        storage, temporary = self._reader()
        if storage is None:
            return []
        try:
            return storage.tables(client_id)
        finally:
            if temporary:
                storage.close()

    def _reader(self) -> tuple[Storage | None, bool]:
        if self._storage is not None:
            return self._storage, False
        if self.sandbox:
            return None, False
        if self.data_dir is not None and database_path(self.data_dir).exists():
            # Stopped (or never started) file-backed server: read the file directly.
            return Storage(self.data_dir, synchronous=self.synchronous, create=False), True
        return None, False

    def request_log(self, since: int | None = None) -> list[RequestLogEntry]:
        """Return the request-log entries ordered by ``seq`` (only those after ``since``)."""
        return self._state.log.entries(since)

    def clear_request_log(self) -> None:
        """Empty the request log (``seq`` keeps counting)."""
        self._state.log.clear()

    @property
    def faults(self) -> Faults:
        """The fault settings in force."""
        return self._state.injector.current()

    def set_faults(self, **changes: Any) -> Faults:  # noqa: ANN401 (fields of several types)
        """Change fault settings while running (thread-safe).

        Changing ``seed`` restarts the random generators; changing ``fail_after`` restarts
        its count of accepted upserts; giving any field of a hostile fault (``ghost_*``,
        ``trickle_*``, ``upsert_status*``, ``authenticate_status*``) restarts the count its
        ``_skip`` and ``_count`` use. Pending ghosts keep their delay.
        """
        return self._state.set_faults(**changes)
