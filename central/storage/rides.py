"""Rides: a kiosk's taxi requests, idempotent by (kiosk, request id); each request and cancel on the feed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from central.storage import queries as q
from central.storage.changes import append_change
from central.storage.database import Database
from central.storage.errors import NotFound
from central.storage.rows import dumps, ride_row


class RideBook:
    """The kiosks' ride requests."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
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
            append_change(tx, now, "ride", ride_id, "requested", {"node_id": node_id, "pickup_point": pickup_point})
            made = tx.one(q.RIDE_BY_ID, (ride_id,))
        assert made is not None  # inserted in this transaction
        return ride_row(made), True

    def get(self, ride_id: str) -> dict[str, Any]:
        with self.db.read() as tx:
            row = tx.one(q.RIDE_BY_ID, (ride_id,))
        if row is None:
            raise NotFound(f"no ride {ride_id!r}")
        return ride_row(row)

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Rides newest first."""
        with self.db.read() as tx:
            rows = tx.all(q.RECENT_RIDES, (limit,))
        return [ride_row(r) for r in rows]

    def cancel(self, ride_id: str, by: str, now: float) -> None:
        with self.db.write() as tx:
            if tx.execute(q.CANCEL_RIDE, (now, by, ride_id)):
                append_change(tx, now, "ride", ride_id, "cancelled", {"by": by})
