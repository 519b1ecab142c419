"""Alerts: the operators' list, one alert with its log, acknowledge and resolve."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import Path, Query

from central.bodies import MAX_SAFE_INT, AlertAction
from central.config import OperatorSection
from central.deps import Central, CentralDep, ClockDep, ConfigDep, NotifyDep, OperatorAuth, StoreDep
from central.errors import refusals
from central.routes import api_router
from central.views import alert_views

log = logging.getLogger("central")
router = api_router("operator")

AlertNumber = Annotated[int, Path(ge=1, le=MAX_SAFE_INT, description="the central's alert id")]


@router.get("/alerts", responses=refusals(401, 403, 422, 503))
def get_alerts(
    _: OperatorAuth,
    store: StoreDep,
    notify: NotifyDep,
    config: ConfigDep,
    clock: ClockDep,
    state: Literal["open", "acknowledged", "resolved", "active", "all"] = "open",
    node_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """Alerts newest first; ``active`` = open and acknowledged (not yet resolved)."""
    now = clock.wall()
    if state == "active":
        found = store.alerts("open", node_id, limit) + store.alerts("acknowledged", node_id, limit)
        found.sort(key=lambda a: -a["id"])
    else:
        found = store.alerts(state, node_id, limit)
    return {"alerts": alert_views(found, store, notify, now, config), "server_time": now}


@router.get("/alerts/{alert}", responses=refusals(401, 403, 404, 422, 503))
def get_alert(
    alert: AlertNumber, _: OperatorAuth, store: StoreDep, notify: NotifyDep, config: ConfigDep, clock: ClockDep
) -> dict[str, Any]:
    """One alert with its log (every event and operator action), every delivery with its attempts, and the
    answers given through acknowledgement links."""
    found = store.alert(alert, with_log=True)
    return alert_views([found], store, notify, clock.wall(), config, detail=True)[0]


def _handle(
    action: str, alert: int, operator: OperatorSection, central: Central, body: AlertAction | None
) -> dict[str, Any]:
    body = body or AlertAction()
    by = body.by or operator.name
    store, now = central.store, central.clock.wall()
    change = store.acknowledge if action == "acknowledged" else store.resolve
    done = change(alert, by, operator.name, body.note, now)
    log.info("alert %d %s by %s", alert, action, by)
    central.changes.changed()
    return alert_views([done], store, central.notify, now, central.config)[0]


@router.post("/alerts/{alert}/ack", responses=refusals(401, 403, 404, 409, 413, 422, 503))
def ack_alert(
    alert: AlertNumber, operator: OperatorAuth, central: CentralDep, body: AlertAction | None = None
) -> dict[str, Any]:
    """open -> acknowledged; 409 when it is not open."""
    return _handle("acknowledged", alert, operator, central, body)


@router.post("/alerts/{alert}/resolve", responses=refusals(401, 403, 404, 409, 413, 422, 503))
def resolve_alert(
    alert: AlertNumber, operator: OperatorAuth, central: CentralDep, body: AlertAction | None = None
) -> dict[str, Any]:
    """open or acknowledged -> resolved; 409 when already resolved."""
    return _handle("resolved", alert, operator, central, body)
