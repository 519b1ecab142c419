"""Many nodes of one site gone silent together (a compound's network or power) reach maintenance as one message,
and as one all-clear when they are heard again: the real central's notifier to a webhook receiver on loopback,
the silence found by the central's own maintenance rounds."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import eventually
from tests.fixtures.central import OTHER_SITE, SITE, wire_event

pytestmark = pytest.mark.both_engines  # the notifier's tables and the rounds on SQLite and on PostgreSQL

LIFTS = [f"cbxc-b{n}-u1-lift1" for n in range(1, 6)]
METER = "cbxc-b12-meters"
AWAY = ["sprd-b1-u1-lift1", "sprd-b2-u1-lift1"]  # another site's lifts, silent at the same time
SECRET = "webhook-signing-secret-0001"
MAINTENANCE = {"maintenance": [{"name": "维保李工", "phone": "13700000003"}]}


def central_with_nodes(make_central, hooks, **notify):
    channel = {"id": "maint-hook", "type": "webhook", "roles": ["maintenance"], "url": hooks.url("/maint"),
               "secret": SECRET}  # fmt: skip
    central = make_central(notify={"retry_min_s": 0.2, "tick_s": 0.1, "channels": [channel], **notify})
    nodes = (
        [(n, "elevator", SITE) for n in LIFTS] + [(METER, "meter", SITE)] + [(n, "elevator", OTHER_SITE) for n in AWAY]
    )
    tokens = {n: central.register(n, role, site, location=f"{n} 机房", contacts=MAINTENANCE) for n, role, site in nodes}
    central.maintenance_rounds(900)  # the central has been watching
    for node, token in tokens.items():
        assert central.post_events(token, [wire_event(node, 1)]).status_code == 200
    stale = central.config.server.node_stale_after_s
    assert sum(r["silent_alerts"] for r in central.maintenance_rounds(stale + 600)) == len(nodes)
    return central, tokens


def told(hooks) -> list[dict]:
    return [r.json() for r in hooks.received if r.path == "/maint"]


def test_a_compounds_nodes_gone_silent_together_are_one_message_and_one_all_clear(make_central, hooks) -> None:
    # before, a compound's network going down sent maintenance one message per box (100 boxes: a robot's five
    # minutes of them), and as many all-clears when it came back
    central, tokens = central_with_nodes(make_central, hooks)
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/maint"]) == 3, 10.0)
    (group,) = [m for m in told(hooks) if "alert_ids" in m]
    assert group["title"] == "【警告】设备失联 · 6 台设备 · 长白新村 Changbai Xincun" and group["ack_url"] is None
    assert len(group["alert_ids"]) == 6 and group["reason"] == "opened"
    assert group["lines"][1].startswith(
        "6 台设备同时没有任何消息（电梯监测盒 5 台、水表节点 1 台；最早的最后一次收到："
    )
    assert "这么多台同时失联，多半是这一片的网络或供电中断：请先检查小区的网络和电源" in group["lines"]
    assert "失联期间这些电梯的困人和故障报警无法自动送出" in group["lines"]
    assert (
        group["lines"][-1].startswith("涉及：cbxc-b1-u1-lift1 机房、")
        and group["recipients"] == MAINTENANCE["maintenance"]
    )
    alone = sorted(m["title"] for m in told(hooks) if "alert_ids" not in m)  # two at the other site: below five
    assert alone == [f"【警告】设备失联 · {n} 机房" for n in AWAY]
    mine = lambda: [a for a in central.alerts() if a["site"] == SITE]  # noqa: E731
    assert eventually(lambda: all(set(a["told"]) == {"maintenance"} for a in mine()), what="each alert's log says so")
    for alert in mine():  # the desk takes them all in (the console's one button: a call each)
        requests.post(f"{central.url}/api/v1/alerts/{alert['id']}/ack", json={"note": ""},
                      headers=central.operator_headers, timeout=10).raise_for_status()  # fmt: skip
    central.clock.advance(60)  # news of silent nodes waits for the next whole minute, to go together
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/maint"]) == 4, 10.0)
    taken = told(hooks)[-1]
    assert taken["title"] == "【已有人确认】设备失联 · 6 台设备 · 长白新村 Changbai Xincun"
    assert taken["lines"][1].endswith(
        f"{central.operator_name} 已确认收到这 6 台设备的失联告警（电梯监测盒 5 台、水表节点 1 台）"
    )
    for node in LIFTS + [METER]:  # the compound's network is back: all heard again within the minute
        assert central.post_events(tokens[node], [wire_event(node, 2)]).status_code == 200
    central.clock.advance(60)
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/maint"]) == 5, 10.0)
    back = told(hooks)[-1]
    assert back["title"] == "【已解除】设备失联 · 6 台设备 · 长白新村 Changbai Xincun" and back["reason"] == "cleared"
    assert back["lines"][1].endswith("前又收到这 6 台设备的消息：已恢复联系（电梯监测盒 5 台、水表节点 1 台）")
    assert eventually(lambda: all([d["reason"] for d in a["deliveries"] if d["state"] == "sent"] == ["opened", "acknowledged", "cleared"]
                                  for a in mine()), what="each alert's all-clear recorded")  # fmt: skip


@pytest.mark.parametrize("least", [0, 7])
def test_below_the_group_size_or_with_it_off_each_silent_node_is_its_own_message(make_central, hooks, least) -> None:
    central_with_nodes(make_central, hooks, group_silent_min=least)
    assert hooks.wait_for(lambda got: len([r for r in got if r.path == "/maint"]) == 8, 10.0)
    assert not [m for m in told(hooks) if "alert_ids" in m]
    assert all(m["ack_url"] for m in told(hooks))  # each its own link, as before
