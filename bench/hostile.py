"""A hostile network in front of the real central, on 127.0.0.1: forwards each request to the central unless a
fault is scripted, and then answers as a stranger would: a proxy's 413 or 404 page, a 500, a 429 with any
Retry-After, garbage, a reply dripped one byte at a time, a 300 MB reply, a connection reset in the middle of
the body (after the central stored the events), a redirect. It speaks HTTP/1.1 itself on a raw socket, so it
can misbehave in ways an HTTP server library would not allow."""

from __future__ import annotations

import contextlib
import http.client
import socket
import socketserver
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SPRING_BOOT_404_HTML = (
    b"<html><body><h1>Whitelabel Error Page</h1><p>This application has no explicit mapping for /error, so you "
    b"are seeing this as a fallback.</p><div>There was an unexpected error (type=Not Found, status=404).</div>"
    b"<div>No static resource api/v1/events.</div></body></html>"
)
SPRING_BOOT_404_JSON = (
    b'{"timestamp":"2025-01-03T10:15:02.123+00:00","status":404,"error":"Not Found","path":"/api/v1/events"}'
)


@dataclass
class Fault:
    """What the proxy does instead of forwarding. ``kind``:

    - ``reply``: answer ``status`` with ``body`` and ``headers``;
    - ``drip``: a 200 whose body comes one byte every ``interval_s``;
    - ``huge``: a 200 announcing and streaming ``size`` bytes;
    - ``reset``: forward to the central (it stores the events), send the reply's head and half its body, then
      reset the connection;
    - ``redirect``: 307 to ``location`` (a client that follows it re-posts the body there).
    """

    kind: str
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    interval_s: float = 0.5
    size: int = 300 * 1024 * 1024
    location: str = ""


class HostileProxy:
    """``script(fault, count)`` for the next ``count`` requests, ``always(fault)`` until ``heal()``; ``requests``
    lists (method, path, fault kind or "forward", request body) in arrival order."""

    def __init__(self, upstream: str = "") -> None:
        self.upstream = urllib.parse.urlsplit(upstream) if upstream else None
        self._lock = threading.Lock()
        self._plan: list[tuple[Fault, int]] = []
        self._always: Fault | None = None
        self.requests: list[tuple[str, str, str, bytes]] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    proxy._serve(self.connection, self.rfile)
                except (ConnectionError, OSError):
                    pass  # the client gave up, which is what several faults are for

            def finish(self) -> None:
                with contextlib.suppress(OSError, ValueError):  # a reset connection is already closed
                    super().finish()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, fault: Fault, count: int = 1) -> None:
        with self._lock:
            self._plan.append((fault, count))

    def always(self, fault: Fault) -> None:
        with self._lock:
            self._always = fault

    def heal(self) -> None:
        """The fault ends: forward everything from now on."""
        with self._lock:
            self._plan.clear()
            self._always = None

    def hits(self, kind: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r[2] == kind)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # ------------------------------------------------------------------------------------------ serving
    def _take(self) -> Fault | None:
        with self._lock:
            if self._plan:
                fault, count = self._plan[0]
                if count <= 1:
                    self._plan.pop(0)
                else:
                    self._plan[0] = (fault, count - 1)
                return fault
            return self._always

    def _serve(self, conn: socket.socket, rfile: Any) -> None:
        request_line = rfile.readline(65536).decode("latin-1").strip()
        if not request_line:
            return
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        while (line := rfile.readline(65536).decode("latin-1").strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = rfile.read(int(headers.get("content-length", 0) or 0))
        fault = self._take()
        with self._lock:
            self.requests.append((method, path, fault.kind if fault else "forward", body))
        if fault is None:
            status, reply_headers, reply = self._forward(method, path, headers, body)
            self._send(conn, status, reply, reply_headers)
        elif fault.kind == "reply":
            self._send(conn, fault.status, fault.body, fault.headers)
        elif fault.kind == "redirect":
            self._send(conn, 307, b"", {"Location": fault.location})
        elif fault.kind == "drip":
            self._drip(conn, fault)
        elif fault.kind == "huge":
            self._huge(conn, fault)
        elif fault.kind == "reset":
            status, reply_headers, reply = self._forward(method, path, headers, body)
            self._reset_mid_body(conn, status, reply, reply_headers)
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        if self.upstream is None:
            return 502, {"Content-Type": "text/plain"}, b"no upstream"
        upstream = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30)
        try:
            keep = {k: v for k, v in headers.items() if k in ("authorization", "content-type", "accept")}
            upstream.request(method, path, body=body, headers=keep)
            answer = upstream.getresponse()
            data = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() in ("content-type", "retry-after")}
            return answer.status, kept, data
        finally:
            upstream.close()

    @staticmethod
    def _head(status: int, headers: dict[str, str], length: int | None) -> bytes:
        lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, conn: socket.socket, status: int, body: bytes, headers: dict[str, str]) -> None:
        conn.sendall(self._head(status, headers, len(body)) + body)

    def _drip(self, conn: socket.socket, fault: Fault) -> None:
        body = b'{"accepted":[],"rejected":[],"padding":"' + b"x" * 10_000 + b'"}'
        conn.sendall(self._head(200, {"Content-Type": "application/json"}, len(body)))
        for byte in body:
            conn.sendall(bytes([byte]))
            time.sleep(fault.interval_s)

    def _huge(self, conn: socket.socket, fault: Fault) -> None:
        conn.sendall(self._head(200, {"Content-Type": "application/json"}, fault.size))
        chunk = b" " * (1024 * 1024)
        for _ in range(fault.size // len(chunk)):
            conn.sendall(chunk)

    def _reset_mid_body(self, conn: socket.socket, status: int, body: bytes, headers: dict[str, str]) -> None:
        conn.sendall(self._head(status, headers, len(body)) + body[: len(body) // 2])
        # SO_LINGER with a zero timeout: close() sends a TCP reset instead of an orderly end
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


@contextmanager
def hostile_proxy(upstream: str = "") -> Iterator[HostileProxy]:
    proxy = HostileProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
