"""Alerts: one per incident (node, alert_id, occurrence), built from alert events; the operators' lifecycle
(open -> acknowledged -> resolved) with who and when; every step logged and put on the change feed."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from central.storage import queries as q
from central.storage.changes import append_change
from central.storage.database import Database, Tx, any_of
from central.storage.errors import Conflict, NotFound
from central.storage.rows import alert_row, dumps
from common.catalogue import CATALOGUE, SEVERITY_RANK

ALERT_STATES = ("raised", "updated", "cleared")
STATE_FILTERS = {
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "active": ("open", "acknowledged"),
    "all": (),
}
# the alert the central raises itself when a node falls silent: to the technicians, as a lift's sensor fault
SILENT_KIND = "node_silent"
SILENT_RECIPIENTS = ("maintenance", "operator")


class AlertBook:
    """Reading and handling alerts."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def page(
        self, state: str = "open", node_id: str | None = None, limit: int = 500, before: int | None = None
    ) -> list[dict[str, Any]]:
        """Alerts newest first, in ``state`` (``active``: open or acknowledged), older than ``before`` (the last
        id of the previous page)."""
        where: list[str] = []
        args: list[Any] = []
        states = STATE_FILTERS[state]
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args += states
        if node_id:
            where.append("node_id = ?")
            args.append(node_id)
        if before is not None:
            where.append("id < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self.db.read() as tx:
            rows = tx.all(q.ALERTS_PAGE.format(where=clause), (*args, limit))
        return [alert_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Alerts not yet resolved, by state (``open``, ``acknowledged``)."""
        with self.db.read() as tx:
            rows = tx.all(q.ALERT_COUNTS)
        found = {r["state"]: int(r["alerts"]) for r in rows}
        return {"open": found.get("open", 0), "acknowledged": found.get("acknowledged", 0)}

    def get(self, alert: int, with_log: bool = False) -> dict[str, Any]:
        with self.db.read() as tx:
            return _alert(tx, alert, with_log)

    def standing(self, node_id: str, alert_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Where the central's newest alert for each of the node's ``alert_ids`` stands: ``{"state", "by", "at"}``
        (by and at of the acknowledgement or resolution); ids it has no alert for are left out."""
        newest: dict[str, dict[str, Any]] = {}
        with self.db.read() as tx:
            for match, args in any_of(tx.engine, set(alert_ids)):
                for row in tx.all(q.ALERT_STANDING.format(match=match), [node_id, *args]):
                    if row["alert_id"] not in newest or row["occurrence"] > newest[row["alert_id"]]["occurrence"]:
                        newest[row["alert_id"]] = row
        out = {}
        for alert_id, row in newest.items():
            prefix = "resolved" if row["state"] == "resolved" else "acknowledged"
            by, at = (row[f"{prefix}_by"], row[f"{prefix}_at"]) if row["state"] != "open" else (None, None)
            out[alert_id] = {"state": row["state"], "by": by, "at": at}
        return out

    def acknowledge(self, alert: int, by: str, via: str, note: str, now: float) -> dict[str, Any]:
        """open -> acknowledged; Conflict when it is not open."""
        return self._handle(alert, "acknowledged", by, via, note, now)

    def resolve(self, alert: int, by: str, via: str, note: str, now: float, tell: str = "") -> dict[str, Any]:
        """open or acknowledged -> resolved; Conflict when already resolved. ``tell``: the words the people told of
        it get with the news that it was closed (``note`` stays at the desk)."""
        return self._handle(alert, "resolved", by, via, note, now, tell)

    def _handle(
        self, alert: int, action: str, by: str, via: str, note: str, now: float, tell: str = ""
    ) -> dict[str, Any]:
        with self.db.write() as tx:
            row = tx.one(q.ALERT_STATE, (alert,))
            if row is None:
                raise NotFound(f"no alert {alert}")
            if action == "acknowledged" and row["state"] != "open":
                raise Conflict(f"alert {alert} is {row['state']}" + _by(row["acknowledged_by"]))
            if action == "resolved" and row["state"] == "resolved":
                raise Conflict(f"alert {alert} is resolved" + _by(row["resolved_by"]))
            if action == "acknowledged":
                tx.execute(q.ACKNOWLEDGE, (now, by, via, note, alert))
            else:
                tx.execute(q.RESOLVE, (now, by, via, note, tell or None, alert))
            log(tx, alert, now, action, by, note, None)
            done = _alert(tx, alert, False)
            append_change(tx, now, "alert", alert, action, _summary(done, by=by))
        return done


def apply_alert_event(tx: Tx, node_id: str, ev: Mapping[str, Any], event_time: float, now: float) -> None:
    """An alert event (raised/updated/cleared) opens the incident's alert or updates it, in the ingest's
    transaction."""
    latest = tx.one(q.LATEST_ALERT, (node_id, ev["alert_id"]))
    recipients = list(dict.fromkeys(ev.get("recipients") or []))
    payload = dict(ev.get("payload") or {})
    cleared_at = now if ev["state"] == "cleared" else None
    reopen = latest is not None and latest["state"] == "resolved" and _reopens(latest, ev, event_time)
    if latest is None or reopen:
        occurrence = 1 if latest is None else latest["occurrence"] + 1
        alert = tx.scalar(
            q.INSERT_ALERT,
            (
                node_id, ev["alert_id"], occurrence, ev["kind"], ev["severity"], ev["state"], now, event_time, now,
                dumps(payload), dumps(recipients), ev["id"], ev["id"], cleared_at,
            ),
        )  # fmt: skip
        log(tx, alert, now, f"event:{ev['state']}", None, None, ev["id"])
        append_change(tx, now, "alert", alert, "opened", _summary(_alert(tx, alert, False)))
        return
    if ev["state"] == "cleared":  # the incident's facts stay; the clear adds why and when it ended
        payload = {**json.loads(latest["payload"]), **payload}
    severity = max(latest["severity"], ev["severity"], key=lambda s: SEVERITY_RANK.get(s, 0))
    merged = list(dict.fromkeys([*json.loads(latest["recipients"]), *recipients]))
    tx.execute(
        q.UPDATE_ALERT,
        (severity, ev["state"], now, dumps(payload), dumps(merged), ev["id"], cleared_at, latest["id"]),
    )
    log(tx, latest["id"], now, f"event:{ev['state']}", None, None, ev["id"])
    action = "cleared" if ev["state"] == "cleared" else "updated"
    append_change(tx, now, "alert", latest["id"], action, _summary(_alert(tx, latest["id"], False)))


def _reopens(resolved: Mapping[str, Any], ev: Mapping[str, Any], event_time: float) -> bool:
    """Whether an event of a resolved alert's incident opens it again: a new incident after the operator closed the
    last one; or, stamped after the resolution while not cleared on site, an update that says something new (the
    detector's own: a higher severity, another press of the kiosk's help button), or a mere re-send (``renotify``)
    of a kind whose person is still in danger (``EventKind.reopens``: a trapped passenger is never buried in an
    alert closed by mistake; a kind this central does not know counts as such). The re-sends of a silence the
    social worker closed after finding the resident in hospital do not: each one alarmed her family again, minutes
    after they were told it was handled."""
    if ev["state"] == "raised":
        return True
    if ev["state"] != "updated" or resolved["on_site"] == "cleared" or event_time <= resolved["resolved_at"]:
        return False
    kind = CATALOGUE.get(str(ev["kind"]))
    return not (ev.get("payload") or {}).get("renotify") or kind is None or kind.reopens


def silent_alert_id(last_seen_at: float) -> str:
    """The id of the central's ``node_silent`` alert for a silence that began at ``last_seen_at``: one alert per
    silence, whichever process or round raises it."""
    return f"node-silent-{last_seen_at:.3f}"


def apply_silent(tx: Tx, node_id: str, alert_id: str, state: str, payload: dict[str, Any], now: float) -> None:
    """The alert the central raises itself when a node falls silent (``SILENT_KIND``; no node sends it): raised by
    the maintenance round, cleared when the node is heard from again (only one that was raised and not cleared)."""
    if state == "cleared":
        latest = tx.one(q.LATEST_ALERT, (node_id, alert_id))
        if latest is None or latest["on_site"] == "cleared":
            return
    event = {
        "id": f"central:{alert_id}:{state}",
        "alert_id": alert_id,
        "kind": SILENT_KIND,
        "severity": "warning" if state == "raised" else "info",
        "state": state,
        "recipients": list(SILENT_RECIPIENTS),
        "payload": payload,
    }
    apply_alert_event(tx, node_id, event, now, now)


def _summary(alert: Mapping[str, Any], by: str | None = None) -> dict[str, Any]:
    out = {k: alert[k] for k in ("node_id", "kind", "severity", "state", "on_site", "count")}
    if by is not None:
        out["by"] = by
    return out


def _alert(tx: Tx, alert: int, with_log: bool) -> dict[str, Any]:
    row = tx.one(q.ALERT_BY_ID, (alert,))
    if row is None:
        raise NotFound(f"no alert {alert}")
    out = alert_row(row)
    if with_log:
        out["log"] = tx.all(q.ALERT_LOG, (alert,))
    return out


def log(tx: Tx, alert: int, at: float, action: str, by: str | None, note: str | None, event_id: str | None) -> None:
    tx.execute(q.INSERT_ALERT_LOG, (alert, at, action, by, note, event_id))


def _by(who: str | None) -> str:
    return f" by {who}" if who else ""
