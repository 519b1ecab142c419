"""The wellbeing rules across a power cut that stops the node's clock (a Pi has none of its own): 20 regular
households learned for 21 days, then an 8 h cut from 10:00 while they go on using water; the node starts at
18:00. Counted: inactivity alert events on the day of the cut, with

- **right**: the clock right from the start (what the rules can do at best);
- **stopped**: the clock restarting at the time it stopped, stepped by NTP 3 minutes later (the rules fed from the
  start);
- **held**: as the meter node does (``[meter] clock_wait_min``): the rules wait for the synchronised clock;
- **late**: NTP answers only after the wait (30 min), at 60 min: the rules ran on the stopped clock meanwhile, and
  are fed on through NTP's step;
- **late, re-dated**: the same, as the meter node does (meter_node/clock_frame.py): at the step, what the rules saw
  since the start is dated again by the monotonic clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from zoneinfo import ZoneInfo

from bench.figures import Figure

TZ = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 3, 1, tzinfo=TZ).timestamp()
DAYS, CUT_DAY, CUT_FROM_H, CUT_TO_H, NTP_AFTER_S = 23, 21, 10, 18, 180
WAIT_S, LATE_NTP_S = 1800, 3600  # the node's clock_wait_min, and when NTP answers in the late cases
CLOCKS = ("right", "stopped", "held", "late", "late, re-dated")


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
    from common.clock import ManualClock
    from meter_node.clock_frame import ClockWatch
    from meter_node.wellbeing import WellbeingMonitor, WellbeingSettings

    monitors = {"home": WellbeingMonitor(WellbeingSettings(), TZ, key="bench")}
    cut = T0 + CUT_DAY * 86400
    off, on = cut + CUT_FROM_H * 3600, cut + CUT_TO_H * 3600
    ntp = LATE_NTP_S if clock.startswith("late") else NTP_AFTER_S
    node = ManualClock(wall=off, monotonic=on, synced=False)  # the node's clocks from its start: monotonic = true
    watch: ClockWatch | None = None
    count = 0
    for t, total in _totals(seed):
        if off <= t < on:
            continue  # the node is off
        found = []
        if clock == "late, re-dated" and t >= on:
            node.advance(t - node.monotonic())
            if t >= on + ntp and not node.wall_synced():
                node.set_wall(t, synced=True)  # NTP's step
            watch = watch or ClockWatch(node, monitors)
            found += [d for _, d in watch.check(monitors)]
            if t >= on + WAIT_S:
                found += watch.give(monitors, "home", "read", t, total)
        elif on <= t < on + ntp and clock != "right":
            if clock != "held" and t >= on + (WAIT_S if clock == "late" else 0):
                found += monitors["home"].update(off + (t - on), total)  # dated by the stopped clock
        else:
            found += monitors["home"].update(t, total)
        count += sum(d.kind == "inactivity" and cut <= t < cut + 86400 for d in found)
    return count


def run(quick: bool) -> list[Figure]:
    logging.getLogger("meter_node.clock_frame").setLevel(logging.ERROR)  # "dated again", once per home
    homes = 5 if quick else 20
    figures = []
    for clock in CLOCKS:
        count = sum(alerts_on_the_cut_day(clock, seed) for seed in range(1, homes + 1))
        figures.append(Figure(f"inactivity alert events after an 8 h cut, clock {clock}", count, f"/{homes} homes"))
    return figures
