"""Files the central serves (release files, with HTTP Range): ``TypedFileResponse`` is Starlette's FileResponse
whose own refusals (416 for a range past the end, 400 for a malformed Range) carry the typed refusal body of
ERROR-CONTRACT.md instead of Starlette's plain text; the ``Content-Range: bytes */size`` of a 416 is kept."""

from __future__ import annotations

from typing import Any

from starlette.responses import FileResponse
from starlette.types import Message, Receive, Scope, Send

from central.errors import STATUSES, error_bytes

RANGE_REFUSALS = {416: "the Range asks for bytes past the end of the file", 400: "the Range header is malformed"}


class TypedFileResponse(FileResponse):
    """A FileResponse that never answers a non-2xx in plain text."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = False

        async def typed(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] >= 400:
                refused = True
                await _send_refusal(send, message)
            elif not refused:  # Starlette's own body of a refusal is dropped
                await send(message)

        await super().__call__(scope, receive, typed)


async def _send_refusal(send: Send, start: Message) -> None:
    status: int = start["status"]
    code = STATUSES.get(status, ("http_error", ""))[0]
    body = error_bytes(code, RANGE_REFUSALS.get(status, f"the file cannot be served ({status})"))
    kept: list[Any] = [(k, v) for k, v in start.get("headers", []) if k.lower() == b"content-range"]
    headers = [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
