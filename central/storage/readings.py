"""Water meter readings in their own narrow typed table (issue 15): about 20M a day in a district.

A ``meter_reading`` event whose payload has the usual typed fields is stored as one ``readings`` row (a meter key,
times, litres; a ``rest`` column only for what differs from the usual reading) instead of a generic ``events``
row; ``GET /events`` still returns it, rebuilt as the event it was, at its position in the one order of receipt
(both tables take positions from the events' counter). Each stored reading also updates its meter's
``water_days`` row for the local day of its time (``[retention] utc_offset_h``): the first and the last reading
of the day. Those two points per day are all the daily chart needs (water use is interpolated between readings,
and midnight always falls between a day's last reading and the next day's first), so the duty console's 30-day
chart reads them, and raw readings can go after ``[retention] readings_days`` while daily totals stay for good.

Idempotency: a reading id already in ``readings`` is a replay; a replay that comes after its raw reading was
removed (more than ``readings_days`` after it was received) is stored again, and changes no daily total.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from central.storage.database import Database, Tx, any_of
from central.storage.rows import event_row

KIND = "meter_reading"
TYPED = ("meter_id", "resident", "total_litres", "raw_litres", "read_wall")
USUAL: dict[str, Any] = {"severity": "info", "state": "observed", "alert_id": None, "recipients": []}
SYNCED, FIRST = 1, 2  # bits of ``flags``: the node's clock was synced; the first reading after a start ("state")
DAY_S = 86_400.0

INSERT_READING = (
    "INSERT INTO readings (row, id, meter, seq, time, wall_time, node_wall_time, received_at, total_litres,"
    " raw_litres, read_wall, flags, rest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_READINGS_UNNEST = (  # PostgreSQL: a batch's readings in one statement, an array per column
    "INSERT INTO readings (row, id, meter, seq, time, wall_time, node_wall_time, received_at, total_litres,"
    " raw_litres, read_wall, flags, rest) SELECT * FROM unnest(?::bigint[], ?::uuid[], ?::bigint[], ?::bigint[],"
    " ?::float8[], ?::float8[], ?::float8[], ?::float8[], ?::float8[], ?::float8[], ?::float8[], ?::smallint[],"
    " ?::text[])"
)
UPSERT_DAY = (
    "INSERT INTO water_days (meter, day, first_time, first_total, last_time, last_total, readings)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter, day) DO UPDATE SET"
    " first_total = CASE WHEN excluded.first_time < water_days.first_time THEN excluded.first_total"
    " ELSE water_days.first_total END,"
    " first_time = CASE WHEN excluded.first_time < water_days.first_time THEN excluded.first_time"
    " ELSE water_days.first_time END,"
    " last_total = CASE WHEN excluded.last_time > water_days.last_time THEN excluded.last_total"
    " ELSE water_days.last_total END,"
    " last_time = CASE WHEN excluded.last_time > water_days.last_time THEN excluded.last_time"
    " ELSE water_days.last_time END,"
    " readings = water_days.readings + excluded.readings"
)
READING_OWNERS = "SELECT r.id, m.node_id FROM readings r JOIN meters m ON m.meter = r.meter WHERE r.id {match}"
MOVE_PAGE = "SELECT * FROM events WHERE row > ? AND kind = ? ORDER BY row LIMIT ?"
READINGS_PAGE = (
    "SELECT r.*, m.node_id, m.meter_id, m.resident FROM readings r JOIN meters m ON m.meter = r.meter"
    " WHERE r.row > ? AND r.row <= ? {node} ORDER BY r.row LIMIT ?"
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def canonical_id(event_id: str) -> bool:
    """A UUID in its usual text (what PostgreSQL's ``uuid`` column gives back unchanged)."""
    try:
        return str(uuid.UUID(event_id)) == event_id
    except ValueError:
        return False


def is_typed_reading(ev: Mapping[str, Any]) -> bool:
    """Whether the event goes to ``readings``: a meter reading with a numeric total (anything else, even a
    reading, is a generic event: stored whole, never refused)."""
    payload = ev.get("payload")
    if ev["kind"] != KIND or not isinstance(payload, dict) or not _number(payload.get("total_litres")):
        return False
    if ev["priority"] not in ("reading", "state") or not canonical_id(ev["id"]):
        return False
    texts = all(payload.get(k) is None or isinstance(payload[k], str) for k in ("meter_id", "resident"))
    return texts and all(payload.get(k) is None or _number(payload[k]) for k in ("raw_litres", "read_wall"))


def _rest(ev: Mapping[str, Any]) -> str | None:
    """What this reading has that the usual one does not, as JSON (None: nothing)."""
    rest: dict[str, Any] = {}
    for key, usual in USUAL.items():
        value = list(ev.get(key) or []) if key == "recipients" else ev.get(key)
        if value != usual:
            rest[key] = value
    payload = ev["payload"]
    extra = {k: v for k, v in payload.items() if k not in TYPED}
    extra.update({k: "" for k in ("meter_id", "resident") if payload.get(k) == ""})
    if extra:
        rest["payload"] = extra
    absent = [k for k in TYPED if k not in payload]
    if absent:
        rest["absent"] = absent
    return json.dumps(rest, separators=(",", ":"), sort_keys=True) if rest else None


def as_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``readings`` row (joined with its meter) as the event the node sent, in ``event_row``'s shape."""
    rest = json.loads(row["rest"]) if row["rest"] else {}
    payload: dict[str, Any] = {
        "meter_id": row["meter_id"] or None,
        "resident": row["resident"] or None,
        "total_litres": row["total_litres"],
        "raw_litres": row["raw_litres"],
        "read_wall": row["read_wall"],
    }
    payload.update(rest.get("payload", {}))
    for key in rest.get("absent", ()):
        payload.pop(key, None)
    synced = bool(row["flags"] & SYNCED)
    event = {
        "row": row["row"], "id": str(row["id"]), "node_id": row["node_id"], "seq": row["seq"], "kind": KIND,
        "priority": "state" if row["flags"] & FIRST else "reading", "wall_time": row["wall_time"],
        "clock_synced": synced, "time": row["time"], "time_corrected": not synced,
        "node_wall_time": row["node_wall_time"], "received_at": row["received_at"], "payload": payload,
        **USUAL, "recipients": [],
    }  # fmt: skip
    event.update({k: v for k, v in rest.items() if k in USUAL})
    return event


@dataclass(frozen=True)
class NewReading:
    """A reading to store: the wire event, its node, its corrected time, when it was received and the node's clock
    then, and its position (``central.storage.events.take_positions``, or its old one when moved from events)."""

    event: Mapping[str, Any]
    node_id: str
    time: float
    node_wall_time: float
    received_at: float
    row: int


class Readings:
    """Storing a batch's readings and reading series back (one per ``Store``; caches meter keys, which never
    change once made)."""

    def __init__(self, db: Database, utc_offset_h: float) -> None:
        self.db = db
        self.offset_s = utc_offset_h * 3600.0
        self._meters: dict[tuple[str, str, str], int] = {}

    def day(self, t: float) -> int:
        """The local day number of a time (days since 1970-01-01 at ``utc_offset_h``)."""
        return math.floor((t + self.offset_s) / DAY_S)

    def day_start(self, day: int) -> float:
        return day * DAY_S - self.offset_s

    def meter(self, tx: Tx, node_id: str, payload: Mapping[str, Any]) -> int:
        key = (node_id, payload.get("meter_id") or "", payload.get("resident") or "")
        found = self._meters.get(key)
        if found is None:
            made = tx.execute(
                "INSERT INTO meters (node_id, meter_id, resident) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", key
            )
            found = int(tx.scalar("SELECT meter FROM meters WHERE node_id = ? AND meter_id = ? AND resident = ?", key))
            if not made:  # cached once committed before: a key made in a transaction that rolls back is not kept
                self._meters[key] = found
        return found

    def store(self, tx: Tx, new: Sequence[NewReading]) -> None:
        """Store these new readings (their ids checked already, their positions taken) and fold them into their
        days."""
        if not new:
            return
        days: dict[tuple[int, int], list[tuple[float, float]]] = {}
        values = []
        for item in new:
            ev, payload = item.event, item.event["payload"]
            meter = self.meter(tx, item.node_id, payload)
            flags = (SYNCED if ev["clock_synced"] else 0) | (FIRST if ev["priority"] == "state" else 0)
            values.append((
                item.row, ev["id"], meter, ev.get("seq"), float(item.time), float(ev["wall_time"]),
                float(item.node_wall_time), float(item.received_at), float(payload["total_litres"]),
                _float(payload.get("raw_litres")), _float(payload.get("read_wall")), flags, _rest(ev),
            ))  # fmt: skip
            days.setdefault((meter, self.day(item.time)), []).append((item.time, float(payload["total_litres"])))
        if tx.engine == "postgresql":
            tx.execute(INSERT_READINGS_UNNEST, [list(column) for column in zip(*values, strict=True)])
        else:
            tx.many(INSERT_READING, values)
        tx.many(UPSERT_DAY, [(m, d, *min(p), *max(p), len(p)) for (m, d), p in days.items()])

    def move_from_events(self) -> int:
        """Readings stored as generic events before this table existed move here with their positions (once: a
        mark made by the migration says there are some, and goes when they have moved). Returns how many moved."""
        moved, after = 0, 0
        with self.db.read() as tx:
            if tx.scalar("SELECT value FROM marks WHERE name = 'readings_to_move'") is None:
                return 0
        while True:
            with self.db.write() as tx:
                rows = [event_row(r) for r in tx.all(MOVE_PAGE, (after, KIND, 2000))]
                batch = [NewReading(e, e["node_id"], e["time"], e["node_wall_time"], e["received_at"], e["row"])
                         for e in rows if is_typed_reading(e)]  # fmt: skip
                self.store(tx, batch)
                tx.many("DELETE FROM events WHERE row = ?", [(item.row,) for item in batch])
                moved += len(batch)
                if len(rows) < 2000:
                    tx.execute("DELETE FROM marks WHERE name = 'readings_to_move'")
                    return moved
                after = rows[-1]["row"]

    def owners(self, tx: Tx, ids: Collection[str]) -> dict[str, str]:
        """Which of these ids are stored readings, and whose."""
        found: dict[str, str] = {}
        wanted = {i for i in ids if canonical_id(i)}  # no other id can be a stored reading
        for match, args in any_of(tx.engine, wanted, "uuid"):
            found.update({str(r["id"]): r["node_id"] for r in tx.all(READING_OWNERS.format(match=match), args)})
        return found

    def page(self, tx: Tx, node_id: str | None, after: int, last: int, limit: int) -> list[dict[str, Any]]:
        """Readings after cursor ``after`` up to position ``last`` as events, in position order."""
        node = "AND r.meter IN (SELECT meter FROM meters WHERE node_id = ?)" if node_id else ""
        args = (after, last, node_id, limit) if node_id else (after, last, limit)
        return [as_event(r) for r in tx.all(READINGS_PAGE.format(node=node), args)]

    def water(self, node_ids: Collection[str], resident: str, since: float) -> WaterSeries:
        """A household's readings since ``since`` (its meters at these nodes: those read with this ``resident``,
        and readings of the same meter with no resident)."""
        if not node_ids:
            return WaterSeries([], [], set())
        with self.db.read() as tx:
            marks = ", ".join("?" * len(node_ids))
            meters = tx.all(f"SELECT * FROM meters WHERE node_id IN ({marks})", sorted(node_ids))
            theirs = {(m["node_id"], m["meter_id"]) for m in meters if m["resident"] == resident}
            keys = [m["meter"] for m in meters if m["resident"] == resident or
                    (not m["resident"] and (m["node_id"], m["meter_id"]) in theirs)]  # fmt: skip
            if not keys:
                return WaterSeries([], [], set())
            marks = ", ".join("?" * len(keys))
            raw = tx.all(
                f"SELECT time, total_litres FROM readings WHERE meter IN ({marks}) AND time >= ?", (*keys, since)
            )
            days = tx.all(f"SELECT * FROM water_days WHERE meter IN ({marks}) AND day >= ?", (*keys, self.day(since)))
        points = [(d["first_time"], d["first_total"]) for d in days] + [(d["last_time"], d["last_total"]) for d in days]
        return WaterSeries(
            sorted((r["time"], r["total_litres"]) for r in raw), sorted(set(points)), {m for _, m in theirs if m}
        )


@dataclass(frozen=True)
class WaterSeries:
    """``raw``: the raw readings kept (time, total litres); ``daily``: each day's first and last reading, kept for
    good (the daily chart uses both: ``raw`` where it is kept, ``daily`` before); ``meter_ids``: the meters."""

    raw: list[tuple[float, float]]
    daily: list[tuple[float, float]]
    meter_ids: set[str]

    def for_days(self) -> list[tuple[float, float]]:
        return sorted(set(self.raw) | set(self.daily))
