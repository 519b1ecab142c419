"""Central: the operator page's script run by Node.js against the real central (a tiny DOM stand-in).

Checks what the community centre would see (alerts with location, contacts, escalation; devices with lost
events; rides) and that its Acknowledge button really acknowledges through the API. Needs the `node` command.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import requests

from central.app import operator_page_html
from tests.fixtures.central import wire_event

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page's script")

LIFT = "cbxc-b7-u2-lift1"
METER = "cbxc-b12-meters"
KIOSK = "cbxc-north-gate-kiosk"

# a minimal DOM: enough for the page's el()/replaceChildren()/textContent; fetch goes to the real central
HARNESS = r"""
const vm = require("vm");
const [script, base, key, stepsJson] = process.argv.slice(2);
const steps = JSON.parse(stepsJson);
let inflight = 0;
class El {
  constructor(tag) { this.tag = tag; this.children = []; this.attrs = {}; this.listeners = {}; this.own = "";
    this.value = ""; const set = new Set(); this.classList = { add: c => set.add(c), remove: c => set.delete(c),
    contains: c => set.has(c) }; }
  setAttribute(k, v) { this.attrs[k] = v; }
  addEventListener(e, f) { this.listeners[e] = f; }
  append(...c) { this.children.push(...c); }
  replaceChildren() { this.children = []; }
  set textContent(t) { this.own = t; this.children = []; }
  get textContent() { return this.own + this.children.map(c => c.textContent).join(""); }
  set className(c) { this.attrs.class = c; }
  buttons() { return (this.tag === "button" ? [this] : []).concat(...this.children.map(c => c.buttons ? c.buttons() : [])); }
}
class Txt { constructor(t) { this.t = t; } get textContent() { return this.t; } }
const ids = {};
const get = id => ids[id] || (ids[id] = new El("div"));
const store = { operatorKey: key, operatorName: "测试员 Tester" };
const context = vm.createContext({
  Node: El, console, JSON, Promise, Object, Math, Number, String, Date, Error,
  document: { createElement: t => new El(t), createTextNode: t => new Txt(t),
              getElementById: get },
  localStorage: { getItem: k => store[k] ?? null, setItem: (k, v) => { store[k] = v; }, removeItem: k => { delete store[k]; } },
  window: { prompt: () => "on my way", alert: m => console.error("ALERT " + m) },
  fetch: (u, o) => {
    // each request counts until its body is read, so settle() knows when the page has nothing in flight
    inflight += 1;
    return fetch(base + u, o)
      .then(async r => new Response(await r.arrayBuffer(), { status: r.status, statusText: r.statusText, headers: r.headers }))
      .finally(() => { inflight -= 1; });
  },
  setInterval: () => 0,
});
vm.runInContext(require("fs").readFileSync(script, "utf8"), context);
// the page has settled when no request has been in flight for a few turns of the event loop (its handlers run
// in promise callbacks between them); waits on that, not on a fixed time that a loaded machine overruns
const turn = () => new Promise(r => setTimeout(r, 10));
const settle = async () => {
  const deadline = Date.now() + 30000;
  for (let idle = 0; idle < 5; idle = inflight ? 0 : idle + 1) {
    if (Date.now() > deadline) throw new Error("the page still had requests in flight after 30 s");
    await turn();
  }
};
(async () => {
  const out = {};
  await settle();
  for (const step of steps) {
    if (step === "snapshot") {
      out.snapshots = (out.snapshots || []).concat([{ status: get("status").textContent,
        alerts: get("alerts").textContent, nodes: get("nodes").textContent, rides: get("rides").textContent,
        households: get("households").textContent,
        buttons: get("alerts").buttons().map(b => b.textContent) }]);
    } else if (step === "click-first-ack") {
      const button = get("alerts").buttons().find(b => b.textContent.includes("Acknowledge"));
      button.listeners.click();
      await settle();
    }
  }
  console.log(JSON.stringify(out));
})();
"""


def run_page(central, tmp_path, steps: list[str], key: str | None = None) -> dict:
    found = re.search(r"<script>(.*)</script>", operator_page_html(), re.S)
    assert found is not None
    script = found.group(1)
    (tmp_path / "page.js").write_text(script, encoding="utf-8")
    (tmp_path / "harness.js").write_text(HARNESS, encoding="utf-8")
    out = subprocess.run(
        [
            "node",
            str(tmp_path / "harness.js"),
            str(tmp_path / "page.js"),
            central.url,
            key or central.operator_key,
            json.dumps(steps),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_page_shows_alerts_devices_and_rides_and_acknowledges(central, tmp_path):
    contacts = {"family": [{"name": "王丽 Wang Li", "phone": "13800000000"}], "social_worker": ["张社工 139"]}
    lift = central.register(LIFT, "elevator", location="7号楼2单元 Building 7")
    meter = central.register(METER, "meter", location="12号楼301 Building 12", contacts=contacts)
    kiosk = central.register(KIOSK, "kiosk", pickup_point="长白新村北门 North Gate")
    urgent = {"severity": "urgent", "state": "raised", "priority": "alert"}
    central.post_events(
        lift,
        [
            wire_event(LIFT, 1, kind="entrapment", alert_id="a1", recipients=["maintenance"], **urgent),
            wire_event(LIFT, 4),  # seq 2 and 3 never arrive
        ],
    )
    profile = {"resident": "B12-301", "meter_id": "b12-301", "learned_days": 20, "adaptive": True, "watchable": False}
    profile["detect_h"] = {"night": 6.5, "morning": 3.0, "afternoon": 13.5, "evening": 8.0}
    central.post_events(
        meter,
        [
            wire_event(METER, 1, kind="inactivity", alert_id="m1", recipients=["family", "social_worker"], **urgent),
            wire_event(METER, 2, kind="wellbeing_profile", recipients=["social_worker"], payload=profile),
        ],
    )
    requests.post(
        f"{central.url}/api/v1/heartbeat",
        json={"clock_synced": False, "version": "0.1.0", "outbox_depth": {"reading": 7}},
        headers=central.node_headers(lift),
        timeout=10,
    )
    requests.post(f"{central.url}/api/v1/rides", json={"request_id": "r1"}, headers=central.node_headers(kiosk))

    result = run_page(central, tmp_path, ["snapshot", "click-first-ack", "snapshot"])
    before, after = result["snapshots"]
    assert before["status"].startswith("已更新 Updated")
    assert "电梯困人 Trapped passenger" in before["alerts"] and "7号楼2单元 Building 7" in before["alerts"]
    assert "长时间未用水 No water use for a long time" in before["alerts"]
    assert "请联系 Contact 家属 Family" in before["alerts"] and "王丽 Wang Li 13800000000" in before["alerts"]
    assert "还需联系 社工 Social worker" in before["alerts"]  # the escalation still pending
    assert "未登记联系人 no contact registered" in before["alerts"]  # the lift was registered without contacts
    assert before["buttons"].count("确认 Acknowledge") == 2
    assert "2 条丢失 lost" in before["nodes"] and "未同步 Not synced" in before["nodes"]
    assert "长白新村北门 North Gate" in before["rides"]
    # the meter's latest profile: a fall in the afternoon would be found after 13.5 h: flagged for the social worker
    assert "B12-301" in before["households"] and "6.5 / 3 / 13.5 / 8" in before["households"]
    assert "否：请加每日电话或门磁 No: add a daily call or a door sensor" in before["households"]
    # the newest alert (the meter's) is first; its button acknowledged it, with the name from the page
    acked = central.alerts("acknowledged")
    assert [a["kind"] for a in acked] == ["inactivity"]
    assert acked[0]["acknowledged_by"] == "测试员 Tester" and acked[0]["ack_note"] == "on my way"
    assert after["buttons"].count("确认 Acknowledge") == 1 and "已确认 Acknowledged: 测试员 Tester" in after["alerts"]


def test_a_wrong_key_asks_for_the_key_again(central, tmp_path):
    result = run_page(central, tmp_path, ["snapshot"], key="not-an-operator-key")
    assert "请输入操作员密钥" in result["snapshots"][0]["status"]
