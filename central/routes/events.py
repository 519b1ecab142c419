"""Events: a node's batch (idempotent by event id, each event accepted or rejected on its own) and the operators'
read of stored events."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import Query
from pydantic import ValidationError

from central.bodies import MAX_SAFE_INT, WIRE_EVENT, EventBatch
from central.config import CentralConfig
from central.deps import ChangesDep, ClockDep, ConfigDep, NodeAuth, OperatorAuth, StoreDep
from central.errors import ApiError, refusals, validation_message
from central.jsonvalues import CHECKED, describe, encoded_if_clean, problems
from central.routes import api_router
from common import catalogue

log = logging.getLogger("central")
router = api_router("nodes")


def _rejection(raw: Any, index: int | None, code: str, reason: str) -> dict[str, Any]:
    event_id = raw.get("id") if isinstance(raw, dict) else None
    event_id = event_id[:64] if isinstance(event_id, str) and not problems(event_id) else None
    return {"id": event_id, "index": index, "code": code, "reason": reason}


def check_event(raw: Any, index: int, node_id: str, config: CentralConfig) -> tuple[dict | None, dict | None]:
    """(the validated event, None) or (None, its rejection): ``invalid_event`` when the event itself breaks the
    contract, ``foreign_event`` when it names another node."""
    if not isinstance(raw, dict):
        return None, _rejection(raw, index, "invalid_event", "an event must be a JSON object")
    if "node_id" in raw and raw["node_id"] != node_id:
        reason = f"node_id {str(raw['node_id'])[:80]!r} is not this token's node {node_id!r}"
        return None, _rejection(raw, index, "foreign_event", reason)
    encoded = encoded_if_clean(raw)
    if encoded is None:
        found = problems(raw)
        if found:
            return None, _rejection(raw, index, "invalid_event", describe(found))
        encoded = json.dumps(raw, ensure_ascii=False).encode()
    try:  # checked as a whole just above: the body model need not walk it again
        event = WIRE_EVENT.validate_python(raw, context={CHECKED: True}).model_dump()
    except ValidationError as exc:
        return None, _rejection(raw, index, "invalid_event", validation_message(list(exc.errors()))[0])
    size = len(encoded)
    if size > config.server.max_event_bytes:
        reason = f"event is {size} bytes; at most {config.server.max_event_bytes}"
        return None, _rejection(raw, index, "invalid_event", reason)
    for problem in catalogue.problems(event["kind"], event["severity"], event["state"], event["payload"]):
        _note_once(node_id, problem)  # stored all the same: an alert is never refused for a field too many
    return event, None


_noted: set[tuple[str, str]] = set()


def _note_once(node_id: str, problem: str) -> None:
    """Log a catalogue mismatch once per node and problem (bounded, so a stream of them costs no memory)."""
    if (node_id, problem) in _noted:
        return
    if len(_noted) >= 10_000:
        _noted.clear()
    _noted.add((node_id, problem))
    log.warning("node %s: event catalogue: %s", node_id, problem)


@router.post("/events", responses=refusals(401, 403, 413, 422, 503))
def post_events(
    body: EventBatch, node: NodeAuth, store: StoreDep, config: ConfigDep, clock: ClockDep, changes: ChangesDep
) -> dict[str, Any]:
    """A batch of the node's events; idempotent by event id. Events that cannot be stored are listed in
    ``rejected`` with a ``code`` (``invalid_event``, ``foreign_event``); the others are stored and acknowledged."""
    node_id = node["node_id"]
    limit = config.server.max_events_per_batch
    if len(body.events) > limit:
        raise ApiError(413, "body_too_large", f"{len(body.events)} events in one batch; at most {limit}")
    valid: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for index, raw in enumerate(body.events):
        event, rejection = check_event(raw, index, node_id, config)
        if event is not None:
            valid.append(event)
        if rejection is not None:
            rejected.append(rejection)
    now = clock.wall()
    new, foreign_ids = store.events.ingest(node_id, valid, body.node_wall_time, now)
    if new:
        changes.changed()  # the notifier and open consoles look now
    taken = set(foreign_ids)
    for event_id in foreign_ids:
        rejected.append(_rejection({"id": event_id}, None, "foreign_event", "event id already used by another node"))
    for item in rejected:
        log.warning("node %s: event %s rejected (%s): %s", node_id, item["id"], item["code"], item["reason"][:300])
    accepted = [e["id"] for e in valid if e["id"] not in taken]
    return {"accepted": accepted, "rejected": rejected, "server_time": now}


@router.get("/events", tags=["operator"], responses=refusals(401, 403, 422, 503))
def get_events(
    actor: OperatorAuth,
    store: StoreDep,
    node_id: str | None = None,
    kind: str | None = None,
    after: Annotated[int, Query(ge=0, le=MAX_SAFE_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Stored events in the order received, those the caller's roles see at its sites (a taxi desk reads no water
    readings, a site's desk no other site's); page with ``after`` = the last ``row`` seen (``next_after``)."""
    events = store.events.page(node_id, kind, after, limit)
    sites = {n: node["site"] for n, node in store.nodes.by_id({e["node_id"] for e in events}).items()}
    seen = [e for e in events if actor.sees_alert({"kind": e["kind"], "site": sites.get(e["node_id"])})]
    return {"events": seen, "next_after": events[-1]["row"] if events else after}
