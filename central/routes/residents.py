"""The social worker's view of a resident: the flat and its contacts, water use (30 days by day, 48 h by hour),
last use, the usual pattern and monitorability (the meter node's daily ``wellbeing_profile``), "I'm OK" presses,
away mode, the questions the node asked the resident (``check_in``) and how each ended, and the flat's open and past
alerts. Flats are edited by an administrator here or with `central flat set`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request
from pydantic import ConfigDict, Field, StringConstraints

from central.bodies import ShortText
from central.deps import Central, CentralDep, OperatorAuth, client_address, require
from central.errors import refusals
from central.jsonvalues import StoredBody
from central.routes import api_router
from central.storage import NotFound
from central.storage.nodes import NodeFilter
from central.storage.readings import WaterSeries
from central.views import alert_views, flat_of
from central.water import day_edges, hour_edges, last_use, use_between
from common.catalogue import Recipient
from common.contract import SITE_PATTERN

router = api_router("residents")
SiteId = Annotated[str, Path(pattern=SITE_PATTERN)]
FlatId = Annotated[str, Path(min_length=1, max_length=64)]
SCAN_LIMIT = 200_000  # events read per node for one view (a reference central keeps them all)
ASKED_KINDS = ("inactivity", "missed_morning")  # the alerts a check-in comes before (meter_node.wellbeing.monitor)
LIFE_KINDS = ("wellbeing_profile", "im_ok_pressed", "going_out_pressed", "check_in", *ASKED_KINDS)  # readings apart
TOLD_WITHIN_S = 3600.0  # after the time to answer, an alert this soon is the one the question came before
ON_ITS_WAY_S = 300.0  # an unanswered question's alert may still be on its way this long after the time to answer
CHECK_IN_DAYS = 30  # the answered share is counted over this many days


class FlatContact(StoredBody):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    phone: Annotated[str, StringConstraints(max_length=40)] = ""
    email: Annotated[str, StringConstraints(max_length=200)] = ""


class FlatBody(StoredBody):
    """PUT /residents/{site}/{flat}: the household's name, contacts per role and a note."""

    model_config = ConfigDict(extra="forbid")
    name: ShortText = ""
    note: ShortText = ""
    contacts: dict[Recipient, Annotated[list[FlatContact], Field(max_length=20)]] = Field(default_factory=dict)


def _events(central: Central, nodes: list[str], meters: set[str], flat: str) -> dict[str, list[dict[str, Any]]]:
    """The flat's life events from its site's meter nodes, by kind (matched by ``resident``, or by its meters)."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in LIFE_KINDS}
    meters = set(meters)
    for node_id in nodes:
        for kind in LIFE_KINDS:
            after = 0
            while True:
                page = central.store.events.page(node_id, kind, after, 10_000)
                for ev in page:
                    p = ev["payload"] if isinstance(ev["payload"], dict) else {}
                    if p.get("resident") == flat or (p.get("meter_id") in meters and not p.get("resident")):
                        out[kind].append(ev)
                        if p.get("meter_id"):
                            meters.add(p["meter_id"])
                if len(page) < 10_000 or after > SCAN_LIMIT:
                    break
                after = page[-1]["row"]
    return out


def check_ins(events: dict[str, list[dict[str, Any]]], now: float) -> list[dict[str, Any]]:
    """Each question the node asked (``check_in``) and how it ended: ``answered`` (an "I'm OK" press within the time
    to answer), ``told`` (no answer: the alert it came before reached the family), ``waiting`` (the time to answer
    is not up, or its alert may still be on its way) or ``ended`` (water or the door ended the silence first: nobody
    was told). Oldest first; times are the node's (an alert that arrives late still counts)."""
    presses = sorted(ev["time"] for ev in events["im_ok_pressed"])
    told = sorted(
        ev["time"]
        for kind in ASKED_KINDS
        for ev in events[kind]
        if ev["severity"] in ("warning", "urgent") and ev["state"] in ("raised", "updated")
    )
    out: list[dict[str, Any]] = []
    for ev in sorted(events["check_in"], key=lambda e: e["time"]):
        t, p = ev["time"], ev["payload"] if isinstance(ev["payload"], dict) else {}
        within = _seconds(p.get("answer_within_s"))
        due = max(within, _seconds(p.get("alert_due_s")))  # a bedtime question: the alert would come in the night
        pressed = next((x for x in presses if t <= x <= t + within), None)
        alert = next((x for x in told if t <= x <= t + due + TOLD_WITHIN_S), None)
        if pressed is not None and (alert is None or pressed <= alert):
            outcome, at = "answered", pressed
        elif alert is not None:
            outcome, at = "told", alert
        else:
            outcome, at = ("waiting" if now < t + due + ON_ITS_WAY_S else "ended"), None
        asked_for = p.get("asked_for") if isinstance(p.get("asked_for"), str) else None
        bedtime = due > within + 60.0  # asked at bedtime about an alert due in the night
        out.append(
            {
                "at": t,
                "asked_for": asked_for,
                "within_s": within,
                "at_bedtime": bedtime,
                "outcome": outcome,
                "outcome_at": at,
            }
        )
    return out


def _seconds(given: Any) -> float:
    """A node's count of seconds from a payload: a number from 0 to a day, else 0 (a malformed or missing one)."""
    return float(given) if isinstance(given, int | float) and 0 <= given <= 86400 else 0.0


def _check_in_summary(asked: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """The last 20 questions, and over the last 30 days how many were asked and answered (a resident who stops
    answering is worth a call: the node cannot tell fatigue from a fall)."""
    recent = [c for c in asked if c["at"] >= now - CHECK_IN_DAYS * 86400.0]
    return {
        "recent": asked[-20:],
        "days": CHECK_IN_DAYS,
        "asked": len(recent),
        "answered": sum(c["outcome"] == "answered" for c in recent),
    }


def _water(water: WaterSeries, now: float) -> dict[str, Any]:
    """By day from the raw readings and each day's first and last reading (kept for good), by hour from the raw
    readings only (so an hour whose readings are gone is unknown, not interpolated over a day)."""
    days, hours = day_edges(now, 30), hour_edges(now, 48)
    by_day, raw = water.for_days(), water.raw
    return {
        "daily": [{"start": a, "litres": v} for a, v in zip(days, use_between(by_day, days), strict=False)],
        "hourly": [{"start": a, "litres": v} for a, v in zip(hours, use_between(raw, hours), strict=False)],
        "last_use_at": last_use(raw) or last_use(by_day),  # by day only once the raw readings are gone
        "last_reading_at": max((t for t, _ in by_day), default=None),
    }


@router.get("/residents", responses=refusals(401, 403, 503))
def list_residents(actor: OperatorAuth, central: CentralDep) -> dict[str, Any]:
    """Flats with a record, and flats named by alerts, at the caller's sites."""
    require(actor, "residents")
    sites = actor.sites()
    known = {(f["site"], f["flat"]): f for f in central.console.flats(sites)}
    found = central.store.alerts.page("all", None, 5000)
    nodes = central.store.nodes.by_id({a["node_id"] for a in found})
    open_by_flat: dict[tuple[str, str], int] = {}
    for a in found:
        key = flat_of(a, nodes)
        if key and (sites is None or key[0] in sites):
            known.setdefault(key, {"site": key[0], "flat": key[1], "name": "", "contacts": {}})
            open_by_flat[key] = open_by_flat.get(key, 0) + (a["state"] != "resolved")
    profiles = _latest_profiles(central, sites)
    for key in profiles:
        known.setdefault(key, {"site": key[0], "flat": key[1], "name": "", "contacts": {}})
    rows = [{**f, "open_alerts": open_by_flat.get(k, 0), "profile": profiles.get(k)} for k, f in sorted(known.items())]
    return {"residents": rows}


def _latest_profiles(central: Central, sites: set[str] | None) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest ``wellbeing_profile`` of each household (the meter node sends one a day): monitorability."""
    nodes = {n["node_id"]: n["site"] for n in central.store.nodes.every(NodeFilter(role="meter"))}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    after = 0
    while True:
        page = central.store.events.page(None, "wellbeing_profile", after, 10_000)
        for ev in page:
            site, p = nodes.get(ev["node_id"]), ev["payload"] if isinstance(ev["payload"], dict) else {}
            if site and isinstance(p.get("resident"), str) and (sites is None or site in sites):
                out[(site, p["resident"])] = {**p, "at": ev["time"]}
        if len(page) < 10_000:
            return out
        after = page[-1]["row"]


@router.get("/residents/{site}/{flat}", responses=refusals(401, 403, 404, 422, 503))
def get_resident(site: SiteId, flat: FlatId, actor: OperatorAuth, central: CentralDep) -> dict[str, Any]:
    """Everything the social worker needs about one household."""
    require(actor, "residents", site)
    now = central.clock.wall()
    try:
        record = central.console.flat(site, flat)
    except NotFound:
        record = {"site": site, "flat": flat, "name": "", "contacts": {}, "note": ""}
    nodes = [n["node_id"] for n in central.store.nodes.every(NodeFilter(site=site, role="meter"))]
    water = central.store.readings.water(nodes, flat, day_edges(now, 31)[0])
    events = _events(central, nodes, water.meter_ids, flat)
    profiles = events["wellbeing_profile"]
    found = [
        a for a in central.store.alerts.page("all", None, 5000) if (a.get("payload") or {}).get("resident") == flat
    ]
    alerts = [v for v in alert_views(found, central, now) if v["site"] == site and actor.sees_alert(v)]
    return {
        **record,
        "water": _water(water, now),
        "profile": profiles[-1]["payload"] if profiles else None,
        "profile_at": profiles[-1]["time"] if profiles else None,
        "ok_presses": [ev["time"] for ev in events["im_ok_pressed"]][-20:],
        "away": [{"at": ev["time"], **ev["payload"]} for ev in events["going_out_pressed"]][-10:],
        "check_ins": _check_in_summary(check_ins(events, now), now),
        "alerts": alerts,
        "server_time": now,
    }


@router.put("/residents/{site}/{flat}", responses=refusals(401, 403, 404, 413, 422, 503))
def put_resident(
    site: SiteId, flat: FlatId, body: FlatBody, actor: OperatorAuth, central: CentralDep, request: Request
) -> dict[str, Any]:
    """Set the flat's name, note and contacts (who is told of its alerts); admin."""
    require(actor, "flats", site)
    contacts: dict[str, list[dict[str, Any]]] = {
        role: [c.model_dump(exclude_defaults=True) for c in people] for role, people in body.contacts.items()
    }
    now = central.clock.wall()
    saved = central.console.set_flat(site, flat, body.name, contacts, body.note, actor.name, now)
    central.console.audit(now, actor.name, actor.via, "flat_changed", f"{site}/{flat}",
                          ", ".join(f"{r}: {len(p)}" for r, p in contacts.items()), client_address(request))  # fmt: skip
    request.app.state.notifier.rescan()  # a corrected number reaches the open alerts' failed messages now
    return saved
