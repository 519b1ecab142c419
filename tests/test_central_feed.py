"""Central: reads that cost a page (nodes by site and status with a cursor, alerts with a cursor, the summary)
and the change feed (cursor poll and server-sent events) a console follows instead of downloading every node."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from central.kinds import clock_text
from tests.fixtures.central import OTHER_SITE, SITE, wire_event

pytestmark = pytest.mark.both_engines

LIFT, METER = "cbxc-b7-u2-lift1", "cbxc-b12-meters"
URGENT = {"severity": "urgent", "state": "raised", "priority": "alert", "recipients": ["maintenance"]}


def test_nodes_come_in_pages_filtered_by_site_and_status(central):
    tokens = {f"cbxc-n{i:02d}": central.register(f"cbxc-n{i:02d}", site=SITE) for i in range(7)}
    central.register("spr-n00", site=OTHER_SITE)
    first = central.get("/nodes", site=SITE, limit=3)
    assert [n["node_id"] for n in first["nodes"]] == ["cbxc-n00", "cbxc-n01", "cbxc-n02"]
    assert first["next_after"] == "cbxc-n02"
    rest = central.get("/nodes", site=SITE, limit=5, after=first["next_after"])
    assert [n["node_id"] for n in rest["nodes"]] == [f"cbxc-n{i:02d}" for i in range(3, 7)]
    assert rest["next_after"] is None  # a short page is the last
    assert len(central.nodes()) == 8
    central.post_events(tokens["cbxc-n03"], [wire_event("cbxc-n03", 1), wire_event("cbxc-n03", 5)])  # 2-4 lost
    for node_id in ("cbxc-n00", "cbxc-n01"):
        central.post_events(tokens[node_id], [wire_event(node_id, 1)])
    lost = central.get("/nodes", status="lost_events")["nodes"]
    assert [(n["node_id"], n["seq_missing"]) for n in lost] == [("cbxc-n03", 3)]
    stale = {n["node_id"] for n in central.get("/nodes", status="stale", site=SITE)["nodes"]}
    assert stale == {f"cbxc-n{i:02d}" for i in (2, 4, 5, 6)}  # never heard from
    attention = {n["node_id"] for n in central.get("/nodes", status="attention", site=SITE)["nodes"]}
    assert attention == stale | {"cbxc-n03"}
    summary = central.get("/summary")
    ours = next(s for s in summary["sites"] if s["site"] == SITE)
    assert (ours["nodes"], ours["stale"], ours["with_lost_events"], ours["events_lost"]) == (7, 4, 1, 3)
    assert summary["alerts"] == {"open": 0, "acknowledged": 0}


def test_alerts_come_in_pages_newest_first(central):
    token = central.register(LIFT)
    central.post_events(
        token, [wire_event(LIFT, i, kind="entrapment", alert_id=f"a{i}", **URGENT) for i in range(1, 6)]
    )
    page = central.get("/alerts", state="active", limit=2)
    ids = [a["id"] for a in page["alerts"]]
    assert len(ids) == 2 and ids[0] > ids[1] and page["next_before"] == ids[1]
    older = central.get("/alerts", state="active", limit=10, before=page["next_before"])
    assert len(older["alerts"]) == 3 and older["next_before"] is None
    assert all(a["location"] == "" and a["role"] == "elevator" for a in page["alerts"] + older["alerts"])


def _follow(central, after: int = 0, **params) -> dict:
    return central.get("/changes", after=after, **params)


def test_the_feed_says_what_changed_in_order_and_a_cursor_resumes(central):
    start = _follow(central)["next_after"]
    token = central.register(LIFT)
    kiosk = central.register("cbxc-gate-kiosk", "kiosk")
    central.post_events(token, [wire_event(LIFT, 1, kind="entrapment", alert_id="t1", **URGENT)])
    central.post_events(token, [wire_event(LIFT, 4)])  # 2 and 3 lost
    (alert,) = central.alerts()
    central_url = f"{central.url}/api/v1"
    requests.post(f"{central_url}/alerts/{alert['id']}/ack", json={}, headers=central.operator_headers, timeout=10)
    ride = requests.post(f"{central_url}/rides", json={"request_id": "r1"}, headers=central.node_headers(kiosk))
    page = _follow(central, start)
    seen = [(c["topic"], c["action"], c["key"]) for c in page["changes"]]
    assert seen == [
        ("node", "registered", LIFT),
        ("node", "registered", "cbxc-gate-kiosk"),
        ("node", "back", LIFT),  # first heard from
        ("alert", "opened", str(alert["id"])),
        ("node", "lost_events", LIFT),
        ("alert", "acknowledged", str(alert["id"])),
        ("ride", "requested", ride.json()["ride_id"]),
        ("node", "back", "cbxc-gate-kiosk"),
    ]
    positions = [c["pos"] for c in page["changes"]]
    assert positions == sorted(positions) and page["next_after"] == positions[-1] and not page["reset"]
    assert page["changes"][4]["data"] == {"seq_missing": 2}
    only_alerts = _follow(central, start, topic="alert")
    assert [c["action"] for c in only_alerts["changes"]] == ["opened", "acknowledged"]
    assert only_alerts["next_after"] == positions[-1]  # everything up to there was read, alerts or not
    assert _follow(central, positions[-1])["changes"] == []
    assert _follow(central, positions[-1])["next_after"] == positions[-1]
    assert _follow(central, positions[-1] + 1000)["reset"] is True  # a cursor from another database


def test_a_node_that_falls_silent_and_comes_back_is_on_the_feed(central):
    token = central.register(LIFT)
    central.post_events(token, [wire_event(LIFT, 1)])
    maintenance = central._server.app.state.store.maintenance
    assert maintenance.run(central.clock.wall())["silent"] == 0  # the first round only sets its cut
    start = _follow(central)["next_after"]
    central.clock.advance(central.config.server.node_stale_after_s + 60)
    assert maintenance.run(central.clock.wall())["silent"] == 1
    assert maintenance.run(central.clock.wall())["silent"] == 0  # said once
    assert [n["node_id"] for n in central.nodes(status="stale")] == [LIFT]
    central.post_events(token, [wire_event(LIFT, 2)])
    changes = _follow(central, start, topic="node")["changes"]
    assert [(c["action"], c["key"]) for c in changes] == [("silent", LIFT), ("back", LIFT)]
    assert changes[1]["data"]["silent_since"] == changes[0]["data"]["last_seen_at"]
    assert central.nodes(status="stale") == []


def test_a_node_that_falls_silent_is_an_alert_to_maintenance_cleared_when_it_is_heard_again(central):
    # a lift node in a crash loop, without power or network: before, only the operators' page said so
    token = central.register(LIFT)
    central.post_events(token, [wire_event(LIFT, 1)])
    last_seen = central.clock.wall()
    stale = central.config.server.node_stale_after_s
    assert sum(r["silent_alerts"] for r in central.maintenance_rounds(stale)) == 0  # not yet
    assert sum(r["silent_alerts"] for r in central.maintenance_rounds(1200)) == 1  # once, in the next round
    (alert,) = central.alerts()
    assert (alert["kind"], alert["severity"], alert["state"], alert["node_id"]) == (
        "node_silent",
        "warning",
        "open",
        LIFT,
    )
    assert alert["recipients"] == ["maintenance", "operator"] and alert["title_zh"] == "设备失联"
    assert alert["payload"]["last_seen_at"] == pytest.approx(last_seen) and stale <= alert["payload"]["silent_s"] < 1500
    # in words a technician reads on the way (no epoch seconds, no field names): which box, since when, what stops
    told = alert["reasons"]
    assert told[0].startswith("电梯监测盒已 ") and f"最后一次收到：{clock_text(last_seen)}" in told[0]
    assert told[1:] == ["失联期间这台电梯的困人和故障报警无法自动送出", "请检查电源、网络，以及设备是否在反复重启"]
    central.post_events(token, [wire_event(LIFT, 2)])  # heard again: cleared at once
    (alert,) = central.alerts()
    assert alert["on_site"] == "cleared" and alert["payload"]["heard_at"] == pytest.approx(central.clock.wall())
    assert alert["reasons"][:2] == told[:2] and alert["reasons"][2].endswith("又收到它的消息：已恢复联系")
    requests.post(f"{central.url}/api/v1/alerts/{alert['id']}/resolve", json={"note": "power back"},
                  headers=central.operator_headers, timeout=10).raise_for_status()  # fmt: skip
    assert (
        sum(r["silent_alerts"] for r in central.maintenance_rounds(stale + 1200)) == 1
    )  # silent again: a second alert
    (again,) = [a for a in central.alerts() if a["state"] == "open"]
    requests.post(f"{central.url}/api/v1/alerts/{again['id']}/resolve", json={"note": "taken away"},
                  headers=central.operator_headers, timeout=10).raise_for_status()  # fmt: skip
    assert (
        sum(r["silent_alerts"] for r in central.maintenance_rounds(3 * stale)) == 0
    )  # one alert a silence, resolved or not


def test_the_centrals_own_downtime_is_no_nodes_silence(central):
    # after an outage or an upgrade of the central, its first rounds must not call every node silent
    lift, meter = central.register(LIFT), central.register(METER, "meter")
    central.maintenance_rounds(900)  # the central has been running its rounds
    for token, node in ((lift, LIFT), (meter, METER)):
        central.post_events(token, [wire_event(node, 1)])  # both heard just before the central goes down
    central.clock.advance(3 * 3600)  # the central is down three hours: no rounds, nobody heard
    stale = central.config.server.node_stale_after_s
    assert sum(r["silent_alerts"] for r in central.maintenance_rounds(600)) == 0
    central.post_events(meter, [wire_event(METER, 2)])  # the meter node comes back within its grace
    step = central.config.retention.maintenance_interval_s
    # the lift, still silent the grace after the central's return; the meter spoke less than that ago
    assert sum(r["silent_alerts"] for r in central.maintenance_rounds(stale - step)) == 1
    assert [(a["kind"], a["node_id"]) for a in central.alerts()] == [("node_silent", LIFT)]


def test_the_stream_pushes_changes_as_they_happen_and_resumes(make_central):
    central = make_central(server={"feed_poll_s": 0.05, "max_streams": 1})
    url = f"{central.url}/api/v1/changes/stream"
    received: list[dict] = []
    got_two = threading.Event()

    def listen() -> None:
        with requests.get(url, headers=central.operator_headers, stream=True, timeout=30) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            event: dict = {}
            for line in answer.iter_lines(decode_unicode=True):
                if line.startswith(("id:", "event:", "data:")):
                    name, _, value = line.partition(": ")
                    event[name] = value
                elif line == "" and "data" in event:
                    received.append(event)
                    event = {}
                    if len(received) == 2:
                        got_two.set()
                        return

    listener = threading.Thread(target=listen)
    listener.start()
    central.register(LIFT)
    central.register("cbxc-b8-u1-lift1")
    assert got_two.wait(30)
    listener.join(10)
    assert [e["event"] for e in received] == ["node", "node"]
    assert [json.loads(e["data"])["key"] for e in received] == [LIFT, "cbxc-b8-u1-lift1"]
    # a reconnect with Last-Event-ID gets what came after, and only that
    central.register("cbxc-b9-u1-lift1")
    slots = central._server.app.state.stream_slots
    deadline = time.monotonic() + 10
    while slots.open and time.monotonic() < deadline:  # the server notices the first stream went away
        time.sleep(0.02)
    headers = {**central.operator_headers, "Last-Event-ID": received[-1]["id"]}
    with requests.get(url, headers=headers, stream=True, timeout=30) as answer:
        lines = answer.iter_lines(decode_unicode=True)
        data = next(line for line in lines if line.startswith("data:"))
        assert json.loads(data.removeprefix("data: "))["key"] == "cbxc-b9-u1-lift1"
        busy = requests.get(url, headers=central.operator_headers, timeout=10)  # max_streams = 1
        assert busy.status_code == 503 and busy.json()["error"] == "overloaded" and "Retry-After" in busy.headers
    no_key = requests.get(url, timeout=10)
    assert no_key.status_code == 401


def test_the_consoles_live_feed_reads_the_same_change_feed(central):
    """One feed: the console's stream cursor starts with a position of GET /changes, and an alert opened and
    then acknowledged reaches both, at the same positions."""
    from tests.test_console_stream import listen, next_named  # the console's own SSE reader

    key = requests.Session()
    key.headers.update(central.operator_headers)
    live = listen(central, key)
    hello = next_named(live, "hello")[2]
    start = _follow(central)["next_after"]
    assert int(hello["cursor"].split(".")[0]) == start
    token = central.register(LIFT)
    central.post_events(token, [wire_event(LIFT, 1, kind="entrapment", alert_id="t1", **URGENT)])
    opened = [c for c in _follow(central, start, topic="alert")["changes"] if c["action"] == "opened"]
    pushed = next_named(live, "alerts")[2]
    assert [a["kind"] for a in pushed["alerts"]] == ["entrapment"]
    assert int(pushed["cursor"].split(".")[0]) == opened[0]["pos"]
    alert = int(opened[0]["key"])
    r = key.post(f"{central.url}/api/v1/alerts/{alert}/ack", json={"note": "on my way"}, timeout=10)
    assert r.status_code == 200, r.text
    acked = _follow(central, opened[0]["pos"], topic="alert")["changes"]
    assert [(c["key"], c["action"]) for c in acked] == [(str(alert), "acknowledged")]
    while True:  # a delivery attempt may come first: wait for the acknowledgement's own position
        pushed = next_named(live, "alerts")[2]
        if int(pushed["cursor"].split(".")[0]) == acked[0]["pos"]:
            break
    assert pushed["alerts"][0]["state"] == "acknowledged"


def test_the_feed_has_no_gap_with_several_writers(central):
    """Eight nodes post alerts at once while a reader follows the feed: every alert's ``opened`` is read exactly
    once, positions only grow, and a reader never skips one that committed late (PostgreSQL: concurrent
    transactions; SQLite: one writer)."""
    nodes = [f"cbxc-w{i}-lift" for i in range(8)]
    tokens = {n: central.register(n) for n in nodes}
    start = _follow(central)["next_after"]
    errors: list[str] = []

    def write(node_id: str) -> None:
        try:
            for i in range(1, 13):
                central.post_events(
                    tokens[node_id], [wire_event(node_id, i, kind="entrapment", alert_id=f"g{i}", **URGENT)]
                )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(exc))

    writers = [threading.Thread(target=write, args=(n,)) for n in nodes]
    for w in writers:
        w.start()
    seen: list[int] = []
    after = start
    while True:  # follow while they write, then once more after the last commit
        writing = any(w.is_alive() for w in writers)
        page = _follow(central, after, topic="alert", limit=7)
        assert not page["reset"]
        seen += [int(c["pos"]) for c in page["changes"] if c["action"] == "opened"]
        after = page["next_after"]
        if not writing and len(page["changes"]) < 7:
            break
    assert not errors
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    every = [
        int(c["pos"]) for c in _follow(central, start, topic="alert", limit=5000)["changes"] if c["action"] == "opened"
    ]
    assert len(every) == 8 * 12 and seen == every
