"""The change feed: every change an operator's page or a notifier must see, in one ordered, gap-free log.

A change is ``{"pos", "at", "topic", "key", "action", "data"}``: topic ``alert`` (key: the alert's id; actions
``opened``, ``updated``, ``cleared``, ``acknowledged``, ``resolved``), ``node`` (key: node id; ``registered``,
``reregistered``, ``lost_events``, ``silent``, ``back``) or ``ride`` (key: ride id; ``requested``,
``cancelled``). It is written in the same transaction as the change itself (``append_change``), so a reader
never sees a change the data does not show, nor misses one.

Gap-free under concurrent writers: positions come from a counter, and a reader must never see position 11
before position 10 commits. SQLite has one writer, so commit order is position order. PostgreSQL: each
appending transaction holds a shared advisory lock from taking its position until it commits; a reader takes
the same lock exclusively to read the log's last position (``settled``), so every position up to it has committed
or rolled back, then reads the rows up to it without the lock (``Tx.hold_append`` / ``Tx.wait_appends``). The
events' positions (``GET /events``) are kept the same way, under the same lock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from central.storage import queries as q
from central.storage.database import Database, Tx
from central.storage.rows import change_row, dumps

FEED_LOCK = 7_263_002  # advisory lock key (PostgreSQL) of appends to the ordered logs: the feed, events' positions
TOPICS = ("alert", "node", "ride")


def append_change(tx: Tx, at: float, topic: str, key: str | int, action: str, data: Mapping[str, Any]) -> None:
    """Record a change inside the transaction that makes it."""
    tx.hold_append(FEED_LOCK)
    tx.execute(q.INSERT_CHANGE, (at, topic, str(key), action, dumps(dict(data))))


@dataclass(frozen=True)
class ChangePage:
    """Changes after a cursor. ``reset``: the cursor is older than the kept feed (or from another database):
    reload everything, then follow from ``next_after``."""

    changes: list[dict[str, Any]]
    next_after: int
    reset: bool


class ChangeFeed:
    """Reading the change feed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def page(self, after: int, limit: int = 500, topics: Collection[str] | None = None) -> ChangePage:
        bounds = settled(self.db, q.CHANGE_BOUNDS)
        first, last = bounds.get("first"), bounds.get("last") or 0
        if after > last or (first is not None and after < first - 1):
            return ChangePage([], last, reset=True)
        with self.db.read() as tx:
            if topics:
                marks = ", ".join("?" * len(topics))
                rows = tx.all(q.CHANGES_OF_TOPICS.format(marks=marks), (after, last, *topics, limit))
            else:
                rows = tx.all(q.CHANGES, (after, last, limit))
        changes = [change_row(r) for r in rows]
        # a page filtered by topic that found nothing has still read everything up to ``last``
        full = len(changes) == limit
        return ChangePage(changes, changes[-1]["pos"] if full else max(last, after), reset=False)

    def alerts_changed(self, after: int, limit: int = 5000) -> tuple[set[int], int]:
        """The ids of the alerts changed after ``after`` and the position read up to (a cursor older than the
        kept feed, or from another database, restarts at the newest position)."""
        page = self.page(after, limit, ("alert",))
        return {int(c["key"]) for c in page.changes}, page.next_after

    def latest(self) -> int:
        return int(settled(self.db, q.CHANGE_BOUNDS).get("last") or 0)


def settled(db: Database, bounds_sql: str) -> dict[str, Any]:
    """The bounds of an ordered log (``bounds_sql``), read once no append to the ordered logs is in flight: every
    position up to the last one found has committed or rolled back, and an append that takes a later one has not
    started. The exclusive lock is held for this one statement, not while the caller reads the rows (which it
    reads up to that last position only)."""
    with db.read() as tx:
        tx.wait_appends(FEED_LOCK)
        return tx.one(bounds_sql) or {}
