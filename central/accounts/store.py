"""The console's tables (component ``console``): users, sessions, the audit log, flats and their contacts.

All their SQL is here and runs through the central's storage interface on either engine. A session is kept as
the sha256 of its cookie (the cookie itself is never stored); the audit log is written in the same call as the
action's record wherever the action is the console's own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from central.storage import Component, Conflict, Database, Migration, NotFound

_TABLES = """
CREATE TABLE console_users (
    id {pk},
    username TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    grants TEXT NOT NULL,
    phone TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    password_changed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    last_seen_at DOUBLE PRECISION NOT NULL,
    address TEXT NOT NULL DEFAULT ''
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE TABLE console_audit (
    id {pk},
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT ''
);
CREATE INDEX console_audit_at ON console_audit (at);
CREATE TABLE console_flats (
    site TEXT NOT NULL,
    flat TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    contacts TEXT NOT NULL DEFAULT '{{}}',
    note TEXT NOT NULL DEFAULT '',
    updated_at DOUBLE PRECISION NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (site, flat)
);
"""

CONSOLE = Component(
    "console",
    (Migration.with_identity(1, "users, sessions, audit log, flats with their contacts", _TABLES),),
)


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: dict[str, Any]) -> dict[str, Any]:
    row["grants"] = json.loads(row["grants"] or "[]")
    row["disabled"] = bool(row["disabled"])
    return row


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    row["contacts"] = json.loads(row["contacts"] or "{}")
    return row


class ConsoleStore:
    """Users, sessions, audit log and flats on the central's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------------------------------------ users
    def add_user(
        self, username: str, name: str, password_hash: str, grants: list[dict[str, Any]], phone: str, now: float
    ) -> dict[str, Any]:
        with self.db.write() as tx:
            if tx.scalar("SELECT 1 FROM console_users WHERE username = ?", (username,)):
                raise Conflict(f"user {username!r} exists; use `central user passwd` or `central user roles`")
            tx.execute(
                "INSERT INTO console_users (username, name, password_hash, grants, phone, created_at,"
                " password_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (username, name, password_hash, json.dumps(grants), phone, now, now),
            )
        return self.user(username)

    def user(self, username: str) -> dict[str, Any]:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM console_users WHERE username = ?", (username,))
        if row is None:
            raise NotFound(f"no user {username!r}")
        return _user(row)

    def users(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.all("SELECT * FROM console_users ORDER BY username")
        out = [_user(r) for r in rows]
        for u in out:
            u.pop("password_hash")
        return out

    def update_user(self, username: str, **fields: Any) -> None:
        """Change ``password_hash`` (ends the user's sessions), ``grants``, ``name``, ``phone`` or ``disabled``."""
        allowed = {"password_hash", "grants", "name", "phone", "disabled"}
        sets = {k: (json.dumps(v) if k == "grants" else int(v) if k == "disabled" else v) for k, v in fields.items()}
        if not sets or set(sets) - allowed:
            raise ValueError(f"can change {sorted(allowed)}")
        with self.db.write() as tx:
            user = tx.one("SELECT id FROM console_users WHERE username = ?", (username,))
            if user is None:
                raise NotFound(f"no user {username!r}")
            for key, value in sets.items():  # column names come from ``allowed`` only
                tx.execute(f"UPDATE console_users SET {key} = ? WHERE id = ?", (value, user["id"]))
            if "password_hash" in sets or sets.get("disabled"):
                tx.execute("DELETE FROM console_sessions WHERE user_id = ?", (user["id"],))

    # --------------------------------------------------------------------------------------------- sessions
    def open_session(self, user_id: int, token: str, now: float, ttl_s: float, address: str) -> None:
        with self.db.write() as tx:
            tx.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now,))
            tx.execute(
                "INSERT INTO console_sessions (token_hash, user_id, created_at, expires_at, last_seen_at, address)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (session_hash(token), user_id, now, now + ttl_s, now, address),
            )

    def session_user(self, token: str, now: float) -> dict[str, Any] | None:
        """The user of a live session (and the session's expiry), or None (unknown, expired, user disabled)."""
        with self.db.read() as tx:
            row = tx.one(
                "SELECT u.*, s.expires_at AS session_expires_at FROM console_sessions s"
                " JOIN console_users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at >= ?",
                (session_hash(token), now),
            )
        if row is None or row["disabled"]:
            return None
        return _user(row)

    def close_session(self, token: str) -> None:
        with self.db.write() as tx:
            tx.execute("DELETE FROM console_sessions WHERE token_hash = ?", (session_hash(token),))

    # -------------------------------------------------------------------------------------------- audit log
    def audit(
        self, at: float, actor: str, via: str, action: str, target: str = "", detail: str = "", address: str = ""
    ) -> None:
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO console_audit (at, actor, via, action, target, detail, address)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at, actor, via, action, target, detail[:1000], address),
            )

    def audit_log(self, before: int | None = None, limit: int = 200, actor: str | None = None) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            where.append("id < ?")
            args.append(before)
        if actor:
            where.append("actor = ?")
            args.append(actor)
        sql = "SELECT * FROM console_audit" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self.db.read() as tx:
            return tx.all(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))

    # ------------------------------------------------------------------------------------------------ flats
    def set_flat(
        self, site: str, flat: str, name: str, contacts: Mapping[str, Sequence[Mapping[str, str]]], note: str,
        by: str, now: float,
    ) -> dict[str, Any]:  # fmt: skip
        values = (name, json.dumps(contacts, ensure_ascii=False), note, now, by)
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO console_flats (site, flat, name, contacts, note, updated_at, updated_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, flat) DO UPDATE SET name = excluded.name,"
                " contacts = excluded.contacts, note = excluded.note, updated_at = excluded.updated_at,"
                " updated_by = excluded.updated_by",
                (site, flat, *values),
            )
        return self.flat(site, flat)

    def flat(self, site: str, flat: str) -> dict[str, Any]:
        with self.db.read() as tx:
            row = tx.one("SELECT * FROM console_flats WHERE site = ? AND flat = ?", (site, flat))
        if row is None:
            raise NotFound(f"no flat {flat!r} at {site!r}")
        return _flat(row)

    def flats(self, sites: set[str] | None = None) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.all("SELECT * FROM console_flats ORDER BY site, flat")
        return [_flat(r) for r in rows if sites is None or r["site"] in sites]

    def flat_contacts(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The contacts of these (site, flat) pairs, for alert views (flats without a record are left out)."""
        if not pairs:
            return {}
        with self.db.read() as tx:
            rows = tx.all("SELECT site, flat, contacts FROM console_flats")
        return {(r["site"], r["flat"]): json.loads(r["contacts"]) for r in rows if (r["site"], r["flat"]) in pairs}
