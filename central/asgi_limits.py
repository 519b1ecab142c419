"""Limits the central applies to every request inside the app: body size, body time, memory, JSON parsing,
security headers.

- ``BodyLimit``: refuses a body over ``max_bytes`` (413, on Content-Length and while streaming), a body that has
  not arrived within ``timeout_s`` (408), and a body that would take the bytes held for all requests in flight
  over the shared ``MemoryBudget`` (503 with Retry-After): 60 unfinished 2 MB bodies cannot take the
  central's memory.
- ``JsonRoute``: the route class of every router; parses bodies with ``jsonvalues.parse_json`` so that no
  document (bad UTF-8, 100,000 levels deep) gets anything but a 422.
- ``SecurityHeaders``: nosniff, no framing, no referrer on every answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from central.errors import error_body
from central.jsonvalues import parse_json

log = logging.getLogger("central")

OVERLOAD_RETRY_S = 5
DRAIN_S = 5.0  # at most this long spent reading the rest of a refused body


class MemoryBudget:
    """Bytes of request bodies the central may hold at once, shared by all requests in flight."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            self.peak = max(self.peak, self.held)
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.held -= size


class _Refused(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        more: bool = True,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.more = more  # whether the client still has body to send
        self.headers = headers or []


class BodyLimit:
    """ASGI middleware: read the whole body under the size, time and memory limits, then replay it to the app."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float, budget: MemoryBudget) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.budget = budget

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        try:
            more = await self._read(scope, receive, chunks)
        except _Refused as refused:
            self.budget.give(sum(map(len, chunks)))
            chunks.clear()
            log.warning("refused a request to %s: %s", scope.get("path"), refused.message)
            if refused.status != 408:
                await self._drain(receive, refused.more)
            await send_refusal(send, refused.status, refused.code, refused.message, refused.headers)
            return
        except BaseException:  # cancelled while reading: give the memory back
            self.budget.give(sum(map(len, chunks)))
            raise
        held = sum(map(len, chunks))
        if more:  # the client went away mid-body: nothing to answer
            self.budget.give(held)
            return
        body = b"".join(chunks)
        chunks.clear()
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.budget.give(held)

    async def _read(self, scope: dict, receive: Any, chunks: list[bytes]) -> bool:
        """Read the body into ``chunks`` (each taken from the budget); True when the client left before its end."""
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            raise _Refused(413, "body_too_large", f"request body is larger than {self.max_bytes} bytes", more=True)
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        held, more = 0, True
        while more:
            message = await self._receive(receive, deadline)
            if message["type"] == "http.disconnect":
                return True
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if held + len(chunk) > self.max_bytes:
                raise _Refused(413, "body_too_large", f"request body is larger than {self.max_bytes} bytes", more)
            if chunk and not self.budget.take(len(chunk)):
                busy = "the central holds too many request bodies now; try again later"
                raise _Refused(503, "overloaded", busy, more, [(b"retry-after", str(OVERLOAD_RETRY_S).encode())])
            held += len(chunk)
            chunks.append(chunk)
        return False

    async def _drain(self, receive: Any, more: bool) -> None:
        """Read (and drop) a bounded amount more, so that the client finishes sending and reads the refusal
        instead of a connection reset (a node splits a batch on 413, but not on a reset)."""
        budget = 8 * self.max_bytes
        deadline = asyncio.get_running_loop().time() + min(self.timeout_s, DRAIN_S)
        try:
            while more and budget > 0:
                message = await self._receive(receive, deadline)
                more = message["type"] == "http.request" and message.get("more_body", False)
                budget -= len(message.get("body", b""))
        except _Refused:
            return

    async def _receive(self, receive: Any, deadline: float) -> dict:
        left = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(receive(), max(left, 0.001))
        except TimeoutError:
            raise _Refused(
                408, "request_timeout", f"the request body did not arrive within {self.timeout_s:g} s"
            ) from None


def _declared_length(scope: dict) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise _Refused(400, "bad_request", "Content-Length is not a number", more=False) from None
    return None


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[dict]]:
    replayed = False

    async def replay() -> dict:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_refusal(
    send: Any,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    close: bool = True,
) -> None:
    """Answer a refusal from raw ASGI. ``close``: the connection is closed after it (the rest of the body is not
    read); without, uvicorn drops the body as it arrives and keeps the connection for the next request."""
    data = json.dumps(error_body(code, message), ensure_ascii=False).encode()
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    out += [*([(b"connection", b"close")] if close else []), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": data})


class SecurityHeaders:
    """ASGI middleware adding headers that cost nothing and close whole classes of browser attacks."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.HEADERS if n not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class _SafeJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """Route class of every router: request bodies are parsed by ``parse_json``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def safe_json_handler(request: Request) -> Response:
            return await handler(_SafeJsonRequest(request.scope, request.receive))

        return safe_json_handler
