"""Durable enqueue rate of the outbox against raw SQLite ``executemany`` in one transaction, same machine,
same file system, same pragmas (WAL, synchronous=FULL). Every figure counts an event only once it is durable:
group-committed readings are timed up to the ``flush()`` that commits the last of them."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.figures import Figure
from common.config import OutboxSection
from common.events import Event, make_event
from common.outbox import PAGE_SIZE, Outbox, event_json
from hal.clock import SystemClock


def _events(n: int, priority: str = "reading") -> list[Event]:
    state = "raised" if priority == "alert" else "observed"
    return [
        make_event(
            "bench-node",
            "flow",
            wall_time=1.767e9 + i,
            clock_synced=True,
            priority=priority,  # type: ignore[arg-type]
            state=state,  # type: ignore[arg-type]
            payload={"meter": "b12-u3", "litres": 12345.6 + i, "flow_lpm": 3.2},
        )
        for i in range(n)
    ]


def _raw(path: Path, events: list[Event], encode_in_timing: bool) -> float:
    """Raw SQLite: one executemany of (seq, id, body) in one transaction; returns events/s."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE q (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL)")
    pre = None if encode_in_timing else [(i + 1, e.id, json.dumps(e.to_wire())) for i, e in enumerate(events)]
    start = time.perf_counter()
    rows = pre if pre is not None else ((i + 1, e.id, event_json(e)) for i, e in enumerate(events))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO q VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(events) / elapsed


def _outbox(path: Path, section: OutboxSection) -> Outbox:
    return Outbox(path, section, SystemClock(), node_id="bench-node")


def run(quick: bool) -> list[Figure]:
    n = 20_000 if quick else 100_000
    n_alerts = 200 if quick else 1000
    readings = _events(n)
    with tempfile.TemporaryDirectory(dir=Path.home() if Path.home().exists() else None) as tmp:
        directory = Path(tmp)
        raw_pre = _raw(directory / "raw1.sqlite", readings, encode_in_timing=False)
        raw_json = _raw(directory / "raw2.sqlite", readings, encode_in_timing=True)

        # put_many in bursts of 500: durable when each call returns
        box = _outbox(directory / "many.sqlite", OutboxSection(max_mb=4096))
        start = time.perf_counter()
        for i in range(0, n, 500):
            box.put_many(readings[i : i + 500])
        put_many_rate = n / (time.perf_counter() - start)
        box.close()

        # put() of readings one by one, group-committed (defaults: 5 s window, 100 per commit)
        box = _outbox(directory / "put.sqlite", OutboxSection(max_mb=4096))
        start = time.perf_counter()
        for event in readings:
            box.put(event)
        box.flush()
        put_reading_rate = n / (time.perf_counter() - start)
        box.close()

        # put() of readings with no group commit: one fsynced transaction each (what an alert costs)
        box = _outbox(directory / "alerts.sqlite", OutboxSection(max_mb=4096))
        alerts = _events(n_alerts, "alert")
        start = time.perf_counter()
        for event in alerts:
            box.put(event)
        put_alert_rate = n_alerts / (time.perf_counter() - start)
        box.close()
    target = "target >= 5,000/s and >= 50% of raw"
    return [
        Figure("raw SQLite executemany, 1 txn, pre-encoded rows", round(raw_pre), "events/s", "peer"),
        Figure("raw SQLite executemany, 1 txn, JSON encoded in the loop", round(raw_json), "events/s", "peer"),
        Figure("outbox put_many (bursts of 500, durable per call)", round(put_many_rate), "events/s", target),
        Figure("  put_many / raw pre-encoded", f"{100 * put_many_rate / raw_pre:.0f}%", "", ">= 50%"),
        Figure("  put_many / raw with JSON encoding", f"{100 * put_many_rate / raw_json:.0f}%", "", ">= 50%"),
        Figure("outbox put() readings, group commit (100 / 5 s)", round(put_reading_rate), "events/s", target),
        Figure("  put() readings / raw pre-encoded", f"{100 * put_reading_rate / raw_pre:.0f}%", "", ">= 50%"),
        Figure("outbox put() alerts, one fsynced commit each", round(put_alert_rate), "events/s", "durable at return"),
        Figure("events in the run", n, "events"),
    ]
