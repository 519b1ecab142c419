"""The central's release tables (releases, rollouts, their timeline, each node's update state): all their SQL.

It opens its own connection to the central's SQLite file (WAL lets it share the file with ``central.storage``);
a PostgreSQL engine replaces this one class. Bundle files live on disk beside the database, under
``releases/ROLE/TARGET/VERSION/`` (manifest.json, manifest.sig, files/).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from central.storage.errors import Conflict, NotFound
from central.storage.sqlite import Transaction  # the one BEGIN IMMEDIATE/COMMIT helper

SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    role TEXT NOT NULL,
    target TEXT NOT NULL,
    manifest TEXT NOT NULL,
    signature TEXT NOT NULL,
    config_schema INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    notes TEXT NOT NULL DEFAULT '',
    added_at REAL NOT NULL,
    UNIQUE (version, role, target)
);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    role TEXT NOT NULL,
    version TEXT NOT NULL,
    shares TEXT NOT NULL,
    max_failure_rate REAL NOT NULL,
    soak_s REAL NOT NULL,
    state TEXT NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    stage_started_at REAL NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rollouts_role_state ON rollouts (role, state);
CREATE TABLE IF NOT EXISTS rollout_log (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout INTEGER NOT NULL,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS node_updates (
    node_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL DEFAULT 'stable',
    target TEXT NOT NULL DEFAULT '',
    running TEXT NOT NULL DEFAULT '',
    checked_at REAL,
    rollout INTEGER,
    version TEXT,
    state TEXT,
    reason TEXT NOT NULL DEFAULT '',
    reported_at REAL
);
CREATE TABLE IF NOT EXISTS update_reports (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    rollout INTEGER,
    version TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS update_reports_rollout ON update_reports (rollout, node_id);
"""

ACTIVE = ("running", "halted", "paused")


class ReleaseStore:
    """Releases, rollouts and node update states in the central's database file."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = Path(db_path)
        self.files_root = self.db_path.parent / "releases"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def release_dir(self, role: str, target: str, version: str) -> Path:
        return self.files_root / role / target / version

    # ------------------------------------------------------------------------------------------- releases
    def add_release(self, manifest: dict[str, Any], raw: str, signature: str, now: float) -> int:
        """Record a release whose files are already in ``release_dir``; Conflict when it exists."""
        total = sum(int(f["size"]) for f in manifest["files"])
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT INTO releases (version, role, target, manifest, signature, config_schema, bytes, notes,"
                    " added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        manifest["version"],
                        manifest["role"],
                        manifest["target"],
                        raw,
                        signature,
                        manifest["config_schema"],
                        total,
                        manifest.get("notes", ""),
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"release {manifest['version']} for {manifest['role']}/{manifest['target']} exists"
                ) from None
        assert cur.lastrowid is not None  # an INSERT sets it
        return cur.lastrowid

    def releases(self, role: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, version, role, target, config_schema, bytes, notes, added_at FROM releases"
        args: tuple = ()
        if role:
            sql, args = sql + " WHERE role = ?", (role,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY added_at DESC, id DESC", args).fetchall()
        return [dict(r) for r in rows]

    def release(self, role: str, target: str, version: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM releases WHERE role = ? AND target = ? AND version = ?", (role, target, version)
            ).fetchone()
        return dict(row) if row else None

    def targets_of(self, role: str, version: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT target FROM releases WHERE role = ? AND version = ? ORDER BY target", (role, version)
            ).fetchall()
        return [r["target"] for r in rows]

    # ------------------------------------------------------------------------------------------- rollouts
    def start_rollout(self, role: str, version: str, plan: dict[str, Any], by: str, now: float) -> int:
        with self._lock, self._tx():
            busy = self._db.execute(
                f"SELECT id, version FROM rollouts WHERE role = ? AND state IN ({','.join('?' * len(ACTIVE))})",
                (role, *ACTIVE),
            ).fetchone()
            if busy:
                raise Conflict(f"rollout {busy['id']} of {busy['version']} to {role} nodes is still active; abort it")
            cur = self._db.execute(
                "INSERT INTO rollouts (role, version, shares, max_failure_rate, soak_s, state, stage,"
                " stage_started_at, created_at, created_by) VALUES (?, ?, ?, ?, ?, 'running', 0, ?, ?, ?)",
                (role, version, json.dumps(plan["shares"]), plan["max_failure_rate"], plan["soak_s"], now, now, by),
            )
            assert cur.lastrowid is not None  # an INSERT sets it
            rollout = cur.lastrowid
            self._log(rollout, now, "started", f"{version} to {role} nodes by {by}")
        return rollout

    def rollout(self, rollout: int) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout,)).fetchone()
        if row is None:
            raise NotFound(f"no rollout {rollout}")
        return _rollout_row(row)

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM rollouts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_rollout_row(r) for r in rows]

    def active_rollout(self, role: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT * FROM rollouts WHERE role = ? AND state IN ({','.join('?' * len(ACTIVE))})"
                " ORDER BY id DESC LIMIT 1",
                (role, *ACTIVE),
            ).fetchone()
        return _rollout_row(row) if row else None

    def set_rollout(self, rollout: int, now: float, action: str, detail: str, **fields: Any) -> None:
        """Change a rollout's state/stage and log why, in one transaction."""
        allowed = {"state", "stage", "stage_started_at", "reason"}
        if set(fields) - allowed:
            raise ValueError(f"unknown rollout fields {set(fields) - allowed}")
        with self._lock, self._tx():
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                self._db.execute(f"UPDATE rollouts SET {sets} WHERE id = ?", (*fields.values(), rollout))
            self._log(rollout, now, action, detail)

    def timeline(self, rollout: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at, action, detail FROM rollout_log WHERE rollout = ? ORDER BY row", (rollout,)
            ).fetchall()
        return [dict(r) for r in rows]

    # ---------------------------------------------------------------------------------------- node states
    def node_checked(self, node_id: str, channel: str, target: str, running: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO node_updates (node_id, channel, target, running, checked_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (node_id) DO UPDATE SET channel = excluded.channel, target = excluded.target,"
                " running = excluded.running, checked_at = excluded.checked_at",
                (node_id, channel, target, running, now),
            )

    def report(self, node_id: str, rollout: int | None, version: str, state: str, reason: str, now: float) -> None:
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO update_reports (node_id, rollout, version, state, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                (node_id, rollout, version, state, reason, now),
            )
            self._db.execute(
                "INSERT INTO node_updates (node_id, rollout, version, state, reason, reported_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET rollout = excluded.rollout,"
                " version = excluded.version, state = excluded.state, reason = excluded.reason,"
                " reported_at = excluded.reported_at",
                (node_id, rollout, version, state, reason, now),
            )

    def outcomes(self, rollout: int) -> dict[str, str]:
        """node id -> its latest reported state for this rollout."""
        with self._lock:
            rows = self._db.execute(
                "SELECT node_id, state FROM update_reports WHERE row IN"
                " (SELECT MAX(row) FROM update_reports WHERE rollout = ? GROUP BY node_id)",
                (rollout,),
            ).fetchall()
        return {r["node_id"]: r["state"] for r in rows}

    def channels(self, role: str) -> dict[str, str]:
        """node id -> channel of every registered node of ``role`` (stable until a node says otherwise)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT n.node_id, COALESCE(u.channel, 'stable') AS channel FROM nodes n"
                " LEFT JOIN node_updates u ON u.node_id = n.node_id WHERE n.role = ?",
                (role,),
            ).fetchall()
        return {r["node_id"]: r["channel"] for r in rows}

    def node_states(self) -> list[dict[str, Any]]:
        """Every node with its version (last heartbeat), channel and update state."""
        with self._lock:
            rows = self._db.execute(
                "SELECT n.node_id, n.role, n.site, n.location, n.health, u.channel, u.target, u.running,"
                " u.checked_at, u.rollout, u.version AS update_version, u.state AS update_state, u.reason,"
                " u.reported_at FROM nodes n LEFT JOIN node_updates u ON u.node_id = n.node_id"
                " ORDER BY n.role, n.node_id"
            ).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            health = json.loads(item.pop("health") or "null") or {}
            item["version"] = health.get("version") or item["running"] or None
            out.append(item)
        return out

    # ------------------------------------------------------------------------------------------ internals
    def _log(self, rollout: int, at: float, action: str, detail: str) -> None:
        self._db.execute(
            "INSERT INTO rollout_log (rollout, at, action, detail) VALUES (?, ?, ?, ?)", (rollout, at, action, detail)
        )

    def _tx(self) -> Transaction:
        return Transaction(self._db)


def _rollout_row(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    item["shares"] = json.loads(item["shares"])
    return item
