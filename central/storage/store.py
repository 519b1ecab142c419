"""``Store``: the central's storage interface. Every route, command and job reads and writes through it.

The logic (which rows a batch of events becomes, the alert lifecycle, pages) is written once here; the engine
(``central.storage.sqlite``, ``central.storage.postgres``) runs it. All SQL lives in ``central.storage``: the
statements both engines share in ``queries``, an engine's own in its module. Nothing above this layer sees an
engine exception: failures are ``StorageError`` (answered 503 ``storage_error``), answers about the data are
``NotFound`` (404) and ``Conflict`` (409).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from central.jsonvalues import load_stored
from central.storage import queries as q
from central.storage.database import Database, Tx
from central.storage.errors import Conflict, NotFound

MAX_HEALTH_ROW = 1_048_576  # bytes of stored health beyond which a row predates the bound and is reset
SEVERITY_RANK = {"info": 0, "warning": 1, "urgent": 2}
ALERT_STATES = ("raised", "updated", "cleared")


def token_hash(token: str) -> str:
    """sha256 hex of a token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def dumps(value: Any) -> str:
    """JSON as the central stores it: compact, keys sorted, UTF-8 text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class Store:
    """All state of the central, in one database of either engine (see ``central.storage.open_store``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.engine = db.engine

    def repair(self) -> None:
        """Run at each start: health stored before heartbeats were bounded (issue 12: 30 heartbeats made one
        node 62 MB) is dropped; the node's next heartbeat stores a fresh one."""
        with self.db.write() as tx:
            tx.execute(q.RESET_HUGE_HEALTH, (MAX_HEALTH_ROW,))

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------------------------------------ nodes
    def register_node(self, fields: Mapping[str, Any], token: str, now: float) -> bool:
        """Create the node or replace its token (and details); returns True when it was new.

        Raises Conflict when the node id is already registered at another site.
        """
        values = (
            fields["role"],
            fields["site"],
            fields.get("area", ""),
            fields.get("location", ""),
            fields.get("pickup_point", ""),
            dumps(fields.get("contacts", {})),
            token_hash(token),
        )
        with self.db.write() as tx:
            row = tx.one(q.NODE_SITE, (fields["node_id"],))
            if row is None:
                tx.execute(q.INSERT_NODE, (*values, fields["node_id"], now, now))
                return True
            if row["site"] != fields["site"]:
                raise Conflict(f"node {fields['node_id']!r} is registered at site {row['site']!r}")
            tx.execute(q.REREGISTER_NODE, (*values, now, fields["node_id"]))
            return False

    def node_for_token(self, token: str) -> dict[str, Any] | None:
        """The node this token belongs to, or None (unknown node, rotated or wrong token)."""
        with self.db.read() as tx:
            row = tx.one(q.NODE_BY_TOKEN, (token_hash(token),))
        return node_row(row) if row else None

    def touch_node(self, node_id: str, now: float) -> None:
        with self.db.write() as tx:
            tx.execute(q.TOUCH_NODE, (now, node_id))

    def store_heartbeat(
        self, node_id: str, health: Mapping[str, Any], now: float, keep: Collection[str] | None = None
    ) -> dict[str, Any]:
        """Merge a heartbeat into the node's health: keys sent replace their last value, keys left out keep
        theirs (a partial heartbeat, e.g. a technician's self-test, does not blank the rest). Of the stored
        keys only those in ``keep`` survive (health stored before the keys were bounded shrinks). Returns it."""
        with self.db.write() as tx:
            row = tx.one(q.NODE_HEALTH, (node_id,))
            old = load_stored(row["health"] if row else None, {})
            old = {k: v for k, v in old.items() if keep is None or k in keep} if isinstance(old, dict) else {}
            merged = {**old, **health}
            merged["received_at"] = now
            tx.execute(q.STORE_HEALTH, (dumps(merged), now, now, node_id))
        return merged

    def nodes(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.all(q.ALL_NODES)
        return [node_row(r) for r in rows]

    def nodes_by_id(self, node_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The nodes with these ids (those that exist), by id: what an alert view needs, and nothing more."""
        wanted = sorted(set(node_ids))
        found: dict[str, dict[str, Any]] = {}
        with self.db.read() as tx:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                for row in tx.all(q.NODES_BY_ID.format(marks=", ".join("?" * len(chunk))), chunk):
                    found[row["node_id"]] = node_row(row)
        return found

    def node(self, node_id: str, gap_limit: int = 100) -> dict[str, Any]:
        """One node with its seq gaps as ranges (at most ``gap_limit`` of them)."""
        with self.db.read() as tx:
            row = tx.one(q.NODE_BY_ID, (node_id,))
            if row is None:
                raise NotFound(f"no node {node_id!r}")
            node = node_row(row)
            node["seq_gaps"] = _gaps(tx, node_id, gap_limit)
        return node

    # ----------------------------------------------------------------------------------------------- events
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
        new = 0
        foreign: list[str] = []
        with self.db.write() as tx:
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
                        tx.execute(q.COUNT_REPLAY, (node_id,))
                    continue
                new += 1
                _count_seq(tx, node_id, ev.get("seq"), ev["id"])
                if ev.get("alert_id") and ev["state"] in ALERT_STATES:
                    _apply_alert_event(tx, node_id, ev, time_, now)
            tx.execute(q.COUNT_RECEIVED, (new, now, node_id))
        return new, foreign

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
        with self.db.read() as tx:
            rows = tx.all(q.EVENTS_PAGE.format(where=" AND ".join(where)), (*args, limit))
        return [event_row(r) for r in rows]

    # ----------------------------------------------------------------------------------------------- alerts
    def alerts(self, state: str = "open", node_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        where, args = [], []
        if state != "all":
            where.append("state = ?")
            args.append(state)
        if node_id:
            where.append("node_id = ?")
            args.append(node_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self.db.read() as tx:
            rows = tx.all(q.ALERTS_PAGE.format(where=clause), (*args, limit))
        return [alert_row(r) for r in rows]

    def alert(self, alert: int, with_log: bool = False) -> dict[str, Any]:
        with self.db.read() as tx:
            return _alert(tx, alert, with_log)

    def acknowledge(self, alert: int, by: str, via: str, note: str, now: float) -> dict[str, Any]:
        """open -> acknowledged; Conflict when it is not open."""
        with self.db.write() as tx:
            row = tx.one(q.ALERT_STATE, (alert,))
            if row is None:
                raise NotFound(f"no alert {alert}")
            if row["state"] != "open":
                raise Conflict(f"alert {alert} is {row['state']}" + _by(row["acknowledged_by"]))
            tx.execute(q.ACKNOWLEDGE, (now, by, via, note, alert))
            _log(tx, alert, now, "acknowledged", by, note, None)
            return _alert(tx, alert, False)

    def resolve(self, alert: int, by: str, via: str, note: str, now: float) -> dict[str, Any]:
        """open or acknowledged -> resolved; Conflict when already resolved."""
        with self.db.write() as tx:
            row = tx.one(q.ALERT_STATE, (alert,))
            if row is None:
                raise NotFound(f"no alert {alert}")
            if row["state"] == "resolved":
                raise Conflict(f"alert {alert} is resolved" + _by(row["resolved_by"]))
            tx.execute(q.RESOLVE, (now, by, via, note, alert))
            _log(tx, alert, now, "resolved", by, note, None)
            return _alert(tx, alert, False)

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
        with self.db.write() as tx:
            row = tx.one(q.RIDE_BY_REQUEST, (node_id, request_id))
            if row is not None:
                return ride_row(row), False
            tx.execute(q.INSERT_RIDE, (ride_id, node_id, request_id, pickup_point, phone_tail, now, dumps(dict(plan))))
            row = tx.one(q.RIDE_BY_ID, (ride_id,))
        return ride_row(row), True

    def ride(self, ride_id: str) -> dict[str, Any]:
        with self.db.read() as tx:
            row = tx.one(q.RIDE_BY_ID, (ride_id,))
        if row is None:
            raise NotFound(f"no ride {ride_id!r}")
        return ride_row(row)

    def rides(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.all(q.RECENT_RIDES, (limit,))
        return [ride_row(r) for r in rows]

    def cancel_ride(self, ride_id: str, by: str, now: float) -> None:
        with self.db.write() as tx:
            tx.execute(q.CANCEL_RIDE, (now, by, ride_id))


# --------------------------------------------------------------------------------------------- inside a tx
def _gaps(tx: Tx, node_id: str, limit: int) -> list[list[int]]:
    first = tx.scalar(q.FIRST_SEQ, (node_id,))
    if first is None:
        return []
    gaps = [[1, first - 1]] if first > 1 else []
    rows = tx.all(q.SEQ_GAPS, (node_id, limit))
    return (gaps + [[r["first"], r["last"]] for r in rows])[:limit]


def _count_seq(tx: Tx, node_id: str, seq: int | None, event_id: str) -> None:
    if seq is None or seq < 1:
        return
    if tx.scalar(q.OTHER_EVENT_WITH_SEQ, (node_id, seq, event_id)):
        # the node reused a number (e.g. its outbox was replaced): counted, not hidden
        tx.execute(q.COUNT_SEQ_CONFLICT, (node_id,))
        return
    tx.execute(q.COUNT_SEQ, (seq, seq, node_id))


def _apply_alert_event(tx: Tx, node_id: str, ev: Mapping[str, Any], event_time: float, now: float) -> None:
    latest = tx.one(q.LATEST_ALERT, (node_id, ev["alert_id"]))
    recipients = list(dict.fromkeys(ev.get("recipients") or []))
    payload = dict(ev.get("payload") or {})
    cleared_at = now if ev["state"] == "cleared" else None
    # a new incident after the operator closed the last one, or the node still seeing it after the resolution
    # (a re-notification stamped later): never bury a live alert in a closed one
    reopen = latest is not None and latest["state"] == "resolved"
    reopen = reopen and (
        ev["state"] == "raised"
        or (ev["state"] == "updated" and latest["on_site"] != "cleared" and event_time > latest["resolved_at"])
    )
    if latest is None or reopen:
        occurrence = 1 if latest is None else latest["occurrence"] + 1
        alert = tx.scalar(
            q.INSERT_ALERT,
            (
                node_id, ev["alert_id"], occurrence, ev["kind"], ev["severity"], ev["state"], now, event_time, now,
                dumps(payload), dumps(recipients), ev["id"], ev["id"], cleared_at,
            ),
        )  # fmt: skip
        _log(tx, alert, now, f"event:{ev['state']}", None, None, ev["id"])
        return
    severity = max(latest["severity"], ev["severity"], key=lambda s: SEVERITY_RANK.get(s, 0))
    merged = list(dict.fromkeys([*json.loads(latest["recipients"]), *recipients]))
    tx.execute(
        q.UPDATE_ALERT,
        (severity, ev["state"], now, dumps(payload), dumps(merged), ev["id"], cleared_at, latest["id"]),
    )
    _log(tx, latest["id"], now, f"event:{ev['state']}", None, None, ev["id"])


def _alert(tx: Tx, alert: int, with_log: bool) -> dict[str, Any]:
    row = tx.one(q.ALERT_BY_ID, (alert,))
    if row is None:
        raise NotFound(f"no alert {alert}")
    out = alert_row(row)
    if with_log:
        out["log"] = tx.all(q.ALERT_LOG, (alert,))
    return out


def _log(tx: Tx, alert: int, at: float, action: str, by: str | None, note: str | None, event_id: str | None) -> None:
    tx.execute(q.INSERT_ALERT_LOG, (alert, at, action, by, note, event_id))


def _by(who: str | None) -> str:
    return f" by {who}" if who else ""


# ------------------------------------------------------------------------------------------- rows -> dicts
def node_row(row: Mapping[str, Any]) -> dict[str, Any]:
    node = dict(row)
    node.pop("token_hash", None)
    node["contacts"] = load_stored(node["contacts"], {})
    node["health"] = load_stored(node["health"])
    # seq numbers start at 1: every number up to the highest seen that never arrived is a lost event
    node["seq_missing"] = node["max_seq"] - node["seqs_received"]
    return node


def event_row(row: Mapping[str, Any]) -> dict[str, Any]:
    ev = dict(row)
    ev["clock_synced"] = bool(ev["clock_synced"])
    ev["time_corrected"] = bool(ev["time_corrected"])
    ev["payload"] = load_stored(ev["payload"], {})
    ev["recipients"] = load_stored(ev["recipients"], [])
    return ev


def alert_row(row: Mapping[str, Any]) -> dict[str, Any]:
    alert = dict(row)
    alert["payload"] = load_stored(alert["payload"], {})
    alert["recipients"] = load_stored(alert["recipients"], [])
    alert["cleared_on_site"] = alert["on_site"] == "cleared"
    return alert


def ride_row(row: Mapping[str, Any]) -> dict[str, Any]:
    ride = dict(row)
    ride["plan"] = json.loads(ride["plan"])
    return ride
