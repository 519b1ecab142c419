"""A compact stochastic model of one elderly person living alone: water end-use events, second by second.

Parameters (per use) follow the SIMDEUM end-use statistics (Blokker et al. 2010, J. Water Resour. Plann.
Manage. 136(1):19-26; the values as shipped in KWR's pysimdeum data files for the "senior" user): toilet
7.2 flushes a day (Poisson), 6 or 9 L cisterns filling at 0.042 L/s; bathroom tap 4.1 uses a day, 15-40 s at
up to 0.083 L/s; kitchen tap about 10 uses a day for a one-person home, 13-45 s at up to 0.17-0.25 L/s; shower
with probability 0.69 a day, chi-square duration with 6.5 minutes' mean at 0.123-0.142 L/s. Together (with our
bed-time and back-home routines and the washing machine) they give 150-190 L a day (tests/test_wellbeing.py checks
it): Shanghai's 165 L/person/day quoted in 2006 (China Daily 2006-05-16), above China's national 125 L/person/day
of 2022. An elderly person living alone probably uses less; fewer pulses would make silence harder to tell from
life on 10 L meters, so the figures for those are on the kind side. pysimdeum's senior is away ~10 h a day; this
model is for a mostly housebound person (REFERENCE.md), with a daily market trip as the usual outing.
Our own assumptions (no public source found, stated so they can be challenged): wake 05:30-07:30 with a
20-40 min day-to-day spread, bed 21:00-22:30, 0.3-2 night toilet visits (nocturia is common after 70), the
washing machine 2-3 times a week at ~50 L, and the surprise rates in ``Surprises``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True)
class Use:
    """One water use: start (s since the simulation's local midnight of day 0), seconds, litres per second."""

    start: float
    duration: float
    flow: float

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def litres(self) -> float:
        return self.duration * self.flow


@dataclass(frozen=True)
class Person:
    """The habits of one resident (drawn once per household)."""

    wake_h: float
    wake_sd_h: float
    bed_h: float
    nocturia: float
    night_flush_p: float
    cistern_l: float
    market_p: float
    afternoon_out_p: float
    shower_evening: bool
    laundry_per_week: float

    @classmethod
    def draw(cls, rng: random.Random) -> Person:
        return cls(
            wake_h=rng.uniform(5.5, 7.5),
            wake_sd_h=rng.uniform(0.33, 0.67),
            bed_h=rng.uniform(21.0, 22.5),
            nocturia=rng.uniform(0.3, 2.0),
            night_flush_p=rng.uniform(0.7, 1.0),
            cistern_l=rng.choice((6.0, 6.0, 9.0)),
            market_p=rng.uniform(0.3, 0.8),
            afternoon_out_p=rng.uniform(0.1, 0.4),
            shower_evening=rng.random() < 0.6,
            laundry_per_week=rng.uniform(2.0, 3.0),
        )


@dataclass(frozen=True)
class Surprises:
    """Harmless surprises per day (our assumptions, roughly what the Nagano and Zhuhai reports describe)."""

    late_wake_p: float = 0.05  # wakes 1.5-3 h later than usual (about 1.5 a month)
    visitors_p: float = 0.06  # family for the afternoon: twice the use for 3-6 h
    long_outing_p: float = 0.03  # a day out of 6-10 h (about once a month)
    trip_p: float = 1 / 90  # 1-3 nights away, not entered as away
    leak_p: float = 1 / 45  # a drip (0.5-3 L/h) or a running toilet (5-30 L/h) for 2-10 days


@dataclass
class Day:
    """What happened on one simulated day (for the incident injector and the report)."""

    index: int
    wake: float
    bed: float
    away: bool = False
    notes: list[str] = field(default_factory=list)
    out: list[tuple[float, float]] = field(default_factory=list)  # (leave, back): out of the flat


# a day's outings: (person, rng, day, surprises) -> [(leave, back), ...]; the household model's own is _usual_outings
OutingPlan = Callable[[Person, random.Random, Day, Surprises], list[tuple[float, float]]]


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: fine for the small rates here
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _usual_outings(person: Person, rng: random.Random, day: Day, surprises: Surprises) -> list[tuple[float, float]]:
    """A mostly housebound person: the market most mornings, sometimes out in the afternoon, a long day out now
    and then."""
    base = day.index * DAY
    if rng.random() < surprises.long_outing_p:
        start = day.wake + rng.uniform(1.0, 2.5) * HOUR
        day.notes.append("long outing")
        return [(start, start + rng.uniform(6, 10) * HOUR)]
    outings = []
    if rng.random() < person.market_p:
        start = base + rng.uniform(8.0, 10.0) * HOUR
        outings.append((start, start + rng.uniform(1.0, 3.0) * HOUR))
    if rng.random() < person.afternoon_out_p:
        start = base + rng.uniform(14.0, 16.0) * HOUR
        outings.append((start, start + rng.uniform(1.0, 3.0) * HOUR))
    return outings


def simulate(
    person: Person, days: int, rng: random.Random, surprises: Surprises, plan: OutingPlan = _usual_outings
) -> tuple[list[Use], list[Use], list[Day]]:
    """(uses, leaks, days): uses sorted by start; leaks are long low flows that go on whatever the person does.
    ``plan`` says when the person goes out each day."""
    uses: list[Use] = []
    leaks: list[Use] = []
    diary: list[Day] = []
    trip_left = 0
    leak_until = -1.0
    for d in range(days):
        base = d * DAY
        wake = base + (person.wake_h + rng.gauss(0, person.wake_sd_h)) * HOUR
        bed = base + (person.bed_h + rng.gauss(0, 0.4)) * HOUR
        day = Day(d, wake, bed)
        diary.append(day)
        if base >= leak_until and rng.random() < surprises.leak_p:
            flow_lph = rng.uniform(0.5, 3.0) if rng.random() < 0.5 else rng.uniform(5.0, 30.0)
            length = rng.uniform(2, 10) * DAY
            start = base + rng.uniform(0, DAY)
            leaks.append(Use(start, length, flow_lph / HOUR))
            leak_until = start + length
            day.notes.append(f"leak {flow_lph:.1f} L/h")
        if trip_left > 0:
            trip_left -= 1
            day.away = True
            day.notes.append("away")
            if trip_left == 0:  # back in the afternoon
                back = base + rng.uniform(14, 18) * HOUR
                _awake_period(person, rng, uses, back, bed, meals=False)
            continue
        if rng.random() < surprises.late_wake_p:
            wake += rng.uniform(1.5, 3.0) * HOUR
            day.wake = wake
            day.notes.append("late wake")
        _night(person, rng, uses, base - DAY + person.bed_h * HOUR, wake)
        if rng.random() < surprises.trip_p:
            trip_left = rng.randint(1, 3)
            leave = wake + rng.uniform(1.0, 4.0) * HOUR
            _awake_period(person, rng, uses, wake, leave, meals=True)
            day.out = [(leave, base + DAY)]
            day.notes.append(f"trip {trip_left} nights")
            continue
        outings = plan(person, rng, day, surprises)
        day.out = outings
        visitors = None
        if rng.random() < surprises.visitors_p:
            start = base + rng.uniform(11, 15) * HOUR
            visitors = (start, start + rng.uniform(3, 6) * HOUR)
            day.notes.append("visitors")
        _day_uses(person, rng, uses, day, outings, visitors)
    uses.sort(key=lambda u: u.start)
    return uses, leaks, diary


def _night(person: Person, rng: random.Random, uses: list[Use], bed: float, wake: float) -> None:
    for _ in range(_poisson(rng, person.nocturia)):
        t = rng.uniform(bed + 0.5 * HOUR, max(bed + 0.6 * HOUR, wake - 0.3 * HOUR))
        if rng.random() < person.night_flush_p:
            uses.append(_flush(person, t))
        if rng.random() < 0.4:
            uses.append(Use(t + 150, rng.uniform(8, 20), rng.uniform(0.03, 0.083)))


def _flush(person: Person, t: float) -> Use:
    return Use(t, person.cistern_l / 0.042, 0.042)


def _awake_period(person: Person, rng: random.Random, uses: list[Use], start: float, end: float, meals: bool) -> None:
    """Toilet and taps at the usual rates between start and end (used around trips)."""
    hours = max(0.0, (end - start) / HOUR)
    for _ in range(_poisson(rng, 7.2 * hours / 16)):
        t = rng.uniform(start, end)
        uses.append(_flush(person, t))
    for _ in range(_poisson(rng, 14.0 * hours / 16)):
        uses.append(Use(rng.uniform(start, end), rng.lognormvariate(math.log(25), 0.5), rng.uniform(0.03, 0.17)))


def _day_uses(
    person: Person,
    rng: random.Random,
    uses: list[Use],
    day: Day,
    outings: list[tuple[float, float]],
    visitors: tuple[float, float] | None,
) -> None:
    wake, bed = day.wake, day.bed

    def home(t: float) -> bool:
        return wake <= t <= bed and not any(a <= t <= b for a, b in outings)

    def add(t: float, use: Use) -> None:
        if home(t):
            uses.append(use)

    # back home from an outing: most people go to the toilet and wash their hands soon after
    for _, back in outings:
        if rng.random() < 0.8:
            t = back + rng.uniform(60, 900)
            add(t, _flush(person, t))
            add(t + 150, Use(t + 150, rng.lognormvariate(math.log(15), 0.5), rng.uniform(0.03, 0.083)))
    # getting up: toilet, wash, kettle
    add(wake + 60, _flush(person, wake + 60))
    add(wake + 300, Use(wake + 300, rng.lognormvariate(math.log(40), 0.4), rng.uniform(0.04, 0.083)))
    add(wake + 900, Use(wake + 900, rng.lognormvariate(math.log(20), 0.4), rng.uniform(0.08, 0.17)))
    for _ in range(_poisson(rng, 6.2)):  # the rest of 7.2 flushes a day
        t = rng.uniform(wake + 0.5 * HOUR, bed)
        add(t, _flush(person, t))
        if rng.random() < 0.6:
            add(t + 150, Use(t + 150, rng.lognormvariate(math.log(15), 0.5), rng.uniform(0.03, 0.083)))
    for _ in range(_poisson(rng, 2.5)):  # other bathroom tap uses
        t = rng.uniform(wake, bed)
        add(t, Use(t, rng.lognormvariate(math.log(30), 0.5), rng.uniform(0.02, 0.083)))
    base = day.index * DAY
    for meal_h in (wake / HOUR - day.index * 24 + 0.5, 11.5, 17.5):  # cooking and washing up around meals
        centre = base + (meal_h + rng.gauss(0, 0.3)) * HOUR
        for _ in range(_poisson(rng, 3.0)):
            t = centre + rng.uniform(-0.5, 0.75) * HOUR
            add(t, Use(t, rng.lognormvariate(math.log(30), 0.6), rng.uniform(0.05, 0.2)))
    for _ in range(_poisson(rng, 2.0)):
        t = rng.uniform(wake, bed)
        add(t, Use(t, rng.lognormvariate(math.log(15), 0.5), rng.uniform(0.03, 0.17)))
    if rng.random() < 0.69:  # shower
        t = bed - rng.uniform(0.5, 2.0) * HOUR if person.shower_evening else wake + rng.uniform(0.3, 1.0) * HOUR
        minutes = max(2.0, rng.gammavariate(3.25, 2.0))  # chi-square, 6.5 degrees of freedom
        add(t, Use(t, minutes * 60, rng.uniform(0.123, 0.142)))
    if rng.random() < person.laundry_per_week / 7:  # washing machine: four fills of ~12 L
        t = rng.uniform(wake + HOUR, min(bed - 2 * HOUR, wake + 6 * HOUR))
        for k in range(4):
            add(t + k * 900, Use(t + k * 900, 60, 0.2))
    # going to bed: toilet and teeth
    add(bed - 600, _flush(person, bed - 600))
    add(bed - 400, Use(bed - 400, rng.lognormvariate(math.log(25), 0.4), rng.uniform(0.03, 0.083)))
    if visitors is not None:
        a, b = visitors
        for _ in range(_poisson(rng, 8.0 * (b - a) / HOUR / 2)):
            t = rng.uniform(a, b)
            if rng.random() < 0.5:
                add(t, _flush(person, t))
            else:
                add(t, Use(t, rng.lognormvariate(math.log(25), 0.5), rng.uniform(0.05, 0.17)))
