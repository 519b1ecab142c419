"""A household model written from a different published source: the North American Residential End Uses of
Water study, version 2 (REU2016; DeOreo, Mayer, Dziegielewski and Kiefer, Water Research Foundation project 4309).

Figures taken from the study as quoted publicly (docs/wellbeing.md lists where):
- toilets: 5 flushes per person per day, about 24% of indoor use; flush volumes of the US fixture generations
  (13.2 L = 3.5 gpf before 1994, 6.1 L = 1.6 gpf since, 4.8 L = 1.28 gpf WaterSense); a 1.5 gal tank refills in
  about 30 s (3 gpm), far faster than SIMDEUM's 0.042 L/s;
- showers: 15.8 gal (59.8 L) lasting 7.8 min at 2.1 gpm (0.13 L/s) on average, "just under one a day";
- faucets: about 19% of indoor use; more than 60% of people run taps 5-10 minutes a day (Kowalski and
  Marshallsay, IWA Water Science & Technology: Water Supply 7(5-6), one person's taps 20-30 L a day for 30%);
- clothes washer 0.30 loads per person per day, dishwasher 0.17 loads at 6.1 gal (23 L), in 84% of homes;
- leaks: about 12% of indoor use, most of it from a minority of homes with a leak that runs all the time;
- the diurnal curve: a morning peak (07-09) and a lower, broader evening peak, little use from 01 to 05.
Our assumptions (no source found): one retired person, wake 06:00-08:30 and bed 21:30-23:30 with 30-60 min of
day-to-day spread, 0.5-2 night toilet visits, a daily outing of 1-4 h on most days, the surprise rates of
``household.Surprises``. The shape of use is the point: short fast flushes, many short faucet draws, a morning
peak, persistent leaks; not the Shanghai volumes of ``household``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from bench.wellbeing.household import DAY, HOUR, Day, Surprises, Use, _poisson

# relative use by local hour of the waking day (REU's morning and evening peaks); index 0 = the hour after waking
_WAKING_CURVE = (3.0, 2.6, 1.8, 1.2, 1.0, 1.1, 1.2, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.4, 1.2, 1.0, 0.8)


@dataclass(frozen=True)
class Resident:
    wake_h: float
    wake_sd_h: float
    bed_h: float
    nocturia: float
    flush_l: float
    refill_lps: float
    shower_p: float
    faucet_per_day: float
    outing_p: float
    dishwasher: bool
    leak_lph: float  # a leak that runs all the time (0: none)

    @classmethod
    def draw(cls, rng: random.Random) -> Resident:
        return cls(
            wake_h=rng.uniform(6.0, 8.5),
            wake_sd_h=rng.uniform(0.5, 1.0),
            bed_h=rng.uniform(21.5, 23.5),
            nocturia=rng.uniform(0.5, 2.0),
            flush_l=rng.choices((13.2, 6.1, 4.8), weights=(35, 40, 25))[0],
            refill_lps=rng.uniform(0.12, 0.19),
            shower_p=rng.uniform(0.6, 0.95),
            faucet_per_day=rng.uniform(14.0, 24.0),
            outing_p=rng.uniform(0.5, 0.9),
            dishwasher=rng.random() < 0.84,
            leak_lph=rng.uniform(0.5, 4.0) if rng.random() < 0.2 else 0.0,
        )

    def flush(self, t: float) -> Use:
        return Use(t, self.flush_l / self.refill_lps, self.refill_lps)


def _waking_time(rng: random.Random, wake: float, bed: float) -> float:
    """A moment of the waking day drawn from the REU-shaped curve."""
    hours = max(1, int((bed - wake) / HOUR))
    weights = [_WAKING_CURVE[min(h, len(_WAKING_CURVE) - 1)] for h in range(hours)]
    hour = rng.choices(range(hours), weights=weights)[0]
    return min(bed, wake + (hour + rng.random()) * HOUR)


def simulate_reu(
    resident: Resident, days: int, rng: random.Random, surprises: Surprises
) -> tuple[list[Use], list[Use], list[Day]]:
    """(uses, leaks, days) for one retired person living alone, REU2016-shaped."""
    uses: list[Use] = []
    diary: list[Day] = []
    leaks = [Use(0.0, days * DAY, resident.leak_lph / HOUR)] if resident.leak_lph else []
    away_left = 0
    for d in range(days):
        base = d * DAY
        wake = base + (resident.wake_h + rng.gauss(0, resident.wake_sd_h)) * HOUR
        bed = base + (resident.bed_h + rng.gauss(0, 0.5)) * HOUR
        day = Day(d, wake, bed)
        diary.append(day)
        if away_left > 0:
            away_left -= 1
            day.away = True
            continue
        if rng.random() < surprises.late_wake_p:
            wake = day.wake = wake + rng.uniform(1.5, 3.0) * HOUR
        previous_bed = base - DAY + resident.bed_h * HOUR
        for _ in range(_poisson(rng, resident.nocturia)):
            uses.append(resident.flush(rng.uniform(previous_bed + 0.5 * HOUR, wake - 0.3 * HOUR)))
        if rng.random() < surprises.trip_p:
            away_left = rng.randint(1, 3)
            leave = wake + rng.uniform(1.0, 4.0) * HOUR
            day.out = [(leave, base + DAY)]
            _waking_uses(resident, rng, uses, day, wake, leave)
            continue
        if rng.random() < resident.outing_p:
            leave = rng.uniform(wake + 1.0 * HOUR, max(wake + 1.5 * HOUR, bed - 5.0 * HOUR))
            day.out = [(leave, leave + rng.uniform(1.0, 4.0) * HOUR)]
        _waking_uses(resident, rng, uses, day, wake, bed)
    uses.sort(key=lambda u: u.start)
    return uses, leaks, diary


def _waking_uses(resident: Resident, rng: random.Random, uses: list[Use], day: Day, wake: float, end: float) -> None:
    share = max(0.0, (end - wake) / max(HOUR, day.bed - wake))

    def add(use: Use) -> None:
        if wake <= use.start <= end and not any(a <= use.start <= b for a, b in day.out):
            uses.append(use)

    add(resident.flush(wake + 120))
    for _ in range(_poisson(rng, 4.0 * share)):  # the rest of 5 flushes a day
        add(resident.flush(_waking_time(rng, wake, end)))
    for _ in range(_poisson(rng, resident.faucet_per_day * share)):
        seconds = rng.lognormvariate(math.log(25), 0.7)  # 5-10 min a day over ~15-24 draws
        add(Use(_waking_time(rng, wake, end), seconds, rng.uniform(0.05, 0.12)))
    if rng.random() < resident.shower_p * share:
        minutes = rng.lognormvariate(math.log(7.0), 0.35)  # mean about 7.8 min
        add(Use(_waking_time(rng, wake, end), minutes * 60, rng.uniform(0.11, 0.15)))
    if rng.random() < 0.30 * share:  # clothes washer: four fills of about 25 L
        t = _waking_time(rng, wake, end)
        for k in range(4):
            add(Use(t + k * 600, 90, rng.uniform(0.25, 0.3)))
    if resident.dishwasher and rng.random() < 0.17 * share:
        t = _waking_time(rng, wake, end)
        for k in range(4):
            add(Use(t + k * 900, 60, 0.1))
    for _, back in day.out:  # home again: the toilet and a wash
        if rng.random() < 0.8:
            add(resident.flush(back + rng.uniform(60, 900)))
