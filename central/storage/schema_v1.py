"""Core schema version 1: the SQLite tables of the central before migrations were versioned (issue 15).

A database made by that central records ``meta.schema_version = 1`` and has exactly these tables; the statements
are ``IF NOT EXISTS``, so applying version 1 to it changes nothing and records it. PostgreSQL gets the same
tables in its own types (``POSTGRESQL``: 64-bit integers, double precision, identity columns).
"""

from __future__ import annotations

from central.storage.migrations import IDENTITY_PK

SQLITE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    site TEXT NOT NULL,
    area TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL DEFAULT '',
    pickup_point TEXT NOT NULL DEFAULT '',
    contacts TEXT NOT NULL DEFAULT '{}',
    token_hash TEXT NOT NULL UNIQUE,
    registered_at REAL NOT NULL,
    token_issued_at REAL NOT NULL,
    registrations INTEGER NOT NULL DEFAULT 1,
    last_seen_at REAL,
    last_heartbeat_at REAL,
    health TEXT,
    max_seq INTEGER NOT NULL DEFAULT 0,
    seqs_received INTEGER NOT NULL DEFAULT 0,
    events_received INTEGER NOT NULL DEFAULT 0,
    replays INTEGER NOT NULL DEFAULT 0,
    seq_conflicts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    node_id TEXT NOT NULL,
    seq INTEGER,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    priority TEXT NOT NULL,
    wall_time REAL NOT NULL,
    clock_synced INTEGER NOT NULL,
    time REAL NOT NULL,
    time_corrected INTEGER NOT NULL,
    node_wall_time REAL NOT NULL,
    received_at REAL NOT NULL,
    payload TEXT NOT NULL,
    alert_id TEXT,
    recipients TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_node_seq ON events (node_id, seq);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    on_site TEXT NOT NULL,
    opened_at REAL NOT NULL,
    raised_at REAL NOT NULL,
    last_update_at REAL NOT NULL,
    count INTEGER NOT NULL,
    payload TEXT NOT NULL,
    recipients TEXT NOT NULL,
    first_event_id TEXT NOT NULL,
    last_event_id TEXT NOT NULL,
    cleared_at REAL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    acknowledged_via TEXT,
    ack_note TEXT,
    resolved_at REAL,
    resolved_by TEXT,
    resolved_via TEXT,
    resolve_note TEXT,
    UNIQUE (node_id, alert_id, occurrence)
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE TABLE IF NOT EXISTS alert_log (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    alert INTEGER NOT NULL,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    by TEXT,
    note TEXT,
    event_id TEXT
);
CREATE INDEX IF NOT EXISTS alert_log_alert ON alert_log (alert);
CREATE TABLE IF NOT EXISTS rides (
    ride_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    pickup_point TEXT NOT NULL,
    phone_tail TEXT,
    requested_at REAL NOT NULL,
    plan TEXT NOT NULL,
    cancelled_at REAL,
    cancelled_by TEXT,
    UNIQUE (node_id, request_id)
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
"""


def _postgresql(sqlite: str) -> str:
    """The same tables in PostgreSQL's types (one text for both engines: they cannot drift apart)."""
    out = sqlite.replace(IDENTITY_PK["sqlite"], IDENTITY_PK["postgresql"])
    out = out.replace(" REAL", " DOUBLE PRECISION").replace(" INTEGER", " BIGINT")
    return out.replace("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');",
                       "INSERT INTO meta (key, value) VALUES ('schema_version', '1') ON CONFLICT DO NOTHING;")  # fmt: skip


POSTGRESQL = _postgresql(SQLITE)
