"""Connection limits uvicorn does not have: a request-head timeout and a connection cap that sheds the slowest.

uvicorn (h11) closes an idle kept-alive connection (``timeout_keep_alive``) but waits forever for a request head
that never completes, and accepts connections until the process runs out of file descriptors, when asyncio logs
"socket.accept() out of system resource" on every try (issue 12: 437,446 lines in 28 s, /health unreachable).
``GuardedH11Protocol`` closes a connection whose request head has not arrived ``header_timeout_s`` after it
opened (or after its last answer), and beyond ``max_connections`` drops the oldest connection still waiting for
its head: a client that sends a request at once is served even while a thousand half-open connections are held.
Only when every connection is busy with a request does a new one get a 503. Refusals carry the JSON error body.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from central.errors import error_bytes

log = logging.getLogger("central")

FD_HEADROOM = 64  # descriptors kept free for the database, logs and the listening socket
# the listen queue: a thousand nodes connecting at once (after a restart of the central or the network) overflowed
# a queue of 128 (the kernel's ListenOverflows rose by 312 in one such start, and 65 uploads got a connection reset);
# asyncio accepts up to the backlog in one go before any connection_made() runs: those descriptors must exist too,
# or accept() fails with EMFILE, so a small open-file limit gets a smaller queue (listen_backlog)
BACKLOG = 1024
MIN_BACKLOG = 128
OVERLOAD_RETRY_S = 5


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    max_connections: int


class _Shed:
    """Per server: the connections waiting for a request head, oldest first, and what was shed."""

    def __init__(self) -> None:
        self.waiting: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.counts = {"head_timeouts": 0, "evicted": 0, "refused": 0}


def raw_refusal(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 refusal with the JSON error body, for connections the app never sees."""
    body = error_bytes(code, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"retry-after: {OVERLOAD_RETRY_S}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout and a connection cap (see the module docstring)."""

    limits: ConnectionLimits = ConnectionLimits(header_timeout_s=10.0, max_connections=1000)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # TCP: a Transport
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        shed = self._shed()
        self._wait_for_head()
        if len(self.connections) <= self.limits.max_connections:
            return
        victim = next((c for c in shed.waiting if c is not self), None)
        if victim is not None:
            shed.counts["evicted"] += 1
            victim._close()
            return
        shed.counts["refused"] += 1
        self.transport.write(raw_refusal(503, "Service Unavailable", "overloaded", "too many connections"))
        self._close()

    def _shed(self) -> _Shed:
        state: Any = self.server_state
        if not hasattr(state, "changbai_shed"):
            state.changbai_shed = _Shed()
        return state.changbai_shed

    def _wait_for_head(self) -> None:
        self._shed().waiting[self] = None
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def _head_arrived(self) -> None:
        self._shed().waiting.pop(self, None)
        self._cancel_head_timer()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self in self._shed().waiting:
            self._shed().counts["head_timeouts"] += 1
            if self.conn.trailing_data[0] and not self.transport.is_closing():
                # half a request head arrived: say why the connection ends (a client that sent nothing gets nothing)
                message = f"the request head did not arrive within {self.limits.header_timeout_s:g} s"
                self.transport.write(raw_refusal(408, "Request Timeout", "request_timeout", message))
            self._close()

    def _close(self) -> None:
        self._head_arrived()
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self in self._shed().waiting:
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._head_arrived()
        self.transport.write(raw_refusal(400, "Bad Request", "bad_request", msg))
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's ``http=`` with these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def raise_fd_limit(max_connections: int) -> tuple[int, int]:
    """Raise this process's open-file limit to its hard limit; returns the connection cap it allows and the listen
    backlog (``listen_backlog``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections, BACKLOG
    backlog = listen_backlog(soft)
    allowed = max(10, soft - FD_HEADROOM - backlog)
    if allowed < max_connections:
        log.warning("open-file limit %d allows %d connections, not %d", soft, allowed, max_connections)
    return min(max_connections, allowed), backlog


def listen_backlog(open_files: int) -> int:
    """The listen queue for an open-file limit: BACKLOG, but at most a quarter of the descriptors (at least
    MIN_BACKLOG), so that connections keep the most of them."""
    return max(MIN_BACKLOG, min(BACKLOG, (open_files - FD_HEADROOM) // 4))


class ThrottledAcceptLog:
    """A loop exception handler that logs "accept() out of system resource" once a minute with a count."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.suppressed = 0
        self._last = float("-inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "out of system resource" not in str(context.get("message", "")):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self._last < self.every_s:
            self.suppressed += 1
            return
        self._last = now
        log.error("%s (%d more like it since the last report)", context.get("message"), self.suppressed)
        self.suppressed = 0
