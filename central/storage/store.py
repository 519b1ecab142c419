"""``Store``: the central's storage interface. Every route, command and job reads and writes through it.

It is made of one part per concern, each over the same database: ``nodes`` (``NodeBook``), ``events``
(``EventLog``), ``readings`` (``Readings``: meter readings and daily water points), ``alerts`` (``AlertBook``), ``rides`` (``RideBook``) and ``changes`` (``ChangeFeed``, the
ordered log of what changed), and ``maintenance`` (timed work: silent nodes, retention). The logic is written once; the engine (``central.storage.sqlite``,
``central.storage.postgres``) runs it. All SQL lives in ``central.storage``: the statements both engines share
in ``queries``, an engine's own in its module. Nothing above this layer sees an engine exception: failures
are ``StorageError`` (answered 503 ``storage_error``), answers about the data are ``NotFound`` (404) and
``Conflict`` (409).
"""

from __future__ import annotations

import time

from central.config import RetentionSection
from central.storage import queries as q
from central.storage.alerts import AlertBook
from central.storage.changes import ChangeFeed
from central.storage.database import Database
from central.storage.events import EventLog, counter_past_readings
from central.storage.maintenance import Maintenance
from central.storage.nodes import NodeBook
from central.storage.readings import Readings
from central.storage.retention import DAYS_AHEAD, ensure_partitions
from central.storage.rides import RideBook

MAX_HEALTH_ROW = 1_048_576  # bytes of stored health beyond which a row predates the bound and is reset


class Store:
    """All state of the central, in one database of either engine (see ``central.storage.open_store``)."""

    def __init__(self, db: Database, retention: RetentionSection, stale_after_s: float) -> None:
        self.db = db
        self.engine = db.engine
        self.health = db.health  # can it store uploads now (``/health``, the console's banner)
        self.nodes = NodeBook(db, stale_after_s)
        self.readings = Readings(db, retention.utc_offset_h)
        self.events = EventLog(db, stale_after_s, self.readings)
        self.alerts = AlertBook(db)
        self.rides = RideBook(db)
        self.changes = ChangeFeed(db)
        self.maintenance = Maintenance(db, retention, stale_after_s, self.readings)

    def repair(self) -> None:
        """Run at each start: health stored before heartbeats were bounded (issue 12: 30 heartbeats made one
        node 62 MB) is dropped; the node's next heartbeat stores a fresh one."""
        with self.db.write() as tx:
            tx.execute(q.RESET_HUGE_HEALTH.format(bytes=q.HEALTH_BYTES[self.engine]), (MAX_HEALTH_ROW,))
            counter_past_readings(tx)
        self.readings.move_from_events()  # readings stored before they had a table of their own (once)
        if self.engine == "postgresql":  # today's partitions before the first batch (then the maintenance round)
            today = self.readings.day(time.time())
            with self.db.write() as tx:
                ensure_partitions(tx, self.readings, today, today + DAYS_AHEAD)

    def close(self) -> None:
        self.db.close()
