"""A damaged outbox (it fails quick_check, or SQLite says corrupt / not a database) is moved aside with its WAL
as ``outbox.sqlite.corrupt-<time>-<pid>``, and what still reads is carried over into a fresh one: the queued
events, the seq reservation, the node state. Only ever for corruption: a disk that refuses writes is never a
reason to move a readable file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from common.events import Event
from common.outbox.db import SCHEMA_VERSION, TABLES, QueueDb, create_private, restrict_mode
from common.outbox.memory import PRIORITIES

if TYPE_CHECKING:
    from common.outbox.store import Store

log = logging.getLogger("common.outbox")


@dataclass
class Salvage:
    """What still read from a moved-aside database."""

    events: list[Event] = field(default_factory=list)
    reserved: int = 0
    dead_letters: int = 0
    state: dict[str, str] = field(default_factory=dict)


def move_aside(path: Path, wall: float) -> list[Path]:
    """Rename the database and its WAL and shared-memory files aside; returns the new paths."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall))
    aside = path.with_name(f"{path.name}.corrupt-{stamp}-{os.getpid()}")
    moved: list[Path] = []
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            try:
                os.replace(src, Path(str(aside) + suffix))
                moved.append(Path(str(aside) + suffix))
            except OSError as exc:
                log.error("outbox: cannot move %s aside: %s", src, exc)
    return moved


def salvage(aside: Path) -> Salvage:
    """Read what still reads from a moved-aside database (each table on its own: one bad page loses one table)."""
    found = Salvage()
    if not aside.exists():
        return found
    try:
        conn = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
    except sqlite3.Error:
        return found
    try:
        _read_tables(conn, aside, found)
    finally:
        conn.close()
    if found.events:
        log.warning("outbox salvage: %d queued events recovered from %s", len(found.events), aside)
    return found


def _read_tables(conn: sqlite3.Connection, aside: Path, found: Salvage) -> None:
    for table in (*TABLES.values(), "meta", "dead_letters", "node_state"):
        try:
            if table == "node_state":
                found.state = dict(conn.execute("SELECT key, value FROM node_state").fetchall())
            elif table == "meta":
                row = conn.execute("SELECT value FROM meta WHERE key = 'seq_reserved'").fetchone()
                found.reserved = int(row[0]) if row else 0
            elif table == "dead_letters":
                found.dead_letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            else:
                for (body,) in conn.execute(f"SELECT body FROM {table} ORDER BY seq"):
                    found.events.append(Event.from_wire(json.loads(body)))
        except (sqlite3.Error, ValueError, TypeError) as exc:
            log.warning("outbox salvage: %s of %s unreadable: %s", table, aside, exc)


def recover(store: Store, exc: BaseException) -> QueueDb | None:
    """A damaged file: move it aside, start a fresh one holding what still reads, say so."""
    store.corrupt_recoveries += 1
    if store.db is not None:
        store.db.close()
        store.db = None
    moved = move_aside(store.path, store.clock.wall())
    log.critical(
        "OUTBOX DATABASE CORRUPT: %s (%s: %s); moved aside to %s; starting a fresh outbox",
        store.path,
        type(exc).__name__,
        exc,
        moved[0] if moved else "(nothing moved)",
    )
    found = salvage(moved[0]) if moved else Salvage()
    top = max(found.reserved, store.seq.read_mark(), max((e.seq or 0 for e in found.events), default=0) + 1)
    store.seq.start_after(top if top > 1 else int(store.clock.wall() * 1000))
    store.seq.reserved = store.seq.next
    store.counts = dict.fromkeys(PRIORITIES, 0)
    store.dropped = dict.fromkeys(PRIORITIES, 0)
    store.dead_count = 0
    store.fresh = store.resume_checked = True
    with contextlib.suppress(OSError):
        create_private(store.path)
    try:
        store.db = QueueDb.open(store.path, store.bound.wal_limit)
    except sqlite3.Error as fresh_exc:
        log.critical("OUTBOX CANNOT CREATE A FRESH DATABASE at %s (%s): events kept in memory", store.path, fresh_exc)
        store.refuse(fresh_exc)
    payload = {
        "moved_to": str(moved[0]) if moved else None,
        "error": f"{type(exc).__name__}: {exc}",
        "salvaged_events": len(found.events),
        "dead_letters_lost": found.dead_letters,
        "seq_resumed_at": store.seq.next - 1,
        "volatile": store.db is None,
    }
    store.meta_due.update(clean_close="0", schema_version=str(SCHEMA_VERSION))
    store.recovering = True
    try:
        state = {**found.state, **store.known_state}  # what this process knows is newest
        store.commit([*found.events, store.note("outbox_corrupt", "warning", payload)], state)
    finally:
        store.recovering = False
    if store.db is not None:
        restrict_mode(store.path)
    return store.db
