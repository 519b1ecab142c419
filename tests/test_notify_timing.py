"""Escalation timing against the central's own clock (injected, moved forward by the test) and live loopback
receivers: every scheduled notification goes out at its time per role and site, reaches a live receiver within
5 s, is retried until it does, and is recorded once with the time it really happened; an acknowledgement in time
stops the escalation; a resolution during retries drops what was not sent; a restart (clean, or SIGKILL mid-
attempt) neither loses nor duplicates a delivery (the Idempotency-Key is the same on every attempt)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import requests

from community.receivers import WebhookReceiver
from tests.fixtures.central import CLAIM_KEY, OTHER_SITE, SITE, wire_event
from tests.test_central_durability import _free_port
from tests.test_notify_delivery import CONTACTS, METER, eventually

SECRET = "webhook-signing-secret-0001"
OTHER_METER = "sprd-b3-meters"
AFTER_S = 600


def section(hooks: WebhookReceiver, sms_url: str | None = None, **extra: Any) -> dict:
    sms = sms_url or hooks.url("/sms")
    return {"retry_min_s": 0.2, "retry_max_s": 1.0, "timeout_s": 1.0, "tick_s": 0.05, **extra, "channels": [
        {"id": "family-hook", "type": "webhook", "roles": ["family"], "url": hooks.url("/hook"), "secret": SECRET},
        {"id": "sw-sms-xincun", "type": "sms", "roles": ["social_worker"], "sites": [SITE], "url": sms + "-xincun",
         "secret": SECRET},
        {"id": "sw-sms-siping", "type": "sms", "roles": ["social_worker"], "sites": [OTHER_SITE],
         "url": sms + "-siping", "secret": SECRET},
    ]}  # fmt: skip


def raise_alert(central, token: str, node: str, flat: str, severity: str = "urgent") -> str:
    alert_id = f"{flat}:inactivity"
    event = wire_event(node, kind="inactivity", severity=severity, state="raised", priority="alert",
                       alert_id=alert_id, payload={"resident": flat, "silence_h": 12.5},
                       recipients=["family", "social_worker"] if severity == "urgent" else ["family"])  # fmt: skip
    assert central.post_events(token, [event]).status_code == 200
    return alert_id


def alert_of(central, flat: str) -> dict:
    (found,) = [a for a in central.alerts("all") if (a.get("payload") or {}).get("resident") == flat]
    return central.get(f"/alerts/{found['id']}")


def first_delivery(alert: dict) -> dict:
    """The alert's first delivery, or {} before the notifier has made it (it works beside the request)."""
    return (alert["deliveries"] or [{}])[0]


def escalated(alert: dict) -> list[dict]:
    return [d for d in alert["deliveries"] if d["reason"] == "escalated"]


def probe(central, token: str, hooks: WebhookReceiver, flat: str) -> None:
    """A fresh warning to the family, waited for: the notifier has planned everything due by the clock now (it
    plans every active alert in the scan that planned this one, before it sends anything)."""
    before = len([r for r in hooks.received if r.path == "/hook"])
    raise_alert(central, token, METER, flat, severity="warning")
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) > before, 5.0)


def test_escalations_go_out_on_time_by_the_centrals_clock_per_site_and_are_recorded_once(make_central, hooks):
    central = make_central(notify=section(hooks), escalation={"after_s": AFTER_S})
    xincun = central.register(METER, "meter", contacts=CONTACTS)
    siping = central.register(OTHER_METER, "meter", site=OTHER_SITE, contacts=CONTACTS)
    raise_alert(central, xincun, METER, "B12-301")
    central.clock.advance(300)
    raise_alert(central, siping, OTHER_METER, "B3-102")  # its escalation is due 300 s after the first one's
    central.clock.advance(AFTER_S - 300 - 1)  # one second before the first is due
    probe(central, xincun, hooks, "B12-999")
    assert not escalated(alert_of(central, "B12-301")) and not [r for r in hooks.received if r.path.startswith("/sms")]
    for flat, path in (("B12-301", "/sms-xincun"), ("B3-102", "/sms-siping")):
        due = alert_of(central, flat)["escalation"]["due_at"]
        central.clock.advance(due - central.clock.wall() + 0.01)  # the moment it is due
        moved = time.monotonic()
        assert hooks.wait_for(lambda got, p=path: any(r.path == p for r in got), 5.0), f"{flat}: nothing in 5 s"
        print(f"{flat}: escalation received {time.monotonic() - moved:.2f} s after it came due")
        assert eventually(lambda f=flat: "social_worker" in alert_of(central, f)["told"])
        (d,) = escalated(alert_of(central, flat))
        assert d["channel"] == ("sw-sms-xincun" if path == "/sms-xincun" else "sw-sms-siping")
        assert d["due_at"] == pytest.approx(due) and due <= d["sent_at"] < due + 5.0 and d["attempts"] == 1
    # one SMS per alert, each to its own site's gateway, and nothing else
    assert sorted(r.path for r in hooks.received if r.path.startswith("/sms")) == ["/sms-siping", "/sms-xincun"]
    first = alert_of(central, "B12-301")
    central.clock.advance(6 * 3600)
    later = alert_of(central, "B12-301")  # read six hours on: every time is what was recorded, not recomputed
    assert later["told"] == first["told"] and later["deliveries"] == first["deliveries"]


def test_an_escalation_due_while_the_gateway_is_down_goes_out_when_it_is_back(make_central, hooks):
    down = WebhookReceiver()
    sms_url, port = down.url("/sms"), down.port
    down.stop()  # connections refused
    central = make_central(notify=section(hooks, sms_url), escalation={"after_s": AFTER_S})
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_alert(central, token, METER, "B12-301")
    central.clock.advance(AFTER_S + 1)
    assert eventually(lambda: sum(d["attempts"] for d in escalated(alert_of(central, "B12-301"))) >= 2, 10.0)
    gateway = WebhookReceiver(port).start()
    try:
        back = time.monotonic()
        assert gateway.wait_for(lambda got: len(got) == 1, 5.0)
        print(f"delivered {time.monotonic() - back:.2f} s after the gateway came back")
        assert eventually(lambda: escalated(alert_of(central, "B12-301"))[0]["state"] == "sent")
        alert = alert_of(central, "B12-301")
        (d,) = escalated(alert)
        assert [a["ok"] for a in d["attempt_log"]][-1] and not any(a["ok"] for a in d["attempt_log"][:-1])
        assert all("ConnectionError" in a["detail"] for a in d["attempt_log"][:-1])
        # the time it was told is the time the gateway got it (the central's clock runs AFTER_S + 1 s ahead)
        offset = central.clock.wall() - time.time()
        assert alert["told"]["social_worker"]["at"] - offset == pytest.approx(gateway.received[0].at, abs=1.0)
        assert len(gateway.received) == 1
    finally:
        gateway.stop()


def test_an_alert_acknowledged_in_time_sends_no_escalation(make_central, hooks):
    central = make_central(notify=section(hooks), escalation={"after_s": AFTER_S})
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_alert(central, token, METER, "B12-301")
    alert = alert_of(central, "B12-301")
    central.clock.advance(AFTER_S - 60)
    acked = requests.post(f"{central.url}/api/v1/alerts/{alert['id']}/ack", json={"by": "李敏", "note": "电话已通"},
                          headers=central.operator_headers, timeout=10)  # fmt: skip
    assert acked.status_code == 200, acked.text
    central.clock.advance(3600)  # long past when it would have been due
    probe(central, token, hooks, "B12-999")
    alert = alert_of(central, "B12-301")
    assert alert["escalation"]["state"] == "not_needed" and not escalated(alert)
    assert not [r for r in hooks.received if r.path.startswith("/sms")]


def test_a_resolution_during_retries_drops_what_was_not_sent_and_says_when(make_central, hooks):
    """What a family expects: an alarm about something already over is never sent late (it would frighten them
    for nothing); the delivery log says it was not sent and when it ended, and the rest goes on as usual."""
    hooks.fail_next(10_000, status=503, path="/hook")
    central = make_central(notify=section(hooks))
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_alert(central, token, METER, "B12-301", severity="warning")
    alert = alert_of(central, "B12-301")
    assert eventually(lambda: first_delivery(alert_of(central, "B12-301")).get("attempts", 0) >= 2, 10.0)
    resolved_at = central.clock.wall()
    done = requests.post(f"{central.url}/api/v1/alerts/{alert['id']}/resolve", json={"note": "社工上门，老人平安"},
                         headers=central.operator_headers, timeout=10)  # fmt: skip
    assert done.status_code == 200, done.text
    assert eventually(lambda: first_delivery(alert_of(central, "B12-301")).get("state") == "dropped", 5.0)
    hooks.fail_next(0)  # the receiver is healthy again
    probe(central, token, hooks, "B12-999")  # other alerts are told as usual
    (d,) = alert_of(central, "B12-301")["deliveries"]
    assert d["state"] == "dropped" and "resolved first" in d["last_error"] and d["sent_at"] is None
    assert resolved_at <= d["ended_at"] < resolved_at + 5.0
    assert not [r for r in hooks.delivered() if r.headers.get("Idempotency-Key") == d["key"]]
    assert "family" not in alert_of(central, "B12-301")["told"]


def test_a_restart_mid_retry_neither_loses_nor_repeats_the_delivery(make_central, hooks):
    hooks.fail_next(10_000, status=503, path="/hook")
    central = make_central(notify=section(hooks))
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_alert(central, token, METER, "B12-301", severity="warning")
    assert eventually(lambda: first_delivery(alert_of(central, "B12-301")).get("attempts", 0) >= 2, 10.0)
    central.stop()
    hooks.fail_next(0)
    central.start()
    started = time.monotonic()
    assert hooks.wait_for(lambda got: any(r.answered == 200 for r in got), 5.0)
    print(f"delivered {time.monotonic() - started:.2f} s after the restart")
    assert eventually(lambda: first_delivery(alert_of(central, "B12-301")).get("state") == "sent")
    (d,) = alert_of(central, "B12-301")["deliveries"]
    assert len(d["attempt_log"]) == d["attempts"] == len(hooks.received)  # every attempt recorded, once
    assert {r.headers["Idempotency-Key"] for r in hooks.received} == {d["key"]}
    assert len(hooks.delivered()) == 1


def _serve(central, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "central", "serve", "--config", str(central.config_path), "--db",
         str(central.db_path), "--port", str(port), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/api/v1/health", timeout=2)
            return
        except requests.ConnectionError:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "central serve did not answer"
            time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_mid_attempt_the_restarted_central_resends_with_the_same_key(make_central, hooks):
    """The worst moment: the receiver has the message but the central dies before it hears the answer. The
    restarted central sends it again (it cannot know), with the same Idempotency-Key: a receiver that drops
    repeats shows it once, and the central records one delivery."""
    central = make_central(start=False, notify=section(hooks, timeout_s=0.5))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    arrived, release = hooks.hold_next("/hook")
    proc = _serve(central, port)
    try:
        _up(url, proc)
        body = {"claim_key": CLAIM_KEY, "node_id": METER, "role": "meter", "site": SITE, "contacts": CONTACTS}
        token = requests.post(f"{url}/api/v1/nodes/register", json=body, timeout=5).json()["token"]
        event = wire_event(METER, kind="inactivity", severity="warning", state="raised", priority="alert",
                           alert_id="B12-301:inactivity", recipients=["family"], payload={"resident": "B12-301"})  # fmt: skip
        posted = requests.post(f"{url}/api/v1/events", json={"node_wall_time": time.time(), "events": [event]},
                               headers={"Authorization": f"Bearer {token}"}, timeout=5)  # fmt: skip
        assert posted.status_code == 200
        assert arrived.wait(10), "the receiver never got the first attempt"
        os.kill(proc.pid, signal.SIGKILL)  # the receiver holds the message; the central dies waiting for the answer
        proc.wait(10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    proc = _serve(central, port)
    try:
        _up(url, proc)
        assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/hook"]) == 2, 15.0)
        alerts = requests.get(f"{url}/api/v1/alerts?state=all", headers=central.operator_headers, timeout=5).json()
        alert_id = alerts["alerts"][0]["id"] if isinstance(alerts, dict) else alerts[0]["id"]

        def delivery() -> dict:
            got = requests.get(f"{url}/api/v1/alerts/{alert_id}", headers=central.operator_headers, timeout=5)
            return first_delivery(got.json())

        assert eventually(lambda: delivery().get("state") == "sent", 5.0)
        d = delivery()
        keys = {r.headers["Idempotency-Key"] for r in hooks.received}
        assert keys == {d["key"]} and len(hooks.unique("/hook")) == 1  # the repeat carries the same key
        assert d["attempts"] == 1  # the killed attempt was never recorded; the one that was heard is
    finally:
        proc.terminate()
        proc.wait(10)
