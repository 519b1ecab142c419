"""The central's SQLite store: nodes and token hashes, events (idempotent by id), alerts, rides.

One connection in WAL mode with ``synchronous=FULL``: a batch is acknowledged only after its transaction is on
disk, because the node deletes what the central acknowledged. Calls are serialised by a lock; SQLite serialises
writers anyway and a reference central does not need more.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from central.jsonvalues import load_stored
from central.store_schema import MAX_HEALTH_ROW, SCHEMA, SCHEMA_VERSION

SEVERITY_RANK = {"info": 0, "warning": 1, "urgent": 2}
ALERT_STATES = ("raised", "updated", "cleared")


class Conflict(Exception):
    """A request that the current state forbids (e.g. resolving a resolved alert); the message says why."""


class NotFound(Exception):
    """No such node, alert or ride."""


def token_hash(token: str) -> str:
    """sha256 hex of a token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class Store:
    """All state of the central in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        _create_private(self.path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # acknowledged events must survive a power cut: the node deletes them once acknowledged
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._db.executescript(SCHEMA)
            # health stored before heartbeats were bounded (issue 12: 30 heartbeats made one node 62 MB): the
            # snapshot is dropped, the node's next heartbeat stores a fresh one
            self._db.execute("UPDATE nodes SET health = NULL WHERE length(CAST(health AS BLOB)) > ?", (MAX_HEALTH_ROW,))
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------------------------------------ nodes
    def register_node(self, fields: Mapping[str, Any], token: str, now: float) -> bool:
        """Create the node or replace its token (and details); returns True when it was new.

        Raises Conflict when the node id is already registered at another site.
        """
        digest = token_hash(token)
        with self._lock, self._tx():
            row = self._db.execute("SELECT site FROM nodes WHERE node_id = ?", (fields["node_id"],)).fetchone()
            values = (
                fields["role"],
                fields["site"],
                fields.get("area", ""),
                fields.get("location", ""),
                fields.get("pickup_point", ""),
                _dumps(fields.get("contacts", {})),
                digest,
            )
            if row is None:
                self._db.execute(
                    "INSERT INTO nodes (role, site, area, location, pickup_point, contacts, token_hash, node_id,"
                    " registered_at, token_issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, fields["node_id"], now, now),
                )
                return True
            if row["site"] != fields["site"]:
                raise Conflict(f"node {fields['node_id']!r} is registered at site {row['site']!r}")
            self._db.execute(
                "UPDATE nodes SET role = ?, site = ?, area = ?, location = ?, pickup_point = ?, contacts = ?,"
                " token_hash = ?, token_issued_at = ?, registrations = registrations + 1 WHERE node_id = ?",
                (*values, now, fields["node_id"]),
            )
            return False

    def node_for_token(self, token: str) -> dict[str, Any] | None:
        """The node this token belongs to, or None (unknown node, rotated or wrong token)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM nodes WHERE token_hash = ?", (token_hash(token),)).fetchone()
        return _node_row(row) if row else None

    def touch_node(self, node_id: str, now: float) -> None:
        with self._lock:
            self._db.execute("UPDATE nodes SET last_seen_at = ? WHERE node_id = ?", (now, node_id))

    def store_heartbeat(
        self, node_id: str, health: Mapping[str, Any], now: float, keep: Collection[str] | None = None
    ) -> dict[str, Any]:
        """Merge a heartbeat into the node's health: keys sent replace their last value, keys left out keep
        theirs (a partial heartbeat, e.g. a technician's self-test, does not blank the rest). Of the stored
        keys only those in ``keep`` survive (health stored before the keys were bounded shrinks). Returns it."""
        with self._lock, self._tx():
            row = self._db.execute("SELECT health FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            old = load_stored(row["health"] if row else None, {})
            old = {k: v for k, v in old.items() if keep is None or k in keep} if isinstance(old, dict) else {}
            merged = {**old, **health}
            merged["received_at"] = now
            self._db.execute(
                "UPDATE nodes SET health = ?, last_heartbeat_at = ?, last_seen_at = ? WHERE node_id = ?",
                (_dumps(merged), now, now, node_id),
            )
        return merged

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM nodes ORDER BY site, node_id").fetchall()
        return [_node_row(r) for r in rows]

    def node(self, node_id: str, gap_limit: int = 100) -> dict[str, Any]:
        """One node with its seq gaps as ranges (at most ``gap_limit`` of them)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            if row is None:
                raise NotFound(f"no node {node_id!r}")
            node = _node_row(row)
            node["seq_gaps"] = self._gaps(node_id, gap_limit)
        return node

    def _gaps(self, node_id: str, limit: int) -> list[list[int]]:
        first = self._db.execute("SELECT MIN(seq) FROM events WHERE node_id = ? AND seq >= 1", (node_id,)).fetchone()[0]
        if first is None:
            return []
        gaps = [[1, first - 1]] if first > 1 else []
        rows = self._db.execute(
            "SELECT seq + 1, next - 1 FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS next FROM"
            " (SELECT DISTINCT seq FROM events WHERE node_id = ? AND seq >= 1)) WHERE next > seq + 1 LIMIT ?",
            (node_id, limit),
        ).fetchall()
        return (gaps + [[a, b] for a, b in rows])[:limit]

    # ----------------------------------------------------------------------------------------------- events
    def ingest(
        self, node_id: str, events: Sequence[Mapping[str, Any]], node_wall_time: float, now: float
    ) -> tuple[int, list[str]]:
        """Store validated wire events of one node in one transaction.

        Returns (how many were new, ids already stored for ANOTHER node: not this node's events to
        acknowledge). Replays (ids already stored for this node) are skipped. Each event's ``time`` is its wall time, or when the node's
        clock was not synced, ``now - (node_wall_time - wall_time)``: the event's age by the node's own clock
        measured back from the central's receive time. Alerts are built from alert events in batch order.
        """
        new = 0
        foreign: list[str] = []
        with self._lock, self._tx():
            for ev in events:
                corrected = not ev["clock_synced"]
                time_ = now - (node_wall_time - ev["wall_time"]) if corrected else ev["wall_time"]
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO events (id, node_id, seq, kind, severity, state, priority, wall_time,"
                    " clock_synced, time, time_corrected, node_wall_time, received_at, payload, alert_id,"
                    " recipients) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        ev["id"],
                        node_id,
                        ev.get("seq"),
                        ev["kind"],
                        ev["severity"],
                        ev["state"],
                        ev["priority"],
                        ev["wall_time"],
                        int(ev["clock_synced"]),
                        time_,
                        int(corrected),
                        node_wall_time,
                        now,
                        _dumps(ev.get("payload") or {}),
                        ev.get("alert_id"),
                        _dumps(list(ev.get("recipients") or [])),
                    ),
                )
                if cur.rowcount == 0:
                    owner = self._db.execute("SELECT node_id FROM events WHERE id = ?", (ev["id"],)).fetchone()
                    if owner["node_id"] != node_id:
                        foreign.append(ev["id"])
                        continue
                    self._db.execute("UPDATE nodes SET replays = replays + 1 WHERE node_id = ?", (node_id,))
                    continue
                new += 1
                self._count_seq(node_id, ev.get("seq"), ev["id"])
                if ev.get("alert_id") and ev["state"] in ALERT_STATES:
                    self._apply_alert_event(node_id, ev, time_, now)
            self._db.execute(
                "UPDATE nodes SET events_received = events_received + ?, last_seen_at = ? WHERE node_id = ?",
                (new, now, node_id),
            )
        return new, foreign

    def _count_seq(self, node_id: str, seq: int | None, event_id: str) -> None:
        if seq is None or seq < 1:
            return
        other = self._db.execute(
            "SELECT 1 FROM events WHERE node_id = ? AND seq = ? AND id != ? LIMIT 1", (node_id, seq, event_id)
        ).fetchone()
        if other:
            # the node reused a number (e.g. its outbox was replaced): counted, not hidden
            self._db.execute("UPDATE nodes SET seq_conflicts = seq_conflicts + 1 WHERE node_id = ?", (node_id,))
            return
        self._db.execute(
            "UPDATE nodes SET seqs_received = seqs_received + 1, max_seq = MAX(max_seq, ?) WHERE node_id = ?",
            (seq, node_id),
        )

    def _apply_alert_event(self, node_id: str, ev: Mapping[str, Any], event_time: float, now: float) -> None:
        latest = self._db.execute(
            "SELECT * FROM alerts WHERE node_id = ? AND alert_id = ? ORDER BY occurrence DESC LIMIT 1",
            (node_id, ev["alert_id"]),
        ).fetchone()
        recipients = list(dict.fromkeys(ev.get("recipients") or []))
        payload = dict(ev.get("payload") or {})
        cleared_at = now if ev["state"] == "cleared" else None
        # a new incident after the operator closed the last one, or the node still seeing it after the
        # resolution (a re-notification stamped later): never bury a live alert in a closed one
        reopen = latest is not None and latest["state"] == "resolved"
        reopen = reopen and (
            ev["state"] == "raised"
            or (ev["state"] == "updated" and latest["on_site"] != "cleared" and event_time > latest["resolved_at"])
        )
        if latest is None or reopen:
            cur = self._db.execute(
                "INSERT INTO alerts (node_id, alert_id, occurrence, kind, severity, state, on_site, opened_at,"
                " raised_at, last_update_at, count, payload, recipients, first_event_id, last_event_id,"
                " cleared_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                (
                    node_id,
                    ev["alert_id"],
                    1 if latest is None else latest["occurrence"] + 1,
                    ev["kind"],
                    ev["severity"],
                    ev["state"],
                    now,
                    event_time,
                    now,
                    _dumps(payload),
                    _dumps(recipients),
                    ev["id"],
                    ev["id"],
                    cleared_at,
                ),
            )
            self._log(cur.lastrowid, now, f"event:{ev['state']}", None, None, ev["id"])
            return
        severity = max(latest["severity"], ev["severity"], key=lambda s: SEVERITY_RANK.get(s, 0))
        merged = list(dict.fromkeys([*json.loads(latest["recipients"]), *recipients]))
        self._db.execute(
            "UPDATE alerts SET severity = ?, on_site = ?, last_update_at = ?, count = count + 1, payload = ?,"
            " recipients = ?, last_event_id = ?, cleared_at = ? WHERE id = ?",
            (severity, ev["state"], now, _dumps(payload), _dumps(merged), ev["id"], cleared_at, latest["id"]),
        )
        self._log(latest["id"], now, f"event:{ev['state']}", None, None, ev["id"])

    def events(
        self, node_id: str | None = None, kind: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Stored events in the order received, after cursor ``after`` (the ``row`` of the last one seen)."""
        where, args = ["row > ?"], [after]
        if node_id:
            where.append("node_id = ?")
            args.append(node_id)
        if kind:
            where.append("kind = ?")
            args.append(kind)
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY row LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_event_row(r) for r in rows]

    # ----------------------------------------------------------------------------------------------- alerts
    def alerts(self, state: str = "open", node_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        where, args = [], []
        if state != "all":
            where.append("state = ?")
            args.append(state)
        if node_id:
            where.append("node_id = ?")
            args.append(node_id)
        sql = "SELECT * FROM alerts" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_alert_row(r) for r in rows]

    def alert(self, alert: int, with_log: bool = False) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT * FROM alerts WHERE id = ?", (alert,)).fetchone()
            if row is None:
                raise NotFound(f"no alert {alert}")
            out = _alert_row(row)
            if with_log:
                log = self._db.execute(
                    "SELECT at, action, by, note, event_id FROM alert_log WHERE alert = ? ORDER BY row", (alert,)
                ).fetchall()
                out["log"] = [dict(r) for r in log]
        return out

    def acknowledge(self, alert: int, by: str, via: str, note: str, now: float) -> dict[str, Any]:
        with self._lock, self._tx():
            row = self._db.execute("SELECT state, acknowledged_by FROM alerts WHERE id = ?", (alert,)).fetchone()
            if row is None:
                raise NotFound(f"no alert {alert}")
            if row["state"] != "open":
                raise Conflict(f"alert {alert} is {row['state']}" + _by(row["acknowledged_by"]))
            self._db.execute(
                "UPDATE alerts SET state = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?,"
                " acknowledged_via = ?, ack_note = ? WHERE id = ?",
                (now, by, via, note, alert),
            )
            self._log(alert, now, "acknowledged", by, note, None)
        return self.alert(alert)

    def resolve(self, alert: int, by: str, via: str, note: str, now: float) -> dict[str, Any]:
        with self._lock, self._tx():
            row = self._db.execute("SELECT state, resolved_by FROM alerts WHERE id = ?", (alert,)).fetchone()
            if row is None:
                raise NotFound(f"no alert {alert}")
            if row["state"] == "resolved":
                raise Conflict(f"alert {alert} is resolved" + _by(row["resolved_by"]))
            self._db.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = ?, resolved_via = ?,"
                " resolve_note = ? WHERE id = ?",
                (now, by, via, note, alert),
            )
            self._log(alert, now, "resolved", by, note, None)
        return self.alert(alert)

    def _log(self, alert: int | None, at: float, action: str, by: str | None, note: str | None, ev: str | None):
        self._db.execute(
            "INSERT INTO alert_log (alert, at, action, by, note, event_id) VALUES (?, ?, ?, ?, ?, ?)",
            (alert, at, action, by, note, ev),
        )

    # ------------------------------------------------------------------------------------------------ rides
    def create_ride(
        self,
        ride_id: str,
        node_id: str,
        request_id: str,
        pickup_point: str,
        phone_tail: str | None,
        plan: Mapping[str, Any],
        now: float,
    ) -> tuple[dict[str, Any], bool]:
        """The ride for (node, request id): created now, or the one already made for it (then False)."""
        with self._lock, self._tx():
            row = self._db.execute(
                "SELECT * FROM rides WHERE node_id = ? AND request_id = ?", (node_id, request_id)
            ).fetchone()
            if row is not None:
                return _ride_row(row), False
            self._db.execute(
                "INSERT INTO rides (ride_id, node_id, request_id, pickup_point, phone_tail, requested_at, plan)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ride_id, node_id, request_id, pickup_point, phone_tail, now, _dumps(dict(plan))),
            )
            row = self._db.execute("SELECT * FROM rides WHERE ride_id = ?", (ride_id,)).fetchone()
        return _ride_row(row), True

    def ride(self, ride_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT * FROM rides WHERE ride_id = ?", (ride_id,)).fetchone()
        if row is None:
            raise NotFound(f"no ride {ride_id!r}")
        return _ride_row(row)

    def rides(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM rides ORDER BY requested_at DESC LIMIT ?", (limit,)).fetchall()
        return [_ride_row(r) for r in rows]

    def cancel_ride(self, ride_id: str, by: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE rides SET cancelled_at = ?, cancelled_by = ? WHERE ride_id = ? AND cancelled_at IS NULL",
                (now, by, ride_id),
            )

    # -------------------------------------------------------------------------------------------- internals
    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (which then propagates)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _by(who: str | None) -> str:
    return f" by {who}" if who else ""


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it holds token hashes and residents' contacts);
    SQLite gives its -wal and -shm files the database file's mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _node_row(row: sqlite3.Row) -> dict[str, Any]:
    node = dict(row)
    node.pop("token_hash")
    node["contacts"] = load_stored(node["contacts"], {})
    node["health"] = load_stored(node["health"])
    # seq numbers start at 1: every number up to the highest seen that never arrived is a lost event
    node["seq_missing"] = node["max_seq"] - node["seqs_received"]
    return node


def _event_row(row: sqlite3.Row) -> dict[str, Any]:
    ev = dict(row)
    ev["clock_synced"] = bool(ev["clock_synced"])
    ev["time_corrected"] = bool(ev["time_corrected"])
    ev["payload"] = load_stored(ev["payload"], {})
    ev["recipients"] = load_stored(ev["recipients"], [])
    return ev


def _alert_row(row: sqlite3.Row) -> dict[str, Any]:
    alert = dict(row)
    alert["payload"] = load_stored(alert["payload"], {})
    alert["recipients"] = load_stored(alert["recipients"], [])
    alert["cleared_on_site"] = alert["on_site"] == "cleared"
    return alert


def _ride_row(row: sqlite3.Row) -> dict[str, Any]:
    ride = dict(row)
    ride["plan"] = json.loads(ride["plan"])
    return ride
