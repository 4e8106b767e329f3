"""A hand-written HTTP/1.1 server on a free loopback port, for answers the local server cannot give
(a raw status line, an answer that trickles, hangs, closes or resets)."""

from __future__ import annotations

import http.client
import socket
import socketserver
import ssl
import struct
import threading
import time
import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Reply:
    """How a :class:`ScriptedServer` answers one request.

    ``how`` is ``answer`` (status, headers, body), ``trickle`` (the same answer one byte every
    ``interval`` seconds, for at most ``bound`` seconds), ``hang`` (read the request, then say
    nothing for ``bound`` seconds), ``close`` (read the request, close without an answer) or
    ``reset`` (read the request, then reset the connection).
    """

    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"code": 201, "message": "created"}'
    how: str = "answer"
    interval: float = 0.5
    bound: float = 30.0
    raw_head: bytes | None = None  # sent as is instead of the status line and headers


class ScriptedServer:
    """A hand-written HTTP/1.1 server on a free loopback port (TLS with ``tls=(cert, key)``).

    ``script(method, target)`` chooses each reply; every request is recorded in ``requests`` as
    ``(method, target)`` with the query. Every wait is bounded, and ``stop()`` ends them all.
    """

    def __init__(
        self,
        script: t.Callable[[str, str], Reply] | Reply,
        *,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.script = script if callable(script) else (lambda _m, _t, reply=script: reply)
        self.requests: list[tuple[str, str]] = []
        self.connections = 0
        self._stopping = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                sock = self.request
                sock.settimeout(10)
                if tls is not None:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    context.load_cert_chain(str(tls[0]), str(tls[1]))
                    try:
                        sock = context.wrap_socket(sock, server_side=True)
                    except (OSError, ssl.SSLError):
                        return
                reader = sock.makefile("rb")
                try:
                    while not outer._stopping.is_set():
                        if not outer._serve_one(sock, reader):
                            return
                except OSError:
                    return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """The ``/v2`` base URL of this server."""
        return f"{self.scheme}://127.0.0.1:{self.port}/v2"

    def _serve_one(self, sock: t.Any, reader: t.Any) -> bool:
        line = reader.readline(65536)
        if not line:
            return False
        method, target = line.decode("latin-1").split(" ")[:2]
        length = 0
        while True:
            header = reader.readline(65536)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            reader.read(length)
        self.requests.append((method, target))
        reply = self.script(method, target)
        if reply.how == "close":
            return False
        if reply.how == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if reply.how == "hang":
            self._stopping.wait(reply.bound)
            return False
        head = reply.raw_head
        if head is None:
            headers = {"Content-Type": "application/json", "Content-Length": str(len(reply.body)), **reply.headers}
            phrase = http.client.responses.get(reply.status, "Unknown")
            head = f"HTTP/1.1 {reply.status} {phrase}\r\n".encode() + b"".join(
                f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items()
            ) + b"\r\n"
        data = head + reply.body
        if reply.how == "trickle":
            ends = time.monotonic() + reply.bound
            for i in range(len(data)):
                if time.monotonic() >= ends or self._stopping.wait(reply.interval):
                    return False
                sock.sendall(data[i : i + 1])
            return True
        sock.sendall(data)
        return True

    def stop(self) -> None:
        """End every wait, stop serving and close the port."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
