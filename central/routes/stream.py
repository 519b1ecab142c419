"""The console's live feed: server-sent events instead of polling.

``GET /api/v1/stream`` (an operator's session or key) answers ``text/event-stream``: first ``hello`` with the
feed's cursor (a position in the central's change feed, central/storage/changes.py, and the notifier's
attempt and link-answer ids), then ``alerts`` whenever alerts change (an event, an acknowledgement, a delivery attempt, a link
answer) carrying the changed alerts as the API shows them, and ``ping`` every few seconds with the server's time
(a console that hears nothing for 15 s knows the central is away). Changes are found by cursor in storage, so a
feed on one central process sees what another process did; in one process the change hub wakes it at once.
Not part of the node contract, so not in the OpenAPI document (docs/api.md#the-consoles-live-feed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from central.accounts.roles import Actor
from central.deps import Central, OperatorAuth, get_central
from central.routes import API
from central.sse import SSE_HEADERS, sse_event
from central.views import alert_views

pages = APIRouter(include_in_schema=False)
PING_S = 5.0
LOOK_S = 1.0  # changes made by another process are seen within this


def _cursor_text(cursor: tuple[int, int, int]) -> str:
    return ".".join(str(c) for c in cursor)


def _parse_cursor(text: str | None) -> tuple[int, int, int] | None:
    try:
        a, b, c = (int(x) for x in (text or "").split("."))
    except ValueError:
        return None
    return (a, b, c) if min(a, b, c) >= 0 else None


def _changes(central: Central, actor: Actor, cursor: tuple[int, int, int]) -> tuple[list[dict], tuple[int, int, int]]:
    ids, now_cursor = central.notify.changed_since(cursor)
    if not ids:
        return [], now_cursor
    found = [central.store.alerts.get(i) for i in sorted(ids)]
    views = [v for v in alert_views(found, central, central.clock.wall()) if actor.sees_alert(v)]
    return views, now_cursor


async def _feed(
    request: Request, central: Central, actor: Actor, start: tuple[int, int, int] | None
) -> AsyncIterator[str]:
    woken, unsubscribe = central.changes.waiter()
    try:
        cursor = start if start is not None else await run_in_threadpool(central.notify.cursor_now)
        yield "retry: 2000\n\n"
        yield sse_event("hello", {"cursor": _cursor_text(cursor), "server_time": central.clock.wall(),
                               "who": actor.to_json(), "storage": central.store.health.to_json()},
                        _cursor_text(cursor))  # fmt: skip
        last_ping = time.monotonic()
        while not await request.is_disconnected():
            views, cursor2 = await run_in_threadpool(_changes, central, actor, cursor)
            if views or cursor2 != cursor:
                cursor = cursor2
                if views:
                    data = {"alerts": views, "cursor": _cursor_text(cursor), "server_time": central.clock.wall()}
                    yield sse_event("alerts", data, _cursor_text(cursor))
            if time.monotonic() - last_ping >= PING_S:
                last_ping = time.monotonic()
                yield sse_event(
                    "ping", {"server_time": central.clock.wall(), "storage": central.store.health.to_json()}
                )
            try:
                await asyncio.wait_for(woken.wait(), LOOK_S)
            except TimeoutError:
                pass
            woken.clear()
    finally:
        unsubscribe()


@pages.get(f"{API}/stream")
async def stream(request: Request, actor: OperatorAuth) -> StreamingResponse:
    central = get_central(request)
    start = _parse_cursor(request.headers.get("last-event-id") or request.query_params.get("after"))
    return StreamingResponse(_feed(request, central, actor, start), media_type="text/event-stream", headers=SSE_HEADERS)
