"""What the API answers for stored alerts, rides and nodes: the stored row plus what follows from it now."""

from __future__ import annotations

from typing import Any

from central.config import CentralConfig
from central.fleet import DispatchPlan, ride_view
from central.routing import notifications


def _handled_at(alert: dict[str, Any]) -> float | None:
    times = [t for t in (alert.get("acknowledged_at"), alert.get("resolved_at")) if t is not None]
    return min(times) if times else None


def alert_view(
    alert: dict[str, Any], nodes: dict[str, dict[str, Any]], now: float, config: CentralConfig
) -> dict[str, Any]:
    """An alert with its notification schedule, the contacts of the roles it reaches and where its node is."""
    node = nodes.get(alert["node_id"], {})
    payload = alert["payload"] if isinstance(alert["payload"], dict) else {}
    schedule = notifications(
        severity=alert["severity"],
        recipients=alert["recipients"],
        payload=payload,
        opened_at=alert["opened_at"],
        handled_at=_handled_at(alert),
        now=now,
        escalation=config.escalation,
    )
    contacts = node.get("contacts") or {}
    for entry in schedule["notified"]:
        entry["contacts"] = contacts.get(entry["role"], [])
    roles = list(alert["recipients"])
    if schedule["escalation"]:
        roles += [r for r in schedule["escalation"]["roles"] if r not in roles]
    alert.update(schedule)
    alert["contacts"] = {role: contacts.get(role, []) for role in roles}
    alert.update(site=node.get("site"), area=node.get("area"), location=node.get("location"), role=node.get("role"))
    return alert


def ride_out(ride: dict[str, Any], now: float, config: CentralConfig) -> dict[str, Any]:
    """A ride with its status at ``now``."""
    view = ride_view(
        DispatchPlan(**ride["plan"]), ride["requested_at"], now, config.fleet.time_scale, ride["cancelled_at"]
    )
    out = {k: ride[k] for k in ("ride_id", "request_id", "node_id", "pickup_point", "phone_tail")}
    out["requested_at"] = ride["requested_at"]
    out.update(view)
    out["server_time"] = now
    return out


def node_view(node: dict[str, Any], now: float, config: CentralConfig) -> dict[str, Any]:
    """A node with how long ago it was seen and whether that makes it stale."""
    seen = node.get("last_seen_at")
    node["seen_ago_s"] = None if seen is None else max(0.0, now - seen)
    node["stale"] = seen is None or now - seen > config.server.node_stale_after_s
    return node
