"""EN 81-28's acknowledgement on the node: asks the central where the open alerts stand (``GET
/api/v1/acknowledgements``), so the alert book stops re-sending what a person has taken in, and the node can tell
the person waiting (the trapped passenger) that a person has. Asked every ``ack_poll_s`` while an alert waits to
be taken in, else every ``heartbeat_interval_s``; run on the uploader's thread, never raises."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable

from common.alerts import AlertBook, OpenAlert
from common.config import CentralSection
from common.contract import MAX_ASKED
from common.http import HttpFailure, HttpReply
from common.outbox import OutboxError

log = logging.getLogger(__name__)
Get = Callable[[str], HttpReply]  # an authorised GET of a URL on the central


class Acknowledgements:
    """Asks about the book's open alerts when due, and passes what the central says to ``book.hear``."""

    def __init__(
        self,
        book: AlertBook,
        central: CentralSection,
        base_url: str,
        on_taken_in: Callable[[OpenAlert], None] | None = None,
    ) -> None:
        self.book = book
        self.url = f"{base_url}/acknowledgements"
        self.poll_s = central.ack_poll_s
        self.slow_s = central.heartbeat_interval_s
        self.on_taken_in = on_taken_in
        self.last_at = float("-inf")
        self.asked = 0
        self.asked_at: dict[str, float] = {}  # alert id -> when last asked about (a node with more than MAX_ASKED)

    def next_at(self) -> float:
        """When to ask next (monotonic): at once for an alert never asked about, then every ``ack_poll_s`` while
        one waits to be taken in, else every ``heartbeat_interval_s``; never while no alert is open."""
        ids, waiting = self.book.asking()
        return self.last_at + (self.poll_s if waiting else self.slow_s) if ids else float("inf")

    def step(self, now: float, get: Get) -> None:
        """Ask now if due (``now``: monotonic); nothing to ask, nothing sent."""
        if now < self.next_at():
            return
        ids, _ = self.book.asking()
        self.last_at = now
        # the longest unasked first: a building's node with more open alerts than one request holds asks about
        # each within a few looks, instead of never about the ones past the first hundred
        batch = sorted(ids, key=lambda i: self.asked_at.get(i, float("-inf")))[:MAX_ASKED]
        self.asked_at = {i: self.asked_at[i] for i in ids if i in self.asked_at} | dict.fromkeys(batch, now)
        query = urllib.parse.urlencode([("alert_id", i) for i in batch])
        try:
            reply = get(f"{self.url}?{query}")
            standing = reply.json()["alerts"] if 200 <= reply.status < 300 else None
        except (HttpFailure, ValueError, KeyError, TypeError) as exc:
            log.info("acknowledgements: not asked: %s", exc)
            return
        if not isinstance(standing, dict):
            log.info("acknowledgements: the central answered %s", reply.status)  # an older central: 404
            return
        self.asked += 1
        try:
            newly = self.book.hear(standing)
        except OutboxError as exc:  # the disk refuses: re-sends go on, and the next look tries again
            log.error("acknowledgements: cannot keep what the central said: %s", exc)
            return
        for alert in newly:
            log.info("alert %s %s taken in at the central: %s", alert.kind, alert.alert_id, alert.heard)
            try:
                if self.on_taken_in is not None:
                    self.on_taken_in(alert)
            except Exception:  # noqa: BLE001 - the node's own reaction must not stop the uploader
                log.exception("acknowledgements: the node's reaction to %s failed", alert.alert_id)
