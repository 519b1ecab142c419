"""Run the wellbeing monitor and the services' fixed rules over simulated households; recall and false alarms.

Per household: one pass over its normal life (with harmless surprises) counts false alarms after the learning
period; then each injected incident restarts from the monitor's saved ``state()`` at the incident time (the
same round trip a node does across a restart) and runs 36 h (a gradual decline: 25 days).
"""

from __future__ import annotations

import copy
import json
import random
import statistics
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from bench.wellbeing.household import DAY, HOUR, Person, Surprises, Use, simulate
from bench.wellbeing.meter import MeterSetup, readings
from meter_node.wellbeing import PERSON_KINDS, WellbeingMonitor, WellbeingSettings

TZ = ZoneInfo("Asia/Shanghai")
EPOCH0 = datetime(2026, 3, 2, tzinfo=TZ).timestamp()  # sim time 0 = local midnight
SETUPS: tuple[tuple[float, float], ...] = ((1.0, 60.0), (10.0, 60.0), (1.0, 10.0), (10.0, 10.0))
ACUTE = ("collapse_day", "collapse_night", "collapse_tap")
# what counts as "the family was told": a person alert or water running, at warning or above
DETECTING = PERSON_KINDS | {"continuous_flow", "high_daily_volume"}
TUNE_SEEDS = tuple(range(1, 201))  # 1-40 until round 3; 41-200 added in round 4 (docs/wellbeing.md)
REPORT_SEEDS = tuple(range(4001, 4161))  # the final report (round 4b); 1001-1080, 2001-2080, 3001-3160 were before
HORIZON = 36 * HOUR


class Nagano:
    """Sakaki (Nagano) pilot rule: no use for 8 h, or use going on for 2 h, mails the family."""

    name = "nagano"

    def __init__(self) -> None:
        self.last_total: float | None = None
        self.last_use = 0.0
        self.silence_alarm = False
        self.flow_start = 0.0
        self.last_rise = -1e18
        self.flow_alarm = False

    def update(self, t: float, total: float | None) -> bool:
        if total is None:
            return False
        last = self.last_total
        self.last_total = total
        if last is None or total < last:
            self.last_use = max(self.last_use, t) if last is None else self.last_use
            return False
        if total > last:
            if t - self.last_rise > 600:  # use counts as continuous while the counter moves every 10 min
                self.flow_start, self.flow_alarm = t, False
            self.last_rise = self.last_use = t
            self.silence_alarm = False
            if not self.flow_alarm and t - self.flow_start >= 2 * HOUR:
                self.flow_alarm = True
                return True
        elif not self.silence_alarm and t - self.last_use >= 8 * HOUR:
            self.silence_alarm = True
            return True
        return False


class Shanghai:
    """Shanghai street rule: less than 10 L in 12 h sends someone to the door."""

    name = "shanghai"

    def __init__(self) -> None:
        self.changes: deque[tuple[float, float]] = deque()
        self.alarm = False

    def update(self, t: float, total: float | None) -> bool:
        if total is None:
            return False
        changes = self.changes
        if changes and total < changes[-1][1]:
            changes.clear()
        if not changes or total != changes[-1][1]:
            changes.append((t, total))
        cut = t - 12 * HOUR
        while len(changes) >= 2 and changes[1][0] <= cut:
            changes.popleft()
        if changes[0][0] > cut:
            return False
        low = total - changes[0][1] < 10.0
        fire = low and not self.alarm
        self.alarm = low
        return fire


@dataclass
class Incident:
    kind: str
    at: float  # sim seconds
    onset: float  # from when time to detect is measured (= at, except a decline: when use is down to 50%)
    node_s: float | None = None
    node_urgent_s: float | None = None
    baseline_s: dict[str, float | None] = field(default_factory=dict)


@dataclass
class HouseholdResult:
    seed: int
    resolution_l: float
    poll_s: float
    months: float
    false_node: dict[str, int]
    false_by_kind: dict[str, int]
    false_baseline: dict[str, int]
    leaks: int
    leaks_found: int
    incidents: list[Incident]


def _thin(uses: list[Use], start: float, rng: random.Random) -> list[Use]:
    """A gradual decline: from ``start`` the person does less and less (down to 30% after 21 days)."""
    kept = []
    for u in uses:
        if u.start < start:
            kept.append(u)
            continue
        share = max(0.3, 1.0 - 0.7 * (u.start - start) / (21 * DAY))
        if rng.random() < share:
            kept.append(u)
    return kept


def _cut(uses: list[Use], at: float) -> list[Use]:
    out = []
    for u in uses:
        if u.start >= at:
            break
        out.append(u if u.end <= at else Use(u.start, at - u.start, u.flow))
    return out


def run_household(seed: int, days: int, settings: WellbeingSettings, setup_index: int) -> HouseholdResult:
    rng = random.Random(seed)
    resolution, poll = SETUPS[setup_index % len(SETUPS)]
    person = Person.draw(rng)
    uses, leaks, diary = simulate(person, days, rng, Surprises())
    meter = MeterSetup.draw(rng, resolution, poll, days)
    learn_end = (settings.learning_days + 2) * DAY
    # incidents: one of each acute kind on different normal days after learning, plus one decline
    candidates = [d for d in diary if d.index * DAY >= learn_end and d.index < days - 2 and not d.away]
    picks = rng.sample(candidates, k=min(len(ACUTE), len(candidates)))
    incidents: list[Incident] = []
    for kind, day in zip(ACUTE, picks, strict=False):
        if kind == "collapse_night":
            at = rng.uniform(day.bed - DAY + HOUR, day.wake - 0.5 * HOUR)
        else:
            at = rng.uniform(day.wake + HOUR, day.bed - HOUR)
        incidents.append(Incident(kind, at, at))
    decline_at = learn_end + rng.uniform(0, 2) * DAY
    if decline_at + 25 * DAY <= days * DAY:
        incidents.append(Incident("decline", decline_at, decline_at + 15 * DAY))
    incidents.sort(key=lambda i: i.at)

    monitor = WellbeingMonitor(settings, TZ)
    baselines = [Nagano(), Shanghai()]
    snapshots: dict[int, tuple[str, list[object]]] = {}
    pending = list(range(len(incidents)))
    open_peak: dict[str, str] = {}
    false_node = {"info": 0, "warning": 0, "urgent": 0}
    false_by_kind: dict[str, int] = {}
    false_baseline = {b.name: 0 for b in baselines}
    leaks_found = 0

    for t, total in readings(uses, leaks, meter, 0.0, days * DAY, EPOCH0):
        sim_t = t - EPOCH0
        while pending and incidents[pending[0]].at <= sim_t:
            idx = pending.pop(0)
            snapshots[idx] = (json.dumps(monitor.state()), copy.deepcopy(baselines))
        counted = sim_t >= learn_end
        for det in monitor.update(t, total):
            if not counted:
                continue
            if det.kind == "leak_suspected":
                leaks_found += det.state == "raised"
                continue
            if det.state in ("raised", "updated"):
                key = det.kind
                if det.state == "raised" or _rank(det.severity) > _rank(open_peak.get(key, "info")):
                    false_node[det.severity] += 1
                    false_by_kind[f"{key}:{det.severity}"] = false_by_kind.get(f"{key}:{det.severity}", 0) + 1
                open_peak[key] = det.severity
            else:
                open_peak.pop(det.kind, None)
        for b in baselines:
            if b.update(t, total) and counted:
                false_baseline[b.name] += 1

    for idx, inc in enumerate(incidents):
        if idx not in snapshots:
            continue
        state_json, saved = snapshots[idx]
        mon = WellbeingMonitor(settings, TZ, state=json.loads(state_json))
        if inc.kind == "decline":
            series = _thin(uses, inc.at, random.Random(seed * 7919 + 1))
            end = inc.at + 25 * DAY
        else:
            series = _cut(uses, inc.at)
            end = inc.at + HORIZON
            if inc.kind == "collapse_tap":
                series.append(Use(inc.at, HORIZON + DAY, rng.uniform(0.05, 0.12)))
        _run_incident(inc, mon, saved, series, leaks, meter, end)
    months = (days * DAY - learn_end) / (30 * DAY)
    return HouseholdResult(
        seed, resolution, poll, months, false_node, false_by_kind, false_baseline, len(leaks), leaks_found, incidents
    )


def _run_incident(inc: Incident, mon: WellbeingMonitor, baselines: list, series: list[Use], leaks, meter, end) -> None:
    inc.baseline_s = {b.name: None for b in baselines}
    for t, total in readings(series, leaks, meter, inc.at, end, EPOCH0):
        sim_t = t - EPOCH0
        for det in mon.update(t, total):
            if det.state not in ("raised", "updated") or det.severity == "info":
                continue
            if inc.kind == "decline":
                if det.kind != "low_daily_volume" or inc.node_s is not None:
                    continue
            elif det.kind not in DETECTING:
                continue
            if inc.node_s is None:
                inc.node_s = sim_t - inc.onset
            if det.severity == "urgent" and inc.node_urgent_s is None:
                inc.node_urgent_s = sim_t - inc.onset
        for b in baselines:
            if b.update(t, total) and inc.baseline_s[b.name] is None and (inc.kind != "decline" or sim_t >= inc.onset):
                inc.baseline_s[b.name] = sim_t - inc.onset
        if (
            inc.kind != "decline"
            and inc.node_urgent_s is not None
            and all(v is not None for v in inc.baseline_s.values())
        ):
            return


def _rank(severity: str) -> int:
    return {"info": 0, "warning": 1, "urgent": 2}[severity]


# ---------------------------------------------------------------------------------------------- the report
def summarise(results: list[HouseholdResult]) -> dict[str, object]:
    months = sum(r.months for r in results)
    acute = [i for r in results for i in r.incidents if i.kind in ACUTE]
    decline = [i for r in results for i in r.incidents if i.kind == "decline"]

    def recall(values: list[float | None], hours: float) -> float:
        return sum(v is not None and v <= hours * HOUR for v in values) / max(1, len(values))

    def median_h(values: list[float | None]) -> float | None:
        found = [v / HOUR for v in values if v is not None]
        return round(statistics.median(found), 2) if found else None

    rows: dict[str, object] = {"households": len(results), "household_months": round(months, 1)}
    systems: dict[str, list[float | None]] = {
        "node": [i.node_s for i in acute],
        "node_urgent": [i.node_urgent_s for i in acute],
        "nagano": [i.baseline_s.get("nagano") for i in acute],
        "shanghai": [i.baseline_s.get("shanghai") for i in acute],
    }
    for name, values in systems.items():
        rows[name] = {
            "incidents": len(values),
            "recall_6h": round(recall(values, 6), 3),
            "recall_12h": round(recall(values, 12), 3),
            "recall_24h": round(recall(values, 24), 3),
            "median_h": median_h(values),
        }
    per_kind: dict[str, object] = {}
    for kind in ACUTE:
        sel = [i for i in acute if i.kind == kind]
        per_kind[kind] = {
            "n": len(sel),
            "node_median_h": median_h([i.node_s for i in sel]),
            "node_recall_12h": round(recall([i.node_s for i in sel], 12), 3),
            "nagano_median_h": median_h([i.baseline_s.get("nagano") for i in sel]),
            "shanghai_median_h": median_h([i.baseline_s.get("shanghai") for i in sel]),
        }
    rows["per_kind"] = per_kind
    rows["decline"] = {
        "n": len(decline),
        "node_found": sum(i.node_s is not None for i in decline),
        "node_median_days_after_50pct": round(statistics.median([i.node_s / DAY for i in decline if i.node_s]), 1)
        if any(i.node_s for i in decline)
        else None,
        "shanghai_found": sum(i.baseline_s.get("shanghai") is not None for i in decline),
    }
    rows["false_per_household_month"] = {
        "node_info": round(sum(r.false_node["info"] for r in results) / months, 3),
        "node_warning": round(sum(r.false_node["warning"] for r in results) / months, 3),
        "node_urgent": round(sum(r.false_node["urgent"] for r in results) / months, 3),
        "nagano": round(sum(r.false_baseline["nagano"] for r in results) / months, 3),
        "shanghai": round(sum(r.false_baseline["shanghai"] for r in results) / months, 3),
    }
    by_kind: dict[str, int] = {}
    for r in results:
        for k, v in r.false_by_kind.items():
            by_kind[k] = by_kind.get(k, 0) + v
    rows["false_by_kind"] = dict(sorted(by_kind.items()))
    by_setup: dict[str, object] = {}
    for resolution, poll in SETUPS:
        sel = [r for r in results if (r.resolution_l, r.poll_s) == (resolution, poll)]
        if not sel:
            continue
        sel_months = sum(r.months for r in sel)
        found = [i.node_s for r in sel for i in r.incidents if i.kind in ACUTE]
        by_setup[f"{resolution:g} L / {poll:g} s"] = {
            "households": len(sel),
            "recall_12h": round(recall(found, 12), 3),
            "median_h": median_h(found),
            "false_warning": round(sum(r.false_node["warning"] for r in sel) / sel_months, 2),
            "false_urgent": round(sum(r.false_node["urgent"] for r in sel) / sel_months, 2),
        }
    rows["by_setup"] = by_setup
    rows["leaks"] = {"simulated": sum(r.leaks for r in results), "alerts": sum(r.leaks_found for r in results)}
    return rows


def evaluate(
    seeds: tuple[int, ...], days: int, settings: WellbeingSettings | None = None, jobs: int = 1
) -> dict[str, object]:
    """Every household of ``seeds`` (``jobs`` processes side by side; the result does not depend on it)."""
    settings = settings or WellbeingSettings()
    args = (list(seeds), [days] * len(seeds), [settings] * len(seeds), range(len(seeds)))
    if jobs <= 1:
        return summarise(list(map(run_household, *args)))
    with ProcessPoolExecutor(jobs) as pool:
        return summarise(list(pool.map(run_household, *args, chunksize=2)))
