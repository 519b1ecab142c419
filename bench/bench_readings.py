"""Meter readings in their own table against the same readings as generic events (issue 15), side by side in one
run on each engine: bytes on disk per reading and ingest rate (batches of 200, one meter node, one process).

The peer is the central's own generic path: a reading whose id is not in the usual UUID text is stored as a
generic event, payload and all, as every reading was before the readings table. PostgreSQL is a throwaway
cluster (bench/pgcluster.py: fsync off, so the rate is the central's work, not the disk's).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.figures import Figure
from bench.pgcluster import ThrowawayCluster
from central.storage import Store, open_store

NODE = "cbxc-b12-meters"
BATCH = 200


def _batch(start: int, generic: bool) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + BATCH):
        event_id = str(uuid.uuid4())
        out.append({
            "id": event_id.upper() if generic else event_id, "seq": i + 1, "kind": "meter_reading",
            "severity": "info", "state": "observed", "priority": "reading", "wall_time": 1.7e9 + i * 216,
            "clock_synced": True, "alert_id": None, "recipients": [],
            "payload": {"meter_id": "b12-301", "resident": "B12-301", "total_litres": 48_000.0 + i * 0.7,
                        "raw_litres": 48_000.0 + i * 0.7, "read_wall": 1.7e9 + i * 216},
        })  # fmt: skip
    return out


def _fill(target: str, count: int, generic: bool) -> tuple[Store, float]:
    store = open_store(target)
    store.nodes.register({"node_id": NODE, "role": "meter", "site": "changbai-xincun"}, "token", 1.0)
    batches = [_batch(start, generic) for start in range(0, count, BATCH)]
    began = time.perf_counter()
    for n, events in enumerate(batches):
        store.events.ingest(NODE, events, 1.7e9, 1.7e9 + n)
    return store, count / (time.perf_counter() - began)


def _postgres_bytes(store: Store) -> int:
    with store.db.read() as tx:
        events = int(tx.scalar("SELECT pg_total_relation_size('events')"))
        readings = int(tx.scalar(
            "SELECT COALESCE(SUM(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
            " WHERE inhparent = 'readings'::regclass"
        ))  # fmt: skip
    return events + readings


def _sqlite_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return (
            db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        ) * size
    finally:
        db.close()


def _figures(engine: str, measured: dict[bool, tuple[float, float]]) -> list[Figure]:
    (table_bytes, table_rate), (generic_bytes, generic_rate) = measured[False], measured[True]
    load = os.getloadavg()[0]
    return [
        Figure(
            f"{engine}: bytes per reading, readings table", table_bytes, "B", f"generic events {generic_bytes:.0f} B"
        ),
        Figure(f"{engine}: bytes, generic / readings table", generic_bytes / table_bytes, "x", "> 1"),
        Figure(
            f"{engine}: readings/s, readings table", table_rate, "/s", f"generic {generic_rate:.0f}/s, load {load:.1f}"
        ),
        Figure(f"{engine}: ingest rate, readings table / generic", table_rate / generic_rate, "x", ">= 1"),
    ]


def run(quick: bool) -> list[Figure]:
    count = 10_000 if quick else 100_000
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-readings-") as tmp:
        measured: dict[bool, tuple[float, float]] = {}
        for generic in (False, True):
            path = Path(tmp) / f"{generic}.sqlite3"
            store, rate = _fill(str(path), count, generic)
            store.close()
            measured[generic] = (_sqlite_bytes(path) / count, rate)
        figures += _figures("sqlite", measured)
    cluster = ThrowawayCluster(port=55_000 + os.getpid() % 5000).start()
    try:
        measured = {}
        for generic in (False, True):
            store, rate = _fill(cluster.create_database("bench"), count, generic)
            measured[generic] = (_postgres_bytes(store) / count, rate)
            store.close()
        figures += _figures("postgresql", measured)
    finally:
        cluster.stop()
    return figures
