"""Nodes: registration with a site's claim key, health (heartbeat), and the node records operators read."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request

from central.bodies import HEARTBEAT_KEYS, HeartbeatBody, RegisterBody
from central.deps import ClockDep, ConfigDep, NodeAuth, NodeOrOperator, OperatorAuth, StoreDep, require
from central.errors import ApiError, refusals
from central.ratelimit import FailureLimiter
from central.routes import api_router
from central.storage.nodes import NodeFilter
from central.views import node_view
from common.contract import MAX_ASKED

log = logging.getLogger("central")
router = api_router("nodes")


def get_claim_limiter(request: Request) -> FailureLimiter:
    return request.app.state.claim_limiter


@router.post("/nodes/register", status_code=201, responses=refusals(403, 409, 413, 422, 429, 503))
def register(
    body: RegisterBody,
    request: Request,
    store: StoreDep,
    config: ConfigDep,
    clock: ClockDep,
    limiter: Annotated[FailureLimiter, Depends(get_claim_limiter)],
) -> dict[str, Any]:
    """Register a node with its site's claim key; answers its token once. Re-registering rotates it.

    Wrong claim keys are limited per client address (429 with Retry-After once the allowance is spent)."""
    address = request.client.host if request.client else "unknown"
    wait = limiter.retry_after(address)
    if wait is not None:
        retry = str(max(1, round(wait + 0.5)))
        raise ApiError(
            429,
            "rate_limited",
            f"too many wrong claim keys from {address}; retry in {retry} s",
            headers={"Retry-After": retry},
        )
    site = config.site(body.site)
    wanted = site.claim_key if site else secrets.token_urlsafe(32)  # compare anyway: same time either way
    if not secrets.compare_digest(body.claim_key.encode(), wanted.encode()) or site is None:
        limiter.failed(address)
        log.warning("registration of %s at site %s from %s refused: wrong claim key", body.node_id, body.site, address)
        raise ApiError(403, "forbidden", "claim key not valid for this site", ["claim_key"])
    token = secrets.token_urlsafe(32)
    fields = body.model_dump(exclude={"claim_key"}, exclude_unset=True)  # contacts as sent
    created = store.nodes.register(fields, token, clock.wall())
    what = "registered" if created else "re-registered, token rotated"
    log.info("node %s (%s) %s at site %s", body.node_id, body.role, what, body.site)
    return {"node_id": body.node_id, "token": token, "role": body.role, "site": body.site, "new": created}


@router.get("/nodes", tags=["operator"], responses=refusals(401, 403, 422, 503))
def list_nodes(
    actor: OperatorAuth,
    store: StoreDep,
    config: ConfigDep,
    clock: ClockDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    role: Literal["elevator", "meter", "kiosk"] | None = None,
    status: Literal["all", "stale", "lost_events", "attention"] = "all",
    after: Annotated[str | None, Query(max_length=64, description="the last node_id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """A page of nodes in node id order, each with its latest health, last seen and how many seq numbers never
    arrived, of the caller's sites. ``status``: ``stale`` (silent longer than ``node_stale_after_s``), ``lost_events``, ``attention``
    (either). A full page answers ``next_after``: pass it as ``after`` for the next page; null at the end."""
    now, sites = clock.wall(), actor.sites()
    which = NodeFilter(site, role, status, now - config.server.node_stale_after_s, sites)
    found = store.nodes.page(which, after, limit)
    next_after = found[-1]["node_id"] if len(found) == limit else None
    return {"nodes": [node_view(n, now, config) for n in found], "next_after": next_after, "server_time": now}


@router.get("/summary", tags=["operator"], responses=refusals(401, 403, 503))
def summary(request: Request, actor: OperatorAuth, store: StoreDep, clock: ClockDep) -> dict[str, Any]:
    """Counts for a console's header, whatever the number of nodes: per site and role, how many nodes, how
    many stale, how many with lost events and how many events lost, as of ``nodes_as_of`` (counted again at most
    every ``[server] summary_max_age_s``, off the request); and the alerts not yet resolved, counted now
    (central-wide counts: null for a person of some sites only)."""
    now, mine = clock.wall(), actor.sites()
    rows, as_of = request.app.state.node_summary.get(now)
    sites = [r for r in rows if mine is None or r["site"] in mine]
    alerts = store.alerts.counts() if mine is None else None
    return {"sites": sites, "alerts": alerts, "nodes_as_of": as_of, "server_time": now}


@router.get("/nodes/{node_id}", tags=["operator"], responses=refusals(401, 403, 404, 422, 503))
def get_node(node_id: str, who: NodeOrOperator, store: StoreDep, config: ConfigDep, clock: ClockDep) -> dict[str, Any]:
    """One node, with its seq gaps as [first, last] ranges of missing numbers. A node may read its own."""
    if isinstance(who, dict) and who["node_id"] != node_id:
        raise ApiError(403, "forbidden", "a node may only read its own record")
    node = store.nodes.get(node_id)
    if not isinstance(who, dict):
        require(who, "nodes", node["site"])
    return node_view(node, clock.wall(), config)


@router.get("/acknowledgements", responses=refusals(401, 403, 422, 503))
def acknowledgements(
    node: NodeAuth,
    store: StoreDep,
    alert_id: Annotated[list[str], Query(max_length=MAX_ASKED, description="the node's alert ids")] = [],  # noqa: B006
) -> dict[str, Any]:
    """EN 81-28's acknowledgement, back to the alarm equipment: where the central's newest alert for each of the
    node's ``alert_id`` stands (``open``, ``acknowledged`` or ``resolved``, with by whom and when); ids the central
    has no alert for yet are left out. The node stops re-sending what a person has taken in."""
    return {"alerts": store.alerts.standing(node["node_id"], alert_id)}


@router.post("/heartbeat", responses=refusals(401, 403, 413, 422, 503))
def heartbeat(
    body: HeartbeatBody, node: NodeAuth, store: StoreDep, config: ConfigDep, clock: ClockDep
) -> dict[str, Any]:
    """Store the node's latest health: the known keys only (others are ignored and listed in ``ignored``)."""
    health = body.model_dump(exclude_unset=True, include=set(HEARTBEAT_KEYS))
    size = len(json.dumps(health, ensure_ascii=False).encode())
    limit = config.server.max_heartbeat_bytes
    if size > limit:
        raise ApiError(413, "body_too_large", f"heartbeat is {size} bytes once parsed; at most {limit}")
    now = clock.wall()
    store.nodes.store_heartbeat(node["node_id"], health, now, keep=HEARTBEAT_KEYS)
    ignored = sorted(body.model_extra or {})
    if ignored:
        log.info("node %s: heartbeat keys ignored (not part of the contract): %s", node["node_id"], ignored[:20])
    return {"ok": True, "server_time": now, "ignored": ignored}
