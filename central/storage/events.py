"""Events: a node's batch stored once by event id (readings in their own table, ``central.storage.readings``),
sequence bookkeeping once per batch, and the operators' cursor over them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from central.storage import queries as q
from central.storage.alerts import ALERT_STATES, apply_alert_event
from central.storage.changes import FEED_LOCK, append_change, settled
from central.storage.database import Database, Tx, any_of
from central.storage.nodes import mark_seen
from central.storage.readings import KIND, NewReading, Readings, is_typed_reading
from central.storage.rows import dumps, event_row
from central.storage.seqs import SeqBook, dump_ranges, load_ranges


class EventLog:
    """Storing node batches and reading them back in the order received."""

    def __init__(self, db: Database, stale_after_s: float, readings: Readings) -> None:
        self.db = db
        self.stale_after_s = stale_after_s
        self.readings = readings

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
            row = tx.one(q.NODE_SEQ_RANGES, (node_id,)) or {}
            seqs = SeqBook(load_ranges(row.get("seq_ranges")), load_ranges(row.get("unused_ranges")))
            missing_before = seqs.missing
            owners = self._owners(tx, {ev["id"] for ev in events})
            fresh: list[Mapping[str, Any]] = []
            for ev in events:
                owner = owners.get(ev["id"])
                if owner is None:
                    owners[ev["id"]] = node_id  # a second copy in this batch is a replay
                    fresh.append(ev)
                elif owner == node_id:
                    replays += 1
                else:
                    foreign.append(ev["id"])
            readings: list[NewReading] = []
            generic: list[tuple[int, Mapping[str, Any], float]] = []
            if fresh:  # held until commit: no reader sees a later position before this batch's commit
                tx.hold_append(FEED_LOCK)
            for position, ev in zip(take_positions(tx, len(fresh)), fresh, strict=True):  # in batch order
                time_ = now - (node_wall_time - ev["wall_time"]) if not ev["clock_synced"] else ev["wall_time"]
                if is_typed_reading(ev):
                    readings.append(NewReading(ev, node_id, time_, node_wall_time, now, position))
                else:
                    generic.append((position, ev, time_))
            taken = _store_events(tx, node_id, generic, node_wall_time, now)
            self.readings.store(tx, readings)
            for ev in fresh:
                if ev["id"] in taken:
                    foreign.append(ev["id"])  # another node's batch stored this id meanwhile
                    continue
                new += 1
                seqs.add(ev.get("seq"))
                if ev["kind"] == "outbox_resumed":
                    payload = ev.get("payload") or {}
                    seqs.not_stored(payload.get("seq_not_stored_from"), payload.get("seq_not_stored_to"), ev.get("seq"))
            counts = (seqs.max_seq, seqs.received, dump_ranges(seqs.unused), seqs.unused_count, seqs.conflicts)
            tx.execute(q.COUNT_BATCH, (dump_ranges(seqs.ranges), *counts, replays, new, node_id))
            if seqs.missing != missing_before:
                append_change(tx, now, "node", node_id, "lost_events", {"seq_missing": seqs.missing})
        self.db.health.stored()
        return new, foreign

    def _owners(self, tx: Tx, ids: Collection[str]) -> dict[str, str]:
        """Which of these event ids are stored already (as events or readings), and for which node."""
        found = self.readings.owners(tx, ids)
        for match, args in any_of(tx.engine, ids):
            found.update({str(r["id"]): r["node_id"] for r in tx.all(q.EVENT_OWNERS.format(match=match), args)})
        return found

    def page(
        self, node_id: str | None = None, kind: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Stored events (readings included) in the order received, after cursor ``after`` (the ``row`` of the
        last one seen)."""
        last = int(settled(self.db, q.EVENTS_BOUNDS).get("last") or 0)
        where: list[str] = ["row > ?", "row <= ?"]
        args: list[Any] = [after, last]
        if node_id:
            where.append("node_id = ?")
            args.append(node_id)
        if kind:
            where.append("kind = ?")
            args.append(kind)
        with self.db.read() as tx:
            rows = [event_row(r) for r in tx.all(q.EVENTS_PAGE.format(where=" AND ".join(where)), (*args, limit))]
            if kind in (None, KIND):
                rows += self.readings.page(tx, node_id, after, last, limit)
        return sorted(rows, key=lambda e: e["row"])[:limit]


def take_positions(tx: Tx, count: int) -> list[int]:
    """``count`` new positions in the one order of receipt of events and readings: the events table's counter
    (SQLite: its AUTOINCREMENT sequence, one writer; PostgreSQL: its identity sequence)."""
    if count == 0:
        return []
    if tx.engine == "sqlite":
        last = tx.scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        if last is None:
            tx.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', 0)")
            last = 0
        tx.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (last + count,))
        return list(range(last + 1, last + count + 1))
    rows = tx.all("SELECT nextval(pg_get_serial_sequence('events', 'row')) AS pos FROM generate_series(1, ?)", (count,))
    return sorted(int(r["pos"]) for r in rows)


def counter_past_readings(tx: Tx) -> None:
    """At start: the events' counter past every reading's position. It always is, except in a database whose rows
    were copied in (``central migrate-db`` moves each table's own counter past its own rows only)."""
    top = tx.scalar("SELECT MAX(row) FROM readings")
    if top is None:
        return
    if tx.engine == "sqlite":
        last = tx.scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        if last is None:
            tx.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (top,))
        elif last < top:
            tx.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (top,))
        return
    sequence = tx.scalar("SELECT pg_get_serial_sequence('events', 'row')")
    if tx.scalar(f"SELECT last_value FROM {sequence}") < top:  # noqa: S608 - the name PostgreSQL gave
        tx.execute("SELECT setval(?, ?)", (sequence, top))


ROWS_PER_INSERT = 50  # 17 values a row: 850 per statement, under every SQLite's limit of 999


def _store_events(
    tx: Tx, node_id: str, events: Sequence[tuple[int, Mapping[str, Any], float]], node_wall_time: float, now: float
) -> set[str]:
    """Store generic events (position, event, time) with one statement (PostgreSQL: an array per column, each of
    one type) or one per ROWS_PER_INSERT rows (SQLite: multi-row VALUES), then build alerts from the alert events
    in batch order.
    Returns the ids another node's batch stored meanwhile (only another node's can: this node's row is locked),
    which are not stored here."""
    rows = [
        (
            position, ev["id"], node_id, ev.get("seq"), ev["kind"], ev["severity"], ev["state"], ev["priority"],
            float(ev["wall_time"]), int(ev["clock_synced"]), float(time_), int(not ev["clock_synced"]),
            float(node_wall_time), float(now),
            dumps(ev.get("payload") or {}), ev.get("alert_id"), dumps(list(ev.get("recipients") or [])),
        )
        for position, ev, time_ in events
    ]  # fmt: skip
    returned: list[dict[str, Any]] = []
    if rows and tx.engine == "postgresql":
        returned = tx.all(q.INSERT_EVENTS_UNNEST, [list(column) for column in zip(*rows, strict=True)])
    elif rows:
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            marks = ", ".join([q.EVENT_VALUES] * len(chunk))
            returned += tx.all(q.INSERT_EVENTS.format(values=marks), [value for row in chunk for value in row])
    stored = {str(r["id"]) for r in returned}
    for _position, ev, time_ in events:
        if ev["id"] in stored and ev.get("alert_id") and ev["state"] in ALERT_STATES:
            apply_alert_event(tx, node_id, ev, time_, now)
    return {ev["id"] for _position, ev, _time in events if ev["id"] not in stored}
