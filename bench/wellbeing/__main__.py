"""`python -m bench.wellbeing [--quick] [--tune]`: evaluate the wellbeing rules; prints the markdown table."""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.wellbeing.evaluate import REPORT_SEEDS, TUNE_SEEDS, evaluate
from bench.wellbeing.report import markdown

QUICK_SEEDS = REPORT_SEEDS[:8]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wellbeing", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{len(QUICK_SEEDS)} households, 45 days")
    parser.add_argument("--tune", action="store_true", help="the tuning seeds instead of the report seeds")
    parser.add_argument("--json", action="store_true", help="print the raw summary as JSON too")
    args = parser.parse_args(argv)
    seeds = TUNE_SEEDS if args.tune else (QUICK_SEEDS if args.quick else REPORT_SEEDS)
    days = 45 if args.quick else 60
    start = time.monotonic()
    summary = evaluate(seeds, days)
    print(markdown(summary, seeds, days))
    if args.json:
        print(json.dumps(summary, indent=1))
    print(f"({time.monotonic() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
