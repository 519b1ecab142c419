"""The outbox's durable side, and what it does when the disk fails it.

- A damaged file (quick_check fails, SQLite says corrupt) is moved aside and what reads is carried over into a
  fresh file (common/outbox/recovery.py).
- A disk that refuses writes is never taken for damage. A full disk first gets the space of the reserve file
  (common/outbox/reserve.py), then the oldest readings are dropped; what still cannot be written waits in a
  bounded memory queue (common/outbox/memory.py) and is written once the disk takes it (tried every RETRY_S).
  A file that can only be read (a read-only disk) is read; one that cannot be opened at all leaves the node
  running on memory, and is opened as soon as it can be.

Called under the Outbox's lock: single-threaded here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from common.catalogue import Severity
from common.clock import Clock
from common.config import OutboxSection
from common.events import Event, make_event
from common.files import fsync_path
from common.outbox.bound import DiskBound, drop_oldest, keep_under_bound
from common.outbox.db import SCHEMA_VERSION, Keys, QueueDb, create_private, requeue_dead_letters, restrict_mode
from common.outbox.errors import OutboxError, fault_of, sqlite_code
from common.outbox.memory import PRIORITIES, MemoryQueue
from common.outbox.recovery import recover
from common.outbox.reserve import Reserve
from common.outbox.seq import SeqCounter
from common.outbox.wire import event_json

log = logging.getLogger("common.outbox")

T = TypeVar("T")
RETRY_S = 5.0  # how often a refusing disk is tried again
RESERVE_CHECK_S = 60.0
MIB = 1024 * 1024


class Store:
    """``commit`` events (durable, or in memory while the disk refuses), ``read`` with damage handled,
    ``delete`` acknowledged events, ``dead_letter``; ``maybe_restore`` writes out what waits in memory."""

    def __init__(self, path: Path, section: OutboxSection, clock: Clock, node_id: str) -> None:
        self.path = path
        self.section = section
        self.clock = clock
        self.node_id = node_id
        self.bound = DiskBound.from_mb(section.max_mb)
        # room for a full group-commit window of readings, twice, so a reading put never waits for a reservation
        block = 2 * section.reading_commit_max + 16
        self.seq = SeqCounter(path.with_name(path.name + ".seq"), block, section.reading_commit_max)
        self.reserve = Reserve(path.with_name(path.name + ".reserve"), int(section.reserve_mb * MIB))
        self.memory = MemoryQueue(section.memory_events_max)
        self.db: QueueDb | None = None
        self.counts = dict.fromkeys(PRIORITIES, 0)  # events in the file, per priority
        self.dropped = dict.fromkeys(PRIORITIES, 0)
        self.dead_count = 0
        self.corrupt_recoveries = 0
        # node state as this process last wrote or read it (the file holds no newer: one process per outbox);
        # written back into a fresh file when damage is found while running and the salvage cannot read it
        self.known_state: dict[str, str | None] = {}
        self.fresh = False
        self.refusing: str | None = None  # the disk fault that keeps events in memory; None: writes go to disk
        self.meta_due: dict[str, str] = {}  # meta rows for the next write
        self._retry_at = 0.0
        self._reserve_at = 0.0
        self.bytes_since_check = 0
        self.over_logged_at: float | None = None
        self._data_version: int | None = None
        self.resume_checked = False
        self.recovering = False
        self._retrying = False  # a write-out attempt: a refusal then is not news
        self._drop_notes: dict[str, dict[str, Any]] = {}  # what the memory bound pushed out, per priority

    @property
    def writable(self) -> bool:
        return self.refusing is None and self.db is not None and not self.db.frozen

    # ------------------------------------------------------------------------------------------ opening
    def open(self) -> None:
        """Open the file (recovering a damaged one), or run on memory while the disk allows neither."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fresh = create_private(self.path)
        except OSError as exc:
            log.error("outbox: cannot create %s: %s", self.path, exc)
            self.fresh = not self.path.exists()
        restrict_mode(self.path)  # also a file an older version made 0644
        db = self._connect()
        if self.corrupt_recoveries:
            return  # the recovery opened, filled and announced a fresh file
        if db is None:
            # nothing readable: continue after the side file, or after wall-clock milliseconds when a file is
            # there but unreadable (numbers must never be handed out twice)
            self.seq.start_after(0 if self.fresh else self.seq.read_mark() or int(self.clock.wall() * 1000))
            self._keep_in_memory([])
            return
        self._adopt(db)
        with contextlib.suppress(OSError):
            fsync_path(self.path.parent)  # a new database file is durable only once its directory entry is

    def _connect(self) -> QueueDb | None:
        """Open read-write; on a disk fault with the WAL index in memory (no -shm file to make); then read-only
        and immutable (a read-only disk). A damaged file is recovered. None when nothing opens."""
        attempts = [(False, False), (True, False)]
        with contextlib.suppress(OSError):
            if self.path.stat().st_size > 0:
                attempts.append((False, True))
        last: BaseException = OSError("cannot open")
        for exclusive, frozen in attempts:
            try:
                return QueueDb.open(self.path, self.bound.wal_limit, exclusive=exclusive, frozen=frozen)
            except sqlite3.Error as exc:
                fault = fault_of(exc)
                if fault == "corrupt":
                    return self._recover(exc)
                if fault is None:
                    raise OutboxError(f"outbox {self.path}: cannot open: {exc}") from exc
                last = exc
        self.refuse(last)
        return None

    def _adopt(self, db: QueueDb) -> None:
        """Take the file's counts and numbers, report an unclean stop's gap (once), mark the run open."""
        self.db = db
        summary = db.summary()
        self.counts = dict(summary.counts)
        self.dead_count = summary.dead_letters
        meta = summary.meta
        self.dropped = {p: int(meta.get(f"dropped_{p}", 0)) for p in PRIORITIES}
        self.seq.floor = max(self.seq.floor, int(meta.get("seq_floor", 0)))
        # a clean stop leaves the file authoritative; otherwise the side file may know of a later reservation
        mark = self.seq.read_mark() if meta.get("clean_close") != "1" else 0
        self.seq.start_after(int(meta.get("seq_reserved", 1)), summary.max_seq + 1, mark)
        self.seq.reserved = self.seq.next  # the first write reserves a block
        durable_max = max(summary.max_seq, self.seq.floor)
        notes = []
        if not self.resume_checked and meta and meta.get("clean_close") != "1" and self.seq.next > durable_max + 1:
            notes.append(self._resumed_note(durable_max + 1, self.seq.next - 1))
        self.resume_checked = True
        self.meta_due.update(clean_close="0", schema_version=str(SCHEMA_VERSION))
        if not db.frozen:
            restrict_mode(self.path)
        self.commit(notes)

    def _resumed_note(self, first: int, last: int) -> Event:
        log.warning(
            "outbox %s: resumed after an unclean stop; seq %d..%d were never stored (at most %d readings of the "
            "last commit window may be lost, the rest is unused reservation)",
            self.path,
            first,
            last,
            self.section.reading_commit_max,
        )
        payload = {
            "unclean_stop": True,
            "seq_not_stored_from": first,
            "seq_not_stored_to": last,
            "max_lost_readings": self.section.reading_commit_max,
            "note": "numbers in this range the central does not hold were never stored: readings of the last "
            "group-commit window, or numbers reserved and never used",
        }
        return self.note("outbox_resumed", "info", payload)

    def note(self, kind: str, severity: Severity, payload: Mapping[str, Any]) -> Event:
        """A technical event of the outbox itself, numbered."""
        event = make_event(self.node_id, kind, clock=self.clock, severity=severity, priority="state", payload=payload)
        return event.with_seq(self.seq.take())

    def _recover(self, exc: BaseException) -> QueueDb | None:
        return recover(self, exc)

    # ------------------------------------------------------------------------------------------ writing
    def commit(self, events: Sequence[Event], state: Mapping[str, str | None] | None = None) -> None:
        """Store ``events`` and node ``state`` durably, or in memory while the disk refuses them. Raises
        OutboxError only for an error that is neither damage nor a refusing disk."""
        self.maybe_restore()
        if self.writable and self._attempt(lambda: self._write(events, state)):
            if self.bytes_since_check > self.bound.check_every:
                self._enforce_bound()
            return
        self._keep_in_memory(events, state)

    def _write(
        self, events: Sequence[Event], state: Mapping[str, str | None] | None = None, deletes: Keys | None = None
    ) -> dict[str, int]:
        """One transaction: ``deletes``, events, state, due meta and a new seq reservation if one is due."""
        assert self.db is not None
        rows: dict[str, list[tuple[int, str, str]]] = {p: [] for p in PRIORITIES}
        added = 0
        for event in events:
            body = event_json(event)
            rows[event.priority].append((event.seq or 0, event.id, body))
            added += len(body) + 16
        meta = dict(self.meta_due)
        if self.seq.needs_reservation():
            # the highest acknowledged number goes with each reservation (no extra page write per ack): an
            # unclean stop's gap report (outbox_resumed) then starts close to where it really starts
            meta.update(seq_reserved=str(self.seq.reserve()), seq_floor=str(self.seq.floor))
        removed = self.db.write(rows, state, meta, deletes)
        self.known_state.update(state or {})
        self.meta_due.clear()
        for prio, table_rows in rows.items():
            self.counts[prio] += len(table_rows) - removed.get(prio, 0)
        self.bytes_since_check += added
        return removed

    def _attempt(self, write: Callable[[], Any]) -> bool:
        """Run a write with the fault policy: damage -> recover and write again in the fresh file; a full disk
        -> make room and write again; a disk that still refuses -> False (the caller keeps it in memory)."""
        try:
            write()
            return True
        except sqlite3.Error as exc:
            failed: BaseException = exc
        fault = fault_of(failed)
        if fault is None:
            raise OutboxError(f"outbox {self.path}: {failed}") from failed
        if fault == "corrupt" and not self.recovering:
            self._recover(failed)
            return self.writable and self._attempt(write)
        if self._disk_full(failed) and self._make_room():
            try:
                write()
                return True
            except sqlite3.Error as again:
                if fault_of(again) is None:
                    raise OutboxError(f"outbox {self.path}: {again}") from again
                failed = again
        self.refuse(failed)
        return False

    @staticmethod
    def _disk_full(exc: BaseException) -> bool:
        return sqlite_code(exc) == sqlite3.SQLITE_FULL

    def _make_room(self) -> bool:
        """Free space for a write that found the disk full: the reserve first (a delete needs WAL room too),
        then a quarter of the oldest readings (or state events). True when something was freed."""
        if self.reserve.release():
            return True
        for prio in ("reading", "state"):
            if self.counts[prio]:
                try:
                    return self._drop_oldest(prio, max(1, self.counts[prio] // 4), "disk full") > 0
                except sqlite3.Error as exc:
                    log.error("outbox %s: cannot make room: %s", self.path, exc)
                    return False
        return False

    def refuse(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if self.refusing is None and not self._retrying:
            log.critical(
                "OUTBOX: THE DISK REFUSES WRITES at %s (%s); events are kept in memory (at most %d) and written "
                "as soon as it takes them again (tried every %.0f s)",
                self.path,
                text,
                self.memory.limit,
                RETRY_S,
            )
        self.refusing = text
        self._retry_at = self.clock.monotonic() + RETRY_S

    def _keep_in_memory(self, events: Sequence[Event], state: Mapping[str, str | None] | None = None) -> None:
        if self.refusing is None:
            self.refuse(OSError("the outbox file is open read-only"))
        if self.seq.needs_reservation():
            self.meta_due["seq_reserved"] = str(self.seq.reserve())  # the side file is written in place
        pushed = self.memory.add(events, state)
        if pushed:
            log.error(
                "outbox: memory bound (%d events) reached while the disk refuses writes; dropped %s",
                self.memory.limit,
                ", ".join(f"{e.priority} {e.kind} seq {e.seq}" for e in pushed),
            )
        for event in pushed:  # one outbox_dropped note per priority, written with the memory's events
            note = self._drop_notes.setdefault(event.priority, {"count": 0, "seqs": []})
            note["count"] += 1
            note["seqs"].append(event.seq or 0)
            if "event" not in note:
                note["event"] = self.note("outbox_dropped", "warning", {})

    # ------------------------------------------------------------------------------------------ restoring
    def maybe_restore(self, force: bool = False) -> bool:
        """While the disk refuses: every RETRY_S, open the file if needed and write out what waits in memory.
        While it takes writes: make the reserve again once there is room. True when memory was written out."""
        now = self.clock.monotonic()
        if self.refusing is None:
            if self.reserve.size and now >= self._reserve_at:
                self._reserve_at = now + RESERVE_CHECK_S
                self.reserve.ensure()
            return False
        if self.recovering or (now < self._retry_at and not force):
            return False
        self._retry_at = now + RETRY_S
        if (self.db is None or self.db.frozen or not self._full(self.refusing)) and not self._reopen():
            return False
        return self._write_out_memory()

    @staticmethod
    def _full(text: str) -> bool:
        return "full" in text.lower()

    def _reopen(self) -> bool:
        """Open the file again (it was unreadable, read-only or failing); True when it takes writes. The old
        connection (a read-only one still serves the stored events) is kept until a new one opens."""
        with contextlib.suppress(OSError):
            self.fresh = create_private(self.path) or self.fresh
        for exclusive in (False, True):
            try:
                db = QueueDb.open(self.path, self.bound.wal_limit, exclusive=exclusive)
                break
            except sqlite3.Error as exc:
                if fault_of(exc) == "corrupt":
                    self._recover(exc)
                    return self.writable
                self.refusing = f"{type(exc).__name__}: {exc}"
        else:
            return False
        if self.db is not None:
            self.db.close()
        self.refusing = None
        self._adopt(db)  # the file's counts; what waits in memory goes in next
        return self.writable

    def _write_out_memory(self) -> bool:
        waiting = self.memory.all_events()
        notes = [self._drop_note(prio, note) for prio, note in self._drop_notes.items()]
        deletes = {p: list(keys) for p, keys in self.memory.acked.items()}
        state = dict(self.memory.state)
        previous, self.refusing, self._retrying = self.refusing, None, True
        try:
            written = self._attempt(lambda: self._write([*waiting, *notes], state, deletes))
        finally:
            self._retrying = False
        if not written:
            self.refusing = self.refusing or previous
            return False
        for prio, note in self._drop_notes.items():
            self.dropped[prio] += note["count"]
        self._drop_notes.clear()
        self.memory.clear_written()
        self.refresh()
        log.warning("outbox %s: the disk takes writes again; %d events written from memory", self.path, len(waiting))
        self._reserve_at = 0.0
        return True

    def _drop_note(self, prio: str, note: dict[str, Any]) -> Event:
        seqs = note["seqs"]
        reason = "memory bound while the disk refused writes"
        payload = {
            "priority": prio,
            "count": note["count"],
            "first_seq": min(seqs),
            "last_seq": max(seqs),
            "reason": reason,
        }
        return dataclasses.replace(note["event"], payload=payload)

    # ------------------------------------------------------------------------------------------ reading
    def read(self, op: Callable[[QueueDb], T], default: T) -> T:
        """A read of the file; damage is recovered (then read again), a disk fault gives ``default``."""
        if self.db is None:
            return default
        try:
            return op(self.db)
        except sqlite3.Error as exc:
            fault = fault_of(exc)
            if fault is None:
                raise OutboxError(f"outbox {self.path}: read failed: {exc}") from exc
            if fault == "corrupt" and not self.recovering:
                self._recover(exc)
                return self.read(op, default)
            log.error("outbox %s: read failed: %s", self.path, exc)
            return default

    def refresh(self) -> None:
        """Counts read again from the file (another process changed it, or after a restore)."""
        summary = self.read(lambda db: db.summary(), None)
        if summary is not None:
            self.counts = dict(summary.counts)
            self.dead_count = summary.dead_letters

    def changed_elsewhere(self) -> bool:
        """True once after another connection committed (``provision dead-letters --resend``)."""
        version = self.read(lambda db: db.data_version(), None)
        changed = version is not None and self._data_version is not None and version != self._data_version
        self._data_version = version
        if changed:
            self.refresh()
        return changed

    # ------------------------------------------------------------------------------------------ changing
    def delete(self, keys: Keys) -> int:
        """Delete acknowledged stored events (by seq and id); while the disk refuses, remembered and deleted
        with the next write. Returns how many."""
        wanted = sum(len(k) for k in keys.values())
        if not wanted:
            return 0
        top = max(seq for rows in keys.values() for seq, _ in rows)
        removed: dict[str, int] = {}
        if self.writable and self._attempt(lambda: removed.update(self._write((), None, keys))):
            self.seq.floor = max(self.seq.floor, top)
            return sum(removed.values())
        for prio, rows in keys.items():
            self.memory.acked[prio].extend(rows)
            self.counts[prio] = max(0, self.counts[prio] - len(rows))
        self.seq.floor = max(self.seq.floor, top)
        return wanted

    def dead_letter(self, prio: str, seq: int, event_id: str, reason: str) -> bool:
        """Move a stored event to the dead letters; False when it is not stored or the disk refuses."""
        moved: list[bool] = []
        at = self.clock.wall()
        if not self.writable or not self._attempt(lambda: moved.append(self._dead(prio, seq, event_id, reason, at))):
            return False
        if moved and moved[-1]:
            self.counts[prio] -= 1
            self.dead_count += 1
            return True
        return False

    def _dead(self, prio: str, seq: int, event_id: str, reason: str, at: float) -> bool:
        assert self.db is not None
        return self.db.to_dead_letter(prio, seq, event_id, reason, at)

    def requeue(self, ids: list[str] | None) -> int:
        moved: list[int] = []

        def move() -> None:
            assert self.db is not None
            moved.append(requeue_dead_letters(self.db.conn, ids))

        if not self.writable or not self._attempt(move):
            return 0
        self.refresh()
        return moved[-1] if moved else 0

    def set_meta(self, key: str, value: str) -> None:
        self.meta_due[key] = value
        self.commit([])

    # ------------------------------------------------------------------------------------------ disk bound
    def _enforce_bound(self) -> None:
        keep_under_bound(self)

    def _drop_oldest(self, prio: str, n: int, reason: str) -> int:
        return drop_oldest(self, prio, n, reason)

    # ------------------------------------------------------------------------------------------ closing
    def close(self) -> None:
        """Record a clean stop (no seq gap on the next start) when the disk allows, and close."""
        self.maybe_restore(force=True)
        try:
            if self.memory.all_events():
                log.critical(
                    "outbox %s: stopping with %d events only in memory (the disk refuses writes): they are lost "
                    "unless the central already has them; the next start reports their numbers as a gap",
                    self.path,
                    len(self.memory),
                )
            elif self.writable and self.db is not None:
                self.seq.write_mark(self.seq.next)  # first: the side file stays an upper bound
                meta = {"seq_reserved": str(self.seq.next), "seq_floor": str(self.seq.floor), "clean_close": "1"}
                db = self.db
                if self._attempt(lambda: db.write({}, meta=meta)):
                    with contextlib.suppress(sqlite3.Error):
                        db.checkpoint()
        finally:
            if self.db is not None:
                self.db.close()
