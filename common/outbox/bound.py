"""The disk bound (``outbox.max_mb``): how much is for events and how much for the WAL, and how many of the
oldest events of a priority to drop to get back under it. Alerts are never dropped for the bound."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.outbox.errors import OutboxError, fault_of
from common.outbox.wire import event_json

if TYPE_CHECKING:
    from common.outbox.store import Store

log = logging.getLogger("common.outbox")


@dataclass(frozen=True)
class DiskBound:
    """Limits in bytes worked out from ``max_mb``: the WAL gets an eighth (at most 4 MiB), the rest is for
    events; the size is looked at every ``check_every`` bytes of new events, so action starts a few such steps
    before the limit (``soft_limit``) and drops down to ``target``."""

    wal_limit: int
    db_limit: int
    check_every: int
    soft_limit: int
    target: int

    @classmethod
    def from_mb(cls, max_mb: float) -> DiskBound:
        max_bytes = int(max_mb * 1024 * 1024)
        wal_limit = max(64 * 1024, min(4 * 1024 * 1024, max_bytes // 8))
        db_limit = max_bytes - wal_limit
        check_every = max(4096, min(64 * 1024, db_limit // 100))
        soft_limit = db_limit - 4 * check_every
        return cls(wal_limit, db_limit, check_every, soft_limit, int(soft_limit - db_limit * 0.05))

    def to_drop(self, used: int, counts: Mapping[str, int], dead: int, prio: str) -> int:
        """How many of the oldest ``prio`` events to drop, from the average row size, to get to ``target``."""
        rows = sum(counts.values()) + dead
        per_row = max(64, used // max(1, rows))
        return min(counts[prio], max(1, (used - self.target) // per_row + 1))


def keep_under_bound(store: Store) -> None:
    """Keep the file under max_mb: drop the oldest readings, then the oldest state events; never alerts."""
    store.bytes_since_check = 0
    assert store.db is not None
    try:
        used = store.db.used_bytes()
        if used <= store.bound.soft_limit:
            return
        for prio in ("reading", "state"):
            for _ in range(40):
                if used <= store.bound.target or store.counts[prio] == 0:
                    break
                drop_oldest(store, prio, store.bound.to_drop(used, store.counts, store.dead_count, prio), "disk bound")
                used = store.db.used_bytes()
    except sqlite3.Error as exc:
        if fault_of(exc) is None:
            raise OutboxError(f"outbox {store.path}: {exc}") from exc
        log.error("outbox %s: cannot keep the disk bound now: %s", store.path, exc)
        return
    now = store.clock.monotonic()
    if used > store.bound.soft_limit and (store.over_logged_at is None or now - store.over_logged_at >= 600):
        store.over_logged_at = now
        log.error(
            "outbox %s: at its bound (%d of %d bytes) with only alerts and dead letters left; alerts are never dropped",
            store.path,
            used,
            store.bound.db_limit,
        )


def drop_oldest(store: Store, prio: str, n: int, reason: str) -> int:
    """Delete the ``n`` oldest stored events of a priority, count them, leave a technical event."""
    assert store.db is not None
    seqs = store.db.oldest(prio, n)
    if not seqs:
        return 0
    total = store.dropped[prio] + len(seqs)
    if reason == "disk bound":
        reason = f"disk bound {store.section.max_mb:g} MB"
    payload = {"priority": prio, "count": len(seqs), "first_seq": seqs[0], "last_seq": seqs[-1], "reason": reason}
    note = store.note("outbox_dropped", "warning", payload)
    row = (note.seq or 0, note.id, event_json(note))
    count = store.db.drop_through(prio, seqs[-1], row, {f"dropped_{prio}": str(total)})
    store.dropped[prio] = total
    store.counts[prio] -= count
    store.counts["state"] += 1
    log.warning(
        "outbox %s: dropped %d oldest %s events (seq %d..%d): %s", store.path, count, prio, seqs[0], seqs[-1], reason
    )
    return count
