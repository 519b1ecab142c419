"""The central's release tables (releases, rollouts, their timeline, each node's update state): all their SQL.

The tables are the ``releases`` component of the central's storage (``central.storage.migrations``), in the
central's database of either engine; this class runs its SQL in the store's transactions. Bundle files live on
disk under ``files_root`` (beside a SQLite file, or ``[database] files_dir`` for PostgreSQL: shared by every
central host), as ``ROLE/TARGET/VERSION/`` (manifest.json, manifest.sig, files/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from central.storage import Component, Database, Migration, Tx, is_postgres, sqlite_path
from central.storage.errors import Conflict, NotFound, StorageIntegrityError

SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    id {pk},
    version TEXT NOT NULL,
    role TEXT NOT NULL,
    target TEXT NOT NULL,
    manifest TEXT NOT NULL,
    signature TEXT NOT NULL,
    config_schema INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    notes TEXT NOT NULL DEFAULT '',
    added_at DOUBLE PRECISION NOT NULL,
    UNIQUE (version, role, target)
);
CREATE TABLE IF NOT EXISTS rollouts (
    id {pk},
    role TEXT NOT NULL,
    version TEXT NOT NULL,
    shares TEXT NOT NULL,
    max_failure_rate DOUBLE PRECISION NOT NULL,
    soak_s DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    stage_started_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rollouts_role_state ON rollouts (role, state);
CREATE TABLE IF NOT EXISTS rollout_log (
    row {pk},
    rollout INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS node_updates (
    node_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL DEFAULT 'stable',
    target TEXT NOT NULL DEFAULT '',
    running TEXT NOT NULL DEFAULT '',
    checked_at DOUBLE PRECISION,
    rollout INTEGER,
    version TEXT,
    state TEXT,
    reason TEXT NOT NULL DEFAULT '',
    reported_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS update_reports (
    row {pk},
    node_id TEXT NOT NULL,
    rollout INTEGER,
    version TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS update_reports_rollout ON update_reports (rollout, node_id);
"""

ACTIVE = ("running", "halted", "paused")
RELEASES = Component("releases", (Migration.with_identity(1, "releases and rollouts", SCHEMA),))


def files_root(database: str | Path, files_dir: Path) -> Path:
    """Where bundle files live: beside a SQLite file, or under ``files_dir`` for PostgreSQL."""
    if is_postgres(database):
        return files_dir / "releases"
    return sqlite_path(database).parent / "releases"


class ReleaseStore:
    """Releases, rollouts and node update states in the central's database file."""

    def __init__(self, db: Database, files_root: Path) -> None:
        self.db = db
        self.files_root = files_root

    def release_dir(self, role: str, target: str, version: str) -> Path:
        return self.files_root / role / target / version

    # ------------------------------------------------------------------------------------------- releases
    def add_release(self, manifest: dict[str, Any], raw: str, signature: str, now: float) -> int:
        """Record a release whose files are already in ``release_dir``; Conflict when it exists."""
        total = sum(int(f["size"]) for f in manifest["files"])
        try:
            with self.db.write() as tx:
                release = tx.scalar(
                    "INSERT INTO releases (version, role, target, manifest, signature, config_schema, bytes, notes,"
                    " added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        except StorageIntegrityError:
            raise Conflict(
                f"release {manifest['version']} for {manifest['role']}/{manifest['target']} exists"
            ) from None
        return int(release)

    def releases(self, role: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, version, role, target, config_schema, bytes, notes, added_at FROM releases"
        args: tuple = ()
        if role:
            sql, args = sql + " WHERE role = ?", (role,)
        with self.db.read() as tx:
            rows = tx.all(sql + " ORDER BY added_at DESC, id DESC", args)
        return [dict(r) for r in rows]

    def release(self, role: str, target: str, version: str) -> dict[str, Any] | None:
        with self.db.read() as tx:
            row = tx.one(
                "SELECT * FROM releases WHERE role = ? AND target = ? AND version = ?", (role, target, version)
            )
        return dict(row) if row else None

    def targets_of(self, role: str, version: str) -> list[str]:
        with self.db.read() as tx:
            rows = tx.all("SELECT target FROM releases WHERE role = ? AND version = ? ORDER BY target", (role, version))
        return [r["target"] for r in rows]

    # ------------------------------------------------------------------------------------------- rollouts
    def start_rollout(self, role: str, version: str, plan: dict[str, Any], by: str, now: float) -> int:
        with self.db.write() as tx:
            busy = tx.one(
                f"SELECT id, version FROM rollouts WHERE role = ? AND state IN ({','.join('?' * len(ACTIVE))})",
                (role, *ACTIVE),
            )
            if busy:
                raise Conflict(f"rollout {busy['id']} of {busy['version']} to {role} nodes is still active; abort it")
            rollout = tx.scalar(
                "INSERT INTO rollouts (role, version, shares, max_failure_rate, soak_s, state, stage,"
                " stage_started_at, created_at, created_by) VALUES (?, ?, ?, ?, ?, 'running', 0, ?, ?, ?) RETURNING id",
                (role, version, json.dumps(plan["shares"]), plan["max_failure_rate"], plan["soak_s"], now, now, by),
            )
            _log(tx, rollout, now, "started", f"{version} to {role} nodes by {by}")
        return rollout

    def rollout(self, rollout: int) -> dict[str, Any]:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM rollouts WHERE id = ?", (rollout,))
        if row is None:
            raise NotFound(f"no rollout {rollout}")
        return _rollout_row(row)

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.all("SELECT * FROM rollouts ORDER BY id DESC LIMIT ?", (limit,))
        return [_rollout_row(r) for r in rows]

    def active_rollout(self, role: str) -> dict[str, Any] | None:
        with self.db.read() as tx:
            row = tx.one(
                f"SELECT * FROM rollouts WHERE role = ? AND state IN ({','.join('?' * len(ACTIVE))})"
                " ORDER BY id DESC LIMIT 1",
                (role, *ACTIVE),
            )
        return _rollout_row(row) if row else None

    def set_rollout(self, rollout: int, now: float, action: str, detail: str, **fields: Any) -> None:
        """Change a rollout's state/stage and log why, in one transaction."""
        allowed = {"state", "stage", "stage_started_at", "reason"}
        if set(fields) - allowed:
            raise ValueError(f"unknown rollout fields {set(fields) - allowed}")
        with self.db.write() as tx:
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                tx.execute(f"UPDATE rollouts SET {sets} WHERE id = ?", (*fields.values(), rollout))
            _log(tx, rollout, now, action, detail)

    def timeline(self, rollout: int) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.all("SELECT at, action, detail FROM rollout_log WHERE rollout = ? ORDER BY row", (rollout,))
        return [dict(r) for r in rows]

    # ---------------------------------------------------------------------------------------- node states
    def node_checked(self, node_id: str, channel: str, target: str, running: str, now: float) -> None:
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO node_updates (node_id, channel, target, running, checked_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (node_id) DO UPDATE SET channel = excluded.channel, target = excluded.target,"
                " running = excluded.running, checked_at = excluded.checked_at",
                (node_id, channel, target, running, now),
            )

    def report(self, node_id: str, rollout: int | None, version: str, state: str, reason: str, now: float) -> None:
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO update_reports (node_id, rollout, version, state, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                (node_id, rollout, version, state, reason, now),
            )
            tx.execute(
                "INSERT INTO node_updates (node_id, rollout, version, state, reason, reported_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET rollout = excluded.rollout,"
                " version = excluded.version, state = excluded.state, reason = excluded.reason,"
                " reported_at = excluded.reported_at",
                (node_id, rollout, version, state, reason, now),
            )

    def outcomes(self, rollout: int) -> dict[str, str]:
        """node id -> its latest reported state for this rollout."""
        return self._by_node(
            "SELECT node_id, state AS value FROM update_reports WHERE row IN"
            " (SELECT MAX(row) FROM update_reports WHERE rollout = ? GROUP BY node_id)",
            (rollout,),
        )

    def channels(self, role: str) -> dict[str, str]:
        """node id -> channel of every registered node of ``role`` (stable until a node says otherwise)."""
        return self._by_node(
            "SELECT n.node_id, COALESCE(u.channel, 'stable') AS value FROM nodes n"
            " LEFT JOIN node_updates u ON u.node_id = n.node_id WHERE n.role = ?",
            (role,),
        )

    def _by_node(self, sql: str, params: tuple[Any, ...]) -> dict[str, str]:
        """node id -> ``value`` of each row ``sql`` selects."""
        with self.db.read() as tx:
            return {r["node_id"]: r["value"] for r in tx.all(sql, params)}

    def node_states(self) -> list[dict[str, Any]]:
        """Every node with its version (last heartbeat), channel and update state."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT n.node_id, n.role, n.site, n.location, n.health, u.channel, u.target, u.running,"
                " u.checked_at, u.rollout, u.version AS update_version, u.state AS update_state, u.reason,"
                " u.reported_at FROM nodes n LEFT JOIN node_updates u ON u.node_id = n.node_id"
                " ORDER BY n.role, n.node_id"
            )
        out = []
        for row in rows:
            item = dict(row)
            health = json.loads(item.pop("health") or "null") or {}
            item["version"] = health.get("version") or item["running"] or None
            out.append(item)
        return out


def _log(tx: Tx, rollout: int, at: float, action: str, detail: str) -> None:
    tx.execute(
        "INSERT INTO rollout_log (rollout, at, action, detail) VALUES (?, ?, ?, ?)", (rollout, at, action, detail)
    )


def _rollout_row(row: dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["shares"] = json.loads(item["shares"])
    return item
