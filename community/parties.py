"""The parties of the simulated day who act on their own threads: the operator at the community centre, who
watches the central and acknowledges and resolves alerts (``CentralWatcher``), and the resident living alone,
whose water use the meter sees (``Resident``)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import requests

if TYPE_CHECKING:
    from community.scenario import Community

log = logging.getLogger("community.scenario")
TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 23, 6, 58, tzinfo=TZ)  # the simulated day: Monday 2026-11-23, 06:58 in Shanghai


def payload_summary(payload: Any) -> str:
    keys = ("label_zh", "trapped_s", "silent_h", "in_door_zone", "plate", "resident")
    shown = [f"{k}={payload[k]}" for k in keys if isinstance(payload, dict) and k in payload]
    return f" ({', '.join(shown)})" if shown else ""


class CentralWatcher:
    """What the community centre sees: polls the central's alerts and rides, and plays the operator who
    acknowledges an alert after a while and resolves it once it is cleared on site."""

    ACK_AFTER_S = {"entrapment": 60.0, "help_requested": 45.0}
    SOCIAL_WORKER_ANSWERS = ("inactivity",)
    DEFAULT_ACK_AFTER_S = 1200.0
    # the social worker who tapped 我去看看 is at the resident's door this long after, and the desk closes the alert
    # with what she found (the family is told it, with the note)
    VISIT_S = 1800.0
    VISIT_REPORT = "社工王已上门：老人在卫生间摔倒，神志清醒，已由120送医"

    def __init__(self, community: Community) -> None:
        self.c = community
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._notified: set[tuple[str, str]] = set()
        self._rides: dict[str, str] = {}
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="central-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def pause(self, paused: bool) -> None:
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            if not self._paused.is_set():
                try:
                    self.poll()
                except requests.RequestException as exc:
                    log.debug("watcher: %s", exc)

    def poll(self) -> None:
        tl = self.c.timeline
        now = self.c.clock.wall()
        for a in self.c.api_get("/alerts", state="all", limit=500)["alerts"]:
            state = (a["state"], a.get("cleared_at") is not None, a.get("update_count"))
            label = f"{a['kind']} from {a['node_id']}"
            if self._seen.get(a["id"]) != state:
                first = a["id"] not in self._seen
                self._seen[a["id"]] = state
                if first:
                    tl.add("central", f"ALERT {a['severity']} {label}: {a['state']}{payload_summary(a['payload'])}")
                elif a.get("cleared_at") is not None and a["state"] != "resolved":
                    tl.add("central", f"{label} cleared on site")
            for role, told in a.get("told", {}).items():
                if (a["id"], role) not in self._notified:
                    self._notified.add((a["id"], role))
                    who = ", ".join(c.get("name", "") for c in told["recipients"]) or "-"
                    tl.add("central", f"told {role} ({who}) of {a['kind']} via {told['channel']}", told["at"])
            self._operate(a, now)
        for r in self.c.api_get("/rides")["rides"]:
            if self._rides.get(r["ride_id"]) != r["status"]:
                self._rides[r["ride_id"]] = r["status"]
                car = r.get("assigned") or {}
                extra = f" {car.get('plate')}, {car.get('colour')} {car.get('model')}" if car else ""
                tl.add("central", f"ride {r['ride_id'][:8]} {r['status']}{extra}")

    def _operate(self, alert: dict[str, Any], now: float) -> None:
        http, url = self.c._http, self.c.central.url
        wait = self.ACK_AFTER_S.get(alert["kind"], self.DEFAULT_ACK_AFTER_S)
        if alert["kind"] in self.SOCIAL_WORKER_ANSWERS:  # she answers through the link in her message
            by_link = "短信链接" in (alert.get("acknowledged_by") or "")  # (community/messages.py)
            if alert["state"] == "acknowledged" and by_link and now - alert["acknowledged_at"] >= self.VISIT_S:
                report = {"tell": self.VISIT_REPORT, "note": "社工上门核实"}  # the family reads tell, not the note
                http.post(f"{url}/api/v1/alerts/{alert['id']}/resolve", json=report, timeout=10)
                self.c.timeline.add("operator", f"resolves {alert['kind']} with the social worker's report")
            return
        if alert["state"] == "open" and now - alert["opened_at"] >= wait:
            http.post(f"{url}/api/v1/alerts/{alert['id']}/ack", json={"note": "on our way"}, timeout=10)
            self.c.timeline.add("operator", f"acknowledges {alert['kind']} from {alert['node_id']}")
        elif alert["state"] == "acknowledged" and alert.get("cleared_at") is not None:
            http.post(f"{url}/api/v1/alerts/{alert['id']}/resolve", json={"note": "checked on site"}, timeout=10)
            self.c.timeline.add("operator", f"resolves {alert['kind']} from {alert['node_id']}")


class Resident:
    """The elderly resident of B12-301: a usual morning, then a fall at 10:15 after which no water is used."""

    # (local time, litres, minutes the draw lasts)
    USES = (
        ("06:35", 6.0, 1),  # toilet
        ("06:50", 3.0, 2),  # washing face, brushing teeth
        ("07:05", 1.5, 1),  # kettle
        ("07:30", 4.0, 3),  # washing up breakfast
        ("08:40", 6.0, 1),  # toilet
        ("10:10", 2.0, 2),  # tap, the last use
    )
    STEP_S = 30.0

    def __init__(self, community: Community) -> None:
        self.c = community
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resident", daemon=True)
        day = START.date()
        self.draws = [
            (datetime.combine(day, datetime.strptime(t, "%H:%M").time(), TZ).timestamp(), litres, minutes * 60.0)
            for t, litres, minutes in self.USES
        ]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        last = self.c.clock.wall()
        fell = False
        while not self._stop.is_set():
            self.c.clock.sleep(self.STEP_S)
            now = self.c.clock.wall()
            litres = sum(amount * _overlap(t0, t0 + dur, last, now) / dur for t0, amount, dur in self.draws)
            if litres > 0:
                self.c.water.draw(litres)
            if not fell and now >= self.draws[-1][0] + 300:
                fell = True
                self.c.timeline.add("resident B12-301", "falls at home and cannot get up; no more water is used")
            last = now


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))
