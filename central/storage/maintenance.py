"""Work done on a timer rather than on a request: nodes that fell silent go on the change feed and get a
``node_silent`` alert (cleared when they are heard from again), and what is older than its retention is removed
(``central.storage.retention``). ``Maintenance.run(now)`` does one round; ``MaintenanceThread`` runs it every
``[retention] maintenance_interval_s`` in each central process (on PostgreSQL one process at a time does it:
the round takes an advisory lock and the others skip).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from central.config import RetentionSection
from central.storage import queries as q
from central.storage.alerts import apply_silent, silent_alert_id
from central.storage.changes import append_change
from central.storage.database import Database, Tx
from central.storage.errors import StorageError
from central.storage.readings import DAY_S, Readings
from central.storage.retention import remove_old
from common.clock import Clock

log = logging.getLogger("central.storage")
MAINTENANCE_LOCK = 7_263_003  # advisory lock key (PostgreSQL): one maintenance round at a time


class Maintenance:
    """One round of timed work over the store's database."""

    def __init__(self, db: Database, retention: RetentionSection, stale_after_s: float, readings: Readings) -> None:
        self.db = db
        self.retention = retention
        self.stale_after_s = stale_after_s
        # rounds further apart than this: the central was down (or stopped its rounds), not the nodes silent
        self.gap_s = max(3 * retention.maintenance_interval_s, 60.0)
        self.readings = readings

    def run(self, now: float) -> dict[str, Any]:
        """Do what is due at ``now``; returns what was done (empty when another process is doing it)."""
        with self.db.write() as tx:
            if not tx.try_lock(MAINTENANCE_LOCK):
                return {}
            report: dict[str, Any] = {"silent": self._silent(tx, now), "silent_alerts": self._silent_alerts(tx, now)}
            report["heard_again"] = self._heard_again(tx, now)
            report["changes_removed"] = tx.execute(q.DELETE_OLD_CHANGES, (now - self.retention.changes_days * DAY_S,))
        report.update(remove_old(self.db, self.retention, self.readings, now))  # in short transactions of its own
        return report

    def _silent(self, tx: Tx, now: float) -> int:
        """Nodes last heard from between the previous round's cut and this one's: they fell silent since."""
        cut = now - self.stale_after_s
        previous = tx.scalar(q.MARK, ("silent_cut",))
        tx.execute(q.SET_MARK, ("silent_cut", cut))
        if previous is None or previous >= cut:  # the first round: nodes already silent are not news
            return 0
        rows = tx.all(q.FELL_SILENT, (previous, cut))
        for row in rows:
            append_change(tx, now, "node", row["node_id"], "silent", {"last_seen_at": row["last_seen_at"]})
        return len(rows)

    def _silent_alerts(self, tx: Tx, now: float) -> int:
        """A ``node_silent`` alert for each node the central has not heard from for ``stale_after_s`` while it was
        itself running: the central's own downtime is no node's silence (after an outage or an upgrade the nodes
        have ``stale_after_s`` of the central's to come back before any is called silent). One alert a silence."""
        last_round = tx.scalar(q.MARK, ("round_at",))
        tx.execute(q.SET_MARK, ("round_at", now))
        watching = tx.scalar(q.MARK, ("watching_since",))
        if last_round is None or watching is None or now - last_round > self.gap_s:
            tx.execute(q.SET_MARK, ("watching_since", now))  # a round missed: watched again from now
            return 0
        cut = now - self.stale_after_s
        if watching > cut:
            return 0
        rows = tx.all(q.SILENT_UNTOLD, (cut,))
        for row in rows:
            silent_s = round(now - row["last_seen_at"], 1)
            payload = {"role": row["role"], "last_seen_at": row["last_seen_at"], "silent_s": silent_s}
            apply_silent(tx, row["node_id"], silent_alert_id(row["last_seen_at"]), "raised", payload, now)
        return len(rows)

    def _heard_again(self, tx: Tx, now: float) -> int:
        """The central's ``node_silent`` alerts whose node has been heard from since: cleared (on site)."""
        rows = tx.all(q.HEARD_AGAIN)
        for row in rows:
            apply_silent(tx, row["node_id"], row["alert_id"], "cleared", {"heard_at": row["last_seen_at"]}, now)
        return len(rows)


class MaintenanceThread:
    """Runs ``Maintenance.run`` every ``interval_s`` until ``stop()``; a failed round is logged and retried."""

    def __init__(self, maintenance: Maintenance, clock: Clock, interval_s: float) -> None:
        self._maintenance = maintenance
        self._clock = clock
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the rounds (again, after a ``stop``)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="central-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(10)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval_s):
            try:
                report = self._maintenance.run(self._clock.wall())
            except StorageError as exc:
                log.error("maintenance round failed (retried in %.0f s): %s", self._interval_s, exc)
                continue
            if any(report.values()):
                log.info("maintenance: %s", report)
