"""The notifier's tables (component ``notify``): deliveries, every attempt, answers to acknowledgement links, and
the link secret. All their SQL is here, run through the central's storage interface on either engine.

A delivery is one (alert, role, channel, reason), unique by its key: planned once, attempted until delivered, its
``sent_at`` written when the receiver accepted it (state ``sent``), or ``ended_at`` when it ended unsent: state
``dropped`` (the alert was resolved first) or ``failed`` (a permanent failure: an invalid number, refused
content). Nothing here is recomputed at read time.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Iterable
from typing import Any

from central.notify.plan import OVER_REASONS, Planned
from central.notify.retry import Outcome
from central.storage import Component, Database, Migration, Tx
from central.storage.changes import ChangeFeed
from central.storage.database import any_of

_TABLES = """
CREATE TABLE notify_deliveries (
    id {pk},
    key TEXT NOT NULL UNIQUE,
    alert BIGINT NOT NULL,
    role TEXT NOT NULL,
    channel TEXT NOT NULL,
    reason TEXT NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION,
    sent_at DOUBLE PRECISION,
    recipients TEXT NOT NULL DEFAULT '[]',
    last_error TEXT
);
CREATE INDEX notify_deliveries_alert ON notify_deliveries (alert);
CREATE INDEX notify_deliveries_pending ON notify_deliveries (state, next_at);
CREATE TABLE notify_attempts (
    id {pk},
    delivery BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    ok INTEGER NOT NULL,
    status INTEGER,
    detail TEXT NOT NULL,
    took_ms DOUBLE PRECISION NOT NULL
);
CREATE INDEX notify_attempts_delivery ON notify_attempts (delivery);
CREATE TABLE notify_answers (
    id {pk},
    alert BIGINT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    delivery TEXT NOT NULL,
    choice TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    UNIQUE (delivery, choice)
);
CREATE TABLE notify_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_ENDED = "ALTER TABLE notify_deliveries ADD COLUMN ended_at DOUBLE PRECISION;\n"
_URGENCY = "ALTER TABLE notify_deliveries ADD COLUMN urgency INTEGER NOT NULL DEFAULT 0;\n"

NOTIFY = Component(
    "notify",
    (
        Migration.with_identity(1, "deliveries, attempts, link answers, link secret", _TABLES),
        Migration(2, "when a delivery ended unsent (dropped or failed for good)", sqlite=_ENDED, postgresql=_ENDED),
        Migration(3, "a delivery's urgency: urgent first under a rate limit", sqlite=_URGENCY, postgresql=_URGENCY),
    ),
)

_INSERT = (
    "INSERT INTO notify_deliveries (key, alert, role, channel, reason, due_at, urgency, created_at, state, next_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (key) DO NOTHING"
)
# the most urgent first, then the longest due: a flood of warnings held back by a channel's rate limit (a robot's 20
# a minute) does not hold up an entrapment behind it
_DUE = (
    "SELECT * FROM notify_deliveries WHERE state = 'pending' AND next_at <= ?"
    " AND (lease_until IS NULL OR lease_until < ?) ORDER BY urgency DESC, due_at LIMIT ?"
)
_LEASE = (
    "UPDATE notify_deliveries SET lease_until = ? WHERE id = ? AND state = 'pending'"
    " AND (lease_until IS NULL OR lease_until < ?)"
)
_ATTEMPT = "INSERT INTO notify_attempts (delivery, at, ok, status, detail, took_ms) VALUES (?, ?, ?, ?, ?, ?)"
# an attempt already on the wire when the alert was resolved (dropped meanwhile) is recorded as it really went
_SENT = (
    "UPDATE notify_deliveries SET state = 'sent', sent_at = ?, ended_at = NULL, attempts = attempts + 1,"
    " lease_until = NULL, recipients = ?, last_error = NULL WHERE id = ? AND state IN ('pending', 'dropped')"
)
_GAVE_UP = (
    "UPDATE notify_deliveries SET state = 'failed', ended_at = ?, attempts = attempts + 1, lease_until = NULL,"
    " recipients = ?, last_error = ? WHERE id = ? AND state = 'pending'"
)
_FAILED = (
    "UPDATE notify_deliveries SET attempts = attempts + 1, next_at = ?, lease_until = NULL, recipients = ?,"
    " last_error = ? WHERE id = ? AND state = 'pending'"
)
_DEFER = "UPDATE notify_deliveries SET next_at = ?, lease_until = NULL WHERE id = ?"
_DROP_RESOLVED = (
    "UPDATE notify_deliveries SET state = 'dropped', ended_at = ?, lease_until = NULL,"
    " last_error = 'not sent: the alert was resolved first'"
    " WHERE state = 'pending' AND reason NOT IN (" + ", ".join(f"'{r}'" for r in sorted(OVER_REASONS)) + ")"
    " AND alert IN (SELECT id FROM alerts WHERE state = 'resolved')"
    " {only}"
)
_FAILED_OF = "SELECT id, alert, role, recipients FROM notify_deliveries WHERE state = 'failed' AND alert {match}"
_REOPEN = (
    "UPDATE notify_deliveries SET state = 'pending', next_at = ?, ended_at = NULL, last_error = ?"
    " WHERE id = ? AND state = 'failed'"
)
_RELEASE = "UPDATE notify_deliveries SET lease_until = NULL WHERE id = ? AND state = 'pending'"
_OF_ALERTS = "SELECT * FROM notify_deliveries WHERE alert {match} ORDER BY id"
_ATTEMPTS_OF = "SELECT * FROM notify_attempts WHERE delivery {match} ORDER BY id"
# when an alert turned urgent: the first logged event of it that was urgent (core tables, read only)
_URGENT_SINCE = (
    "SELECT l.alert AS alert, MIN(l.at) AS at FROM alert_log l JOIN events e ON e.id = l.event_id"
    " WHERE l.alert {match} AND e.severity = 'urgent' GROUP BY l.alert"
)
_ANSWER = (
    "INSERT INTO notify_answers (alert, role, name, delivery, choice, at) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (delivery, choice) DO NOTHING"
)
_ANSWERS_OF = "SELECT * FROM notify_answers WHERE alert {match} ORDER BY id"
_CURSOR = (
    "SELECT (SELECT COALESCE(MAX(id), 0) FROM notify_attempts) + (SELECT COALESCE(MAX(id), 0) FROM notify_answers)"
)


def _in(tx: Tx, sql: str, ids: Collection[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for match, args in any_of(tx.engine, set(ids), "bigint"):
        rows += tx.all(sql.format(match=match), args)
    return rows


class NotifyStore:
    """The delivery log on the central's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.feed = ChangeFeed(db)

    def secret(self, name: str) -> bytes:
        """A random secret kept in the database (made on first use): the same for every central process."""
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO notify_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_hex(32)),
            )
            value = tx.scalar("SELECT value FROM notify_secrets WHERE name = ?", (name,))
        return bytes.fromhex(value)

    def plan(self, deliveries: Iterable[Planned], now: float) -> int:
        """Store planned deliveries; a key already stored is left as it is. Returns how many were new."""
        new = 0
        with self.db.write() as tx:
            for d in deliveries:
                new += tx.execute(_INSERT, (d.key, d.alert, d.role, d.channel, d.reason, d.due_at, d.urgency, now, now))
        return new

    def claim_due(self, now: float, lease_s: float, limit: int = 50) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, leased to this process for ``lease_s`` (no other process
        sends them meanwhile; a crashed sender's lease runs out and another takes over)."""
        with self.db.write() as tx:
            rows = tx.all(_DUE, (now, now, limit))
            return [r for r in rows if tx.execute(_LEASE, (now + lease_s, r["id"], now))]

    def record(
        self, delivery: int, outcome: Outcome, at: float, took_ms: float, recipients: list[Any], next_at: float
    ) -> None:
        """One attempt, and the delivery's state after it (sent, or pending until ``next_at``)."""
        who = json.dumps(recipients, ensure_ascii=False)
        with self.db.write() as tx:
            tx.execute(_ATTEMPT, (delivery, at, int(outcome.ok), outcome.status, outcome.detail, took_ms))
            if outcome.ok:
                tx.execute(_SENT, (at, who, delivery))
            elif outcome.permanent:
                tx.execute(_GAVE_UP, (at, who, outcome.detail[:500], delivery))
            else:
                tx.execute(_FAILED, (next_at, who, outcome.detail[:500], delivery))

    def defer(self, delivery: int, next_at: float) -> None:
        """Not attempted now (the channel's rate limit): pending until ``next_at``, no attempt recorded."""
        with self.db.write() as tx:
            tx.execute(_DEFER, (next_at, delivery))

    def drop_resolved(self, now: float, delivery: int | None = None) -> int:
        """Pending deliveries of resolved alerts (or only ``delivery``) end unsent at ``now``: an alarm about
        something already over is never sent late. The news that it is over is not an alarm: it still goes."""
        with self.db.write() as tx:
            if delivery is None:
                return tx.execute(_DROP_RESOLVED.format(only=""), (now,))
            return tx.execute(_DROP_RESOLVED.format(only="AND id = ?"), (now, delivery))

    def failed_of(self, alerts: Collection[int]) -> list[dict[str, Any]]:
        """The deliveries of these alerts that failed for good, with the recipients their last attempt had."""
        with self.db.read() as tx:
            rows = _in(tx, _FAILED_OF, alerts) if alerts else []
        for r in rows:
            r["recipients"] = json.loads(r["recipients"] or "[]")
        return rows

    def reopen(self, delivery: int, now: float, why: str) -> None:
        """A delivery that failed for good is tried again (its recipients were corrected)."""
        with self.db.write() as tx:
            tx.execute(_REOPEN, (now, why, delivery))

    def release(self, deliveries: Iterable[int]) -> None:
        """Give back the leases of deliveries this process claimed but never attempted (it is stopping)."""
        with self.db.write() as tx:
            for d in deliveries:
                tx.execute(_RELEASE, (d,))

    def deliveries(self, alerts: Collection[int], with_attempts: bool = False) -> dict[int, list[dict[str, Any]]]:
        """Every delivery of these alerts (with their attempts when asked), by alert."""
        out: dict[int, list[dict[str, Any]]] = {a: [] for a in alerts}
        with self.db.read() as tx:
            rows = _in(tx, _OF_ALERTS, alerts)
            attempts = _in(tx, _ATTEMPTS_OF, [r["id"] for r in rows]) if with_attempts and rows else []
        by_delivery: dict[int, list[dict[str, Any]]] = {}
        for a in attempts:
            by_delivery.setdefault(a["delivery"], []).append(
                {
                    "at": a["at"],
                    "ok": bool(a["ok"]),
                    "status": a["status"],
                    "detail": a["detail"],
                    "took_ms": round(a["took_ms"]),
                }
            )
        for r in rows:
            r["recipients"] = json.loads(r["recipients"] or "[]")
            r.pop("lease_until", None)
            if with_attempts:
                r["attempt_log"] = by_delivery.get(r["id"], [])
            out.setdefault(r["alert"], []).append(r)
        return out

    def urgent_since(self, alerts: Collection[int]) -> dict[int, float]:
        if not alerts:
            return {}
        with self.db.read() as tx:
            return {r["alert"]: float(r["at"]) for r in _in(tx, _URGENT_SINCE, alerts)}

    def answer(self, alert: int, role: str, name: str, delivery: str, choice: str, at: float) -> bool:
        """Record a link answer once per (delivery, choice); True when it is new."""
        with self.db.write() as tx:
            return tx.execute(_ANSWER, (alert, role, name, delivery, choice, at)) > 0

    def answers(self, alerts: Collection[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        with self.db.read() as tx:
            for r in _in(tx, _ANSWERS_OF, alerts):
                out.setdefault(r["alert"], []).append(r)
        return out

    def changed_since(self, cursor: tuple[int, int, int], limit: int = 5000) -> tuple[set[int], tuple[int, int, int]]:
        """Alerts changed after ``cursor`` (change-feed position, attempt id, link-answer id) and the cursor now.
        The alerts' own changes come from the central's one change feed (central.storage.changes)."""
        feed_pos, attempt, answer = cursor
        ids, feed_now = self.feed.alerts_changed(feed_pos, limit)
        with self.db.read() as tx:
            tries = tx.all(
                "SELECT d.alert AS alert, a.id AS id FROM notify_attempts a JOIN notify_deliveries d"
                " ON d.id = a.delivery WHERE a.id > ? ORDER BY a.id LIMIT ?",
                (attempt, limit),
            )
            answers = tx.all("SELECT alert, id FROM notify_answers WHERE id > ? ORDER BY id LIMIT ?", (answer, limit))
        ids |= {r["alert"] for r in tries} | {r["alert"] for r in answers}
        now = (feed_now, tries[-1]["id"] if tries else attempt, answers[-1]["id"] if answers else answer)
        return ids, now

    def cursor_now(self) -> tuple[int, int, int]:
        feed_pos = self.feed.latest()
        with self.db.read() as tx:
            return (
                feed_pos,
                int(tx.scalar("SELECT COALESCE(MAX(id), 0) FROM notify_attempts") or 0),
                int(tx.scalar("SELECT COALESCE(MAX(id), 0) FROM notify_answers") or 0),
            )

    def alert_log_cursor(self) -> int:
        """The change feed's newest position: it grows with every alert event and operator action."""
        return self.feed.latest()
