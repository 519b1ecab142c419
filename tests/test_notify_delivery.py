"""Notifications really go out: the real central's notifier to real receivers on loopback (an HTTP server
answering as a webhook, robots and an SMS gateway; an SMTP server), with failures, an outage and escalation."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests

from central.notify.channels import verify
from central.notify.worker import RateLimit
from community.receivers import MailReceiver, WebhookReceiver
from tests.conftest import eventually
from tests.fixtures.central import wire_event

SECRET = "webhook-signing-secret-0001"
METER = "cbxc-b12-meters"
CONTACTS = {
    "family": [{"name": "王丽", "phone": "13800000001"}],
    "social_worker": [{"name": "张社工", "phone": "13900000002"}],
}


@pytest.fixture
def mail():
    receiver = MailReceiver().start()
    yield receiver
    receiver.stop()


def notify_section(hooks: WebhookReceiver, mail: MailReceiver | None = None, **extra) -> dict:
    channels: list[dict[str, Any]] = [
        {"id": "family-hook", "type": "webhook", "roles": ["family"], "url": hooks.url("/hook"), "secret": SECRET},
        {"id": "sw-sms", "type": "sms", "roles": ["social_worker"], "url": hooks.url("/sms"), "secret": SECRET},
        {"id": "desk-wecom", "type": "wecom", "roles": ["property_management"], "url": hooks.url("/wecom?key=K")},
    ]
    if mail is not None:
        channels.append({"id": "sw-mail", "type": "email", "roles": ["social_worker"], "smtp_host": "127.0.0.1",
                         "smtp_port": mail.port, "from_addr": "central@changbai.test", "to": ["sw@changbai.test"]})  # fmt: skip
    return {"retry_min_s": 0.2, "retry_max_s": 1.0, "timeout_s": 2.0, "tick_s": 0.1, "channels": channels, **extra}


def raise_silence(central, token: str, severity: str = "urgent", alert_id: str = "b12-301:inactivity", **payload):
    """An inactivity alert as the meter node sends it: the social worker is named once it is urgent."""
    event = wire_event(
        METER,
        kind="inactivity",
        severity=severity,
        state="raised",
        priority="alert",
        alert_id=alert_id,
        recipients=["family", "social_worker"] if severity == "urgent" else ["family"],
        payload={"resident": "B12-301", "silence_h": 12.5, **payload},
    )
    assert central.post_events(token, [event]).status_code == 200
    return event


def family_sent(central) -> dict | None:
    return next((d for d in only_alert(central)["deliveries"] if d["role"] == "family" and d["state"] == "sent"), None)


def only_cleared(central) -> dict:
    (alert,) = [a for a in central.alerts("all") if a["on_site"] == "cleared"]
    return central.get(f"/alerts/{alert['id']}")


def only_alert(central) -> dict:
    (alert,) = central.alerts("all")
    return central.get(f"/alerts/{alert['id']}")


def delivery_states(central) -> list[str]:
    """The states of the only alert's deliveries; [] before the notifier has planned one (it works beside the
    request), so a wait for a state is not an error then."""
    return [d["state"] for d in only_alert(central)["deliveries"]]


def test_the_family_webhook_arrives_signed_within_5_s_and_its_time_is_recorded(make_central, hooks) -> None:
    central = make_central(notify=notify_section(hooks))
    token = central.register(METER, "meter", location="12号楼", contacts=CONTACTS)
    sent_at = time.time()
    raise_silence(central, token)
    assert hooks.wait_for(lambda got: any(r.path == "/hook" for r in got), timeout_s=5.0)
    took = time.time() - sent_at
    (got,) = [r for r in hooks.received if r.path == "/hook"]
    assert verify(
        SECRET, got.headers["X-Changbai-Timestamp"], got.body, got.headers["X-Changbai-Signature"], time.time()
    )
    body = got.json()
    assert body["kind_zh"] == "长时间未用水" and body["role"] == "family" and body["recipients"][0]["name"] == "王丽"
    assert got.headers["Idempotency-Key"] == body["delivery_id"]
    assert eventually(lambda: family_sent(central))
    alert = only_alert(central)
    told = alert["told"]["family"]
    assert told["channel"] == "family-hook" and abs(told["at"] - got.at) < 1.0, (told, got.at)
    print(f"family webhook delivered {took:.2f} s after the event was posted")
    # the social worker is held back (urgent + escalation): nothing went to the SMS gateway yet
    assert not [r for r in hooks.received if r.path == "/sms"]
    assert alert["escalation"]["state"] == "pending" and "social_worker" not in alert["told"]


def test_a_failing_receiver_is_retried_until_delivered_and_recorded_once(make_central, hooks) -> None:
    hooks.fail_next(3, status=503, retry_after="0", path="/hook")
    central = make_central(notify=notify_section(hooks))
    token = central.register(METER, "meter", contacts=CONTACTS)
    event = raise_silence(central, token, severity="warning")
    assert eventually(lambda: family_sent(central), 10.0)
    # the node sends the same incident again (an update) and replays the first event: still one delivery
    central.post_events(token, [event, {**wire_event(METER), **{k: event[k] for k in ("kind", "alert_id", "recipients", "payload", "priority")},
                                         "state": "updated", "severity": "warning"}])  # fmt: skip
    deliveries = only_alert(central)["deliveries"]
    (family,) = deliveries
    assert family["state"] == "sent" and family["attempts"] == 4
    assert [a["ok"] for a in family["attempt_log"]] == [False, False, False, True]
    assert {a["status"] for a in family["attempt_log"][:3]} == {503}
    keys = {r.headers["Idempotency-Key"] for r in hooks.received if r.path == "/hook"}
    assert keys == {family["key"]}  # every retry carried the same key: a receiver can drop the repeats
    assert len([r for r in hooks.delivered() if r.path == "/hook"]) == 1


def test_a_receiver_that_is_down_gets_it_once_it_is_back(make_central) -> None:
    down = WebhookReceiver()
    port = down.port
    hook_url = down.url("/hook")
    down.stop()  # the port is closed: connections are refused
    section = notify_section(down)
    section["channels"] = [c for c in section["channels"] if c["id"] == "family-hook"]
    central = make_central(notify=section)
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_silence(central, token, severity="warning")

    def failed_attempts() -> int:
        return sum(d["attempts"] for d in only_alert(central)["deliveries"] if d["role"] == "family")

    assert eventually(lambda: failed_attempts() >= 2, 10.0)
    receiver = WebhookReceiver(port).start()
    assert receiver.url("/hook") == hook_url
    try:
        assert receiver.wait_for(lambda got: len(got) == 1, timeout_s=5.0)
        assert eventually(lambda: family_sent(central))
        alert = only_alert(central)
        assert alert["told"]["family"]["at"] >= receiver.received[0].at - 1
        errors = [a["detail"] for d in alert["deliveries"] for a in d["attempt_log"] if not a["ok"]]
        assert errors and all("ConnectionError" in e for e in errors)
    finally:
        receiver.stop()


def test_escalation_reaches_the_social_worker_by_sms_and_email_from_when_it_turned_urgent(make_central, hooks, mail):
    central = make_central(notify=notify_section(hooks, mail), escalation={"after_s": 600})
    token = central.register(METER, "meter", location="12号楼", contacts=CONTACTS)
    raise_silence(central, token, severity="warning")
    assert hooks.wait_for(lambda got: any(r.path == "/hook" for r in got), 5.0)
    central.clock.advance(3 * 3600)  # three hours later the silence turns urgent
    raise_silence(central, token, severity="urgent", silence_h=15.5)
    # the family hears again that it is now urgent; the social worker not yet (10 min from turning urgent)
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) == 2, 5.0)
    assert hooks.received[-1].json()["reason"] == "urgent"
    alert = only_alert(central)
    assert alert["escalation"]["due_at"] == pytest.approx(alert["urgent_at"] + 600)
    assert alert["urgent_at"] >= alert["opened_at"] + 3 * 3600 - 5
    central.clock.advance(601)
    assert hooks.wait_for(lambda got: any(r.path == "/sms" for r in got), 5.0)
    assert mail.wait_for(lambda got: len(got) == 1, 5.0)
    sms = next(r for r in hooks.received if r.path == "/sms").json()
    assert sms["to"] == ["13900000002"] and "无人确认，通知社工" in sms["text"]
    assert mail.messages[0]["To"] == "sw@changbai.test" and "长时间未用水" in mail.messages[0]["Subject"]
    assert eventually(lambda: set(only_alert(central)["told"]) == {"family", "social_worker"})


def test_the_link_acknowledges_the_alert_and_stops_the_escalation(make_central, hooks) -> None:
    central = make_central(notify=notify_section(hooks))
    token = central.register(METER, "meter", location="12号楼", contacts=CONTACTS)
    raise_silence(central, token)
    assert hooks.wait_for(lambda got: any(r.path == "/hook" for r in got), 5.0)
    link = next(r for r in hooks.received if r.path == "/hook").json()["ack_url"]
    assert link.startswith(central.url + "/ack/")
    page = requests.get(link, timeout=5)
    assert page.status_code == 200 and "我去看看" in page.text and "长时间未用水" in page.text
    assert only_alert(central)["state"] == "open"  # opening the link (a preview) changes nothing
    answered = requests.post(link, data={"choice": "going"}, timeout=5)
    assert "已记录" in answered.text
    alert = only_alert(central)
    assert alert["state"] == "acknowledged" and alert["acknowledged_by"] == "王丽（家属，短信链接）"
    assert alert["ack_note"] == "我去看看" and alert["link_answers"][0]["choice"] == "going"
    again = requests.post(link, data={"choice": "going"}, timeout=5)
    assert "之前已经回复过" in again.text and len(only_alert(central)["link_answers"]) == 1
    central.clock.advance(700)  # past the escalation: it was acknowledged in time, nobody else is told
    assert alert["escalation"]["state"] == "not_needed" or only_alert(central)["escalation"]["state"] == "not_needed"
    tampered = link[:-2] + ("AA" if not link.endswith("AA") else "BB")  # the signature's last characters
    assert "链接无效" in requests.get(tampered, timeout=5).text
    central.clock.advance(25 * 3600)
    assert "已过期" in requests.get(link, timeout=5).text


def test_a_daughter_answering_her_link_tells_the_social_worker_escalated_before(make_central, hooks) -> None:
    # before, the social worker told "urgent, nobody acknowledged" never heard that the daughter answered "我去看看"
    # a minute later: both went, or each thought the other would
    central = make_central(notify=notify_section(hooks), escalation={"after_s": 600})
    token = central.register(METER, "meter", location="12号楼", contacts=CONTACTS)
    raise_silence(central, token)
    assert hooks.wait_for(lambda got: any(r.path == "/hook" for r in got), 5.0)
    central.clock.advance(601)
    assert hooks.wait_for(lambda got: any(r.path == "/sms" for r in got), 5.0)
    link = next(r for r in hooks.received if r.path == "/hook").json()["ack_url"]
    assert "已记录" in requests.post(link, data={"choice": "going"}, timeout=5).text
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/sms"]) == 2, 5.0)
    text = [r for r in hooks.received if r.path == "/sms"][-1].json()["text"]
    assert text.startswith("【已有人确认】长时间未用水 · 12号楼 住户 B12-301\n已有人确认 · 通知社工"), text
    assert "王丽（家属，短信链接） 已确认收到" in text and "回复：我去看看" in text
    assert "告警尚未解除，请照原安排处理" in text and "http" not in text  # it asks nothing: no link
    # the daughter, who answered and is the family's one contact, is not told of her own answer
    assert [(d["role"], d["reason"]) for d in only_alert(central)["deliveries"]] == [
        ("family", "opened"), ("social_worker", "escalated"), ("social_worker", "acknowledged")]  # fmt: skip


def test_the_desk_taking_in_an_entrapment_tells_maintenance_to_come_all_the_same(make_central, hooks) -> None:
    lift = "cbxc-b7-u2-lift1"
    section = notify_section(hooks)
    section["channels"].append(
        {"id": "maint-hook", "type": "webhook", "roles": ["maintenance"], "url": hooks.url("/maint"), "secret": SECRET}
    )
    central = make_central(notify=section)
    token = central.register(lift, "elevator", location="7号楼2单元",
                             contacts={"property_management": [{"name": "物业值班", "phone": "021-65430000"}],
                                       "maintenance": [{"name": "维保李工", "phone": "13700000003"}]})  # fmt: skip
    central.post_events(token, [wire_event(lift, kind="entrapment", severity="urgent", state="raised",
                                           priority="alert", alert_id="trapped",
                                           recipients=["property_management", "maintenance"],
                                           payload={"seconds_trapped": 95.0, "in_door_zone": False})])  # fmt: skip
    assert eventually(lambda: set(only_alert(central)["told"]) == {"property_management", "maintenance"})
    number = only_alert(central)["id"]
    acked = requests.post(f"{central.url}/api/v1/alerts/{number}/ack", json={"note": "乘客情绪激动，已安抚"},
                          headers=central.operator_headers, timeout=10)  # fmt: skip
    assert acked.status_code == 200, acked.text
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/maint"]) == 2, 5.0)
    told = [r for r in hooks.received if r.path == "/maint"][-1].json()
    assert told["reason"] == "acknowledged" and told["ack_url"] is None
    assert told["title"] == "【已有人确认】电梯困人 · 7号楼2单元"
    assert told["lines"][2].endswith(f"{central.operator_name} 已确认收到")
    assert told["lines"][3:] == ["告警尚未解除，请照原安排处理", "到场时限不变：报警后 30 分钟内"]
    assert "情绪" not in told["text"]  # the desk's note stays at the desk
    # the desk's group hears it too: whoever else is on duty learns who has it
    assert hooks.wait_for(lambda got: len([r for r in got if r.path.startswith("/wecom")]) == 2, 5.0)


def clear_silence(central, token: str, reason: str, alert_id: str = "b12-301:inactivity", urgent: bool = True) -> None:
    """The meter node's clear of the silence alert (its payload says only why; its recipients the alert's)."""
    event = wire_event(METER, kind="inactivity", severity="info", state="cleared", priority="alert",
                       alert_id=alert_id, recipients=["family", "social_worker"] if urgent else ["family"],
                       payload={"reason": reason})  # fmt: skip
    assert central.post_events(token, [event]).status_code == 200


def family_told_of_a_silence(make_central, hooks):
    """A central escalating after 10 min whose family was told of an urgent silence: (central, the meter's token)."""
    central = make_central(notify=notify_section(hooks), escalation={"after_s": 600})
    token = central.register(METER, "meter", location="12号楼", contacts=CONTACTS)
    raise_silence(central, token)
    assert hooks.wait_for(lambda got: any(r.path == "/hook" for r in got), 5.0)
    return central, token


def test_the_all_clear_reaches_who_was_told_and_a_silence_over_before_its_escalation_reaches_nobody_else(
    make_central, hooks
) -> None:
    # before, the daughter told at 02:00 of a silence heard nothing more when her mother used water at 06:30, and
    # the social worker was still told "urgent, nobody acknowledged" ten minutes later
    central, token = family_told_of_a_silence(make_central, hooks)
    clear_silence(central, token, "use")
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) == 2, 5.0)
    told = hooks.received[-1].json()
    assert (
        told["reason"] == "cleared" and told["ack_url"] is None and told["title"].startswith("【已解除】长时间未用水")
    )
    assert "现场已解除：又用水了" in told["lines"] and any(line.startswith("解除于 ") for line in told["lines"])
    alert = only_alert(central)
    assert alert["escalation"]["state"] == "not_needed"
    assert alert["reasons"] == ["现场已解除：又用水了", "已 12 小时 30 分 没有用水"]  # why it ended, then what it was
    central.clock.advance(700)  # past the escalation's time: nobody else is told
    raise_silence(central, token, alert_id="b12-402:inactivity", resident="B12-402")  # a later alert's message
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) == 3, 5.0)
    assert [r.path for r in hooks.received].count("/sms") == 0  # the second alert's social worker is not yet due
    assert [d["reason"] for d in only_cleared(central)["deliveries"]] == ["opened", "cleared"]


def test_the_desk_resolving_a_moment_after_the_clear_does_not_swallow_the_all_clear(make_central, hooks) -> None:
    # the main job's operator resolved the freed passenger's alert a second after the door opened: no all-clear went
    central = make_central(notify=notify_section(hooks))
    token = central.register(METER, "meter", location="12号楼", contacts=CONTACTS)
    raise_silence(central, token, severity="warning")
    assert hooks.wait_for(lambda got: any(r.path == "/hook" for r in got), 5.0)
    notifier = central._server.app.state.notifier
    scan, notifier._scan = notifier._scan, lambda now: None  # the desk is quicker than the notifier's next look
    clear_silence(central, token, "use", urgent=False)
    resolve(central, note="她用水了")
    notifier._scan = scan
    notifier.rescan()
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) == 2, 10.0)
    assert hooks.received[-1].json()["reason"] == "cleared"


def resolve(central, tell: str = "", note: str = "", alert: int | None = None) -> dict:
    """The desk closes the only alert (or ``alert``): ``tell`` goes to the people told of it, ``note`` stays."""
    number = only_alert(central)["id"] if alert is None else alert
    done = requests.post(f"{central.url}/api/v1/alerts/{number}/resolve", json={"note": note, "tell": tell},
                         headers=central.operator_headers, timeout=10)  # fmt: skip
    assert done.status_code == 200, done.text
    return done.json()


def test_a_person_closing_an_alert_the_node_has_not_cleared_tells_who_was_told_with_the_note(
    make_central, hooks
) -> None:
    # before, the daughter told at 02:00 of a silence heard nothing when the social worker found her mother well in
    # hospital and the desk closed the alert: only her mother's next water use (days later) would have said so
    central, token = family_told_of_a_silence(make_central, hooks)
    resolve(central, tell="社工已联系上，老人在医院复诊，平安", note="女儿的电话一直占线")  # the note stays at the desk
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) == 2, 5.0)
    told = hooks.received[-1].json()
    assert told["reason"] == "resolved" and told["ack_url"] is None
    assert told["title"].startswith("【已处理】长时间未用水 · 12号楼")
    assert (
        told["lines"][0] == "已处理完毕 · 通知家属" and "处理说明：社工已联系上，老人在医院复诊，平安" in told["lines"]
    )
    assert any(line.endswith("处理并关闭") for line in told["lines"]) and "请" not in told["text"]  # asks nothing
    assert "占线" not in told["text"]
    page = requests.get(hooks.received[0].json()["ack_url"], timeout=5).text  # the alarm's link, opened late
    assert "不需要您再回复" in page and "处理说明：社工已联系上" in page and "<button" not in page
    assert "占线" not in page
    central.clock.advance(700)  # past the escalation: the social worker, never told, is not told it is over
    clear_silence(central, token, "use")  # her water, later: the family already knows it is over
    raise_silence(central, token, alert_id="b12-402:inactivity", resident="B12-402")  # a later alert's message
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) == 3, 5.0)
    assert [r.path for r in hooks.received].count("/sms") == 0
    assert [d["reason"] for d in only_cleared(central)["deliveries"]] == ["opened", "resolved"]


def test_a_help_request_the_kiosk_closed_on_its_timer_and_a_superseded_silence_send_no_all_clear(
    make_central, hooks
) -> None:
    central = make_central(notify=notify_section(hooks))
    kiosk = central.register("cbxc-north-gate-kiosk", "kiosk", location="北门",
                             contacts={"property_management": [{"name": "物业值班", "phone": "021-65430000"}]})  # fmt: skip
    help_event: dict[str, Any] = {
        "kind": "help_requested",
        "priority": "alert",
        "alert_id": "help-1",
        "recipients": ["property_management"],
    }
    central.post_events(kiosk, [wire_event("cbxc-north-gate-kiosk", severity="warning", state="raised",
                                           payload={"source": "button", "kiosk_state": "idle"}, **help_event)])  # fmt: skip
    assert hooks.wait_for(lambda got: any(r.path.startswith("/wecom") for r in got), 5.0)
    central.post_events(kiosk, [wire_event("cbxc-north-gate-kiosk", severity="info", state="cleared",
                                           payload={"why": "help_clear_s passed on the kiosk"}, **help_event)])  # fmt: skip
    meter = central.register(METER, "meter", location="12号楼", contacts=CONTACTS)
    raise_silence(central, meter, severity="warning")
    assert hooks.wait_for(lambda got: any(r.path == "/hook" for r in got), 5.0)
    clear_silence(
        central, meter, "superseded", urgent=False
    )  # a newer silence took over: its own alert tells the family
    raise_silence(central, meter, severity="warning", alert_id="b12-301:inactivity:2")
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) == 2, 5.0)
    assert [r.json()["reason"] for r in hooks.received if r.path == "/hook"] == ["opened", "opened"]
    assert len([r for r in hooks.received if r.path.startswith("/wecom")]) == 1
    # the desk's resolution is what says help came: the property desk is told that, with the note
    (help_alert,) = [a for a in central.alerts("all") if a["kind"] == "help_requested"]
    resolve(central, tell="保安已陪老人上车", alert=help_alert["id"])
    assert hooks.wait_for(lambda got: len([r for r in got if r.path.startswith("/wecom")]) == 2, 5.0)
    said = hooks.received[-1].json()["text"]["content"]
    assert "【已处理】叫车屏求助" in said and "处理说明：保安已陪老人上车" in said, said


def test_an_entrapment_goes_before_a_flood_of_warnings_a_robots_rate_limit_holds_back(make_central, hooks) -> None:
    # a robot takes about 20 messages a minute: 100 nodes gone silent at once (a compound's network) held an
    # entrapment raised meanwhile behind all of them, 5 minutes; here 1 every 2 s, and three warnings first
    lift = "cbxc-b7-u2-lift1"
    central = make_central(notify=notify_section(hooks))
    central._server.app.state.notifier._limits["desk-wecom"] = RateLimit(1, window_s=2.0)
    token = central.register(lift, "elevator", location="7号楼2单元",
                             contacts={"property_management": [{"name": "物业值班", "phone": "021-65430000"}]})  # fmt: skip
    for n in range(3):
        central.post_events(token, [wire_event(lift, kind="door_held_open", severity="warning", state="raised",
                                               priority="alert", alert_id=f"held-{n}", payload={"seconds": 80.0 + n},
                                               recipients=["property_management"])])  # fmt: skip
    assert hooks.wait_for(lambda got: len([r for r in got if r.path.startswith("/wecom")]) == 1, 5.0)
    central.post_events(token, [wire_event(lift, kind="entrapment", severity="urgent", state="raised",
                                           priority="alert", alert_id="trapped", recipients=["property_management"],
                                           payload={"seconds_trapped": 95.0, "in_door_zone": False})])  # fmt: skip
    assert hooks.wait_for(lambda got: len([r for r in got if r.path.startswith("/wecom")]) == 4, 20.0)
    said = [r.json()["text"]["content"].splitlines()[0] for r in hooks.received if r.path.startswith("/wecom")]
    # the next place (a warning was out when it was raised); before, the last message
    assert said.index("【紧急】电梯困人 · 7号楼2单元") == 1, said


def test_robots_get_their_json_and_an_errcode_is_retried(make_central, hooks) -> None:
    hooks.fail_next(1, status=200, body=b'{"errcode":93000,"errmsg":"invalid webhook url"}', path="/wecom")
    central = make_central(notify=notify_section(hooks))
    token = central.register("cbxc-b7-u2-lift1", "elevator", location="7号楼2单元",
                             contacts={"property_management": [{"name": "物业值班", "phone": "021-65430000"}]})  # fmt: skip
    event = wire_event("cbxc-b7-u2-lift1", kind="entrapment", severity="urgent", state="raised", priority="alert",
                       alert_id=str(uuid.uuid4()), recipients=["property_management"],
                       payload={"seconds_trapped": 95.0, "in_door_zone": False, "label_zh": "非平层关人"})  # fmt: skip
    central.post_events(token, [event])
    assert hooks.wait_for(lambda got: len([r for r in got if r.path.startswith("/wecom")]) == 2, 5.0)
    body = hooks.received[-1].json()
    assert eventually(lambda: delivery_states(central) == ["sent"])
    assert body["msgtype"] == "text" and "电梯困人" in body["text"]["content"]
    assert "停在两层之间" in body["text"]["content"] and body["text"]["mentioned_mobile_list"] == ["02165430000"]
    (d,) = only_alert(central)["deliveries"]
    assert d["state"] == "sent" and "errcode 93000" in d["attempt_log"][0]["detail"]
