"""Central: alerts built from alert events (one per alert_id), their lifecycle, routing and escalation."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from central.config import EscalationSection
from central.routing import notifications
from tests.fixtures.central import wire_event

pytestmark = pytest.mark.both_engines  # the same cases on SQLite and PostgreSQL

LIFT = "cbxc-b7-u2-lift1"
METER = "cbxc-b12-meters"
LIFT_CONTACTS = {
    "property_management": [{"name": "物业值班 Property desk", "phone": "021-6543 0000"}],
    "maintenance": [{"name": "电梯维保 Lift maintenance", "phone": "400-820-0000"}],
}
METER_CONTACTS = {
    "family": [{"name": "王丽 Wang Li (daughter)", "phone": "13800000000"}],
    "social_worker": [{"name": "张社工 Zhang (social worker)", "phone": "13900000000"}],
}


def alert_event(node_id: str, alert_id: str, state: str, seq: int, **fields) -> dict:
    defaults = {
        "kind": "trapped_passenger",
        "severity": "urgent",
        "priority": "alert",
        "recipients": ["property_management", "maintenance"],
    }
    return wire_event(node_id, seq, state=state, alert_id=alert_id, **{**defaults, **fields})


def act(central, alert: int, action: str, **body) -> requests.Response:
    return requests.post(
        f"{central.url}/api/v1/alerts/{alert}/{action}", json=body, headers=central.operator_headers, timeout=10
    )


@pytest.fixture
def lift(central) -> str:
    return central.register(LIFT, "elevator", location="7号楼2单元 Building 7, Unit 2", contacts=LIFT_CONTACTS)


def test_repeats_of_an_open_alert_update_it_instead_of_opening_another(central, lift):
    incident = str(uuid.uuid4())
    central.post_events(lift, [alert_event(LIFT, incident, "raised", 1, payload={"door_closed_s": 90})])
    central.post_events(lift, [alert_event(LIFT, incident, "updated", 2, payload={"door_closed_s": 300})])
    central.post_events(lift, [alert_event(LIFT, incident, "raised", 3, payload={"door_closed_s": 600})])
    (alert,) = central.alerts("all")
    assert alert["alert_id"] == incident and alert["state"] == "open"
    assert alert["count"] == 3 and alert["payload"] == {"door_closed_s": 600}
    assert alert["location"] == "7号楼2单元 Building 7, Unit 2" and alert["kind"] == "trapped_passenger"
    assert [a["id"] for a in central.alerts("open")] == [alert["id"]]


def test_lifecycle_open_acknowledged_resolved_with_who_and_when(central, lift):
    incident = str(uuid.uuid4())
    central.post_events(lift, [alert_event(LIFT, incident, "raised", 1)])
    (alert,) = central.alerts("open")
    acked = act(central, alert["id"], "ack", by="李师傅 Master Li", note="on my way")
    assert acked.status_code == 200
    assert acked.json()["state"] == "acknowledged" and acked.json()["acknowledged_by"] == "李师傅 Master Li"
    assert acked.json()["acknowledged_via"] == central.operator_name and acked.json()["ack_note"] == "on my way"
    assert central.alerts("open") == [] and len(central.alerts("acknowledged")) == 1
    assert act(central, alert["id"], "ack").status_code == 409  # already acknowledged
    resolved = act(central, alert["id"], "resolve", note="passenger out, lift reset")
    assert resolved.status_code == 200
    assert resolved.json()["state"] == "resolved" and resolved.json()["resolved_by"] == central.operator_name
    assert resolved.json()["resolved_at"] >= resolved.json()["acknowledged_at"]
    again = act(central, alert["id"], "resolve")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert [a["id"] for a in central.alerts("resolved")] == [alert["id"]]
    detail = central.get(f"/alerts/{alert['id']}")
    assert [entry["action"] for entry in detail["log"]] == ["event:raised", "acknowledged", "resolved"]


def test_an_alert_can_be_resolved_without_acknowledging(central, lift):
    central.post_events(lift, [alert_event(LIFT, str(uuid.uuid4()), "raised", 1)])
    (alert,) = central.alerts()
    assert act(central, alert["id"], "resolve", note="false alarm").json()["state"] == "resolved"


def test_cleared_on_site_still_waits_for_an_operator(central, lift):
    incident = str(uuid.uuid4())
    central.post_events(lift, [alert_event(LIFT, incident, "raised", 1), alert_event(LIFT, incident, "cleared", 2)])
    (alert,) = central.alerts("open")
    assert alert["cleared_on_site"] is True and alert["on_site"] == "cleared" and alert["cleared_at"] is not None
    assert alert["severity"] == "urgent" and alert["count"] == 2


def test_a_new_raise_after_resolution_opens_a_new_occurrence(central, lift):
    incident = str(uuid.uuid4())
    central.post_events(lift, [alert_event(LIFT, incident, "raised", 1)])
    (first,) = central.alerts()
    act(central, first["id"], "resolve")
    late = alert_event(LIFT, incident, "updated", 2, wall_time=first["opened_at"])  # stamped before: no new alert
    central.post_events(lift, [late])
    assert [a["state"] for a in central.alerts("all")] == ["resolved"]
    central.post_events(lift, [alert_event(LIFT, incident, "raised", 3)])
    second, old = central.alerts("all")
    assert second["state"] == "open" and second["occurrence"] == 2 and old["id"] == first["id"]


def test_still_active_on_site_after_resolution_opens_it_again(central, lift):
    incident = str(uuid.uuid4())
    trapped = {"kind": "entrapment"}
    central.post_events(lift, [alert_event(LIFT, incident, "raised", 1, wall_time=time.time() - 60, **trapped)])
    (first,) = central.alerts()
    resolved_at = act(central, first["id"], "resolve", note="clicked by mistake").json()["resolved_at"]
    stamped_before = alert_event(LIFT, incident, "updated", 2, wall_time=resolved_at - 30, **trapped)
    central.post_events(lift, [stamped_before])  # queued before the resolution: history only
    assert [a["state"] for a in central.alerts("all")] == ["resolved"]
    renotify = alert_event(
        LIFT, incident, "updated", 3, wall_time=resolved_at + 1, payload={"renotify": True}, **trapped
    )
    central.post_events(lift, [renotify])  # the node still sees a trapped passenger
    again, old = central.alerts("all")
    assert again["state"] == "open" and again["occurrence"] == 2 and again["payload"] == {"renotify": True}
    assert old["id"] == first["id"] and old["count"] == 2


def test_a_person_closing_a_silence_or_a_help_request_stands_against_its_re_sends_but_not_against_worse(central):
    # the social worker found the resident in hospital and the desk closed the silence; the meter node, which does
    # not hear of it, re-sent it five minutes later, and the central opened it again: her family, just told it was
    # handled, got the urgent alarm once more, and the social worker the escalation
    meter = central.register(METER, "meter", contacts=METER_CONTACTS)
    kiosk = central.register("cbxc-north-gate-kiosk", "kiosk")
    silence = {"kind": "inactivity", "recipients": ["family"], "severity": "warning"}
    helped = {"kind": "help_requested", "recipients": ["property_management"], "severity": "warning"}
    start = time.time() - 60
    central.post_events(meter, [alert_event(METER, "b12-301:inactivity", "raised", 1, wall_time=start, **silence)])
    central.post_events(kiosk, [alert_event("cbxc-north-gate-kiosk", "help-1", "raised", 1, wall_time=start, **helped)])
    for alert in central.alerts():
        act(central, alert["id"], "resolve", note="社工已上门：老人在医院")
    resent = {"wall_time": time.time() + 1, "payload": {"renotify": True}}
    central.post_events(meter, [alert_event(METER, "b12-301:inactivity", "updated", 2, **resent, **silence)])
    central.post_events(kiosk, [alert_event("cbxc-north-gate-kiosk", "help-1", "updated", 2, **resent, **helped)])
    assert [a["state"] for a in central.alerts("all")] == ["resolved", "resolved"]  # the re-sends: history only
    assert sorted(a["count"] for a in central.alerts("all")) == [2, 2]
    # something new from the detector still opens it: the silence reached its urgent limit; another resident
    # pressed the kiosk's help button while the kiosk still held the first request open (an update, not a raise)
    worse = {**silence, "severity": "urgent", "wall_time": time.time() + 2}
    central.post_events(meter, [alert_event(METER, "b12-301:inactivity", "updated", 3, **worse)])
    pressed = {**helped, "wall_time": time.time() + 2, "payload": {"source": "button"}}
    central.post_events(kiosk, [alert_event("cbxc-north-gate-kiosk", "help-1", "updated", 3, **pressed)])
    again = [a for a in central.alerts("all") if a["state"] == "open"]
    assert sorted((a["kind"], a["occurrence"], a["severity"]) for a in again) == [
        ("help_requested", 2, "warning"),
        ("inactivity", 2, "urgent"),
    ]


def test_words_for_the_people_told_go_with_a_resolution_only(central, lift):
    central.post_events(lift, [alert_event(LIFT, "incident-tell", "raised", 1)])
    (alert,) = central.alerts()
    refused = act(central, alert["id"], "ack", tell="我们在处理")
    assert refused.status_code == 422 and "tell: Extra inputs are not permitted" in refused.text, refused.text
    done = act(central, alert["id"], "resolve", note="desk only", tell="乘客已安全离开").json()
    assert (done["resolve_note"], done["resolve_tell"]) == ("desk only", "乘客已安全离开")


def test_same_alert_id_on_two_nodes_are_two_alerts(central, lift):
    meter = central.register(METER, "meter", contacts=METER_CONTACTS)
    incident = "same-id-on-purpose"
    central.post_events(lift, [alert_event(LIFT, incident, "raised", 1)])
    central.post_events(meter, [alert_event(METER, incident, "raised", 1, kind="no_water_use")])
    assert {a["node_id"] for a in central.alerts()} == {LIFT, METER}


def test_replayed_alert_events_do_not_count_twice(central, lift):
    batch = [alert_event(LIFT, "incident-1", "raised", 1), alert_event(LIFT, "incident-1", "updated", 2)]
    central.post_events(lift, batch)
    central.post_events(lift, batch)
    (alert,) = central.alerts()
    assert alert["count"] == 2


def test_non_urgent_alert_reaches_every_recipient_with_their_contacts(central, lift):
    central.post_events(lift, [alert_event(LIFT, "door-fault", "raised", 1, severity="warning", kind="door_fault")])
    (alert,) = central.alerts()
    assert alert["recipients"] == ["property_management", "maintenance"]
    assert [n["role"] for n in alert["notified"]] == ["property_management", "maintenance"]
    assert alert["notified"][1]["contacts"] == LIFT_CONTACTS["maintenance"]
    assert alert["notified"][0]["at"] == alert["opened_at"] and alert["escalation"] is None


def test_urgent_alert_escalates_to_the_social_worker_when_nobody_acknowledges(make_central):
    central = make_central(escalation={"after_s": 900})
    meter = central.register(METER, "meter", contacts=METER_CONTACTS)
    event = alert_event(METER, "silence-1", "raised", 1, kind="no_water_use", recipients=["family", "social_worker"])
    central.post_events(meter, [event])
    (alert,) = central.alerts()
    assert [n["role"] for n in alert["notified"]] == ["family"]
    assert alert["notified"][0]["contacts"] == METER_CONTACTS["family"]
    assert alert["escalation"]["state"] == "pending" and alert["escalation"]["after_s"] == 900
    central.clock.advance(899)
    assert central.alerts()[0]["escalation"]["state"] == "pending"
    central.clock.advance(2)
    (alert,) = central.alerts()
    assert alert["escalation"]["state"] == "escalated"
    assert [(n["role"], n["at"]) for n in alert["notified"]] == [
        ("family", alert["opened_at"]),
        ("social_worker", alert["opened_at"] + 900),
    ]
    assert alert["notified"][1]["contacts"] == METER_CONTACTS["social_worker"]


def test_acknowledging_in_time_holds_the_escalation_back(central):
    meter = central.register(METER, "meter", contacts=METER_CONTACTS)
    event = alert_event(
        METER, "silence-2", "raised", 1, kind="no_water_use", recipients=["family"], payload={"escalate_after_s": 60}
    )
    central.post_events(meter, [event])
    (alert,) = central.alerts()
    assert alert["escalation"]["after_s"] == 60 and alert["escalation"]["roles"] == ["social_worker"]
    act(central, alert["id"], "ack", by="王丽 Wang Li")
    central.clock.advance(3600)
    (alert,) = central.alerts("acknowledged")
    assert alert["escalation"]["state"] == "not_needed"
    assert [n["role"] for n in alert["notified"]] == ["family"]


def test_bad_alert_id_and_action_body_are_refused(central, lift):
    assert act(central, 99999, "ack").status_code == 404
    bad = requests.post(f"{central.url}/api/v1/alerts/abc/ack", headers=central.operator_headers, timeout=10)
    assert bad.status_code == 422 and bad.json()["fields"] == ["alert"]
    central.post_events(lift, [alert_event(LIFT, "x1", "raised", 1)])
    (alert,) = central.alerts()
    wrong = act(central, alert["id"], "ack", who="nobody")
    assert wrong.status_code == 422 and wrong.json()["fields"] == ["who"]
    assert central.alerts()[0]["state"] == "open"


def test_alert_state_filter_is_validated(central):
    answer = requests.get(
        f"{central.url}/api/v1/alerts", params={"state": "closed"}, headers=central.operator_headers, timeout=10
    )
    assert answer.status_code == 422 and answer.json()["fields"] == ["state"]


# ------------------------------------------------------------------------------------ the pure schedule
ESCALATION = EscalationSection(after_s=600.0, later_roles=("social_worker",))


def schedule(**overrides):
    args = {
        "severity": "urgent",
        "recipients": ["family", "social_worker"],
        "payload": {},
        "opened_at": 1000.0,
        "handled_at": None,
        "now": 1000.0,
        "escalation": ESCALATION,
    }
    return notifications(**{**args, **overrides})


def test_schedule_holds_back_later_roles_until_due():
    assert [n["role"] for n in schedule()["notified"]] == ["family"]
    assert schedule(now=1599.9)["escalation"]["state"] == "pending"
    due = schedule(now=1600.0)
    assert due["escalation"]["state"] == "escalated" and due["notified"][1] == {"role": "social_worker", "at": 1600.0}


def test_schedule_handled_after_due_still_escalated():
    late = schedule(now=2000.0, handled_at=1700.0)
    assert late["escalation"]["state"] == "escalated"
    assert schedule(now=2000.0, handled_at=1500.0)["escalation"]["state"] == "not_needed"


def test_schedule_without_escalation():
    warning = schedule(severity="warning")
    assert warning["escalation"] is None and [n["role"] for n in warning["notified"]] == ["family", "social_worker"]
    only_later = schedule(recipients=["social_worker"])  # nobody to notify first: everyone at once
    assert only_later["escalation"] is None and only_later["notified"] == [{"role": "social_worker", "at": 1000.0}]
    bad_delay = schedule(payload={"escalate_after_s": "soon"})
    assert bad_delay["escalation"]["after_s"] == 600.0
