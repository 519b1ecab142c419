"""Removing what is past its retention (``[retention]``), in short transactions so ingest never waits long.

- raw readings: ``readings_days`` after they were received. PostgreSQL drops whole day partitions (and makes the
  next days' partitions ahead); SQLite deletes in batches of ``BATCH`` rows by ``received_at``. Their daily points
  (``water_days``) stay for good.
- generic events of priority ``reading`` (a reading without the usual fields): ``readings_days``; of priority
  ``state``: ``state_days``. Alert events, alerts and their log, and rides stay for good.
- the change feed: ``changes_days`` (``central.storage.maintenance``).

A node's sequence ranges live on its row (``central.storage.seqs``), so removing its events loses no gap report.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from central.config import RetentionSection
from central.storage.database import Database, Tx
from central.storage.readings import DAY_S, Readings

BATCH = 5000
EPOCH = date(1970, 1, 1)
PARTITION_LOCK = 7_263_004  # advisory lock key (PostgreSQL): one process changes the readings' partitions
DAYS_AHEAD = 2
PARTITIONS = (
    "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'readings'::regclass"
)
DELETE_EVENTS = (
    "DELETE FROM events WHERE row IN (SELECT row FROM events WHERE received_at < ? AND priority = ? LIMIT ?)"
)
DELETE_READINGS = "DELETE FROM readings WHERE row IN (SELECT row FROM readings WHERE received_at < ? LIMIT ?)"


def remove_old(db: Database, retention: RetentionSection, readings: Readings, now: float) -> dict[str, Any]:
    """One round of retention at ``now``; returns how many rows (and partitions) went."""
    readings_cut = now - retention.readings_days * DAY_S
    report: dict[str, Any] = {}
    if db.engine == "postgresql":
        report.update(_partitions(db, readings, now, readings_cut))
    else:
        report["readings_removed"] = _in_batches(db, DELETE_READINGS, (readings_cut,))
    report["events_removed"] = _in_batches(db, DELETE_EVENTS, (readings_cut, "reading")) + _in_batches(
        db, DELETE_EVENTS, (now - retention.state_days * DAY_S, "state")
    )
    return report


def _in_batches(db: Database, sql: str, args: tuple[Any, ...]) -> int:
    removed = 0
    while True:
        with db.write() as tx:
            done = tx.execute(sql, (*args, BATCH))
        removed += done
        if done < BATCH:
            return removed


def partition_name(day: int) -> str:
    """``readings_YYYYMMDD``: the partition of a local day."""
    return f"readings_{(EPOCH + timedelta(days=day)):%Y%m%d}"


def _day_of(name: str) -> int | None:
    """The day of a partition (None: the default partition)."""
    found = re.fullmatch(r"readings_(\d{8})", name)
    return (datetime.strptime(found[1], "%Y%m%d").date() - EPOCH).days if found else None


def _partitions(db: Database, readings: Readings, now: float, cut: float) -> dict[str, int]:
    """Make the partitions of today and ``DAYS_AHEAD`` days ahead, drop those wholly before ``cut``."""
    today = readings.day(now)
    with db.write() as tx:
        made = ensure_partitions(tx, readings, today, today + DAYS_AHEAD)
    with db.write() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (PARTITION_LOCK,))
        dropped = 0
        for row in tx.all(PARTITIONS):
            day = _day_of(row["name"])
            if day is not None and readings.day_start(day + 1) <= cut:
                tx.execute(f"DROP TABLE {row['name']}")
                dropped += 1
        stray = tx.execute("DELETE FROM readings_default WHERE received_at < ?", (cut,))
    return {"partitions_made": made, "partitions_dropped": dropped, "readings_removed": stray}


def ensure_partitions(tx: Tx, readings: Readings, first_day: int, last_day: int) -> int:
    """The day partitions from ``first_day`` to ``last_day`` (PostgreSQL); rows of such a day that went to the
    default partition meanwhile move into it. Returns how many were made."""
    tx.execute("SELECT pg_advisory_xact_lock(?)", (PARTITION_LOCK,))
    existing = {row["name"] for row in tx.all(PARTITIONS)}
    missing = [day for day in range(first_day, last_day + 1) if partition_name(day) not in existing]
    if missing:  # no batch puts a row of such a day in the default partition between the move and the attach
        tx.execute("LOCK TABLE readings_default IN EXCLUSIVE MODE")
    for day in missing:
        name = partition_name(day)
        start, end = readings.day_start(day), readings.day_start(day + 1)
        tx.execute(f"CREATE TABLE {name} (LIKE readings INCLUDING DEFAULTS)")
        moved = tx.execute(
            "WITH moved AS (DELETE FROM readings_default WHERE received_at >= ? AND received_at < ? RETURNING *)"
            f" INSERT INTO {name} SELECT * FROM moved",
            (start, end),
        )
        tx.execute(f"ALTER TABLE readings ATTACH PARTITION {name} FOR VALUES FROM ({start!r}) TO ({end!r})")
        if moved:  # statistics now: planned blind, looking up a batch's ids took 10-35 ms instead of 0.1
            tx.execute(f"ANALYZE {name}")
    return len(missing)
