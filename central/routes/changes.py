"""The change feed for consoles and notifiers: a cursor poll (``GET /changes``) and the same as server-sent
events (``GET /changes/stream``), so a page follows what changes without downloading every node.

The stream is not in the OpenAPI document (a stream has no finite answer to check against a schema); its format
is in docs/api.md#changes. Streams are bounded by ``[server] max_streams``; each is woken by this process's
changes (central/changes.py) and otherwise looks every ``feed_poll_s`` (several processes on one PostgreSQL each
serve their own streams from the same feed). The console's live feed (routes/stream.py) reads the same feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Collection
from typing import Annotated, Any, Literal

from fastapi import Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from central.bodies import MAX_SAFE_INT
from central.deps import ClockDep, ConfigDep, OperatorAuth, StoreDep, require_everywhere
from central.errors import ApiError, refusals
from central.routes import api_router
from central.sse import SSE_HEADERS, sse_event
from central.storage import Store
from central.storage.changes import ChangePage

router = api_router("operator")
KEEPALIVE_S = 15.0
Topic = Literal["alert", "node", "ride"]
After = Annotated[int, Query(ge=0, le=MAX_SAFE_INT, description="the last pos seen (0: from the start)")]
Topics = Annotated[list[Topic] | None, Query(description="only these topics (repeat the parameter)")]


def _whole_feed(actor: Any) -> None:
    """The raw feed carries every kind at every site: machine keys and administrators of every site only; a
    person of some sites or some kinds follows the console's filtered live feed (GET /api/v1/stream)."""
    require_everywhere(actor, "audit")


def _page_out(page: ChangePage, now: float) -> dict[str, Any]:
    return {"changes": page.changes, "next_after": page.next_after, "reset": page.reset, "server_time": now}


@router.get("/changes", responses=refusals(401, 403, 422, 503))
def get_changes(
    actor: OperatorAuth,
    store: StoreDep,
    clock: ClockDep,
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    topic: Topics = None,
) -> dict[str, Any]:
    """What changed after ``after``, oldest first: ``{"pos", "at", "topic", "key", "action", "data"}`` each.
    Pass ``next_after`` as ``after`` next time. ``reset: true``: the cursor is older than the kept feed (or
    from another database): reload the views, then follow from ``next_after``. Machine keys and administrators
    of every site only (403 otherwise)."""
    _whole_feed(actor)
    return _page_out(store.changes.page(after, limit, topic), clock.wall())


class StreamSlots:
    """How many change streams may be open at once (each holds a connection for minutes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.open -= 1


async def _stream(
    request: Request, store: Store, after: int, topics: Collection[str] | None, poll_s: float, slots: StreamSlots
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    woken, unsubscribe = request.app.state.changes.waiter()  # this process's changes wake it at once
    try:
        yield "retry: 3000\n\n"
        while not await request.is_disconnected():
            page = await run_in_threadpool(store.changes.page, after, 500, topics)
            if page.reset:
                yield sse_event("reset", {"next_after": page.next_after})
            for change in page.changes:
                yield sse_event(change["topic"], change, change["pos"])
            if page.changes or page.reset:
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= KEEPALIVE_S:
                yield ": keepalive\n\n"
                quiet_since = loop.time()
            after = page.next_after
            if len(page.changes) < 500:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), poll_s)  # other processes' changes: seen within poll_s
                woken.clear()
    finally:
        unsubscribe()
        slots.give()


@router.get("/changes/stream", include_in_schema=False, responses=refusals(401, 403, 422, 503))
async def stream_changes(
    request: Request,
    actor: OperatorAuth,
    store: StoreDep,
    config: ConfigDep,
    after: After = 0,
    topic: Topics = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-sent events: one event per change (``id`` = its pos, ``event`` = its topic), ``reset`` when the
    cursor is too old, a comment every 15 s while nothing changes. Resumes after ``Last-Event-ID``."""
    _whole_feed(actor)
    if last_event_id is not None and last_event_id.isdigit():
        after = int(last_event_id)
    slots: StreamSlots = request.app.state.stream_slots
    if not slots.take():
        raise ApiError(
            503,
            "overloaded",
            f"{slots.limit} change streams are open; poll GET /changes",
            headers={"Retry-After": "30"},
        )
    body = _stream(request, store, after, topic, config.server.feed_poll_s, slots)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
