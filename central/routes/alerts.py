"""Alerts: the operators' list, one alert with its log, acknowledge and resolve."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request

from central.accounts.roles import Actor
from central.bodies import MAX_SAFE_INT, AlertAction, Resolution
from central.deps import Central, CentralDep, OperatorAuth, client_address
from central.errors import ApiError, refusals
from central.routes import api_router
from central.views import alert_views

log = logging.getLogger("central")
router = api_router("operator")

AlertNumber = Annotated[int, Path(ge=1, le=MAX_SAFE_INT, description="the central's alert id")]


@router.get("/alerts", responses=refusals(401, 403, 422, 503))
def get_alerts(
    actor: OperatorAuth,
    central: CentralDep,
    state: Literal["open", "acknowledged", "resolved", "active", "all"] = "open",
    node_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    severity: Literal["info", "warning", "urgent"] | None = None,
    flat: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="opened at or after (Unix s)")] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11, description="opened before (Unix s)")] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_SAFE_INT, description="the last id of the previous page")] = None,
) -> dict[str, Any]:
    """Alerts newest first; ``active`` = open and acknowledged (not yet resolved). The history's filters: kind,
    site, severity, the resident's flat and when it was opened. ``next_before``: pass it as ``before`` for the
    next (older) page; null when there is none."""
    store, now = central.store, central.clock.wall()
    filtered = any(x is not None for x in (kind, site, severity, flat, since, until))
    scan = 5000 if filtered else limit  # filters are applied to 5000 alerts at a time (one page of the history)
    found = store.alerts.page(state, node_id, scan, before)
    more = len(found) == scan
    found = [
        a for a in found
        if (kind is None or a["kind"] == kind) and (severity is None or a["severity"] == severity)
        and (since is None or a["opened_at"] >= since) and (until is None or a["opened_at"] < until)
    ]  # fmt: skip
    views = [
        v for v in alert_views(found, central, now)
        if actor.sees_alert(v) and (site is None or v["site"] == site) and (flat is None or v.get("flat") == flat)
    ]  # fmt: skip
    if len(views) > limit:
        next_before: int | None = views[limit - 1]["id"]
    else:
        next_before = found[-1]["id"] if more and found else None
    return {"alerts": views[:limit], "next_before": next_before, "server_time": now}


@router.get("/alerts/{alert}", responses=refusals(401, 403, 404, 422, 503))
def get_alert(alert: AlertNumber, actor: OperatorAuth, central: CentralDep) -> dict[str, Any]:
    """One alert with its log (every event and operator action), every delivery with its attempts, and the
    answers given through acknowledgement links."""
    view = alert_views([central.store.alerts.get(alert, with_log=True)], central, central.clock.wall(), detail=True)[0]
    _may_see(actor, view)
    return view


def _may_see(actor: Actor, view: dict[str, Any]) -> None:
    if not actor.sees_alert(view):
        raise ApiError(403, "forbidden", f"{actor.name} does not handle {view['kind']} alerts at {view['site']}")


def _handle(
    action: str, alert: int, actor: Actor, central: Central, body: AlertAction | None, address: str
) -> dict[str, Any]:
    body = body or AlertAction()
    store, now = central.store, central.clock.wall()
    _may_see(actor, alert_views([store.alerts.get(alert)], central, now)[0])
    # a person is recorded by name; a machine client may say on whose behalf it acts
    by = actor.name if actor.via == "session" else (body.by or actor.name)
    via = actor.username or actor.name
    if action == "acknowledged":
        done = store.alerts.acknowledge(alert, by, via, body.note, now)
    else:
        done = store.alerts.resolve(alert, by, via, body.note, now, body.tell if isinstance(body, Resolution) else "")
    central.console.audit(now, by, actor.via, action, f"alert {alert}", body.note, address)
    log.info("alert %d %s by %s", alert, action, by)
    central.changes.changed()
    return alert_views([done], central, now)[0]


@router.post("/alerts/{alert}/ack", responses=refusals(401, 403, 404, 409, 413, 422, 503))
def ack_alert(
    alert: AlertNumber, actor: OperatorAuth, central: CentralDep, request: Request, body: AlertAction | None = None
) -> dict[str, Any]:
    """open -> acknowledged; 409 when it is not open."""
    return _handle("acknowledged", alert, actor, central, body, client_address(request))


@router.post("/alerts/{alert}/resolve", responses=refusals(401, 403, 404, 409, 413, 422, 503))
def resolve_alert(
    alert: AlertNumber, actor: OperatorAuth, central: CentralDep, request: Request, body: Resolution | None = None
) -> dict[str, Any]:
    """open or acknowledged -> resolved; 409 when already resolved. ``tell``: the words sent to the people told of
    it (the note stays at the desk)."""
    return _handle("resolved", alert, actor, central, body, client_address(request))
