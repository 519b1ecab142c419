"""Server-sent events: one message of a ``text/event-stream`` answer (the console's feed and the change feed)."""

from __future__ import annotations

import json
from typing import Any

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # nginx must not hold the events back


def sse_event(name: str, data: Any, event_id: str | int | None = None) -> str:
    """One event: its ``id`` (what a reconnecting client sends back as Last-Event-ID), name and JSON data."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
