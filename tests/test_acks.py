"""EN 81-28's acknowledgement reaches the node: a real central on loopback, the node's real runtime (outbox, alert
book, uploader) on a manual clock. An alert a person has taken in is no longer re-sent; a trapped passenger's alert
closed by mistake while the node still sees him is re-sent at once, and the central opens it again."""

from __future__ import annotations

from pathlib import Path

import requests

from common.alerts import OpenAlert
from common.clock import ManualClock
from common.config import Role
from common.events import Detection
from common.service import NodeRuntime
from tests.sync_helpers import node_config

LIFT = "cbxc-b7-u2-lift1"


def lift_node(
    central, tmp_path: Path, node_id: str = LIFT, role: Role = "elevator"
) -> tuple[NodeRuntime, ManualClock, list[OpenAlert]]:
    """A registered node's runtime on a manual clock at the central's time, and what it heard was taken in."""
    token = central.register(node_id, role)
    config = node_config(tmp_path, central.url, token, node_id=node_id, role=role)
    clock = ManualClock(wall=central.clock.wall())
    node = NodeRuntime(config, clock, renotify_s=60.0)
    told: list[OpenAlert] = []
    node.acks.on_taken_in = told.append
    return node, clock, told


def act(central, action: str, **body: str) -> None:
    (alert,) = [a for a in central.alerts("all") if a["state"] != "resolved"]
    done = requests.post(f"{central.url}/api/v1/alerts/{alert['id']}/{action}", json=body,
                         headers=central.operator_headers, timeout=10)  # fmt: skip
    assert done.status_code == 200, done.text


def step(node: NodeRuntime, clock: ManualClock, seconds: float) -> list[str]:
    """``seconds`` later: the node's re-sends due then (their kinds), uploaded, and one look at the central."""
    clock.advance(seconds)
    resent = node.alerts.due_renotify(clock.monotonic())
    node.uploader.run_once()
    return [e.kind for e in resent]


def test_an_alert_taken_in_at_the_central_is_no_longer_re_sent_and_the_node_hears_it_once(make_central, tmp_path):
    central = make_central()
    node, clock, told = lift_node(central, tmp_path)
    try:
        node.emit(Detection("door_held_open", "raised", clock.monotonic(), "warning", {"seconds": 80.0}))
        node.uploader.run_once()
        assert step(node, clock, 61) == ["door_held_open"]  # nobody has taken it in: re-sent (EN 81-28)
        act(central, "ack", note="我去看看")
        assert step(node, clock, 11) == [] and [a.heard for a in told] == ["acknowledged"]
        assert step(node, clock, 61) == [] and step(node, clock, 61) == []  # re-sending stopped
        (alert,) = central.alerts("all")
        assert alert["count"] == 2 and len(told) == 1  # raised and the one re-send; told once
        assert node.alerts.open_alerts()[0].heard == "acknowledged"
    finally:
        node.stop()
    again = NodeRuntime(node.config, clock, renotify_s=60.0)  # kept with the book across a restart
    try:
        assert again.alerts.open_alerts()[0].heard == "acknowledged" and again.alerts.due_renotify(1e9) == []
    finally:
        again.stop()


def test_a_trapped_passengers_alert_closed_by_mistake_is_re_sent_at_once_and_opens_again(make_central, tmp_path):
    central = make_central()
    node, clock, told = lift_node(central, tmp_path)
    try:
        node.emit(Detection("entrapment", "raised", clock.monotonic(), "urgent", {"seconds_trapped": 95.0}))
        node.uploader.run_once()
        act(central, "ack")
        assert step(node, clock, 11) == [] and [a.kind for a in told] == ["entrapment"]
        assert step(node, clock, 61) == []  # acknowledged: not re-sent
        node.emit(Detection("entrapment", "updated", clock.monotonic(), "urgent", {"in_door_zone": True}))
        assert step(node, clock, 11) == [] and len(told) == 1  # the rescuers moved the car: not told again
        act(central, "resolve", note="点错了")
        assert step(node, clock, 11) == []  # heard resolved while the node still sees him
        assert step(node, clock, 1) == ["entrapment"]  # re-sent at once
        reopened = [a for a in central.alerts("all") if a["state"] == "open"]
        assert [(a["kind"], a["occurrence"]) for a in reopened] == [("entrapment", 2)]
        assert step(node, clock, 11) == [] and node.alerts.open_alerts()[0].heard == ""  # open again: asked on
        assert step(node, clock, 61) == ["entrapment"]  # and re-sent until somebody takes it in again
    finally:
        node.stop()


def test_a_silence_closed_at_the_central_is_not_re_sent_and_an_older_central_changes_nothing(make_central, tmp_path):
    central = make_central()
    node, clock, _ = lift_node(central, tmp_path, "cbxc-b12-meters", "meter")
    try:
        node.emit(Detection("inactivity", "raised", clock.monotonic(), "urgent", {"silence_h": 12.0}, key="b12-301"))
        node.uploader.run_once()
        act(central, "resolve", tell="社工已上门")
        assert step(node, clock, 11) == [] and node.alerts.open_alerts()[0].heard == "resolved"
        assert step(node, clock, 61) == []
        node.acks.url = f"{central.url}/api/v1/no-such-route"  # a central from before the acknowledgements: 404
        node.emit(Detection("inactivity", "updated", clock.monotonic(), "urgent", {"silence_h": 13.0}, key="b12-301"))
        node.uploader.run_once()
        assert node.alerts.open_alerts()[0].heard == ""  # an update of its own: asked about again
        assert step(node, clock, 61) == ["inactivity"]  # nothing heard: re-sent as before
    finally:
        node.stop()


def test_a_node_with_more_open_alerts_than_one_look_holds_hears_of_each(make_central, tmp_path):
    from common.contract import MAX_ASKED

    central = make_central()
    node, clock, told = lift_node(central, tmp_path, "cbxc-b12-meters", "meter")
    homes = [f"b12-{i:03d}" for i in range(MAX_ASKED + 50)]  # a building's node, a hard night: 150 silences
    try:
        for home in homes:
            node.emit(Detection("inactivity", "raised", clock.monotonic(), "warning", {"silence_h": 8.0}, key=home))
        for _ in range(3):  # uploaded (a batch holds them all; the loop in case it does not)
            node.uploader.run_once()
        alerts = central.alerts("all")
        assert len(alerts) == len(homes)
        for alert in alerts:
            done = requests.post(f"{central.url}/api/v1/alerts/{alert['id']}/ack", json={},
                                 headers=central.operator_headers, timeout=10)  # fmt: skip
            assert done.status_code == 200, done.text
        step(node, clock, 11)
        assert len(told) == MAX_ASKED  # one look asks about as many as the central answers
        step(node, clock, 11)
        assert sorted(a.key for a in told) == homes  # the next asks about the rest, not the same hundred
        assert step(node, clock, 61) == []  # and none of them is re-sent
    finally:
        node.stop()


def test_a_homes_chime_tells_the_resident_someone_is_coming_once_her_alert_is_acknowledged(make_central, tmp_path):
    from meter_node.voice import CHIME_TEXT, TAKEN_IN_TEXT
    from tests.test_meter_node import NODE_ID, ONE_METER, START_WALL, Harness, Speaker, TableBus
    from tests.test_meter_node import node_config as meter_config

    central = make_central()
    (tmp_path / "token").write_text(central.register(NODE_ID, "meter"))
    (tmp_path / "token").chmod(0o600)
    bus, speaker = TableBus(), Speaker()
    bus.add(1, "u32_le_litres", 5000.0)
    h = Harness(meter_config(tmp_path, central.url, ONE_METER), bus, ManualClock(wall=START_WALL), speaker)
    try:
        h.run(600, lambda now: bus.litres.update({1: float(bus.litres[1] or 0.0) + 3.0}))  # a morning's washing
        h.run(8.5 * 3600)  # then silence: the warning, and the chime asks her
        h.sync()
        assert [a["kind"] for a in central.alerts()] == ["inactivity"] and speaker.texts == [CHIME_TEXT]
        act(central, "ack", note="我去看看")  # her daughter answers from her phone
        for _ in range(3):  # the node asks every ack_poll_s (10 s)
            h.run(11)
            h.sync()
        assert speaker.texts == [CHIME_TEXT, TAKEN_IN_TEXT]  # once: a resident who fell cannot reach the phone
    finally:
        h.close()
