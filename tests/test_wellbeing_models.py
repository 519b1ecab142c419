"""The evaluation's household models give what their cited sources say (docs/wellbeing.md, bench/wellbeing/)."""

from __future__ import annotations

import random
import statistics

from bench.wellbeing.household import DAY, HOUR, Surprises
from bench.wellbeing.models import MODELS
from bench.wellbeing.reu import Resident, simulate_reu


def _per_day(model: str, seeds: range, days: int = 20) -> tuple[float, float, float]:
    """Mean litres a day, water uses a day and hours out a day over ``seeds``."""
    litres, uses, out = [], [], []
    for seed in seeds:
        home = MODELS[model](seed, days, 0)
        litres.append(sum(u.litres for u in home.uses if u.start < days * DAY) / days)
        uses.append(len(home.uses) / days)
        out.append(sum(b - a for d in home.days for a, b in d.out) / HOUR / days)
    return statistics.mean(litres), statistics.mean(uses), statistics.mean(out)


def test_the_reu_model_flushes_five_times_a_day_and_showers_for_about_eight_minutes() -> None:
    """REU2016: 5 flushes per person per day; a shower of 15.8 gal over 7.8 min at 2.1 gpm."""
    flushes, showers = [], []
    for seed in range(6):
        rng = random.Random(seed)
        resident = Resident.draw(rng)
        uses, _, _ = simulate_reu(resident, 20, rng, Surprises(0, 0, 0, 0, 0))
        flushes.append(sum(abs(u.flow - resident.refill_lps) < 1e-9 for u in uses) / 20)
        showers += [u.duration / 60 for u in uses if 0.11 <= u.flow <= 0.15 and u.duration > 120]
    assert 4.0 <= statistics.mean(flushes) <= 6.5
    assert 6.5 <= statistics.mean(showers) <= 9.0


def test_the_long_outings_model_is_out_more_than_the_compact_one() -> None:
    compact = _per_day("compact", range(1, 7))
    outings = _per_day("outings", range(1, 7))
    reu = _per_day("reu", range(1, 7))
    assert outings[2] >= compact[2] + 1.5  # regular long outings: hours out a day
    assert 3.0 <= outings[2] <= 8.0
    for litres, uses, _ in (compact, outings, reu):
        assert 100 <= litres <= 220 and 15 <= uses <= 40
