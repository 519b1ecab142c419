"""Disk use over 30 simulated days under retention (issue 15: "disk use flat over a simulated 30 days"), SQLite and
PostgreSQL side by side in one run.

Each simulated day, every meter node sends its ~400 readings (batches of 200), a few state events and now and then
an alert; the central's own maintenance round (``Store.maintenance.run``, what ``MaintenanceThread`` runs every
``maintenance_interval_s``) runs every 6 simulated hours with ``readings_days = 7`` and ``state_days = 14``. At
the end of each day the bench reads what the database holds on disk: SQLite's file and its WAL as ``stat`` sees
them (freed pages are reused, never returned to the file system); PostgreSQL's ``pg_database_size`` (dropped
day partitions free their files at once; deleted events are left to autovacuum, as in production).

"Flat" means: once the longest window (14 days) has passed, the size grows only by what is kept for good (alerts,
one daily point per meter and day, the nodes' rows). The bench prints the size per day, the growth over the last
ten days, and the rows kept for good that account for it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.figures import Figure
from bench.pgcluster import ThrowawayCluster
from central.config import RetentionSection
from central.storage import Store, open_store

DAY_S = 86_400.0
START = 1_780_000_000.0  # a simulated first day (2026-05-28)
RETENTION = RetentionSection(readings_days=7, state_days=14, changes_days=7)
READINGS_PER_DAY = 400
ROUNDS_PER_DAY = 4  # maintenance every 6 simulated hours
MB = 1024 * 1024


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _event(node: str, seq: int, t: float, kind: str, priority: str, payload: dict[str, Any], **fields: Any) -> dict:
    return {
        "id": str(uuid.uuid4()), "node_id": node, "seq": seq, "kind": kind, "severity": "info",
        "state": "observed", "priority": priority, "wall_time": t, "clock_synced": True, "payload": payload,
        "alert_id": None, "recipients": [], **fields,
    }  # fmt: skip


class Fleet:
    """``meters`` meter nodes, each with its own meter, its sequence numbers and its running total."""

    def __init__(self, meters: int) -> None:
        self.nodes = [f"cbxc-b{i // 40 + 1}-m{i:04d}" for i in range(meters)]
        self.seq = dict.fromkeys(self.nodes, 0)
        self.total = dict.fromkeys(self.nodes, 40_000.0)

    def register(self, store: Store) -> None:
        for node in self.nodes:
            store.nodes.register({"node_id": node, "role": "meter", "site": "changbai-xincun"}, "tok-" + node, START)

    def _next(self, node: str) -> int:
        self.seq[node] += 1
        return self.seq[node]

    def part_of_day(self, store: Store, day: int, part: int) -> int:
        """Upload one part (of ROUNDS_PER_DAY) of day ``day``; returns the events sent."""
        begin = START + day * DAY_S + part * DAY_S / ROUNDS_PER_DAY
        per_part = READINGS_PER_DAY // ROUNDS_PER_DAY
        step = DAY_S / ROUNDS_PER_DAY / per_part
        sent = 0
        for index, node in enumerate(self.nodes):
            events = []
            for k in range(per_part):
                t = begin + k * step
                self.total[node] += 0.35
                payload = {"meter_id": node[-5:], "resident": node[-5:].upper(), "total_litres": self.total[node],
                           "raw_litres": self.total[node], "read_wall": t}  # fmt: skip
                events.append(_event(node, self._next(node), t, "meter_reading", "reading", payload))
            events.append(_event(node, self._next(node), begin, "meter_health", "state", {"status": "ok"}))
            if (index + day) % 20 == 0 and part == 1:  # an alert now and then: kept for good
                alert = {"severity": "warning", "alert_id": f"a-{day}-{node}", "recipients": ["family"]}
                events.append(_event(node, self._next(node), begin, "no_water_use", "alert", {"hours": 13},
                                     state="raised", **alert))  # fmt: skip
            for start in range(0, len(events), 200):
                store.events.ingest(node, events[start : start + 200], begin + DAY_S / ROUNDS_PER_DAY, begin)
            sent += len(events)
        return sent


def _sqlite_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _postgres_bytes(store: Store) -> int:
    with store.db.read() as tx:
        return int(tx.scalar("SELECT pg_database_size(current_database())"))


def _kept_for_good(store: Store) -> dict[str, int]:
    with store.db.read() as tx:
        return {t: int(tx.scalar(f"SELECT COUNT(*) FROM {t}")) for t in ("water_days", "alerts", "readings", "events")}  # noqa: S608


def simulate(store: Store, size_of: Any, meters: int, days: int, engine: str) -> list[float]:
    """Run ``days`` simulated days; returns the bytes on disk at the end of each."""
    fleet = Fleet(meters)
    fleet.register(store)
    sizes: list[float] = []
    began = time.monotonic()
    for day in range(days):
        for part in range(ROUNDS_PER_DAY):
            fleet.part_of_day(store, day, part)
            store.maintenance.run(START + day * DAY_S + (part + 1) * DAY_S / ROUNDS_PER_DAY)
        sizes.append(size_of())
        rows = _kept_for_good(store)
        say(f"[central_retention] {engine} day {day + 1:2d}: {sizes[-1] / MB:7.1f} MB on disk, {rows['readings']:,}"
            f" raw readings, {rows['events']:,} events, {rows['water_days']:,} daily points,"
            f" {time.monotonic() - began:.0f} s")  # fmt: skip
    return sizes


def _figures(engine: str, sizes: list[float], store: Store, meters: int) -> list[Figure]:
    days = len(sizes)
    settled = max(RETENTION.readings_days, RETENTION.state_days) + 1  # the first day every window has passed
    kept = _kept_for_good(store)
    growth = sizes[-1] - sizes[settled - 1]
    per_day = growth / max(1, days - settled)
    return [
        Figure(
            f"{engine}: on disk at day {settled} / day {days}",
            f"{sizes[settled - 1] / MB:.1f} / {sizes[-1] / MB:.1f}",
            "MB",
            f"{meters} meters, {meters * READINGS_PER_DAY:,} readings a day",
        ),  # fmt: skip
        Figure(
            f"{engine}: growth per day after day {settled}",
            round(per_day / 1024),
            "KiB/day",
            f"{100 * per_day / (sizes[settled - 1] or 1):.2f}% of the size a day; flat = kept-for-good rows only",
        ),  # fmt: skip
        Figure(f"{engine}: peak before day {settled}", f"{max(sizes[:settled]) / MB:.1f}", "MB"),
        Figure(
            f"{engine}: rows kept for good at the end",
            f"{kept['water_days']:,} daily points, {kept['alerts']:,} alerts",
            "",
            f"raw readings {kept['readings']:,} (7 days), events {kept['events']:,}",
        ),  # fmt: skip
    ]


def run(quick: bool) -> list[Figure]:
    meters, days = (10, 18) if quick else (150, 30)
    figures = [Figure("central_retention: load average at start", round(os.getloadavg()[0], 1), "", "2 cores shared")]
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp:
        path = Path(tmp) / "central.sqlite3"
        store = open_store(path, retention=RETENTION)
        try:
            sizes = simulate(store, lambda: _sqlite_bytes(path), meters, days, "SQLite")
            figures += _figures("SQLite", sizes, store, meters)
        finally:
            store.close()
    cluster = ThrowawayCluster(port=54_000 + os.getpid() % 1000).start()
    try:
        store = open_store(cluster.create_database("retention"), retention=RETENTION)
        try:
            sizes = simulate(store, lambda: _postgres_bytes(store), meters, days, "PostgreSQL")
            figures += _figures("PostgreSQL", sizes, store, meters)
        finally:
            store.close()
    finally:
        cluster.stop()
    figures.append(Figure("central_retention: load average at end", round(os.getloadavg()[0], 1), "", ""))
    return figures
