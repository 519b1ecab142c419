"""Wellbeing rules on simulated elderly households: recall and false alarms beside the services' fixed rules.

Report seeds only (the rules were tuned on bench.wellbeing.evaluate.TUNE_SEEDS). ``--quick``: 8 households x 45 days.
Also the monitor's cost per poll, what a node pays for each meter it reads.
"""

from __future__ import annotations

import os
import random
import time

from bench.figures import Figure
from bench.wellbeing.__main__ import QUICK_SEEDS
from bench.wellbeing.evaluate import EPOCH0, REPORT_SEEDS, TZ, evaluate
from bench.wellbeing.household import DAY, Person, Surprises, simulate
from bench.wellbeing.meter import MeterSetup, readings
from bench.wellbeing.report import figures
from meter_node.wellbeing import WellbeingMonitor, WellbeingSettings


def monitor_cost(days: int) -> tuple[float, int]:
    """Microseconds per update over one household polled every 10 s with 1 L pulses, and the polls fed."""
    rng = random.Random(7)
    uses, leaks, _ = simulate(Person.draw(rng), days, rng, Surprises())
    series = list(readings(uses, leaks, MeterSetup(1.0, 10.0), 0.0, days * DAY, EPOCH0))
    monitor = WellbeingMonitor(WellbeingSettings(), TZ)
    update = monitor.update
    start = time.perf_counter()
    for t, total in series:
        update(t, total)
    return (time.perf_counter() - start) / len(series) * 1e6, len(series)


def run(quick: bool) -> list[Figure]:
    summary = evaluate(QUICK_SEEDS if quick else REPORT_SEEDS, 45 if quick else 60, jobs=os.cpu_count() or 1)
    cost, polls = monitor_cost(7 if quick else 30)
    out = [
        Figure("wellbeing households evaluated", summary["households"], "", ""),
        Figure("wellbeing monitor cost per poll", round(cost, 2), "us", f"{polls:,} polls, 1 L pulses every 10 s"),
    ]
    return out + figures(summary)
