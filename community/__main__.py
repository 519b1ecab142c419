"""`changbai-community`: the main job. The whole community on simulated hardware with a fast clock."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from common.cli import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="changbai-community",
        description="Run the reference central, a lift node, a water-meter node and a kiosk on simulated "
        "hardware through one scripted day (a taxi, a trapped passenger, a network outage, a resident who "
        "stops using water) and print what each party saw. Exit 0 when every check passes.",
        epilog="exit codes: 0 every check passed, 1 a check failed, 2 bad arguments",
    )
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second by day (60)")
    parser.add_argument("--hours-speed", type=float, default=2000.0, help="pace of the fast-forwarded hours (2000)")
    parser.add_argument("--workdir", type=Path, help="keep configs, databases and tokens here (default: temp)")
    parser.add_argument("--log-level", default="ERROR", help="node log level on stderr (ERROR)")
    args = parser.parse_args(argv)
    if args.speed <= 0 or args.hours_speed <= 0:
        parser.error("speeds must be > 0")
    setup_logging(args.log_level)
    logging.getLogger("uvicorn").setLevel(logging.ERROR)

    from community.scenario import Speeds, run

    started = time.monotonic()
    print("changbai-community: one simulated day in Changbai Xincun (times are Asia/Shanghai)\n", flush=True)
    outcome = run(Speeds(day=args.speed, hours=args.hours_speed), workdir=args.workdir)
    print(f"\nchecks ({time.monotonic() - started:.0f} s real time):")
    for name, ok in outcome.checks.items():
        note = outcome.notes.get(name, "")
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}" + (f": {note}" if note else ""))
    print(f"\n{sum(outcome.checks.values())} passed, {len(outcome.checks) - sum(outcome.checks.values())} failed")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
