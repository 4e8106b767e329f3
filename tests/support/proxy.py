"""A small HTTP proxy on a free loopback port that misbehaves on purpose.

The local server's faults act on the API's side; a proxy between the target and the API fails
in ways the API cannot: it refuses the tunnel (``CONNECT`` answered 403, 407 or 502), resets the
connection, trickles its answer to ``CONNECT`` a byte at a time, or echoes the request's URL (the
key in its query) in an error page. ``tunnel`` is a working proxy, for a baseline.
"""

from __future__ import annotations

import http.client
import select
import socket
import socketserver
import struct
import threading
import typing as t
from dataclasses import dataclass

#: What a proxy does with each request: see :class:`HostileProxy`.
Mode = t.Literal["refuse", "reset", "trickle", "echo", "tunnel"]


@dataclass
class ProxyRequest:
    """A request the proxy received: its method (``CONNECT`` for a tunnel) and target."""

    method: str
    target: str


class HostileProxy:
    """An HTTP proxy whose every answer is scripted by ``mode``.

    - ``refuse``: answer every request (a ``CONNECT`` or a plain proxied request) with ``status``;
    - ``reset``: read the request, then reset the connection;
    - ``trickle``: answer ``CONNECT`` with 200, one byte every ``interval`` seconds (never
      finishing within ``bound``);
    - ``echo``: answer with ``status`` and a body that quotes the request line, as some proxies'
      error pages do (the URL, with its query, in the page);
    - ``tunnel``: open the tunnel to the host asked for and relay bytes both ways.

    Every request is recorded in ``requests``; ``stop()`` ends every wait.
    """

    def __init__(self, mode: Mode, *, status: int = 403, interval: float = 2.0, bound: float = 120.0) -> None:
        self.mode = mode
        self.status = status
        self.interval = interval
        self.bound = bound
        self.requests: list[ProxyRequest] = []
        self._stopping = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(30)
                try:
                    outer._handle(self.request)
                except OSError:
                    return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The proxy's URL, for ``HTTPS_PROXY``/``HTTP_PROXY``."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that send every request of a child process through this proxy."""
        return {"HTTPS_PROXY": self.url, "HTTP_PROXY": self.url, "NO_PROXY": "", "no_proxy": ""}

    def _handle(self, sock: socket.socket) -> None:
        head = _read_head(sock)
        if head is None:
            return
        method, target = head
        self.requests.append(ProxyRequest(method, target))
        if self.mode == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif self.mode == "refuse":
            sock.sendall(_answer(self.status, b"<html><body>Access denied by policy</body></html>"))
        elif self.mode == "echo":
            page = f"<html><body>Cannot serve {method} {target}: denied</body></html>".encode()
            sock.sendall(_answer(self.status, page))
        elif method != "CONNECT":
            sock.sendall(_answer(502, b"not a tunnel"))
        elif self.mode == "trickle":
            self._trickle(sock)
        else:
            host, _, port = target.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as upstream:
                sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(sock, upstream)

    def _trickle(self, sock: socket.socket) -> None:
        data = b"HTTP/1.1 200 Connection established\r\n\r\n"
        for i in range(len(data)):
            if self._stopping.wait(self.interval):
                return
            sock.sendall(data[i : i + 1])
        self._stopping.wait(self.bound)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self._stopping.is_set():
            ready, _, _ = select.select(list(peers), [], [], 0.2)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].sendall(data)

    def stop(self) -> None:
        """End every wait, stop serving and close the port."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()


def _read_head(sock: socket.socket) -> tuple[str, str] | None:
    """Read a request's line and headers (never its body); ``(method, target)``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > 65536:
            return None
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    method, target = [*line.split(" "), "", ""][:2]
    return method, target


def _answer(status: int, body: bytes) -> bytes:
    phrase = http.client.responses.get(status, "Unknown")
    return (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
