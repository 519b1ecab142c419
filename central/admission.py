"""Admission control: a bounded number of requests worked on at once per class of route, a bounded line waiting
for a slot; past that a typed 503 ``overloaded`` with Retry-After, decided from the request head.

Two classes, each with its own slots (``[server] max_ingest_in_flight`` and ``max_interactive_in_flight``) and
line (``admission_line``):

- ``ingest``: what nodes send in bulk (events, heartbeats, update checks and reports, registration). After an
  outage a thousand nodes drain at once; the ones over the bound are told to come back later instead of
  queueing until their read timeout and sending everything again. "Later" is when the requests ahead of them
  are likely served, measured (``AdmissionGate.retry_after``): long enough to spread them, short enough that
  the central does not sit idle while they wait.
- ``interactive``: people and the kiosks' ride requests (the console, its reads, acknowledgements, rides).
  A flood of uploads never takes their slots.
- ``alert``: a node's upload that carries an alert (a trapped passenger, a silent flat), marked by the node with
  the header ``X-Changbai-Priority: alert`` (its outbox sends alerts first, so such a batch leads with them). Its
  own slots (``max_alert_in_flight``): a thousand meters draining readings never make an alert wait behind them.
  The mark buys no more than those slots: a node that marked every batch would share them with the others.

Not counted: ``/health`` (the load balancer's probe must answer whatever the load), the change streams (bounded
by ``max_streams``) and release file downloads (long transfers; bounded by the connection cap and the staged
rollout).

Two middlewares share the counters. ``Admission`` (outside the body limits) refuses a request from its head when
its class has every slot taken and a full line: no byte of the body is read, the connection is kept, and
uvicorn drops the body as it arrives. ``AdmissionSlot`` (inside them) takes the slot once the body is read, so a
body still arriving holds none and slow senders cannot take them all; should the line have filled meanwhile,
that request is refused too.

People first: while a console request is worked on, and for ``[server] interactive_first_s`` after the last one
ended, uploads of readings (``ingest``; not alerts) run one at a time in this process and the rest wait in their
line. On a busy process the uploads' threads take the interpreter lock in turn with the console's: with four of
them and nothing yielding an operator's refresh took 350-400 ms at 1,000 nodes draining batches of 200 into
PostgreSQL, against 95-150 ms with two and the yielding (docs/central.md). A refresh every 5 s makes the uploads
give way for about one second in five; the ingest rate measured the same.

Few slots and a long line: the requests worked on at once are what the cores and
the database connections can serve (the PostgreSQL pool must keep connections free for the console's reads),
and a request in line costs a coroutine and its body, not a thread. Each central process has its own bounds
(``central serve --workers N`` admits N times as many).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from central.asgi_limits import send_refusal
from common.contract import API_PREFIX, PRIORITY_HEADER

log = logging.getLogger("central")

INGEST = "ingest"
INTERACTIVE = "interactive"
ALERT = "alert"
CLASSES = (INGEST, INTERACTIVE, ALERT)
_PRIORITY_KEY = PRIORITY_HEADER.lower().encode()
_EVENTS = f"{API_PREFIX}/events"

_INGEST_POSTS = frozenset(f"{API_PREFIX}{p}" for p in ("/events", "/heartbeat", "/nodes/register", "/updates/report"))
_INGEST_GETS = frozenset({f"{API_PREFIX}/updates/check"})
_EXEMPT = frozenset({"/health", f"{API_PREFIX}/health", f"{API_PREFIX}/stream", f"{API_PREFIX}/changes/stream"})
_DOWNLOADS = f"{API_PREFIX}/releases/"
LOG_EVERY_S = 10.0  # at most one log line per class this often while refusing
HOLD_WEIGHT = 0.2  # of each ended request in the moving mean of how long a slot is held


def route_class(method: str, path: str, priority: bytes = b"") -> str | None:
    """The admission class of a request (``ingest``, ``interactive`` or ``alert``; ``priority`` is its
    ``X-Changbai-Priority`` header), or None when it is not counted."""
    if path in _EXEMPT or (path.startswith(_DOWNLOADS) and "/files/" in path):
        return None
    if method == "POST" and path == _EVENTS and priority.strip().lower() == b"alert":
        return ALERT
    if (method == "POST" and path in _INGEST_POSTS) or (method == "GET" and path in _INGEST_GETS):
        return INGEST
    return INTERACTIVE


def scope_class(scope: dict) -> str | None:
    """``route_class`` of an ASGI scope (None for what is not an HTTP request)."""
    if scope["type"] != "http":
        return None
    priority = next((value for key, value in scope.get("headers", ()) if key == _PRIORITY_KEY), b"")
    return route_class(scope.get("method", ""), scope.get("path", ""), priority)


@dataclass
class ClassCounts:
    """One class's bound, the requests working and waiting, and what it admitted and refused since the start."""

    limit: int
    line: int
    working: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)
    peak: int = 0
    admitted: int = 0
    refused: int = 0
    refused_since_log: int = 0
    logged_at: float = -LOG_EVERY_S
    hold_s: float | None = None  # how long a request holds its slot (moving mean); None until one has ended

    def full(self) -> bool:
        """Every slot taken and the line full."""
        return self.working + len(self.waiting) >= self.limit + self.line

    def held(self, seconds: float) -> None:
        """A request held its slot ``seconds``: the moving mean follows (a fifth of the way each time)."""
        self.hold_s = seconds if self.hold_s is None else self.hold_s + HOLD_WEIGHT * (seconds - self.hold_s)


class AdmissionGate:
    """Each class's counters (``app.state.admission``), kept on the event loop's thread: no lock is needed."""

    def __init__(
        self,
        limits: dict[str, int],
        line: int,
        retry_after_s: int,
        rng: random.Random | None = None,
        interactive_first_s: float = 0.0,
    ) -> None:
        self.classes = {name: ClassCounts(limits[name], line) for name in CLASSES}
        self.retry_after_s = retry_after_s
        self._rng = rng or random.Random()
        self.interactive_first_s = interactive_first_s
        self._people_until = 0.0  # monotonic time until which uploads yield to the console
        self._wake: asyncio.TimerHandle | None = None

    def _yielding(self) -> bool:
        """Uploads yield: a console request is working, or one ended less than ``interactive_first_s`` ago."""
        if self.interactive_first_s <= 0:
            return False
        return self.classes[INTERACTIVE].working > 0 or time.monotonic() < self._people_until

    def limit(self, counts: ClassCounts) -> int:
        """The slots ``counts`` may use now: one for uploads of readings while they yield to the console."""
        if counts is self.classes[INGEST] and self._yielding():
            return min(1, counts.limit)
        return counts.limit

    def _people_done(self) -> None:
        """A console request ended: uploads yield ``interactive_first_s`` more, then take their slots again."""
        if self.interactive_first_s <= 0:
            return
        self._people_until = time.monotonic() + self.interactive_first_s
        if self._wake is not None:
            self._wake.cancel()
        self._wake = asyncio.get_running_loop().call_later(self.interactive_first_s, self._refill)

    def _refill(self) -> None:
        """Hand the uploads' slots freed while they yielded to the ones waiting in line."""
        self._wake = None
        counts = self.classes[INGEST]
        while counts.waiting and counts.working < self.limit(counts):
            counts.working += 1  # a slot more, handed to the first in line by release (or back, if none is left)
            self.release(counts)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Per class: limit, working, waiting, peak, admitted, refused (for tests and benches)."""
        return {
            name: {
                "limit": c.limit,
                "working": c.working,
                "waiting": len(c.waiting),
                "peak": c.peak,
                "admitted": c.admitted,
                "refused": c.refused,
            }
            for name, c in self.classes.items()
        }

    async def acquire(self, counts: ClassCounts) -> bool:
        """Take a slot, waiting in line behind at most ``line`` others; False when the line is full too."""
        if counts.working < self.limit(counts) and not counts.waiting:
            counts.working += 1
        elif len(counts.waiting) < counts.line:
            turn = asyncio.get_running_loop().create_future()
            counts.waiting.append(turn)
            try:
                await turn  # release() hands its slot over: ``working`` stays counted
            except asyncio.CancelledError:
                if turn in counts.waiting:
                    counts.waiting.remove(turn)
                elif not turn.cancelled():
                    self.release(counts)  # the slot came as this waiter was cancelled: pass it on
                raise
        else:
            return False
        counts.admitted += 1
        counts.peak = max(counts.peak, counts.working)
        return True

    def release(self, counts: ClassCounts) -> None:
        """Give the slot to the first request in line, or back (also back when uploads yield and hold more
        than their one slot)."""
        if counts is self.classes[INTERACTIVE]:
            self._people_done()
        while counts.waiting and counts.working <= self.limit(counts):
            turn = counts.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        counts.working -= 1

    def retry_after(self, counts: ClassCounts) -> int:
        """The shortest Retry-After worth giving: the seconds the requests working and waiting take to be served
        at the pace measured (at least 1, at most ``retry_after_s``; ``retry_after_s`` until one has ended). A
        fixed 5-10 s kept the last nodes of a backlog waiting while the central had room for them; at full load
        the shorter wait costs some ingest in 503s (docs/central.md, "Corrected (session 16)")."""
        if counts.hold_s is None:
            return self.retry_after_s
        drain = (counts.working + len(counts.waiting)) * counts.hold_s / max(1, self.limit(counts))
        return max(1, min(self.retry_after_s, math.ceil(drain)))

    async def refuse(self, name: str, send: Any) -> None:
        """The typed 503 with Retry-After spread over [r, 2r], r from ``retry_after`` (refused nodes must not
        all come back together); the connection is kept."""
        counts = self.classes[name]
        counts.refused += 1
        counts.refused_since_log += 1
        low = self.retry_after(counts)
        wait = self._rng.randint(low, 2 * low)
        now = time.monotonic()
        if now - counts.logged_at >= LOG_EVERY_S:
            log.warning(
                "overloaded: %d %s request(s) refused since the last such line (%d working, %d waiting); told to"
                " retry after %d-%d s",
                counts.refused_since_log,
                name,
                counts.working,
                len(counts.waiting),
                low,
                2 * low,
            )
            counts.logged_at, counts.refused_since_log = now, 0
        message = f"the central has {counts.working} {name} requests working and {len(counts.waiting)} waiting"
        message += f", its limit; try again in {wait} s"
        await send_refusal(send, 503, "overloaded", message, [(b"retry-after", str(wait).encode())], close=False)


class Admission:
    """ASGI middleware outside ``BodyLimit``: a request whose class is full (every slot taken, the line full) is
    refused from its head, before any of its body is read. The others go on to have their bodies read."""

    def __init__(self, app: Any, gate: AdmissionGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        name = scope_class(scope)
        if name is not None and self.gate.classes[name].full():
            await self.gate.refuse(name, send)
            return
        await self.app(scope, receive, send)


class AdmissionSlot:
    """ASGI middleware inside ``BodyLimit``: the request, its body read, takes a slot of its class (or waits in
    line for one) for as long as the route works on it. A body still arriving holds no slot, so slow senders
    cannot take them; they are bounded by ``max_buffered_bytes`` and ``body_timeout_s`` instead."""

    def __init__(self, app: Any, gate: AdmissionGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        name = scope_class(scope)
        if name is None:
            await self.app(scope, receive, send)
            return
        counts = self.gate.classes[name]
        if not await self.gate.acquire(counts):
            await self.gate.refuse(name, send)  # many bodies finished at once: the line filled meanwhile
            return
        start = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            counts.held(time.monotonic() - start)
            self.gate.release(counts)
