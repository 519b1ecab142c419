"""The wellbeing rules across a power cut that stops the node's clock (a Pi has none of its own): 20 regular
households learned for 21 days, then an 8 h cut from 10:00 while they go on using water; the node starts at
18:00 and NTP steps its clock 3 minutes later. Counted: inactivity alert events on the day of the cut, with

- **right**: the clock right from the start (what the rules can do at best);
- **stopped**: the clock restarting at the time it stopped, stepped by NTP (the rules fed from the start);
- **held**: as the meter node does (``[meter] clock_wait_min``): the rules wait for the synchronised clock.
"""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from bench.figures import Figure

TZ = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 3, 1, tzinfo=TZ).timestamp()
DAYS, CUT_DAY, CUT_FROM_H, CUT_TO_H, NTP_AFTER_S = 23, 21, 10, 18, 180


def _totals(seed: int) -> list[tuple[float, float]]:
    """(time, litres) each minute: uses from about 07:00 to 22:00, 0.3-2.5 h apart, 3 to 40 L each."""
    rng = random.Random(seed)
    uses: list[tuple[float, float]] = []
    for day in range(DAYS):
        t, end = T0 + day * 86400 + 6.5 * 3600 + rng.uniform(0, 3600), T0 + day * 86400 + 22 * 3600
        while t < end:
            uses.append((t, rng.choice([3.0, 6.0, 9.0, 15.0, 40.0])))
            t += rng.uniform(0.3, 2.5) * 3600
    total, i, out = 1000.0, 0, []
    for minute in range(DAYS * 1440):
        t = T0 + minute * 60
        while i < len(uses) and uses[i][0] <= t:
            total += uses[i][1]
            i += 1
        out.append((t, total))
    return out


def alerts_on_the_cut_day(clock: str, seed: int) -> int:
    from meter_node.wellbeing import WellbeingMonitor, WellbeingSettings

    monitor = WellbeingMonitor(WellbeingSettings(), TZ, key="bench")
    cut = T0 + CUT_DAY * 86400
    off, on = cut + CUT_FROM_H * 3600, cut + CUT_TO_H * 3600
    count = 0
    for t, total in _totals(seed):
        if off <= t < on:
            continue  # the node is off
        fed = t
        if on <= t < on + NTP_AFTER_S:
            if clock == "held":
                continue
            if clock == "stopped":
                fed = off + (t - on)
        for detection in monitor.update(fed, total):
            count += detection.kind == "inactivity" and cut <= t < cut + 86400
    return count


def run(quick: bool) -> list[Figure]:
    homes = 5 if quick else 20
    figures = []
    for clock in ("right", "stopped", "held"):
        count = sum(alerts_on_the_cut_day(clock, seed) for seed in range(1, homes + 1))
        figures.append(Figure(f"inactivity alert events after an 8 h cut, clock {clock}", count, f"/{homes} homes"))
    return figures
