"""`python -m bench.wellbeing [--quick] [--tune] [--seeds A-B]`: evaluate the wellbeing rules; prints the table."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bench.wellbeing.evaluate import REPORT_SEEDS, TUNE_SEEDS, evaluate
from bench.wellbeing.report import markdown

QUICK_SEEDS = REPORT_SEEDS[:8]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wellbeing", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{len(QUICK_SEEDS)} households, 45 days")
    parser.add_argument("--tune", action="store_true", help="the tuning seeds instead of the report seeds")
    parser.add_argument("--seeds", type=_seed_range, metavar="A-B", help="other seeds, e.g. 3001-3160 (fresh ones)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes side by side (default: cores)")
    parser.add_argument("--json", action="store_true", help="print the raw summary as JSON too")
    args = parser.parse_args(argv)
    seeds = args.seeds or (TUNE_SEEDS if args.tune else (QUICK_SEEDS if args.quick else REPORT_SEEDS))
    days = 45 if args.quick else 60
    start = time.monotonic()
    print(f"{len(seeds)} households, {days} days each, {args.jobs} processes...", file=sys.stderr)
    summary = evaluate(seeds, days, jobs=args.jobs)
    print(markdown(summary, seeds, days))
    if args.json:
        print(json.dumps(summary, indent=1))
    print(f"({time.monotonic() - start:.0f} s)", file=sys.stderr)
    return 0


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
