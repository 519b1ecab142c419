"""The people's side of the simulated community: real receivers on loopback for what the notifier sends.

``WebhookReceiver`` is an HTTP server that answers like a WeCom or DingTalk robot (``{"errcode": 0}``), an SMS
gateway or a plain webhook, and records every request; ``fail_next`` makes it refuse the next requests (a robot
over its rate, a gateway down). ``MailReceiver`` is an SMTP server (aiosmtpd) that records every message. The
main job and the notifier tests both use them: nothing here is a mock of the notifier's side.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

ROBOT_PATHS = ("/wecom", "/dingtalk")


@dataclass
class Received:
    """One request as it arrived."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Failures:
    count: int = 0
    status: int = 500
    body: bytes = b""
    retry_after: str | None = None
    path: str = "/"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        owner = self.server.owner
        owner._arrived(self.path)
        status, reply, headers = owner._answer(self.path)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        try:
            self.end_headers()
            self.wfile.write(reply)
        finally:  # the message arrived even when its sender is gone before the answer (recorded all the same)
            owner._record(Received(time.time(), self.path, dict(self.headers.items()), body, status))

    def log_message(self, *_: Any) -> None:  # quiet: the timeline says what arrived
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: WebhookReceiver


class WebhookReceiver:
    """An HTTP receiver on 127.0.0.1 (port 0: a free one); ``url(path)`` for a channel's ``url``."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.failures = _Failures()
        self._cond = threading.Condition()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self.on_receive: Callable[[Received], None] | None = None
        self._script: list[tuple[str, int, bytes, dict[str, str]]] = []
        self._hold: tuple[str, threading.Event, threading.Event] | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def fail_next(
        self, count: int, status: int = 500, body: bytes = b"", retry_after: str | None = None, path: str = "/"
    ) -> None:
        """Answer the next ``count`` requests to paths starting with ``path`` with ``status`` (a robot's error:
        status 200 with an errcode ``body``)."""
        with self._cond:
            self.failures = _Failures(count, status, body, retry_after, path)

    def reply_with(self, path: str, *answers: tuple[int, bytes] | tuple[int, bytes, dict[str, str]]) -> None:
        """Answer the next requests to paths starting with ``path`` with these (status, body[, headers]) in
        turn (a provider's documented bodies, replayed); then as usual."""
        with self._cond:
            for status, body, *headers in answers:
                self._script.append((path, status, body, dict(headers[0]) if headers else {}))

    def hold_next(self, path: str) -> tuple[threading.Event, threading.Event]:
        """Hold the next request to ``path`` before answering: returns (arrived, release) events."""
        arrived, release = threading.Event(), threading.Event()
        with self._cond:
            self._hold = (path, arrived, release)
        return arrived, release

    def _arrived(self, path: str) -> None:
        with self._cond:
            hold = self._hold if self._hold and path.startswith(self._hold[0]) else None
            if hold:
                self._hold = None
        if hold:
            hold[1].set()
            hold[2].wait(30)

    def unique(self, path: str = "/") -> list[Received]:
        """The requests answered 2xx, one per ``Idempotency-Key`` (what a receiver that drops repeats keeps)."""
        seen: dict[str, Received] = {}
        for r in self.delivered():
            if r.path.startswith(path):
                seen.setdefault(r.headers.get("Idempotency-Key", str(id(r))), r)
        return list(seen.values())

    def _answer(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        with self._cond:
            for i, (prefix, status, body, headers) in enumerate(self._script):
                if path.startswith(prefix):
                    del self._script[i]
                    return status, body, headers
            f = self.failures
            if f.count > 0 and path.startswith(f.path):
                f.count -= 1
                headers = {"Retry-After": f.retry_after} if f.retry_after else {}
                return f.status, f.body or b'{"error":"simulated failure"}', headers
        if path.startswith(ROBOT_PATHS):
            return 200, b'{"errcode":0,"errmsg":"ok"}', {}
        return 200, b'{"ok":true}', {}

    def _record(self, item: Received) -> None:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()
        if self.on_receive is not None:
            self.on_receive(item)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float = 10.0) -> bool:
        """Wait until ``predicate(received)`` holds (True) or the time is up (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.received), timeout_s)

    def delivered(self) -> list[Received]:
        """The requests answered 2xx (what the sender counts as delivered)."""
        with self._cond:
            return [r for r in self.received if 200 <= r.answered < 300]


@dataclass
class MailReceiver:
    """An SMTP server on 127.0.0.1 recording every message (aiosmtpd)."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    on_receive: Callable[[EmailMessage], None] | None = None

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._controller: Any = None

    def start(self) -> MailReceiver:
        receiver = self

        class _Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                mail = message_from_bytes(envelope.content, policy=policy.default)
                with receiver._cond:
                    receiver.messages.append(mail)
                    receiver._cond.notify_all()
                if receiver.on_receive is not None:
                    receiver.on_receive(mail)
                return "250 OK"

        port = self.port or free_port()
        self._controller = Controller(_Handler(), hostname="127.0.0.1", port=port)
        self._controller.start()
        self.port = port
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def wait_for(self, predicate: Callable[[list[EmailMessage]], bool], timeout_s: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout_s)


def free_port() -> int:
    """A loopback port nobody listens on now (for a server started in another process, or a minute later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
