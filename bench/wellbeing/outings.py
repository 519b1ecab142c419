"""The long-outings household model: the same person as ``household``, with a week full of regular outings.

A morning at the market most days, afternoons at the community activity centre on two to four fixed weekdays, and
a whole day at the children's once or twice a week, each leaving and coming back at a different time every day
(our assumptions for an active elderly person in a Shanghai neighbourhood, stated so they can be challenged: no
survey of their timing was found). The harmless surprises, leaks and the water use at home are the household
model's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.wellbeing.household import DAY, HOUR, Day, Person, Surprises, Use, simulate


@dataclass(frozen=True)
class Regulars:
    """One resident's weekly outings (drawn once per household)."""

    market_p: float  # chance of a morning at the market on a day at home
    centre_days: frozenset[int]  # weekdays (0 = Monday) with an afternoon at the activity centre
    children_days: frozenset[int]  # weekdays with a whole day at the children's (most weeks)
    children_p: float  # chance the children's day happens in a given week

    @classmethod
    def draw(cls, rng: random.Random) -> Regulars:
        weekdays = list(range(5))
        centre = frozenset(rng.sample(weekdays, rng.randint(2, 4)))
        children = frozenset(rng.sample([5, 6, *[d for d in weekdays if d not in centre]], rng.randint(1, 2)))
        return cls(rng.uniform(0.5, 0.9), centre, children, rng.uniform(0.6, 0.9))


def plan_for(regulars: Regulars):
    """An outing plan (``household.OutingPlan``) following ``regulars``; times vary from day to day."""

    def plan(person: Person, rng: random.Random, day: Day, surprises: Surprises) -> list[tuple[float, float]]:
        base = day.index * DAY
        weekday = day.index % 7  # simulation day 0 is a Monday
        if weekday in regulars.children_days and rng.random() < regulars.children_p:
            leave = base + rng.uniform(8.5, 11.0) * HOUR
            back = base + rng.uniform(17.5, 21.0) * HOUR
            day.notes.append("day at the children's")
            return [(leave, min(back, day.bed - 0.5 * HOUR))]
        outings = []
        if rng.random() < regulars.market_p:
            leave = max(day.wake + 0.5 * HOUR, base + rng.uniform(6.5, 9.0) * HOUR)
            outings.append((leave, leave + rng.uniform(1.0, 3.0) * HOUR))
        if weekday in regulars.centre_days and rng.random() < 0.9:
            leave = base + rng.uniform(12.5, 14.5) * HOUR
            outings.append((leave, leave + rng.uniform(2.5, 4.5) * HOUR))
        elif rng.random() < person.afternoon_out_p:
            leave = base + rng.uniform(14.0, 16.0) * HOUR
            outings.append((leave, leave + rng.uniform(1.0, 3.0) * HOUR))
        return outings

    return plan


def simulate_outings(
    person: Person, days: int, rng: random.Random, surprises: Surprises
) -> tuple[list[Use], list[Use], list[Day]]:
    """(uses, leaks, days) for a resident with regular long outings."""
    return simulate(person, days, rng, surprises, plan_for(Regulars.draw(rng)))
