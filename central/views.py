"""What the API answers for stored alerts, rides and nodes: the stored row plus what follows from it now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from central.config import CentralConfig
from central.dispatch.provider import dispatched_view
from central.fleet import DispatchPlan, ride_view
from central.kinds import kind_zh
from central.notify.plan import resolution_reaches
from central.reasons import reasons
from central.routing import notifications

if TYPE_CHECKING:
    from central.deps import Central


def _handled_at(alert: dict[str, Any]) -> float | None:
    """When it was first acknowledged or resolved, or reported over on site: after that nobody is escalated to (the
    social worker is not told of a silence the resident ended by using water before it was due)."""
    cleared = alert["cleared_at"] if alert["cleared_on_site"] else None
    times = [t for t in (alert.get("acknowledged_at"), alert.get("resolved_at"), cleared) if t is not None]
    return min(times) if times else None


def alert_view(
    alert: dict[str, Any],
    nodes: dict[str, dict[str, Any]],
    now: float,
    config: CentralConfig,
    urgent_at: float | None = None,
    flat_contacts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An alert with its notification schedule, the contacts of the roles it reaches and where its node is.

    ``urgent_at``: when it turned urgent (from its log); the held-back roles are due that long after it.
    ``flat_contacts``: the contacts kept for the resident's flat, which replace the node's for their roles."""
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
        urgent_at=urgent_at,
    )
    contacts = {**(node.get("contacts") or {}), **(flat_contacts or {})}
    for entry in schedule["notified"]:
        entry["contacts"] = contacts.get(entry["role"], [])
    roles = list(alert["recipients"])
    if schedule["escalation"]:
        roles += [r for r in schedule["escalation"]["roles"] if r not in roles]
    alert.update(schedule)
    alert["contacts"] = {role: contacts.get(role, []) for role in roles}
    alert.update(site=node.get("site"), area=node.get("area"), location=node.get("location"), role=node.get("role"))
    alert.update(
        urgent_at=urgent_at,
        title_zh=kind_zh(alert["kind"]),
        reasons=reasons(alert["kind"], payload, alert["cleared_on_site"]),
    )
    return alert


def ride_out(
    ride: dict[str, Any], now: float, config: CentralConfig, dispatched: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ride with its status at ``now``: from the simulated fleet's plan, or from what its provider said
    (``dispatched``, the dispatch table's row; a ride the table lost is ``no_car``, never searching forever)."""
    if ride["plan"].get("provider"):
        row = dispatched or {"status": "no_car", "car": None, "reason": "lost", "assigned_at": None,
                             "arrived_at": None, "no_car_at": ride["requested_at"], "eta_s": None}  # fmt: skip
        timeout = config.dispatch.search_timeout_s
        view = dispatched_view(row, ride["requested_at"], now, timeout, ride["cancelled_at"])
    else:
        view = ride_view(
            DispatchPlan(**ride["plan"]), ride["requested_at"], now, config.fleet.time_scale, ride["cancelled_at"]
        )
        view["no_car_reason"] = "no_car" if view["status"] == "no_car" else None
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


def told(deliveries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """When each role was really told: its first delivery accepted by a receiver, by whom and on which channel."""
    out: dict[str, dict[str, Any]] = {}
    for d in sorted((d for d in deliveries if d["state"] == "sent"), key=lambda d: d["sent_at"]):
        out.setdefault(d["role"], {"at": d["sent_at"], "channel": d["channel"], "recipients": d["recipients"]})
    return out


def alert_views(
    found: list[dict[str, Any]], central: Central, now: float, detail: bool = False
) -> list[dict[str, Any]]:
    """Alert views with what really happened: when each turned urgent, every delivery, who was told when; the
    flat's contacts for a resident's alert."""
    ids = [a["id"] for a in found]
    nodes = central.store.nodes.by_id({a["node_id"] for a in found})  # only the nodes these alerts name
    urgent = central.notify.urgent_since(ids)
    deliveries = central.notify.deliveries(ids, with_attempts=detail)
    answers = central.notify.answers(ids) if detail else {}
    flats = central.console.flat_contacts({k for a in found if (k := flat_of(a, nodes))})
    out = []
    for a in found:
        key = flat_of(a, nodes)
        view = alert_view(a, nodes, now, central.config, urgent.get(a["id"]), flats.get(key) if key else None)
        mine = deliveries.get(a["id"], [])
        view["told"] = told(mine)
        view["deliveries"] = mine
        view["resolution_tells"] = resolution_reaches(view, now)
        if key:
            view["flat"] = key[1]
        if detail:
            view["link_answers"] = answers.get(a["id"], [])
        out.append(view)
    return out


def flat_of(alert: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """(site, flat) of a resident's alert (the meter node's ``household.resident`` in its payload), or None."""
    payload = alert.get("payload")
    resident = payload.get("resident") if isinstance(payload, dict) else None
    site = nodes.get(alert["node_id"], {}).get("site")
    return (site, resident) if isinstance(resident, str) and site else None
