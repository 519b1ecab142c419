"""The household models the wellbeing rules are evaluated on, behind one shape (``Household``).

- ``compact``: our own end-use model (``household``), mostly at home; metered four ways (1 L / 10 L, 10 s / 60 s).
- ``outings``: the same person with regular long outings (``outings``).
- ``reu``: a model written from the REU2016 end-use study (``reu``).
- ``simdeum-home`` / ``simdeum-out``: households made by pysimdeum, the peer-reviewed SIMDEUM simulator, run as a
  separate tool (``simdeum``): a senior staying home, and the same senior out a median 8 h a day.
The last four are metered with 1 L pulses polled every 60 s, as the product side's check was.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from bench.wellbeing import simdeum
from bench.wellbeing.household import Day, Person, Surprises, Use, simulate
from bench.wellbeing.outings import simulate_outings
from bench.wellbeing.reu import Resident, simulate_reu

SETUPS: tuple[tuple[float, float], ...] = ((1.0, 60.0), (10.0, 60.0), (1.0, 10.0), (10.0, 10.0))
PEER_SETUP = (1.0, 60.0)


@dataclass
class Household:
    """One simulated home: what the person does, the leaks, each day's times, and how the home is metered."""

    uses: list[Use]
    leaks: list[Use]
    days: list[Day]
    flush: Callable[[float], Use]  # a toilet flush at this time (a night visit before a collapse)
    shower_lps: float  # a shower left running (a collapse in the shower)
    resolution_l: float
    poll_s: float


def _compact(seed: int, days: int, index: int) -> Household:
    rng = random.Random(seed)
    person = Person.draw(rng)
    uses, leaks, diary = simulate(person, days, rng, Surprises())
    resolution, poll = SETUPS[index % len(SETUPS)]
    return Household(uses, leaks, diary, _flusher(person.cistern_l, 0.042), 0.13, resolution, poll)


def _outings(seed: int, days: int, index: int) -> Household:
    rng = random.Random(seed)
    person = Person.draw(rng)
    uses, leaks, diary = simulate_outings(person, days, rng, Surprises())
    return Household(uses, leaks, diary, _flusher(person.cistern_l, 0.042), 0.13, *PEER_SETUP)


def _reu(seed: int, days: int, index: int) -> Household:
    rng = random.Random(seed)
    resident = Resident.draw(rng)
    uses, leaks, diary = simulate_reu(resident, days, rng, Surprises())
    return Household(uses, leaks, diary, resident.flush, 0.13, *PEER_SETUP)


def _simdeum(variant: str) -> Callable[[int, int, int], Household]:
    def build(seed: int, days: int, index: int) -> Household:
        data = simdeum.load(variant, seed, days)
        return Household(data.uses, [], data.days, _flusher(data.wc_litres, data.wc_lps), data.shower_lps, *PEER_SETUP)

    return build


def _flusher(litres: float, lps: float) -> Callable[[float], Use]:
    return lambda t: Use(t, litres / lps, lps)


MODELS: dict[str, Callable[[int, int, int], Household]] = {
    "compact": _compact,
    "outings": _outings,
    "reu": _reu,
    "simdeum-home": _simdeum("home"),
    "simdeum-out": _simdeum("out"),
}
# which targets each model is held to (the two kinds of household)
AT_HOME = frozenset({"compact", "reu", "simdeum-home"})
