"""Events: a node's batch stored once by event id, sequence bookkeeping, and the operators' cursor over them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from central.storage import queries as q
from central.storage.alerts import ALERT_STATES, apply_alert_event
from central.storage.changes import append_change
from central.storage.database import Database
from central.storage.nodes import mark_seen
from central.storage.rows import dumps, event_row
from central.storage.seqs import SeqBook, dump_ranges, load_ranges


class EventLog:
    """Storing node batches and reading them back in the order received."""

    def __init__(self, db: Database, stale_after_s: float) -> None:
        self.db = db
        self.stale_after_s = stale_after_s

    def ingest(
        self, node_id: str, events: Sequence[Mapping[str, Any]], node_wall_time: float, now: float
    ) -> tuple[int, list[str]]:
        """Store validated wire events of one node in one transaction.

        Returns (how many were new, ids already stored for ANOTHER node: not this node's events to
        acknowledge). Replays (ids already stored for this node) are skipped. Each event's ``time`` is its wall
        time, or when the node's clock was not synced, ``now - (node_wall_time - wall_time)``: the event's age by
        the node's own clock measured back from the central's receive time. Alerts are built from alert events
        in batch order.
        """
        new = replays = 0
        foreign: list[str] = []
        with self.db.write() as tx:
            mark_seen(tx, node_id, now, self.stale_after_s)  # the node's row is locked until commit from here
            seqs = SeqBook(load_ranges(tx.scalar(q.NODE_SEQ_RANGES, (node_id,))))
            missing_before = seqs.missing
            for ev in events:
                corrected = not ev["clock_synced"]
                time_ = now - (node_wall_time - ev["wall_time"]) if corrected else ev["wall_time"]
                stored = tx.execute(
                    q.INSERT_EVENT,
                    (
                        ev["id"], node_id, ev.get("seq"), ev["kind"], ev["severity"], ev["state"], ev["priority"],
                        ev["wall_time"], int(ev["clock_synced"]), time_, int(corrected), node_wall_time, now,
                        dumps(ev.get("payload") or {}), ev.get("alert_id"), dumps(list(ev.get("recipients") or [])),
                    ),
                )  # fmt: skip
                if stored == 0:
                    if tx.scalar(q.EVENT_OWNER, (ev["id"],)) != node_id:
                        foreign.append(ev["id"])
                    else:
                        replays += 1
                    continue
                new += 1
                seqs.add(ev.get("seq"))
                if ev.get("alert_id") and ev["state"] in ALERT_STATES:
                    apply_alert_event(tx, node_id, ev, time_, now)
            tx.execute(
                q.COUNT_BATCH,
                (dump_ranges(seqs.ranges), seqs.max_seq, seqs.received, seqs.conflicts, replays, new, node_id),
            )
            if seqs.missing != missing_before:
                append_change(tx, now, "node", node_id, "lost_events", {"seq_missing": seqs.missing})
        return new, foreign

    def page(
        self, node_id: str | None = None, kind: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Stored events in the order received, after cursor ``after`` (the ``row`` of the last one seen)."""
        where: list[str] = ["row > ?"]
        args: list[Any] = [after]
        if node_id:
            where.append("node_id = ?")
            args.append(node_id)
        if kind:
            where.append("kind = ?")
            args.append(kind)
        with self.db.read() as tx:
            rows = tx.all(q.EVENTS_PAGE.format(where=" AND ".join(where)), (*args, limit))
        return [event_row(r) for r in rows]
