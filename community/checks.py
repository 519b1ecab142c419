"""The main job's checks of what reached people, from the central's API answers: the trapped passenger's alert and
its all-clear, the silent resident's alert, the question asked at home first, the social worker's answer and her
report on closing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[str, bool, str], None]  # Outcome.check: name, passed, what was seen


def people_told(
    check: Check, alerts: list[dict[str, Any]], asked: list[dict[str, Any]], meter: str, closed: list[str]
) -> None:
    """``alerts``: every alert view (GET /alerts?state=all); ``asked``: the resident's recent check-ins; ``closed``:
    whose phones got the message that a person closed an alert."""
    trapped = [a for a in alerts if a["kind"] == "entrapment"]
    check("trapped passenger: one entrapment alert", len(trapped) == 1, f"{len(trapped)} alert(s)")
    if trapped:
        roles = set(trapped[0].get("told", {}))
        check(
            "entrapment reached property management and maintenance",
            {"property_management", "maintenance"} <= roles,
            ", ".join(sorted(roles)),
        )
        sent = [d for d in trapped[0].get("deliveries", []) if d["reason"] == "cleared" and d["state"] == "sent"]
        freed = {d["role"] for d in sent}
        check(
            "the passenger out: the all-clear reached both",
            trapped[0]["cleared_on_site"] and freed == roles,
            f"{trapped[0]['on_site']}; {', '.join(sorted(freed)) or 'nobody told'}",
        )
    silent = [a for a in alerts if a["node_id"] == meter and a["kind"] in ("inactivity", "missed_morning")]
    meter_kinds = sorted({a["kind"] for a in alerts if a["node_id"] == meter})
    check("silent resident: wellbeing alert at the central", bool(silent), ", ".join(meter_kinds))
    roles = {role for a in silent for role in a.get("told", {})}
    check(
        "wellbeing alert reached family and social worker",
        {"family", "social_worker"} <= roles,
        ", ".join(sorted(roles)),
    )
    check(
        "the silent resident was asked first; no answer, so her family was told when due",
        [c["outcome"] for c in asked] == ["told"],
        ", ".join(f"{c['asked_for']}: {c['outcome']}" for c in asked) or "never asked",
    )
    by_link = [a["acknowledged_by"] for a in silent if "短信链接" in (a.get("acknowledged_by") or "")]
    check("the social worker answered from her phone (acknowledgement link)", bool(by_link), ", ".join(by_link))
    taken = {
        d["role"]
        for a in silent
        for d in a.get("deliveries", [])
        if d["reason"] == "acknowledged" and d["state"] == "sent"
    }
    check(
        "her family heard that the social worker took it in (and she, who answered, was not told it again)",
        "family" in taken and "social_worker" not in taken,
        f"sent to {', '.join(sorted(taken)) or 'nobody'}",
    )
    report = [
        d["role"] for a in silent for d in a.get("deliveries", []) if d["reason"] == "resolved" and d["state"] == "sent"
    ]
    check(
        "the social worker's report reached the family and her (the alert closed, with her note)",
        {"family", "social_worker"} <= set(report) and "daughter" in closed,
        f"sent to {', '.join(sorted(set(report))) or 'nobody'}; SMS with the note on the phone of {', '.join(closed) or 'nobody'}",
    )
    check(
        "closed stays closed: the node's re-sends of her silence opened no alarm again",
        bool(silent) and all(a["state"] == "resolved" for a in silent),
        ", ".join(f"{a['kind']} #{a['occurrence']} {a['state']}" for a in silent),
    )
