"""The Outbox: the node's durable store-and-forward queue, thread-safe (the node thread puts, the sync thread
batches and acks). It keeps the priorities (alerts, then state, then readings), group-commits readings and
hands everything durable to the store (common/outbox/store.py), which also rides out a failing disk."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from common.clock import Clock
from common.config import OutboxSection
from common.events import PRIORITY_RANK, Event
from common.outbox.db import list_dead_letters
from common.outbox.errors import OutboxError
from common.outbox.lock import ProcessLock
from common.outbox.memory import PRIORITIES
from common.outbox.store import Store
from common.outbox.wire import event_json

log = logging.getLogger("common.outbox")


class Outbox:
    """``put`` (durable for alerts and state when it returns; see docs/sync.md), ``batch``/``batch_raw`` in
    drain order, ``ack`` by id, ``dead_letter``; ``node_id`` names the node in the outbox's own events (by
    default the name of the folder holding the file: ``state_dir`` = ``data_dir/node_id``)."""

    def __init__(self, path: Path, section: OutboxSection, clock: Clock, *, node_id: str = "") -> None:
        self.path = Path(path)
        self.node_id = node_id or self.path.parent.name
        self._section = section
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: list[Callable[[Event], None]] = []
        self._pending: list[Event] = []  # readings not yet committed (group commit)
        self._pending_since: float | None = None
        self._inflight: dict[str, tuple[str, int]] = {}  # id -> (priority, seq) of the last batch handed out
        self._closed = False
        self._process_lock = ProcessLock(self.path)
        try:
            self._store = Store(self.path, section, clock, self.node_id)
            self._store.open()
        except BaseException:
            self._process_lock.release()
            raise

    @property
    def fresh(self) -> bool:
        """True when this start created the database (first start, or after corruption)."""
        return self._store.fresh

    @property
    def corrupt_recoveries(self) -> int:
        return self._store.corrupt_recoveries

    @property
    def volatile(self) -> bool:
        """True while nothing can be written to disk: events live in memory until it takes them again."""
        return not self._store.writable

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")

    # ------------------------------------------------------------------------------------------ putting
    @staticmethod
    def _check_priority(event: Event) -> None:
        if event.priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {event.priority!r}; allowed: {', '.join(PRIORITIES)}")

    def put(self, event: Event, *, state: Mapping[str, str | None] | None = None) -> Event:
        """Store an event and give it its ``seq``. Alerts and state events are durable when this returns (or,
        while the disk refuses writes, held in memory and written once it takes them); readings are
        group-committed.

        ``state`` (key -> JSON text, or None to delete) is node state written in the same transaction as the
        event (the alert book keeps its open alerts this way, so an alert and its bookkeeping never disagree).
        """
        self._check_priority(event)
        with self._lock:
            self._check_open()
            stored = event.with_seq(self._store.seq.take())
            window = self._section.reading_commit_window_s
            if stored.priority == "reading" and window > 0 and not state:
                now = self._clock.monotonic()
                self._pending.append(stored)
                if self._pending_since is None:
                    self._pending_since = now
                if (
                    len(self._pending) >= self._section.reading_commit_max
                    or now - self._pending_since >= window
                    or self._store.seq.needs_reservation()
                ):
                    self._commit([])
            else:
                self._commit([stored], state)
        self._notify(stored)
        return stored

    def put_state(self, state: Mapping[str, str | None]) -> None:
        """Node state alone (key -> JSON text, or None to delete), durable when this returns (or held in memory
        while the disk refuses writes, like an event)."""
        with self._lock:
            self._check_open()
            self._commit([], state)

    def put_many(self, events: Iterable[Event], *, state: Mapping[str, str | None] | None = None) -> list[Event]:
        """Store a burst of events in one transaction, with ``state`` as in ``put``; all of them are durable when
        this returns."""
        batch = list(events)
        for event in batch:
            self._check_priority(event)
        with self._lock:
            self._check_open()
            stored = [e.with_seq(self._store.seq.take()) for e in batch]
            self._commit(stored, state)
        for event in stored:  # as put does: a listener hears of every event
            self._notify(event)
        return stored

    def _commit(self, events: list[Event], state: Mapping[str, str | None] | None = None) -> None:
        """The waiting readings and ``events`` in one write; the readings stop waiting once it is done."""
        self._store.commit([*self._pending, *events], state)
        self._pending = []
        self._pending_since = None

    def flush(self) -> int:
        """Commit the readings waiting in memory now; returns how many."""
        with self._lock:
            if self._closed or not self._pending:
                return 0
            n = len(self._pending)
            self._commit([])
            return n

    def flush_due(self) -> int:
        """Commit the waiting readings if their window has passed, try a refusing disk again if due, and notice
        events another process queued (``provision dead-letters --resend``). Returns readings committed."""
        with self._lock:
            if self._closed:
                return 0
            self._store.maybe_restore()
            outside = self._first_waiting() if self._store.changed_elsewhere() else None
            due = self._pending_since is not None and (
                self._clock.monotonic() - self._pending_since >= self._section.reading_commit_window_s
            )
            flushed = self.flush() if due else 0
        if outside is not None:
            self._notify(outside)
        return flushed

    def next_flush_at(self) -> float | None:
        """Monotonic time when the waiting readings are due to be committed, or None."""
        with self._lock:
            if self._pending_since is None:
                return None
            return self._pending_since + self._section.reading_commit_window_s

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` after each put (outside the lock), and when events wait that no put
        announced (queued again); the uploader uses it to wake early."""
        self._listeners.append(listener)

    def _notify(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    def _first_waiting(self) -> Event | None:
        body = self._store.read(lambda db: db.first_body(), None)
        return None if body is None else Event.from_wire(json.loads(body))

    # ------------------------------------------------------------------------------------------ draining
    def batch(self, limit: int) -> list[Event]:
        """Up to ``limit`` events in drain order: alerts, then state, then readings; creation order within.

        Events waiting in memory (readings before their group commit, anything while the disk refuses) are
        included after the stored ones of their priority: sent and acknowledged in time, they never touch the
        disk."""
        return [Event.from_wire(json.loads(body)) for _, body in self.batch_raw(limit)]

    def batch_raw(self, limit: int, exclude: Collection[str] = ()) -> list[tuple[str, str]]:
        """Like ``batch`` but (id, wire JSON text) pairs, so an upload need not decode and encode again.
        Events whose id is in ``exclude`` (held back by the uploader) are left out."""
        out: list[tuple[str, str]] = []
        with self._lock:
            self._check_open()
            self._inflight = {}
            skip = set(exclude) | self._store.memory.acked_ids()
            for prio in PRIORITIES:
                remaining = limit - len(out)
                if remaining <= 0:
                    break
                rows = self._stored_rows(prio, remaining + len(skip))
                waiting = self._store.memory.events[prio] + (self._pending if prio == "reading" else [])
                for seq, event_id, body in rows:
                    if len(out) < limit and event_id not in skip:
                        self._inflight[event_id] = (prio, seq)
                        out.append((event_id, body))
                for event in waiting:
                    if len(out) < limit and event.id not in skip:
                        self._inflight[event.id] = (prio, event.seq or 0)
                        out.append((event.id, event_json(event)))
        return out

    def _stored_rows(self, prio: str, limit: int) -> list[tuple[int, str, str]]:
        no_rows: list[tuple[int, str, str]] = []
        return self._store.read(lambda db: db.rows(prio, limit), no_rows)

    def ack(self, ids: Iterable[str]) -> int:
        """Delete exactly these event ids (the central acknowledged them); returns how many were deleted."""
        wanted = {i for i in ids if isinstance(i, str)}
        if not wanted:
            return 0
        with self._lock:
            self._check_open()
            keep = [e for e in self._pending if e.id not in wanted]
            done = {e.id for e in self._pending} - {e.id for e in keep}
            self._pending = keep
            if not keep:
                self._pending_since = None
            done |= self._store.memory.remove(wanted - done)
            located = self._locate(wanted - done)
            keys: dict[str, list[tuple[int, str]]] = {p: [] for p in PRIORITIES}
            for event_id, (prio, seq) in located.items():
                keys[prio].append((seq, event_id))
            deleted = len(done) + self._store.delete(keys)
            for event_id in wanted:
                self._inflight.pop(event_id, None)
            return deleted

    def carries_alert(self, ids: Collection[str]) -> bool:
        """Whether any of these events, of the last batch handed out, is an alert (the uploader marks such an
        upload for the central's admission)."""
        with self._lock:
            return any(self._inflight.get(i, ("", 0))[0] == "alert" for i in ids)

    def _locate(self, ids: set[str]) -> dict[str, tuple[str, int]]:
        """Where each id is stored: from the last batch handed out, else by a search of the file."""
        found = {i: self._inflight[i] for i in ids if i in self._inflight}
        missing = ids - set(found)
        if missing:
            nowhere: dict[str, tuple[str, int]] = {}
            found.update(self._store.read(lambda db: db.locate(missing), nowhere))
        return found

    # ------------------------------------------------------------------------------------------ dead letters
    def dead_letter(self, event_id: str, reason: str) -> bool:
        """Move an event the central refused as invalid to the dead letters; False if it is not queued or the
        disk refuses the move now (it then stays queued)."""
        with self._lock:
            self._check_open()
            if any(e.id == event_id for e in self._pending):
                self._commit([])  # store it first, then move it like any other
            where = self._locate({event_id}).get(event_id)
            self._inflight.pop(event_id, None)
            if where is None or not self._store.dead_letter(where[0], where[1], event_id, reason):
                return False
        log.error("outbox: event %s (%s) moved to dead letters: %s", event_id, where[0], reason)
        return True

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent dead letters: seq, id, priority, reason, at_wall, kind, wall_time."""
        with self._lock:
            self._check_open()
            return self._store.read(lambda db: list_dead_letters(db.conn, limit), [])

    def requeue_dead_letters(self, ids: Iterable[str] | None = None) -> int:
        """Queue dead letters again (all, or those with these ids), each with its own id and seq: the central
        keeps an event once by id, so one that had arrived after all is not stored twice. Returns how many."""
        with self._lock:
            self._check_open()
            self._commit([])
            moved = self._store.requeue(None if ids is None else list(ids))
            first = self._first_waiting() if moved else None
        if moved:
            log.warning("outbox: %d dead letter(s) queued again", moved)
        if first is not None:
            self._notify(first)
        return moved

    def resend_after_upgrade(self, version: str) -> int:
        """Once per software version: dead letters are queued again after an upgrade (the new version may
        send what the old one could not). Returns how many were queued."""
        with self._lock:
            self._check_open()
            summary = self._store.read(lambda db: db.summary(), None)
            if summary is None or summary.meta.get("dead_letters_version") == version:
                return 0
        moved = self.requeue_dead_letters() if summary.dead_letters else 0
        with self._lock:
            self._store.set_meta("dead_letters_version", version)
        if moved:
            log.warning("outbox: version %s: %d dead letter(s) of an earlier version sent again", version, moved)
        return moved

    # ------------------------------------------------------------------------------------------ reporting
    def depth(self) -> dict[str, int]:
        """Events waiting per priority: on disk, in memory, and readings waiting for their group commit."""
        with self._lock:
            memory = self._store.memory.counts()
            out = {p: self._store.counts[p] + memory[p] for p in PRIORITIES}
            out["reading"] += len(self._pending)
            return out

    def stats(self) -> dict[str, Any]:
        """Depth, dropped counts by priority, dead letters, seq and disk figures, storage state (heartbeat)."""
        with self._lock:
            store = self._store
            used = 0 if self._closed else store.read(lambda db: db.used_bytes(), 0)
            return {
                "depth": self.depth(),
                "uncommitted_readings": len(self._pending),
                "dropped": dict(store.dropped),
                "dead_letters": store.dead_count,
                "next_seq": store.seq.next,
                "db_bytes": used,
                "db_limit_bytes": store.bound.db_limit,
                "corrupt_recoveries": store.corrupt_recoveries,
                "volatile": not store.writable,
                "storage": "ok" if store.refusing is None else f"in memory: {store.refusing}",
                "unstored": store.memory.counts(),
                "reserve_bytes": store.reserve.held_bytes(),
            }

    def check(self) -> str:
        """SQLite's quick_check of the file: "ok" or the first problem (for the self-test). On its own
        read-only connection where it can (a large file on a slow card never holds up an alert)."""
        with self._lock:
            db = self._store.db
            if db is None:
                return f"no database open ({self._store.refusing})"
            if db.exclusive or db.frozen:  # no second connection can read beside this one
                return self._store.read(lambda d: d.quick_check(), "unreadable")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10.0)
        except sqlite3.Error as exc:
            return f"{type(exc).__name__}: {exc}"
        try:
            return str(conn.execute("PRAGMA quick_check").fetchone()[0])
        except sqlite3.Error as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def read_state(self, key: str) -> str | None:
        """Node state stored with ``put(..., state=...)`` (what waits in memory first)."""
        with self._lock:
            if key in self._store.memory.state:
                return self._store.memory.state[key]
            value = self._store.read(lambda db: db.read_state(key), None)
            if value is not None:
                self._store.known_state.setdefault(key, value)
            return value

    # ------------------------------------------------------------------------------------------ closing
    def close(self) -> None:
        """Commit waiting readings, record a clean stop (no seq gap on the next start) and close."""
        with self._lock:
            if self._closed:
                return
            try:
                self._commit([])
                self._store.close()
            except OutboxError as exc:
                log.error("outbox %s: clean close failed: %s", self.path, exc)
            finally:
                self._closed = True
                self._process_lock.release()

    def _abandon(self) -> None:
        """Let go of the database as a kill -9 would: no flush, no clean close (tests use this)."""
        self._closed = True
        if self._store.db is not None:
            self._store.db.close()
        self._process_lock.release()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
