"""The evaluation's household models give what their cited sources say (docs/wellbeing.md, bench/wellbeing/), and the
bench's resident answers a check-in only when her diary says she can."""

from __future__ import annotations

import dataclasses
import random
import statistics

from bench.wellbeing.household import DAY, HOUR, Surprises
from bench.wellbeing.models import MODELS
from bench.wellbeing.reu import Resident, simulate_reu
from bench.wellbeing.silences import late_mornings
from meter_node.wellbeing import WellbeingSettings


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


def test_a_household_with_a_door_contact_moves_it_leaving_and_coming_back_from_every_outing() -> None:
    """bench --door: two door events per outing, in order; a trip of nights away ends before the first use after it."""
    from bench.wellbeing.evaluate import door_times

    home = MODELS["compact"](3, 120, 0)
    doors = door_times(home)
    outings = [(a, b) for d in home.days for a, b in d.out]
    assert outings and len(doors) == 2 * len(outings) and doors == sorted(doors)
    trips = 0
    for day in home.days[:-1]:
        following = home.days[day.index + 1]
        for leave, back in day.out:
            if following.away and back >= following.index * DAY:  # a trip: back just before the next water
                door_back = doors[doors.index(leave) + 1]
                first_use = min(u.start for u in home.uses if u.start > back)
                assert door_back == first_use - 60.0 and door_back > following.index * DAY
                trips += 1
    assert trips >= 1  # seed 3 has nights away


def test_late_mornings_count_fewer_days_as_the_allowance_grows_and_the_away_days_apart() -> None:
    by_allowance = [late_mornings("compact", (1, 2, 3, 4), h) for h in (1.0, 3.0, 12.0)]
    lates = [late for late, _ in by_allowance]
    assert lates[0] > lates[1] > lates[2] >= 0.0  # a longer allowance after the usual first use: fewer late days
    assert len({away for _, away in by_allowance}) == 1  # days without any use do not depend on it


def test_whereabouts_follow_the_diary() -> None:
    from bench.wellbeing.evaluate import whereabouts

    home = MODELS["compact"](3, 30, 0)
    day = next(d for d in home.days[1:] if d.out and not d.away)
    leave, back = day.out[0]
    assert whereabouts(home, (leave + back) / 2) == "out"
    assert whereabouts(home, day.wake - 0.5 * HOUR) == "asleep"
    awake = [day.wake + HOUR * k / 4 for k in range(1, 40)]
    assert any(whereabouts(home, t) == "up" for t in awake if t < day.bed and not leave <= t <= back)


def test_a_resident_up_at_home_answers_the_check_in_and_her_family_hears_nothing() -> None:
    """bench --answer: the check-in (ask_first_min) is answered only by a resident up at home, with chance P."""
    from bench.wellbeing.evaluate import run_household

    settings = dataclasses.replace(WellbeingSettings(), ask_first_min=10.0)
    answered = run_household("compact", 3, 45, settings, 0, answer=1.0)
    unanswered = run_household("compact", 3, 45, settings, 0, answer=0.0)
    assert answered.checks_in == unanswered.checks_in == {"up": 1}  # seed 3: one silence past its warning
    assert (answered.answered, unanswered.answered) == (1, 0)
    assert (answered.false_node["warning"], unanswered.false_node["warning"]) == (0, 1)


def test_a_question_on_her_phone_is_answered_out_of_the_flat_and_one_at_home_is_not() -> None:
    """bench --phone: the check-in reaches her phone too, so she can answer while out; never while asleep."""
    from bench.wellbeing.evaluate import Home

    home = MODELS["compact"](3, 30, 0)
    day = next(d for d in home.days[1:] if d.out and not d.away)
    leave, back = day.out[0]
    for phone, presses in ((False, 0), (True, 1)):
        inputs = Home(home, [], 1.0, phone)
        inputs._ask((leave + back) / 2)
        inputs._ask(day.wake - 0.5 * HOUR)  # asleep: nobody answers
        assert (len(inputs.oks), inputs.asked) == (presses, {"out": 1, "asleep": 1})
