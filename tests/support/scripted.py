"""A hand-written HTTP/1.1 server on a free loopback port, for answers the local server cannot give.

A raw status line, an answer that trickles, hangs, closes or resets.
"""

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
                try:
                    with sock.makefile("rb") as reader:
                        while not outer._stopping.is_set():
                            if not outer._serve_one(sock, reader):
                                return
                except OSError:
                    return
                finally:
                    # The TLS socket took the connection's descriptor over: socketserver closes
                    # only the socket it accepted, which is detached by now.
                    if sock is not self.request:
                        sock.close()

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

    @staticmethod
    def _read_request(reader: t.Any) -> tuple[str, str] | None:
        """Read one request (its body skipped): ``(method, target)``, or None at the end of input."""
        line = reader.readline(65536)
        if not line:
            return None
        method, target = line.decode("latin-1").split(" ")[:2]
        length = 0
        while (header := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            reader.read(length)
        return method, target

    @staticmethod
    def _answer(reply: Reply) -> bytes:
        head = reply.raw_head
        if head is None:
            headers = {"Content-Type": "application/json", "Content-Length": str(len(reply.body)), **reply.headers}
            phrase = http.client.responses.get(reply.status, "Unknown")
            head = (
                f"HTTP/1.1 {reply.status} {phrase}\r\n".encode()
                + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
                + b"\r\n"
            )
        return head + reply.body

    def _serve_one(self, sock: t.Any, reader: t.Any) -> bool:
        """Answer one request as scripted; return whether the connection stays open."""
        request = self._read_request(reader)
        if request is None:
            return False
        self.requests.append(request)
        reply = self.script(*request)
        if reply.how == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif reply.how == "hang":
            self._stopping.wait(reply.bound)
        if reply.how in ("close", "reset", "hang"):
            return False
        data = self._answer(reply)
        if reply.how != "trickle":
            sock.sendall(data)
            return True
        ends = time.monotonic() + reply.bound
        for i in range(len(data)):
            if time.monotonic() >= ends or self._stopping.wait(reply.interval):
                return False
            sock.sendall(data[i : i + 1])
        return True

    def stop(self) -> None:
        """End every wait, stop serving and close the port."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
