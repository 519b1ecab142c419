"""Durable store-and-forward queue of events on SQLite (WAL): priorities, a disk bound, dead letters.

Durability: an alert or state event is committed (WAL fsynced, ``synchronous=FULL``) before ``put`` returns.
Readings are group-committed: they wait in memory at most ``reading_commit_window_s`` seconds or
``reading_commit_max`` readings, so a kill -9 or a power cut can lose the readings of one window (their ``seq``
numbers then show as a gap at the central, explained by the ``outbox_resumed`` event of the next start).
See docs/sync.md for the whole set of guarantees.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.clock import Clock
from common.config import OutboxSection
from common.events import PRIORITY_RANK, Event, make_event
from common.files import fsync_dir, write_atomic

log = logging.getLogger(__name__)

PRIORITIES: tuple[str, ...] = ("alert", "state", "reading")
_TABLE = {"alert": "q_alert", "state": "q_state", "reading": "q_reading"}
SCHEMA_VERSION = 1
# small pages: a commit rewrites whole pages, and most commits touch one or two of them (SD card wear)
PAGE_SIZE = 1024
# seq numbers are reserved on disk in blocks, so a number handed out is never handed out again after a crash;
# a crash leaves at most one block of unused numbers as a gap at the central (explained by outbox_resumed)
SEQ_BLOCK_MIN = 64
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_IOERR = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS q_alert (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS q_state (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS q_reading (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, priority TEXT NOT NULL, reason TEXT NOT NULL,
    at_wall REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS node_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxError(Exception):
    """The outbox cannot store an event (disk full of alerts, an I/O error that recovery did not fix)."""


class _CheckFailed(sqlite3.DatabaseError):
    """SQLite's quick_check found the database damaged."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    # a payload value json cannot encode must not cost an alert: store its text and say so in the log
    log.warning("outbox: payload value of type %s stored as text", type(value).__name__)
    return str(value)


def event_json(event: Event) -> str:
    """The stored and sent JSON text of an event: ``Event.to_wire()`` as compact JSON (built field by field,
    which is several times faster than ``dataclasses.asdict``)."""
    wire = {
        "alert_id": event.alert_id,
        "clock_synced": event.clock_synced,
        "id": event.id,
        "kind": event.kind,
        "node_id": event.node_id,
        "payload": dict(event.payload),
        "priority": event.priority,
        "recipients": list(event.recipients),
        "seq": event.seq,
        "severity": event.severity,
        "state": event.state,
        "wall_time": event.wall_time,
    }
    return _ENCODER.encode(wire)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def with_seq(event: Event, seq: int) -> Event:
    """A copy of ``event`` carrying ``seq`` (as ``dataclasses.replace``, without its per-call cost)."""
    copy = object.__new__(Event)
    copy.__dict__.update(event.__dict__)
    copy.__dict__["seq"] = seq
    return copy


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def list_dead_letters(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The most recent dead letters on ``conn``: seq, id, priority, reason, at_wall, kind, wall_time."""
    rows = conn.execute(
        "SELECT seq, id, priority, reason, at_wall, body FROM dead_letters ORDER BY seq DESC LIMIT ?", (limit,)
    ).fetchall()
    out = []
    for seq, event_id, prio, reason, at_wall, body in rows:
        try:
            wire = json.loads(body)
        except ValueError:
            wire = {}
        letter = {"seq": seq, "id": event_id, "priority": prio, "reason": reason, "at_wall": at_wall}
        out.append({**letter, "kind": wire.get("kind"), "wall_time": wire.get("wall_time")})
    return out


def requeue_dead_letters(conn: sqlite3.Connection, ids: Iterable[str] | None = None) -> int:
    """Move dead letters (all, or these ids) back into their queues with their own seq and id, in one
    transaction on ``conn``; returns how many. Used by the outbox and by ``provision dead-letters --resend``."""
    wanted = None if ids is None else list(ids)
    where = "" if wanted is None else f" WHERE id IN ({','.join('?' * len(wanted))})"
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(f"SELECT seq, id, priority, body FROM dead_letters{where}", wanted or ()).fetchall()
        for seq, event_id, prio, body in rows:
            table = _TABLE.get(prio, "q_state")
            conn.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)", (seq, event_id, body))
            conn.execute("DELETE FROM dead_letters WHERE seq = ?", (seq,))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return len(rows)


class Outbox:
    """The node's durable queue. Thread-safe: the node thread puts, the sync thread batches and acks.

    ``node_id`` names the node in the outbox's own technical events; by default it is the name of the
    directory holding the database (``state_dir`` = ``data_dir/node_id``).
    """

    def __init__(self, path: Path, section: OutboxSection, clock: Clock, *, node_id: str = "") -> None:
        self.path = Path(path)
        self.node_id = node_id or self.path.parent.name
        self._section = section
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: list[Callable[[Event], None]] = []
        self._pending: list[Event] = []  # readings not yet committed (group commit)
        self._pending_since: float | None = None
        self._inflight: dict[str, tuple[str, int]] = {}  # id -> (priority, seq) of events handed out by batch()
        self._counts = dict.fromkeys(PRIORITIES, 0)
        self._dropped = dict.fromkeys(PRIORITIES, 0)
        self._dead_count = 0
        self._next_seq = 1
        self._reserved = 1  # every seq < this is reserved on disk
        self._seq_floor = 0  # the highest seq deleted after an ack (on disk with each reservation)
        self._bytes_since_check = 0
        self._closed = False
        self.corrupt_recoveries = 0
        self.volatile = False  # True when even a fresh file failed and the outbox lives in memory
        self.fresh = False  # True when this start created the database (first start or after corruption)
        max_bytes = int(section.max_mb * 1024 * 1024)
        # the WAL counts against the bound too: keep it to an eighth of it, at most 4 MiB
        self._wal_limit = max(64 * 1024, min(4 * 1024 * 1024, max_bytes // 8))
        self._db_limit = max_bytes - self._wal_limit
        # the size is looked at every _check_every bytes of new events, so act a few such steps before the limit
        self._check_every = max(4096, min(64 * 1024, self._db_limit // 100))
        self._soft_limit = self._db_limit - 4 * self._check_every
        self._over_logged_at: float | None = None
        # room for a full group-commit window of readings, twice, so a reading put never waits for a reservation
        self._seq_block = max(SEQ_BLOCK_MIN, 2 * section.reading_commit_max + 16)
        self._lock_fd = self._take_process_lock()
        try:
            self._conn: sqlite3.Connection = self._open_or_recover()
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _take_process_lock(self) -> int:
        """One process per outbox: a second node process on the same file would hand out the same seq numbers."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxError(
                f"outbox {self.path} is in use by another process (is the node already running?)"
            ) from None
        return fd

    def _abandon(self) -> None:
        """Let go of the database as a kill -9 would: no flush, no clean close (tests use this)."""
        self._closed = True
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        os.close(self._lock_fd)

    # ------------------------------------------------------------------------------------------ opening
    def _connect(self, target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new file
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal" and target != ":memory:":
                log.warning("outbox %s: journal_mode is %s, not wal", target, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, self._wal_limit // PAGE_SIZE)}")
            conn.execute(f"PRAGMA journal_size_limit = {self._wal_limit}")
            conn.execute("PRAGMA temp_store = MEMORY")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise _CheckFailed(f"quick_check: {check}")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_or_recover(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        if not existed:
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))  # an empty file is a new database
        try:
            conn = self._connect(str(self.path))
            self._conn = conn
            self._load()
        except sqlite3.DatabaseError as exc:
            unusable = _is_corruption(exc) or _error_code(exc) in (_SQLITE_CANTOPEN, _SQLITE_IOERR)
            if not (unusable or isinstance(exc, _CheckFailed)):
                raise OutboxError(f"outbox {self.path}: cannot open: {exc}") from exc
            return self._recover(exc)
        self.fresh = not existed
        if existed:
            self._note_resume()
        else:
            self._restrict_mode()
        self._fsync_dir()
        return conn

    def _load(self) -> None:
        conn = self._conn
        max_seq = 0
        for prio, table in _TABLE.items():
            n, top = conn.execute(f"SELECT count(*), coalesce(max(seq), 0) FROM {table}").fetchone()
            self._counts[prio] = n
            max_seq = max(max_seq, top)
        dead, top = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM dead_letters").fetchone()
        self._dead_count = dead
        max_seq = max(max_seq, top)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        for prio in PRIORITIES:
            self._dropped[prio] = int(meta.get(f"dropped_{prio}", 0))
        self._seq_floor = int(meta.get("seq_floor", 0))
        self._durable_max_seq = max(max_seq, self._seq_floor)
        self._reserved = max(int(meta.get("seq_reserved", 1)), max_seq + 1)
        if not meta and not max_seq:
            # a new database beside an old seq mark (the file was deleted by hand): keep counting upwards
            self._reserved = max(self._reserved, self._read_seq_mark())
        self._next_seq = self._reserved
        self._clean_close = meta.get("clean_close") == "1"
        if "schema_version" not in meta:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        # mark the run as open (a crash from now on leaves clean_close = 0) and reserve the first block of numbers
        self._reserved = self._next_seq + self._seq_block
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('clean_close', '0')")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq_reserved', ?)", (str(self._reserved),))
        conn.execute("COMMIT")
        self._write_seq_mark()

    def _note_resume(self) -> None:
        """After a crash, numbers between the last stored event and the reservation were never stored: say so."""
        if self._clean_close or self._next_seq <= self._durable_max_seq + 1:
            return
        gap = (self._durable_max_seq + 1, self._next_seq - 1)
        log.warning(
            "outbox %s: resumed after an unclean stop; seq %d..%d were never stored (at most %d readings of the "
            "last commit window may be lost, the rest is unused reservation)",
            self.path,
            gap[0],
            gap[1],
            self._section.reading_commit_max,
        )
        payload = {
            "unclean_stop": True,
            "seq_not_stored_from": gap[0],
            "seq_not_stored_to": gap[1],
            "max_lost_readings": self._section.reading_commit_max,
            "note": "numbers in this range the central does not hold were never stored: readings of the last "
            "group-commit window, or numbers reserved and never used",
        }
        self._commit([self._technical("outbox_resumed", "info", payload)])

    def _technical(self, kind: str, severity: str, payload: Mapping[str, Any]) -> Event:
        event = make_event(
            self.node_id,
            kind,
            wall_time=self._clock.wall(),
            clock_synced=self._clock.wall_synced(),
            severity=severity,  # type: ignore[arg-type]
            priority="state",
            payload=payload,
        )
        return with_seq(event, self._take_seq())

    def _restrict_mode(self) -> None:
        # events hold personal data (an elderly resident's water use): owner only; SQLite gives WAL and
        # shared-memory files it creates later the database file's mode
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.chmod(str(self.path) + suffix, 0o600)

    def _fsync_dir(self) -> None:
        # a newly created database or WAL file is durable only once its directory entry is
        try:
            fsync_dir(self.path.parent)
        except OSError as exc:
            log.warning("outbox: cannot fsync %s: %s", self.path.parent, exc)

    def _recover(self, exc: BaseException) -> sqlite3.Connection:
        """Move a corrupt or unreadable database aside, salvage what can be read, start a fresh one."""
        self.corrupt_recoveries += 1
        with contextlib.suppress(AttributeError, sqlite3.Error):
            self._conn.close()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock.wall()))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        moved: list[str] = []
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                try:
                    os.replace(src, Path(str(aside) + suffix))
                    moved.append(str(aside) + suffix)
                except OSError as move_exc:
                    log.error("outbox: cannot move %s aside: %s", src, move_exc)
        log.critical(
            "OUTBOX DATABASE CORRUPT OR UNREADABLE: %s (%s: %s); moved aside to %s; starting a fresh outbox",
            self.path,
            type(exc).__name__,
            exc,
            aside,
        )
        self._salvaged_state: dict[str, str] = {}
        salvaged, salvaged_reserved, dead = self._salvage(aside)
        try:
            conn = self._connect(str(self.path))
        except sqlite3.Error as fresh_exc:
            log.critical(
                "OUTBOX CANNOT CREATE A FRESH DATABASE at %s (%s); KEEPING EVENTS IN MEMORY ONLY until restart",
                self.path,
                fresh_exc,
            )
            conn = self._connect(":memory:")
            self.volatile = True
        self._conn = conn
        self._pending = []
        self._pending_since = None
        self._inflight.clear()
        self._counts = dict.fromkeys(PRIORITIES, 0)
        self._dead_count = 0
        # numbers must keep growing: continue after what the old file held or the seq mark says, or else
        # (nothing readable at all) from wall-clock milliseconds
        floor = max(salvaged_reserved, self._read_seq_mark()) or int(self._clock.wall() * 1000)
        self._next_seq = self._reserved = max(floor, max((e.seq or 0 for e in salvaged), default=0) + 1)
        self.fresh = True
        self._clean_close = False
        for prio in PRIORITIES:
            self._dropped[prio] = 0
        event = self._technical(
            "outbox_corrupt",
            "warning",
            {
                "moved_to": moved[0] if moved else None,
                "error": f"{type(exc).__name__}: {exc}",
                "salvaged_events": len(salvaged),
                "dead_letters_lost": dead,
                "seq_resumed_at": self._next_seq - 1,
                "volatile": self.volatile,
            },
        )
        self._write(salvaged + [event], dict(self._salvaged_state))  # node state (open alerts) if it reads
        if not self.volatile:
            self._restrict_mode()
        self._fsync_dir()
        return conn

    def _salvage(self, aside: Path) -> tuple[list[Event], int, int]:
        """Read what still reads from a moved-aside database: queued events and the seq reservation."""
        events: list[Event] = []
        reserved = 0
        dead = 0
        if not aside.exists():
            return events, reserved, dead
        try:
            conn = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        except sqlite3.Error:
            return events, reserved, dead
        try:
            for table in (*_TABLE.values(), "meta", "dead_letters", "node_state"):
                try:
                    if table == "node_state":
                        self._salvaged_state = dict(conn.execute("SELECT key, value FROM node_state").fetchall())
                    elif table == "meta":
                        row = conn.execute("SELECT value FROM meta WHERE key = 'seq_reserved'").fetchone()
                        reserved = int(row[0]) if row else 0
                    elif table == "dead_letters":
                        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
                    else:
                        for (body,) in conn.execute(f"SELECT body FROM {table} ORDER BY seq"):
                            events.append(Event.from_wire(json.loads(body)))
                except (sqlite3.Error, ValueError, TypeError) as exc:
                    log.warning("outbox salvage: %s of %s unreadable: %s", table, aside, exc)
        finally:
            conn.close()
        if events:
            log.warning("outbox salvage: %d queued events recovered from %s", len(events), aside)
        return events, reserved, dead

    # ------------------------------------------------------------------------------------------ seq mark
    @property
    def _seq_mark_path(self) -> Path:
        return self.path.with_name(self.path.name + ".seq")

    def _write_seq_mark(self) -> None:
        """Keep the seq reservation outside the database too (once per block), so numbers keep growing even
        when a corrupt database has to be replaced and nothing in it can be read."""
        if self.volatile:
            return
        mark = self._seq_mark_path
        try:
            write_atomic(mark, f"{self._reserved}\n")
        except OSError as exc:
            log.warning("outbox: cannot write %s: %s", mark, exc)

    def _read_seq_mark(self) -> int:
        try:
            return int(self._seq_mark_path.read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            return 0

    # ------------------------------------------------------------------------------------------ writing
    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _needs_reservation(self) -> bool:
        return self._next_seq + self._section.reading_commit_max >= self._reserved

    def _write(self, events: Sequence[Event], state: Mapping[str, str | None] | None = None) -> None:
        """One transaction: pending readings + ``events`` + node state + reservation. Raises sqlite3 errors."""
        rows: dict[str, list[tuple[int, str, str]]] = {p: [] for p in PRIORITIES}
        added = 0
        for event in [*self._pending, *events]:
            body = event_json(event)
            rows[event.priority].append((event.seq, event.id, body))  # type: ignore[arg-type]
            added += len(body) + 16
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for prio, table_rows in rows.items():
                if table_rows:
                    conn.executemany(f"INSERT OR REPLACE INTO {_TABLE[prio]} VALUES (?, ?, ?)", table_rows)
            reserve = self._needs_reservation()
            if reserve:
                self._reserved = self._next_seq + self._seq_block
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq_reserved', ?)", (str(self._reserved),))
                # the highest acknowledged number, kept on disk with the reservation (no extra page write per
                # ack): an unclean stop's gap report (outbox_resumed) then starts close to where it really starts
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (str(self._seq_floor),))
            for key, value in (state or {}).items():
                if value is None:
                    conn.execute("DELETE FROM node_state WHERE key = ?", (key,))
                else:
                    conn.execute("INSERT OR REPLACE INTO node_state VALUES (?, ?)", (key, value))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if reserve:
            self._write_seq_mark()
        for prio, table_rows in rows.items():
            self._counts[prio] += len(table_rows)
        self._pending = []
        self._pending_since = None
        self._bytes_since_check += added

    def _commit(self, events: Sequence[Event], state: Mapping[str, str | None] | None = None) -> None:
        """Write with recovery: corruption -> fresh database and retry; disk full -> drop readings and retry."""
        try:
            self._write(events, state)
        except sqlite3.DatabaseError as exc:
            code = _error_code(exc)
            if _is_corruption(exc):
                carried = list(self._pending)
                self._recover(exc)
                self._pending = carried
                self._write(events, state)
            elif code == _SQLITE_FULL:
                log.error("outbox %s: disk full; dropping the oldest readings to make room", self.path)
                try:
                    if not self._drop_oldest("reading", max(1, self._counts["reading"] // 4), "disk full"):
                        self._drop_oldest("state", max(1, self._counts["state"] // 4), "disk full")
                except sqlite3.Error as drop_exc:  # even the delete needs room in the WAL
                    log.error("outbox %s: cannot make room: %s", self.path, drop_exc)
                try:
                    self._write(events, state)
                except sqlite3.Error as again:
                    raise OutboxError(f"outbox {self.path}: cannot store events: {again}") from again
            else:
                raise OutboxError(f"outbox {self.path}: cannot store events: {exc}") from exc
        if self._bytes_since_check > self._check_every:
            self._enforce_bound()

    def put(self, event: Event, *, state: Mapping[str, str | None] | None = None) -> Event:
        """Store an event and give it its ``seq``. Alerts and state events are durable when this returns;
        readings are group-committed (see the module docstring).

        ``state`` (key -> JSON text, or None to delete) is node state written in the same transaction as the
        event (the alert book keeps its open alerts this way, so an alert and its bookkeeping never disagree).
        """
        if event.priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {event.priority!r}; allowed: {', '.join(PRIORITIES)}")
        with self._lock:
            self._check_open()
            stored = with_seq(event, self._take_seq())
            window = self._section.reading_commit_window_s
            if stored.priority == "reading" and window > 0 and not state:
                now = self._clock.monotonic()
                self._pending.append(stored)
                if self._pending_since is None:
                    self._pending_since = now
                if (
                    len(self._pending) >= self._section.reading_commit_max
                    or now - self._pending_since >= window
                    or self._needs_reservation()
                ):
                    self._commit([])
            else:
                self._commit([stored], state)
        self._notify(stored)
        return stored

    def put_many(self, events: Iterable[Event]) -> list[Event]:
        """Store a burst of events in one transaction; all of them are durable when this returns."""
        batch = list(events)
        for event in batch:
            if event.priority not in PRIORITY_RANK:
                raise ValueError(f"unknown priority {event.priority!r}; allowed: {', '.join(PRIORITIES)}")
        with self._lock:
            self._check_open()
            stored = [with_seq(e, self._take_seq()) for e in batch]
            self._commit(stored)
        for event in stored:
            if event.priority != "reading":
                self._notify(event)
                break
        else:
            if stored:
                self._notify(stored[-1])
        return stored

    def flush(self) -> int:
        """Commit the readings waiting in memory now; returns how many."""
        with self._lock:
            if self._closed or not self._pending:
                return 0
            n = len(self._pending)
            self._commit([])
            return n

    def flush_due(self) -> int:
        """Commit the waiting readings if their window has passed; returns how many were committed. Also
        notices events another process queued (``provision dead-letters --resend``)."""
        with self._lock:
            if self._closed:
                return 0
            outside = self._notice_other_writers()
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
        """Call ``listener(event)`` after each put (outside the lock); the uploader uses it to wake early."""
        self._listeners.append(listener)

    def _notify(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")

    # ------------------------------------------------------------------------------------------ draining
    def batch(self, limit: int) -> list[Event]:
        """Up to ``limit`` events in drain order: alerts, then state, then readings; creation order within.

        Readings still waiting for their group commit are included (after the stored ones): sent and
        acknowledged in time, they never touch the disk.
        """
        return [Event.from_wire(json.loads(body)) for _, body in self.batch_raw(limit)]

    def batch_raw(self, limit: int, exclude: Collection[str] = ()) -> list[tuple[str, str]]:
        """Like ``batch`` but (id, wire JSON text) pairs, so an upload need not decode and encode again.
        Events whose id is in ``exclude`` (held back by the uploader) are left out."""
        out: list[tuple[str, str]] = []
        with self._lock:
            self._check_open()
            for prio in PRIORITIES:
                remaining = limit - len(out)
                if remaining <= 0:
                    break
                sql = f"SELECT seq, id, body FROM {_TABLE[prio]} ORDER BY seq LIMIT ?"
                rows = self._read(sql, (remaining + len(exclude),))
                for seq, event_id, body in rows:
                    if event_id in exclude or len(out) >= limit:
                        continue
                    self._inflight[event_id] = (prio, seq)
                    out.append((event_id, body))
                if prio == "reading":
                    for event in self._pending:
                        if len(out) >= limit:
                            break
                        if event.id not in exclude:
                            self._inflight[event.id] = (prio, event.seq)  # type: ignore[assignment]
                            out.append((event.id, event_json(event)))
        return out

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise OutboxError(f"outbox {self.path}: read failed: {exc}") from exc
            carried = list(self._pending)
            self._recover(exc)
            self._pending = carried
            return self._conn.execute(sql, params).fetchall()

    def _locate(self, ids: set[str]) -> dict[str, tuple[str, int]]:
        """Where each id is stored: from the in-flight map, else by a scan (ids not handed out by batch)."""
        found = {i: self._inflight[i] for i in ids if i in self._inflight}
        missing = ids - set(found)
        if missing:
            for prio, table in _TABLE.items():
                marks = ",".join("?" * len(missing))
                for seq, event_id in self._read(f"SELECT seq, id FROM {table} WHERE id IN ({marks})", tuple(missing)):
                    found[event_id] = (prio, seq)
        return found

    def ack(self, ids: Iterable[str]) -> int:
        """Delete exactly these event ids (the central acknowledged them); returns how many were deleted."""
        wanted = {i for i in ids if isinstance(i, str)}
        if not wanted:
            return 0
        with self._lock:
            self._check_open()
            keep = [e for e in self._pending if e.id not in wanted]
            deleted = len(self._pending) - len(keep)
            pending_ids = {e.id for e in self._pending} - {e.id for e in keep}
            self._pending = keep
            if not keep:
                self._pending_since = None
            located = self._locate(wanted - pending_ids)
            by_table: dict[str, list[tuple[int, str]]] = {p: [] for p in PRIORITIES}
            for event_id, (prio, seq) in located.items():
                by_table[prio].append((seq, event_id))
            if any(by_table.values()):
                deleted += self._delete(by_table)
            for event_id in wanted:
                self._inflight.pop(event_id, None)
            return deleted

    def _delete(self, by_table: Mapping[str, list[tuple[int, str]]]) -> int:
        conn = self._conn
        removed: dict[str, int] = {}
        top = max((seq for rows in by_table.values() for seq, _ in rows), default=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for prio, rows in by_table.items():
                    if not rows:
                        continue
                    before = conn.total_changes
                    # by seq AND id: never deletes anything but the acknowledged event
                    conn.executemany(f"DELETE FROM {_TABLE[prio]} WHERE seq = ? AND id = ?", rows)
                    removed[prio] = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise OutboxError(f"outbox {self.path}: ack failed: {exc}") from exc
            # the salvaged events may include acknowledged ones: sent again, the central keeps them once
            carried = list(self._pending)
            self._recover(exc)
            self._pending = carried
            return 0
        for prio, n in removed.items():
            self._counts[prio] -= n
        self._seq_floor = max(self._seq_floor, top)
        return sum(removed.values())

    def dead_letter(self, event_id: str, reason: str) -> bool:
        """Move an event the central refused as invalid to the dead-letter table; False if it is not queued."""
        with self._lock:
            self._check_open()
            pending = next((e for e in self._pending if e.id == event_id), None)
            if pending is not None:
                self._commit([])  # store it first, then move it like any other
            where = self._locate({event_id}).get(event_id)
            self._inflight.pop(event_id, None)
            if where is None:
                return False
            prio, seq = where
            try:
                if not self._move_to_dead_letters(prio, seq, event_id, reason):
                    return False
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise OutboxError(f"outbox {self.path}: dead letter failed: {exc}") from exc
                carried = list(self._pending)
                self._recover(exc)  # the event stays queued in the fresh file if it could be salvaged
                self._pending = carried
                return False
            self._counts[prio] -= 1
            self._dead_count += 1
        log.error("outbox: event %s (%s) moved to dead letters: %s", event_id, prio, reason)
        return True

    def _move_to_dead_letters(self, prio: str, seq: int, event_id: str, reason: str) -> bool:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(f"SELECT body FROM {_TABLE[prio]} WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return False
            conn.execute(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?)",
                (seq, event_id, prio, reason[:2000], self._clock.wall(), row[0]),
            )
            conn.execute(f"DELETE FROM {_TABLE[prio]} WHERE seq = ?", (seq,))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return True

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent dead letters: id, priority, reason, at_wall, seq, kind."""
        with self._lock:
            self._check_open()
            return list_dead_letters(self._conn, limit)

    def requeue_dead_letters(self, ids: Iterable[str] | None = None) -> int:
        """Queue dead letters again (all, or those with these ids), each with its own id and seq: the central
        keeps an event once by id, so one that had arrived after all is not stored twice. Returns how many."""
        with self._lock:
            self._check_open()
            self._commit([])
            moved = requeue_dead_letters(self._conn, ids)
            self._refresh_counts()
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
            rows = self._read("SELECT value FROM meta WHERE key = 'dead_letters_version'")
            if rows and rows[0][0] == version:
                return 0
        moved = self.requeue_dead_letters() if self._dead_count else 0
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('dead_letters_version', ?)", (version,))
        if moved:
            log.warning("outbox: version %s: %d dead letter(s) of an earlier version sent again", version, moved)
        return moved

    def _refresh_counts(self) -> None:
        for prio, table in _TABLE.items():
            self._counts[prio] = self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        self._dead_count = self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _notice_other_writers(self) -> Event | None:
        """``provision dead-letters --resend`` writes to the database beside the running node: SQLite's
        data_version tells this connection that another one committed; the counts are read again and the
        first waiting event is returned, to be announced to the listeners."""
        try:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version == getattr(self, "_data_version", version):
                self._data_version = version
                return None
            self._refresh_counts()
            return self._first_waiting()
        except sqlite3.Error as exc:
            log.debug("outbox: data_version: %s", exc)
            return None

    def _first_waiting(self) -> Event | None:
        for table in _TABLE.values():
            row = self._conn.execute(f"SELECT body FROM {table} ORDER BY seq LIMIT 1").fetchone()
            if row is not None:
                return Event.from_wire(json.loads(row[0]))
        return None

    # ------------------------------------------------------------------------------------------ disk bound
    def _used_bytes(self) -> int:
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * PAGE_SIZE

    def _enforce_bound(self) -> None:
        """Keep the database under max_mb: drop the oldest readings, then the oldest state events; never alerts."""
        self._bytes_since_check = 0
        used = self._used_bytes()
        if used <= self._soft_limit:
            return
        target = int(self._soft_limit - self._db_limit * 0.05)
        for prio in ("reading", "state"):
            for _ in range(40):
                if used <= target or self._counts[prio] == 0:
                    break
                rows = sum(self._counts.values()) + self._dead_count
                per_row = max(64, used // max(1, rows))
                n = min(self._counts[prio], max(1, (used - target) // per_row + 1))
                self._drop_oldest(prio, n, f"disk bound {self._section.max_mb:g} MB")
                after = self._used_bytes()
                if after >= used:  # pages not freed yet (half-empty pages): drop more next round
                    n *= 2
                used = after
        now = self._clock.monotonic()
        if used > self._soft_limit and (self._over_logged_at is None or now - self._over_logged_at >= 600):
            self._over_logged_at = now
            log.error(
                "outbox %s: at its bound (%d of %d bytes) with only alerts and dead letters left; alerts are "
                "never dropped",
                self.path,
                used,
                self._db_limit,
            )

    def _drop_oldest(self, prio: str, n: int, reason: str) -> bool:
        """Delete the ``n`` oldest stored events of a priority, count them, and leave a technical event."""
        table = _TABLE[prio]
        rows = self._conn.execute(f"SELECT seq FROM {table} ORDER BY seq LIMIT ?", (n,)).fetchall()
        if not rows:
            return False
        first, last = rows[0][0], rows[-1][0]
        self._dropped[prio] += len(rows)
        note = self._technical(
            "outbox_dropped",
            "warning",
            {"priority": prio, "count": len(rows), "first_seq": first, "last_seq": last, "reason": reason},
        )
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"DELETE FROM {table} WHERE seq <= ?", (last,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"dropped_{prio}", str(self._dropped[prio])))
            conn.execute("INSERT INTO q_state VALUES (?, ?, ?)", (note.seq, note.id, event_json(note)))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._dropped[prio] -= len(rows)
            raise
        self._counts[prio] -= len(rows)
        self._counts["state"] += 1
        for event_id, (p, seq) in list(self._inflight.items()):
            if p == prio and seq <= last:
                del self._inflight[event_id]
        log.warning(
            "outbox %s: dropped %d oldest %s events (seq %d..%d): %s", self.path, len(rows), prio, first, last, reason
        )
        return True

    # ------------------------------------------------------------------------------------------ reporting
    def depth(self) -> dict[str, int]:
        """Events waiting per priority (readings include those waiting for their group commit)."""
        with self._lock:
            out = dict(self._counts)
            out["reading"] += len(self._pending)
            return out

    def stats(self) -> dict[str, Any]:
        """Depth, dropped counts by priority, dead letters, seq and disk figures, for the heartbeat."""
        with self._lock:
            used = 0
            if not self._closed:
                with contextlib.suppress(sqlite3.Error):
                    used = self._used_bytes()
            return {
                "depth": self.depth(),
                "uncommitted_readings": len(self._pending),
                "dropped": dict(self._dropped),
                "dead_letters": self._dead_count,
                "next_seq": self._next_seq,
                "db_bytes": used,
                "db_limit_bytes": self._db_limit,
                "corrupt_recoveries": self.corrupt_recoveries,
                "volatile": self.volatile,
            }

    def check(self) -> str:
        """SQLite's quick_check of the database: "ok" or the first problem (for the self-test).

        Runs on its own read-only connection (WAL lets it read beside the writer), so a check of a large
        database on a slow card never holds up an alert being put."""
        if self.volatile:
            return "ok (in memory)"
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
        """Node state stored with ``put(..., state=...)``."""
        with self._lock:
            rows = self._read("SELECT value FROM node_state WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def close(self) -> None:
        """Commit waiting readings, record a clean stop (no seq gap on the next start) and close."""
        with self._lock:
            if self._closed:
                return
            try:
                self._commit([])
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq_reserved', ?)", (str(self._next_seq),))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (str(self._seq_floor),))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('clean_close', '1')")
                conn.execute("COMMIT")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except (sqlite3.Error, OutboxError) as exc:
                log.error("outbox %s: clean close failed: %s: %s", self.path, type(exc).__name__, exc)
            finally:
                self._closed = True
                self._conn.close()
                os.close(self._lock_fd)  # the kernel drops the flock with the descriptor

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
