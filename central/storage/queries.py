"""The statements both engines run, with ``?`` placeholders (an engine converts them to its own style).

An engine's own SQL (schema, bulk writes, partitions, retention) lives in its module; what differs only in a word
is chosen by ``Store`` from the engine's module, never written into the logic.
"""

from __future__ import annotations

RESET_HUGE_HEALTH = "UPDATE nodes SET health = NULL WHERE {bytes} > ?"  # bytes: the engine's size in bytes
HEALTH_BYTES = {"sqlite": "length(CAST(health AS BLOB))", "postgresql": "octet_length(health)"}

# ------------------------------------------------------------------------------------------------ nodes
NODE_SITE = "SELECT site FROM nodes WHERE node_id = ?"
INSERT_NODE = (
    "INSERT INTO nodes (role, site, area, location, pickup_point, contacts, token_hash, node_id, registered_at,"
    " token_issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
REREGISTER_NODE = (
    "UPDATE nodes SET role = ?, site = ?, area = ?, location = ?, pickup_point = ?, contacts = ?, token_hash = ?,"
    " token_issued_at = ?, registrations = registrations + 1 WHERE node_id = ?"
)
NODE_BY_TOKEN = "SELECT * FROM nodes WHERE token_hash = ?"
NODE_BY_ID = "SELECT * FROM nodes WHERE node_id = ?"
NODES_BY_ID = "SELECT * FROM nodes WHERE node_id {match}"
NODES_PAGE = "SELECT * FROM nodes WHERE {where} ORDER BY node_id LIMIT ?"
# a node with a number up to its highest that neither arrived nor was said never stored (central.storage.seqs)
LOSING = "max_seq > seqs_received + seqs_unused"
NODE_SUMMARY = (  # SUMs cast: PostgreSQL's SUM of BIGINT is NUMERIC
    "SELECT site, role, COUNT(*) AS nodes,"
    " CAST(SUM(CASE WHEN last_seen_at IS NULL OR last_seen_at < ? THEN 1 ELSE 0 END) AS BIGINT) AS stale,"
    f" CAST(SUM(CASE WHEN {LOSING} THEN 1 ELSE 0 END) AS BIGINT) AS with_lost_events,"
    " CAST(SUM(max_seq - seqs_received - seqs_unused) AS BIGINT) AS events_lost FROM nodes GROUP BY site, role"
    " ORDER BY site, role"
)
TOUCH_NODE = "UPDATE nodes SET last_seen_at = ? WHERE node_id = ?"
NODE_LAST_SEEN = "SELECT last_seen_at FROM nodes WHERE node_id = ?"
NODE_HEALTH = "SELECT health FROM nodes WHERE node_id = ?"
STORE_HEALTH = "UPDATE nodes SET health = ?, last_heartbeat_at = ? WHERE node_id = ?"

# ----------------------------------------------------------------------------------------------- events
INSERT_EVENTS_INTO = (
    "INSERT INTO events (row, id, node_id, seq, kind, severity, state, priority, wall_time, clock_synced, time,"
    " time_corrected, node_wall_time, received_at, payload, alert_id, recipients)"
)
INSERT_EVENTS = INSERT_EVENTS_INTO + " VALUES {values} ON CONFLICT (id) DO NOTHING RETURNING id"
EVENT_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# PostgreSQL: the same rows as one array per column, so the statement's text (and its plan) is the same for any
# batch size; psycopg caches and prepares it, where a multi-row VALUES of 850 parameters is parsed afresh each time
INSERT_EVENTS_UNNEST = (
    INSERT_EVENTS_INTO
    + " SELECT * FROM unnest(?::bigint[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[],"
    " ?::text[], ?::float8[], ?::bigint[], ?::float8[], ?::bigint[], ?::float8[], ?::float8[], ?::text[], ?::text[],"
    " ?::text[]) ON CONFLICT (id) DO NOTHING RETURNING id"
)
EVENT_OWNERS = "SELECT id, node_id FROM events WHERE id {match}"
NODE_SEQ_RANGES = "SELECT seq_ranges, unused_ranges FROM nodes WHERE node_id = ?"
COUNT_BATCH = (
    "UPDATE nodes SET seq_ranges = ?, max_seq = ?, seqs_received = ?, unused_ranges = ?, seqs_unused = ?,"
    " seq_conflicts = seq_conflicts + ?, replays = replays + ?, events_received = events_received + ? WHERE node_id = ?"
)
EVENTS_BOUNDS = (
    "SELECT MAX(last) AS last FROM (SELECT MAX(row) AS last FROM events UNION ALL SELECT MAX(row) FROM readings) AS b"
)
EVENTS_PAGE = "SELECT * FROM events WHERE {where} ORDER BY row LIMIT ?"

# ----------------------------------------------------------------------------------------------- alerts
LATEST_ALERT = "SELECT * FROM alerts WHERE node_id = ? AND alert_id = ? ORDER BY occurrence DESC LIMIT 1"
INSERT_ALERT = (
    "INSERT INTO alerts (node_id, alert_id, occurrence, kind, severity, state, on_site, opened_at, raised_at,"
    " last_update_at, count, payload, recipients, first_event_id, last_event_id, cleared_at)"
    " VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, 1, ?, ?, ?, ?, ?) RETURNING id"
)
UPDATE_ALERT = (
    "UPDATE alerts SET severity = ?, on_site = ?, last_update_at = ?, count = count + 1, payload = ?,"
    " recipients = ?, last_event_id = ?, cleared_at = ? WHERE id = ?"
)
INSERT_ALERT_LOG = "INSERT INTO alert_log (alert, at, action, by, note, event_id) VALUES (?, ?, ?, ?, ?, ?)"
ALERTS_PAGE = "SELECT * FROM alerts {where} ORDER BY id DESC LIMIT ?"
ALERT_BY_ID = "SELECT * FROM alerts WHERE id = ?"
ALERT_COUNTS = "SELECT state, COUNT(*) AS alerts FROM alerts WHERE state IN ('open', 'acknowledged') GROUP BY state"
ALERT_LOG = "SELECT at, action, by, note, event_id FROM alert_log WHERE alert = ? ORDER BY row"
ALERT_STATE = "SELECT state, acknowledged_by, resolved_by FROM alerts WHERE id = ?"
ALERT_STANDING = (
    "SELECT alert_id, occurrence, state, acknowledged_by, acknowledged_at, resolved_by, resolved_at FROM alerts"
    " WHERE node_id = ? AND alert_id {match}"
)
ACKNOWLEDGE = (
    "UPDATE alerts SET state = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?, acknowledged_via = ?,"
    " ack_note = ? WHERE id = ?"
)
RESOLVE = (
    "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = ?, resolved_via = ?, resolve_note = ?,"
    " resolve_tell = ? WHERE id = ?"
)

# ------------------------------------------------------------------------------------------------ rides
RIDE_BY_REQUEST = "SELECT * FROM rides WHERE node_id = ? AND request_id = ?"
RIDE_BY_ID = "SELECT * FROM rides WHERE ride_id = ?"
INSERT_RIDE = (
    "INSERT INTO rides (ride_id, node_id, request_id, pickup_point, phone_tail, requested_at, plan)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
RECENT_RIDES = "SELECT * FROM rides ORDER BY requested_at DESC LIMIT ?"
CANCEL_RIDE = "UPDATE rides SET cancelled_at = ?, cancelled_by = ? WHERE ride_id = ? AND cancelled_at IS NULL"

# ----------------------------------------------------------------------------------------------- changes
INSERT_CHANGE = "INSERT INTO changes (at, topic, key, action, data) VALUES (?, ?, ?, ?, ?)"
DELETE_OLD_CHANGES = "DELETE FROM changes WHERE at < ?"
MARK = "SELECT value FROM marks WHERE name = ?"
SET_MARK = "INSERT INTO marks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
FELL_SILENT = "SELECT node_id, last_seen_at FROM nodes WHERE last_seen_at > ? AND last_seen_at <= ? ORDER BY node_id"
# nodes silent since before the cut with no node_silent alert raised since their last word (one alert a silence)
SILENT_UNTOLD = (
    "SELECT n.node_id, n.role, n.last_seen_at FROM nodes n WHERE n.last_seen_at <= ? AND NOT EXISTS"
    " (SELECT 1 FROM alerts a WHERE a.node_id = n.node_id AND a.kind = 'node_silent' AND a.raised_at >= n.last_seen_at)"
    " ORDER BY n.node_id"
)
# the central's own node_silent alerts still raised on site whose node has been heard from since
HEARD_AGAIN = (
    "SELECT a.node_id, a.alert_id, n.last_seen_at FROM alerts a JOIN nodes n ON n.node_id = a.node_id"
    " WHERE a.kind = 'node_silent' AND a.state <> 'resolved' AND a.on_site <> 'cleared' AND n.last_seen_at > a.raised_at"
    " ORDER BY a.id"
)
CHANGE_BOUNDS = "SELECT MIN(pos) AS first, MAX(pos) AS last FROM changes"
CHANGES = "SELECT * FROM changes WHERE pos > ? AND pos <= ? ORDER BY pos LIMIT ?"
CHANGES_OF_TOPICS = "SELECT * FROM changes WHERE pos > ? AND pos <= ? AND topic IN ({marks}) ORDER BY pos LIMIT ?"
