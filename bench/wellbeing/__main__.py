"""`python -m bench.wellbeing [--model M] [--quick] [--tune] [--seeds A-B]`: evaluate the wellbeing rules."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.wellbeing.evaluate import REPORT_SEEDS, TUNE_SEEDS, evaluate
from bench.wellbeing.models import MODELS
from bench.wellbeing.report import markdown
from bench.wellbeing.summary import summarise
from meter_node.wellbeing import WellbeingSettings

QUICK_SEEDS = tuple(range(9001, 9009))  # a smoke check only: never the report seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wellbeing", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", choices=sorted(MODELS), help="household model (repeat; default: all)"
    )
    parser.add_argument("--quick", action="store_true", help=f"{len(QUICK_SEEDS)} households, 45 days")
    parser.add_argument("--tune", action="store_true", help="each model's tuning seeds instead of the report seeds")
    parser.add_argument("--seeds", type=_seed_range, metavar="A-B", help="other seeds, e.g. 8001-8160 (fresh ones)")
    parser.add_argument("--days", type=int, help="days per household (default 60; --quick 45)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes side by side (default: cores)")
    parser.add_argument("--door", action="store_true", help="every household has a door contact on the node")
    parser.add_argument(
        "--answer",
        type=float,
        default=0.0,
        metavar="P",
        help="with --set ask_first_min=N: the chance a resident awake at home answers a check-in (default 0)",
    )
    parser.add_argument(
        "--phone",
        action="store_true",
        help="with --answer: the check-in reaches her phone too, answered with the same chance when out or away",
    )
    parser.add_argument("--json", action="store_true", help="print the raw summary as JSON too")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a [meter.wellbeing] setting (tuning)"
    )
    args = parser.parse_args(argv)
    days = args.days or (45 if args.quick else 60)
    settings = _settings(args.set)
    for model in args.model or sorted(MODELS):
        seeds = args.seeds or (TUNE_SEEDS[model] if args.tune else (QUICK_SEEDS if args.quick else REPORT_SEEDS))
        start = time.monotonic()
        print(f"{model}: {len(seeds)} households, {days} days each, {args.jobs} processes...", file=sys.stderr)
        results = evaluate(
            model, seeds, days, settings, jobs=args.jobs, door=args.door, answer=args.answer, phone=args.phone
        )
        summary = summarise(results)
        print(markdown(summary, seeds, days, model + (" (door contact)" if args.door else "")))
        if args.json:
            print(json.dumps(summary, indent=1))
        print(f"({model}: {time.monotonic() - start:.0f} s)\n", file=sys.stderr)
        sys.stdout.flush()
    return 0


def _settings(pairs: list[str]) -> WellbeingSettings:
    """WellbeingSettings with ``key=value`` overrides, checked by the config engine's types."""
    values: dict[str, Any] = {}
    parse: dict[str, Callable[[str], Any]] = {"bool": lambda v: v.lower() == "true", "int": int, "float": float}
    for pair in pairs:
        key, _, text = pair.partition("=")
        field = next((f for f in dataclasses.fields(WellbeingSettings) if f.name == key), None)
        if field is None:
            raise SystemExit(f"--set {pair!r}: no [meter.wellbeing] key {key!r}")
        values[key] = parse.get(str(field.type), str)(text)
    return dataclasses.replace(WellbeingSettings(), **values)


def _seed_range(text: str) -> tuple[int, ...]:
    """'3001-3160' -> the seeds 3001 to 3160 inclusive."""
    first, _, last = text.partition("-")
    try:
        seeds = tuple(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed range such as 3001-3160") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} is an empty range: the first seed must not exceed the last")
    return seeds


if __name__ == "__main__":
    sys.exit(main())
