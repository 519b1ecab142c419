"""The outbox's SQLite file: every statement in one place, each write one transaction. Raises sqlite3 errors;
deciding what a failure means (corruption, a refusing disk) is the store's job (common/outbox/store.py)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.outbox.errors import CheckFailed, transaction

TABLES = {"alert": "q_alert", "state": "q_state", "reading": "q_reading"}
SCHEMA_VERSION = 1
# small pages: a commit rewrites whole pages, and most commits touch one or two of them (SD card wear)
PAGE_SIZE = 1024

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

Rows = Mapping[str, list[tuple[int, str, str]]]  # priority -> (seq, id, body)
Keys = Mapping[str, list[tuple[int, str]]]  # priority -> (seq, id)


@dataclass(frozen=True)
class Summary:
    """What a database holds: events per priority, dead letters, the highest seq in it, its meta table."""

    counts: dict[str, int]
    dead_letters: int
    max_seq: int
    meta: dict[str, str]


def create_private(path: Path) -> bool:
    """Create an empty database file, owner-only (events hold personal data; SQLite gives the WAL and the
    shared-memory file the database's mode); True when it was created now."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        return False
    return True


def restrict_mode(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.chmod(str(path) + suffix, 0o600)


class QueueDb:
    """One connection to the outbox file. ``exclusive``: SQLite's exclusive locking mode, whose WAL index lives
    in memory instead of a ``-shm`` file (that file cannot be made on a full disk). ``frozen``: opened read-only
    and immutable (a read-only filesystem, where SQLite can open a WAL database no other way)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, exclusive: bool, frozen: bool) -> None:
        self.conn = conn
        self.path = path
        self.exclusive = exclusive
        self.frozen = frozen

    @classmethod
    def open(cls, path: Path, wal_limit: int, *, exclusive: bool = False, frozen: bool = False) -> QueueDb:
        """Connect, set the pragmas, run quick_check (CheckFailed if it fails) and create missing tables."""
        target = f"file:{path}?mode=ro&immutable=1" if frozen else f"file:{path}"
        conn = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            if not frozen:
                if exclusive:
                    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new file
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, wal_limit // PAGE_SIZE)}")
                conn.execute(f"PRAGMA journal_size_limit = {wal_limit}")
            conn.execute("PRAGMA temp_store = MEMORY")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise CheckFailed(f"quick_check: {check}")
            if not frozen:
                conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, exclusive=exclusive, frozen=frozen)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    # ------------------------------------------------------------------------------------------ reading
    def summary(self) -> Summary:
        counts: dict[str, int] = {}
        max_seq = 0
        for prio, table in TABLES.items():
            n, top = self.conn.execute(f"SELECT count(*), coalesce(max(seq), 0) FROM {table}").fetchone()
            counts[prio] = n
            max_seq = max(max_seq, top)
        dead, top = self.conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM dead_letters").fetchone()
        meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        return Summary(counts, dead, max(max_seq, top), meta)

    def rows(self, prio: str, limit: int) -> list[tuple[int, str, str]]:
        return self.conn.execute(f"SELECT seq, id, body FROM {TABLES[prio]} ORDER BY seq LIMIT ?", (limit,)).fetchall()

    def locate(self, ids: set[str]) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        marks = ",".join("?" * len(ids))
        for prio, table in TABLES.items():
            for seq, event_id in self.conn.execute(f"SELECT seq, id FROM {table} WHERE id IN ({marks})", tuple(ids)):
                found[event_id] = (prio, seq)
        return found

    def first_body(self) -> str | None:
        """The first event waiting, highest priority first."""
        for table in TABLES.values():
            row = self.conn.execute(f"SELECT body FROM {table} ORDER BY seq LIMIT 1").fetchone()
            if row is not None:
                return str(row[0])
        return None

    def read_state(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM node_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def used_bytes(self) -> int:
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * PAGE_SIZE)

    def data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def quick_check(self) -> str:
        return str(self.conn.execute("PRAGMA quick_check").fetchone()[0])

    # ------------------------------------------------------------------------------------------ writing
    def write(
        self,
        rows: Rows,
        state: Mapping[str, str | None] | None = None,
        meta: Mapping[str, str] | None = None,
        deletes: Keys | None = None,
    ) -> dict[str, int]:
        """One transaction: delete acknowledged events (by seq AND id), insert events, node state, meta.
        Returns how many rows were deleted per priority."""
        removed: dict[str, int] = {}
        with transaction(self.conn) as conn:
            for prio, keys in (deletes or {}).items():
                if keys:
                    before = conn.total_changes
                    conn.executemany(f"DELETE FROM {TABLES[prio]} WHERE seq = ? AND id = ?", keys)
                    removed[prio] = conn.total_changes - before
            for prio, table_rows in rows.items():
                if table_rows:
                    conn.executemany(f"INSERT OR REPLACE INTO {TABLES[prio]} VALUES (?, ?, ?)", table_rows)
            for key, value in (state or {}).items():
                if value is None:
                    conn.execute("DELETE FROM node_state WHERE key = ?", (key,))
                else:
                    conn.execute("INSERT OR REPLACE INTO node_state VALUES (?, ?)", (key, value))
            for key, text in (meta or {}).items():
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))
        return removed

    def to_dead_letter(self, prio: str, seq: int, event_id: str, reason: str, at_wall: float) -> bool:
        """Move one queued event to the dead letters; False when it is not queued (any more)."""
        with transaction(self.conn) as conn:
            row = conn.execute(f"SELECT body FROM {TABLES[prio]} WHERE seq = ? AND id = ?", (seq, event_id)).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?)",
                (seq, event_id, prio, reason[:2000], at_wall, row[0]),
            )
            conn.execute(f"DELETE FROM {TABLES[prio]} WHERE seq = ?", (seq,))
        return True

    def oldest(self, prio: str, n: int) -> list[int]:
        """The seq numbers of the ``n`` oldest events of a priority."""
        return [r[0] for r in self.conn.execute(f"SELECT seq FROM {TABLES[prio]} ORDER BY seq LIMIT ?", (n,))]

    def drop_through(self, prio: str, last: int, note: tuple[int, str, str], meta: Mapping[str, str]) -> int:
        """Delete every event of a priority up to seq ``last`` and store ``note`` (a state event) and ``meta``,
        in one transaction; returns how many were deleted."""
        with transaction(self.conn) as conn:
            before = conn.total_changes
            conn.execute(f"DELETE FROM {TABLES[prio]} WHERE seq <= ?", (last,))
            count = conn.total_changes - before
            conn.execute("INSERT INTO q_state VALUES (?, ?, ?)", note)
            for key, text in meta.items():
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))
        return count

    def checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _peek(path: Path) -> sqlite3.Connection:
    """A read-only connection for another process while the node may be running: nothing is created or changed."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)


def peek_state(path: Path, key: str) -> str | None:
    """One node-state value read by another process while the node may be running (the updater asks for the
    open alerts). None when the file or the key is not there; raises sqlite3.Error when the file cannot be read."""
    if not path.exists():
        return None
    with contextlib.closing(_peek(path)) as conn:
        row = conn.execute("SELECT value FROM node_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def peek_queued(path: Path) -> dict[str, list[str]]:
    """The events still queued, by priority, oldest first (their JSON), read by another process while the node may
    be running (the VM checks judge a node by it). Empty when there is no file; raises sqlite3.Error when the file
    cannot be read."""
    if not path.exists():
        return {}
    with contextlib.closing(_peek(path)) as conn:
        return {prio: [b for (b,) in conn.execute(f"SELECT body FROM {t} ORDER BY seq")] for prio, t in TABLES.items()}


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
    with transaction(conn):
        rows = conn.execute(f"SELECT seq, id, priority, body FROM dead_letters{where}", wanted or ()).fetchall()
        for seq, event_id, prio, body in rows:
            conn.execute(
                f"INSERT OR REPLACE INTO {TABLES.get(prio, 'q_state')} VALUES (?, ?, ?)", (seq, event_id, body)
            )
            conn.execute("DELETE FROM dead_letters WHERE seq = ?", (seq,))
    return len(rows)
