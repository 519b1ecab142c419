"""How often each household model is silent for long, whatever the rule: the floor no water-only rule can beat.

``python -m bench.wellbeing.silences [--seeds 1-20]`` counts, per household-month after day 16, the gaps between
simulated water uses (of any size, of 1 L or more, of 2 L or more) longer than 12, 14 and 20 hours, straight from the
simulated uses (no meter, no rule): any rule that finds every fall within 12 h warns at least that often. With a door
contact (``door``, as ``bench.wellbeing --door``) the door's movements are signs of life too, and the silences are
split into those at home and the outings (from leaving to coming back): a fall at home needs only the first watched
by the learned thresholds; an outing longer than the outer limit is a warning of its own kind ("not back yet").
``--mornings``: instead, the days whose first use comes more than 3, 4, 5 h after the usual one (the floor of false
urgent alerts for a night's silence made urgent by then).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.wellbeing.__main__ import _seed_range
from bench.wellbeing.evaluate import door_times
from bench.wellbeing.household import DAY, HOUR
from bench.wellbeing.models import MODELS

LIMITS_H = (12, 14, 20)
MIN_LITRES = (0.0, 1.0, 2.0)


def long_silences(model: str, seeds: tuple[int, ...], days: int = 60, start_day: int = 16) -> dict[float, list[float]]:
    """min litres of a use -> silences a household-month longer than each of LIMITS_H."""
    months = len(seeds) * (days - start_day) / 30.0
    out = {}
    for litres in MIN_LITRES:
        counts = [0] * len(LIMITS_H)
        for seed in seeds:
            home = MODELS[model](seed, days, seed)
            starts = sorted(u.start for u in home.uses if u.litres >= litres and u.start >= start_day * DAY)
            for a, b in zip(starts, starts[1:], strict=False):
                for i, limit in enumerate(LIMITS_H):
                    counts[i] += b - a > limit * HOUR
        out[litres] = [round(c / months, 2) for c in counts]
    return out


def door_silences(model: str, seeds: tuple[int, ...], days: int = 60, start_day: int = 16) -> dict[str, list[float]]:
    """With a door contact: silences at home (between uses of any size and the door) and outings, a household-month,
    longer than each of LIMITS_H."""
    months = len(seeds) * (days - start_day) / 30.0
    counts = {"at home": [0] * len(LIMITS_H), "out": [0] * len(LIMITS_H)}
    for seed in seeds:
        home = MODELS[model](seed, days, seed)
        doors = door_times(home)
        leaving = set(doors[0::2])
        signs = sorted({u.start for u in home.uses} | set(doors))
        signs = [t for t in signs if t >= start_day * DAY]
        for a, b in zip(signs, signs[1:], strict=False):
            where = "out" if a in leaving else "at home"
            for i, limit in enumerate(LIMITS_H):
                counts[where][i] += b - a > limit * HOUR
    return {k: [round(c / months, 2) for c in v] for k, v in counts.items()}


def late_mornings(
    model: str, seeds: tuple[int, ...], after_h: float, days: int = 60, start_day: int = 16
) -> tuple[float, float]:
    """(mornings at home, days away) a household-month whose first use of 1 L or more from 04:00 comes later than
    the usual (median) first use + ``after_h``, weekdays and weekends apart, or not at all: the floor of false
    urgent alerts for a rule that turns a night's silence urgent by then, whatever else it does."""
    months = len(seeds) * (days - start_day) / 30.0
    late = away = 0
    for seed in seeds:
        home = MODELS[model](seed, days, seed)
        firsts: dict[int, float] = {}
        for use in home.uses:
            day, at = int(use.start // DAY), use.start % DAY
            if use.litres >= 1.0 and at >= 4 * HOUR and day not in firsts:
                firsts[day] = at
        for weekend in (False, True):
            own = [d for d in range(days) if (d % 7 >= 5) == weekend]  # sim day 0 is a Monday
            seen = [firsts[d] for d in own if d in firsts]
            if not seen:
                continue
            usual = statistics.median(seen)  # as the model's usual first use (model.py)
            for d in own:
                if d < start_day:
                    continue
                if d not in firsts:
                    away += 1
                elif firsts[d] > usual + after_h * HOUR:
                    late += 1
    return round(late / months, 2), round(away / months, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wellbeing.silences", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seed_range, default=tuple(range(1, 21)), metavar="A-B")
    parser.add_argument("--model", action="append", choices=sorted(MODELS))
    parser.add_argument("--door", action="store_true", help="also: with a door contact, at home and out apart")
    parser.add_argument("--mornings", action="store_true", help="instead: late first uses (the night urgent's floor)")
    args = parser.parse_args(argv)
    if args.mornings:
        print("| model | first use > usual + 3 h | + 4 h | + 5 h | no use from 04:00 (away) |\n|---|---|---|---|---|")
        for model in args.model or sorted(MODELS):
            late = [late_mornings(model, args.seeds, h) for h in (3.0, 4.0, 5.0)]
            print(f"| {model} | " + " | ".join(f"{x[0]:.2f}" for x in late) + f" | {late[0][1]:.2f} |")
        return 0
    print("| model | uses counted | > 12 h | > 14 h | > 20 h |\n|---|---|---|---|---|")
    for model in args.model or sorted(MODELS):
        for litres, counts in long_silences(model, args.seeds).items():
            label = "any" if litres == 0 else f">= {litres:g} L"
            print(f"| {model} | {label} | " + " | ".join(f"{c:.2f}" for c in counts) + " |")
        if args.door:
            for where, counts in door_silences(model, args.seeds).items():
                print(f"| {model} | any + door contact, {where} | " + " | ".join(f"{c:.2f}" for c in counts) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
