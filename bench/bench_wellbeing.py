"""Wellbeing rules on every household model: recall and false alarms beside the services' fixed rules.

Report seeds only (the rules were tuned on bench.wellbeing.evaluate.TUNE_SEEDS). ``--quick``: 8 households x 45 days
per model. Also the monitor's cost per poll, what a node pays for each meter it reads.
"""

from __future__ import annotations

import os
import random
import time

from bench.figures import Figure
from bench.wellbeing.__main__ import QUICK_SEEDS
from bench.wellbeing.evaluate import EPOCH0, REPORT_SEEDS, TZ, evaluate
from bench.wellbeing.household import DAY, Person, Surprises, Use, simulate
from bench.wellbeing.meter import MeterSetup, readings
from bench.wellbeing.models import AT_HOME, MODELS
from bench.wellbeing.report import figures
from bench.wellbeing.summary import summarise
from meter_node.wellbeing import WellbeingMonitor, WellbeingSettings


def monitor_cost(
    days: int,
    resolution: float = 1.0,
    leak_lph: float = 0.0,
    poll_s: float = 10.0,
    settings: WellbeingSettings | None = None,
) -> tuple[float, int]:
    """CPU microseconds per update (process time: what the Pi pays, not the wall clock of a shared machine) over one
    household polled every ``poll_s``, and the polls fed; the daily model fit
    is included (spread over the polls of the day: the dearer the slower the polls). ``leak_lph``: a leak running
    all the time. ``settings``: the defaults unless given (``ask_first_min`` looks ahead)."""
    rng = random.Random(7)
    uses, leaks, _ = simulate(Person.draw(rng), days, rng, Surprises())
    if leak_lph:
        leaks = [*leaks, Use(0.0, days * DAY, leak_lph / 3600.0)]
    series = list(readings(uses, leaks, MeterSetup(resolution, poll_s), 0.0, days * DAY, EPOCH0))
    monitor = WellbeingMonitor(settings or WellbeingSettings(), TZ)
    update = monitor.update
    start = time.process_time()
    for t, total in series:
        update(t, total)
    return (time.process_time() - start) / len(series) * 1e6, len(series)


def run(quick: bool) -> list[Figure]:
    days = 7 if quick else 30
    cost, polls = monitor_cost(days)
    leak_cost, leak_polls = monitor_cost(days, resolution=10.0, leak_lph=60.0)
    slow_cost, slow_polls = monitor_cost(days, poll_s=60.0)
    ask_cost, ask_polls = monitor_cost(days, settings=WellbeingSettings(ask_first_min=10.0))
    out = [
        Figure("wellbeing monitor CPU per poll", round(cost, 2), "us", f"{polls:,} polls, 1 L pulses every 10 s"),
        Figure(
            "wellbeing monitor CPU per poll, 10 L meter, 60 L/h leak",
            round(leak_cost, 2),
            "us",
            f"{leak_polls:,} polls every 10 s, a pulse every 10 min besides use",
        ),
        Figure(
            "wellbeing monitor CPU per poll, 1 L meter polled every 60 s",
            round(slow_cost, 2),
            "us",
            f"<= 10 us; {slow_polls:,} polls: the daily fit spread over fewer polls",
        ),
        Figure(
            "wellbeing monitor CPU per poll, asking first (ask_first_min = 10)",
            round(ask_cost, 2),
            "us",
            f"<= 10 us; {ask_polls:,} polls, 1 L pulses every 10 s; the rules look ahead",
        ),
    ]
    for model in MODELS:
        results = evaluate(model, QUICK_SEEDS if quick else REPORT_SEEDS, 45 if quick else 60, jobs=os.cpu_count() or 1)
        out += figures(summarise(results), model, model in AT_HOME)
    return out
