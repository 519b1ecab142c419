"""Stored rows as the API answers them, and values as the central stores them (both engines).

SQLite answers booleans as integers and PostgreSQL answers UUIDs as ``uuid.UUID``: these functions make the
dicts the same whatever the engine. JSON columns are text on both engines, read through ``load_stored`` so a
value stored before the checks of issue 12 never breaks a read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from central.jsonvalues import load_stored


def token_hash(token: str) -> str:
    """sha256 hex of a token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def dumps(value: Any) -> str:
    """JSON as the central stores it: compact, keys sorted, UTF-8 text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def node_row(row: Mapping[str, Any]) -> dict[str, Any]:
    node = dict(row)
    node.pop("token_hash", None)
    node.pop("node", None)  # the engine's integer key
    node.pop("seq_ranges", None)
    node.pop("unused_ranges", None)
    node["contacts"] = load_stored(node["contacts"], {})
    node["health"] = load_stored(node["health"])
    # seq numbers start at 1: every number up to the highest seen that never arrived is a lost event, but those
    # the node said it never stored (an unclean stop's unused reservation: central.storage.seqs)
    node["seq_unused"] = node.pop("seqs_unused")
    node["seq_missing"] = node["max_seq"] - node["seqs_received"] - node["seq_unused"]
    return node


def event_row(row: Mapping[str, Any]) -> dict[str, Any]:
    ev = dict(row)
    ev["id"] = str(ev["id"])
    ev["clock_synced"] = bool(ev["clock_synced"])
    ev["time_corrected"] = not ev["clock_synced"]
    ev["payload"] = load_stored(ev["payload"], {})
    ev["recipients"] = load_stored(ev["recipients"], [])
    return ev


def alert_row(row: Mapping[str, Any]) -> dict[str, Any]:
    alert = dict(row)
    alert["payload"] = load_stored(alert["payload"], {})
    alert["recipients"] = load_stored(alert["recipients"], [])
    alert["cleared_on_site"] = alert["on_site"] == "cleared"
    return alert


def ride_row(row: Mapping[str, Any]) -> dict[str, Any]:
    ride = dict(row)
    ride["plan"] = json.loads(ride["plan"])
    return ride


def change_row(row: Mapping[str, Any]) -> dict[str, Any]:
    change = dict(row)
    change["data"] = load_stored(change["data"], {})
    return change
