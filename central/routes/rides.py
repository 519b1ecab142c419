"""Rides: a kiosk's taxi request (idempotent by request id), its status, cancelling, the operators' list, and the
dispatcher's signed status callbacks. The ride goes to the configured provider (``central.dispatch``): the
simulated fleet by default, or a dispatcher behind the HTTP contract; one that is down or refuses gives the kiosk
``no_car`` in the same answer."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, ValidationError

from central.accounts.roles import Actor
from central.bodies import CancelBody, RideRequest
from central.deps import ClockDep, ConfigDep, NodeAuth, NodeOrOperator, OperatorAuth, StoreDep, client_address, require
from central.dispatch.provider import HttpProvider
from central.dispatch.store import DispatchStore
from central.errors import ApiError, refusals
from central.fleet import plan_dispatch
from central.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from central.routes import api_router
from central.storage import Store
from central.views import ride_out
from common.contract import API_PREFIX

log = logging.getLogger("central")
router = api_router("rides")


def _dispatch(request: Request) -> DispatchStore:
    return request.app.state.dispatch


def _provider(request: Request) -> HttpProvider:
    state = request.app.state
    section = state.config.dispatch
    callback = (section.callback_url or state.public_url).rstrip("/") + API_PREFIX + "/dispatch/callback"
    return HttpProvider(section, callback)


def _out(request: Request, ride: dict[str, Any], now: float) -> dict[str, Any]:
    row = _dispatch(request).get(ride["ride_id"]) if ride["plan"].get("provider") else None
    return ride_out(ride, now, request.app.state.config, row)


@router.post("/rides", status_code=201, responses=refusals(401, 403, 413, 422, 503))
def post_ride(
    body: RideRequest, node: NodeAuth, request: Request, response: Response, store: StoreDep, config: ConfigDep,
    clock: ClockDep,
) -> dict[str, Any]:  # fmt: skip
    """Request a taxi to the kiosk's pickup point; the same request_id always answers the same ride."""
    if node["role"] != "kiosk":
        raise ApiError(403, "forbidden", f"only kiosks request rides; {node['node_id']} is {node['role']}")
    now = clock.wall()
    pickup = body.pickup_point or node["pickup_point"] or node["location"] or node["node_id"]
    http = config.dispatch.provider == "http"
    plan = (
        {"provider": "http"}
        if http
        else dataclasses.asdict(plan_dispatch(config.fleet, f"{node['node_id']}\x1f{body.request_id}"))
    )
    ride_id = f"ride-{secrets.token_hex(8)}"
    ride, created = store.rides.create(ride_id, node["node_id"], body.request_id, pickup, body.phone_tail, plan, now)
    store.nodes.touch(node["node_id"], now)
    if created and http:  # at most dispatch.timeout_s: a dispatcher that hangs gives no_car, not a hanging kiosk
        decision = _provider(request).create(ride)
        status = "searching" if decision.accepted else "no_car"
        _dispatch(request).start(ride["ride_id"], "http", decision.provider_ride_id, status, decision.reason, now)
        if not decision.accepted:
            log.warning("ride %s: no car: %s", ride["ride_id"], decision.reason)
    if created:
        log.info("ride %s requested by %s", ride["ride_id"], node["node_id"])
    else:
        response.status_code = 200
    return _out(request, ride, now)


def _own_ride(store: Store, ride_id: str, who: dict[str, Any] | Actor) -> dict[str, Any]:
    ride = store.rides.get(ride_id)
    if isinstance(who, dict):
        if ride["node_id"] != who["node_id"]:
            raise ApiError(403, "forbidden", "this ride was requested by another node")
    else:
        kiosk = store.nodes.by_id([ride["node_id"]]).get(ride["node_id"], {})
        require(who, "rides", kiosk.get("site"))
    return ride


@router.get("/rides/{ride_id}", responses=refusals(401, 403, 404, 422, 503))
def get_ride(ride_id: str, who: NodeOrOperator, request: Request, store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    """The ride's status now: searching, assigned (car, eta_s), arrived, no_car or cancelled."""
    return _out(request, _own_ride(store, ride_id, who), clock.wall())


@router.get("/rides", tags=["operator"], responses=refusals(401, 403, 422, 503))
def list_rides(
    actor: OperatorAuth, request: Request, store: StoreDep, clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:  # fmt: skip
    """Recent rides (of the caller's sites), newest first."""
    require(actor, "rides")
    now = clock.wall()
    rides = store.rides.recent(limit)
    sites, kiosks = actor.sites(), store.nodes.by_id({r["node_id"] for r in rides})
    mine = [r for r in rides if sites is None or kiosks.get(r["node_id"], {}).get("site") in sites]
    return {"rides": [_out(request, r, now) for r in mine], "server_time": now}


@router.post("/rides/{ride_id}/cancel", responses=refusals(401, 403, 404, 409, 413, 422, 503))
def cancel_ride(
    ride_id: str, who: NodeOrOperator, request: Request, store: StoreDep, clock: ClockDep,
    body: CancelBody | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Cancel while searching or assigned; cancelling again is a no-op; 409 once arrived or no car."""
    ride = _own_ride(store, ride_id, who)
    now = clock.wall()
    current = _out(request, ride, now)
    if current["status"] in ("arrived", "no_car"):
        raise ApiError(409, "conflict", f"ride {ride_id} is {current['status']}; nothing to cancel")
    if current["status"] != "cancelled":
        by = who["node_id"] if isinstance(who, dict) else who.name
        store.rides.cancel(ride_id, by, now)
        if ride["plan"].get("provider"):  # best effort: the ride is cancelled here whatever the dispatcher says
            row = _dispatch(request).get(ride_id) or {}
            _provider(request).cancel(ride_id, row.get("provider_ride_id"))
            _dispatch(request).update(ride_id, "cancelled", now, None, None, f"cancelled by {by}")
        if not isinstance(who, dict):
            request.app.state.console.audit(now, by, who.via, "ride_cancelled", ride_id, "", client_address(request))
        log.info("ride %s cancelled by %s", ride_id, by)
    return _out(request, store.rides.get(ride_id), now)


class Callback(BaseModel):
    """What a dispatcher tells the central about a ride (docs/api.md#taxi-dispatch-contract)."""

    model_config = ConfigDict(extra="ignore")
    ride_id: str
    status: str
    car: dict[str, str] | None = None
    eta_s: float | None = None
    reason: str = ""


CALLBACK_STATUSES = ("searching", "assigned", "arrived", "no_car", "cancelled")


@router.post("/dispatch/callback", tags=["dispatch"], responses=refusals(401, 404, 413, 422, 503))
async def dispatch_callback(request: Request) -> dict[str, Any]:
    """A dispatcher's status callback, signed with the shared secret (X-Changbai-Timestamp, X-Changbai-Signature:
    sha256=HMAC(secret, timestamp + "." + body)). 401 when the signature is missing, wrong or older than 5 min."""
    state = request.app.state
    raw = await request.body()
    secret = state.config.dispatch.secret
    stamp, signature = request.headers.get(TIMESTAMP_HEADER, ""), request.headers.get(SIGNATURE_HEADER, "")
    if not secret or not verify(secret, stamp, raw, signature, state.clock.wall()):
        raise ApiError(401, "unauthorized", "the callback's signature is missing, wrong or too old")
    try:
        news = Callback.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise ApiError(422, "invalid_body", f"not a dispatch callback: {str(exc)[:200]}") from None
    if news.status not in CALLBACK_STATUSES:
        raise ApiError(422, "invalid_body", f"status must be one of {', '.join(CALLBACK_STATUSES)}", ["status"])
    changed = await run_in_threadpool(
        state.dispatch.update, news.ride_id, news.status, state.clock.wall(), news.car, news.eta_s, news.reason
    )
    if not changed and await run_in_threadpool(state.dispatch.get, news.ride_id) is None:
        raise ApiError(404, "not_found", f"no ride {news.ride_id!r} was handed to this dispatcher")
    return {"ok": True, "changed": changed}
