"""The dispatch table (component ``dispatch``): what a provider said about each ride it took, as it said it."""

from __future__ import annotations

import json
from typing import Any

from central.storage import Component, Database, Migration

_TABLE = """
CREATE TABLE dispatch_rides (
    ride_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    provider_ride_id TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    car TEXT,
    eta_s DOUBLE PRECISION,
    eta_from DOUBLE PRECISION,
    assigned_at DOUBLE PRECISION,
    arrived_at DOUBLE PRECISION,
    no_car_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
"""
DISPATCH = Component("dispatch", (Migration(1, "rides handed to a provider", sqlite=_TABLE, postgresql=_TABLE),))
FINAL = ("arrived", "no_car", "cancelled")


class DispatchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def start(
        self, ride_id: str, provider: str, provider_ride_id: str | None, status: str, reason: str, now: float
    ) -> None:
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO dispatch_rides (ride_id, provider, provider_ride_id, status, reason, no_car_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ride_id) DO NOTHING",
                (ride_id, provider, provider_ride_id, status, reason, now if status == "no_car" else None, now),
            )

    def get(self, ride_id: str) -> dict[str, Any] | None:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM dispatch_rides WHERE ride_id = ?", (ride_id,))
        if row is not None:
            row["car"] = json.loads(row["car"]) if row["car"] else None
        return row

    def update(
        self, ride_id: str, status: str, at: float, car: dict[str, Any] | None, eta_s: float | None, reason: str
    ) -> bool:
        """A provider's news about a ride; a ride that ended (arrived, no car, cancelled) stays as it ended.
        Returns False when nothing changed."""
        stamp = {"assigned": "assigned_at", "arrived": "arrived_at", "no_car": "no_car_at"}.get(status)
        with self.db.write() as tx:
            row = tx.one("SELECT status FROM dispatch_rides WHERE ride_id = ?", (ride_id,))
            if row is None or row["status"] in FINAL:
                return False
            tx.execute(
                "UPDATE dispatch_rides SET status = ?, reason = ?, updated_at = ? WHERE ride_id = ?",
                (status, reason, at, ride_id),
            )
            if car:
                tx.execute(
                    "UPDATE dispatch_rides SET car = ? WHERE ride_id = ?",
                    (json.dumps(car, ensure_ascii=False), ride_id),
                )
            if eta_s is not None:
                tx.execute("UPDATE dispatch_rides SET eta_s = ?, eta_from = ? WHERE ride_id = ?", (eta_s, at, ride_id))
            if stamp:  # the column name comes from the fixed mapping above
                tx.execute(f"UPDATE dispatch_rides SET {stamp} = COALESCE({stamp}, ?) WHERE ride_id = ?", (at, ride_id))
        return True
