"""Rides: a kiosk's taxi request (idempotent by request id), its status, cancelling, the operators' list."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import Annotated, Any

from fastapi import Query, Request, Response

from central.accounts.roles import Actor
from central.bodies import CancelBody, RideRequest
from central.deps import ClockDep, ConfigDep, NodeAuth, NodeOrOperator, OperatorAuth, StoreDep, client_address, require
from central.errors import ApiError, refusals
from central.fleet import plan_dispatch
from central.routes import api_router
from central.storage import Store
from central.views import ride_out

log = logging.getLogger("central")
router = api_router("rides")


@router.post("/rides", status_code=201, responses=refusals(401, 403, 413, 422, 503))
def post_ride(
    body: RideRequest, node: NodeAuth, response: Response, store: StoreDep, config: ConfigDep, clock: ClockDep
) -> dict[str, Any]:
    """Request a taxi to the kiosk's pickup point; the same request_id always answers the same ride."""
    if node["role"] != "kiosk":
        raise ApiError(403, "forbidden", f"only kiosks request rides; {node['node_id']} is {node['role']}")
    now = clock.wall()
    pickup = body.pickup_point or node["pickup_point"] or node["location"] or node["node_id"]
    plan = plan_dispatch(config.fleet, f"{node['node_id']}\x1f{body.request_id}")
    ride, created = store.create_ride(
        f"ride-{secrets.token_hex(8)}",
        node["node_id"],
        body.request_id,
        pickup,
        body.phone_tail,
        dataclasses.asdict(plan),
        now,
    )
    store.touch_node(node["node_id"], now)
    if created:
        log.info("ride %s requested by %s", ride["ride_id"], node["node_id"])
    else:
        response.status_code = 200
    return ride_out(ride, now, config)


def _own_ride(store: Store, ride_id: str, who: dict[str, Any] | Actor) -> dict[str, Any]:
    ride = store.ride(ride_id)
    if isinstance(who, dict):
        if ride["node_id"] != who["node_id"]:
            raise ApiError(403, "forbidden", "this ride was requested by another node")
    else:
        kiosk = store.nodes_by_id([ride["node_id"]]).get(ride["node_id"], {})
        require(who, "rides", kiosk.get("site"))
    return ride


@router.get("/rides/{ride_id}", responses=refusals(401, 403, 404, 422, 503))
def get_ride(ride_id: str, who: NodeOrOperator, store: StoreDep, config: ConfigDep, clock: ClockDep) -> dict[str, Any]:
    """The ride's status now: searching, assigned (car, eta_s), arrived, no_car or cancelled."""
    return ride_out(_own_ride(store, ride_id, who), clock.wall(), config)


@router.get("/rides", tags=["operator"], responses=refusals(401, 403, 422, 503))
def list_rides(
    actor: OperatorAuth,
    store: StoreDep,
    config: ConfigDep,
    clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Recent rides, newest first."""
    require(actor, "rides")
    now = clock.wall()
    rides = store.rides(limit)
    sites, kiosks = actor.sites(), store.nodes_by_id({r["node_id"] for r in rides})
    mine = [r for r in rides if sites is None or kiosks.get(r["node_id"], {}).get("site") in sites]
    return {"rides": [ride_out(r, now, config) for r in mine], "server_time": now}


@router.post("/rides/{ride_id}/cancel", responses=refusals(401, 403, 404, 409, 413, 422, 503))
def cancel_ride(
    ride_id: str,
    who: NodeOrOperator,
    request: Request,
    store: StoreDep,
    config: ConfigDep,
    clock: ClockDep,
    body: CancelBody | None = None,
) -> dict[str, Any]:
    """Cancel while searching or assigned; cancelling again is a no-op; 409 once arrived or no car."""
    ride = _own_ride(store, ride_id, who)
    now = clock.wall()
    current = ride_out(ride, now, config)
    if current["status"] in ("arrived", "no_car"):
        raise ApiError(409, "conflict", f"ride {ride_id} is {current['status']}; nothing to cancel")
    if current["status"] != "cancelled":
        by = who["node_id"] if isinstance(who, dict) else who.name
        store.cancel_ride(ride_id, by, now)
        if not isinstance(who, dict):
            request.app.state.console.audit(now, by, who.via, "ride_cancelled", ride_id, "", client_address(request))
        log.info("ride %s cancelled by %s", ride_id, by)
    return ride_out(store.ride(ride_id), now, config)
