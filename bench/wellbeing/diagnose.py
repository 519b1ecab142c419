"""What the false alarms and the late finds actually are: ``python -m bench.wellbeing.diagnose --model M --seeds A-B``.

Runs the evaluation (tuning seeds only: this is for choosing rules) and sorts every false person alarm by what the
resident was doing when it came, from the household model's own diary: out of the flat, asleep (the silence began
after the evening's bed time or before the morning's wake), away for nights, or at home and awake. Each alarm's
line gives the silence's start, the threshold it crossed and how long the silence went on in the end (the next
simulated use). Then every incident found later than 12 h (or never), with what found it.
"""

from __future__ import annotations

import argparse
import bisect
import os
import sys
from collections import Counter
from datetime import datetime

from bench.wellbeing.__main__ import _seed_range, _settings
from bench.wellbeing.evaluate import EPOCH0, TZ, HouseholdResult, evaluate
from bench.wellbeing.household import DAY, HOUR, Day
from bench.wellbeing.models import MODELS


def _where(days: list[Day], start: float, t: float) -> str:
    """What the resident was doing during a silence from ``start`` to the alarm at ``t`` (sim seconds): ``out`` of
    the flat at the alarm, ``away`` for nights, or at home ``awake`` or ``asleep`` when the silence began."""
    day = days[min(len(days) - 1, max(0, int(t // DAY)))]
    if day.away:
        return "away"
    if any(a <= t <= b + 600 for d in days[max(0, day.index - 1) : day.index + 1] for a, b in d.out):
        return "out"
    if any(d.wake <= start <= d.bed - HOUR for d in days[max(0, day.index - 2) : day.index + 1]):
        return "awake"
    return "asleep"


def _local(sim_t: float) -> str:
    return datetime.fromtimestamp(EPOCH0 + sim_t, TZ).strftime("%a %H:%M")


def describe(model: str, result: HouseholdResult, days: int, show: bool) -> Counter[str]:
    home = MODELS[model](result.seed, days, 0)
    starts = [u.start for u in home.uses]
    counts: Counter[str] = Counter()
    for t, kind, severity, payload in result.alarms:
        if kind not in ("inactivity", "missed_morning", "low_daily_volume"):
            counts[f"{kind}:{severity}"] += 1
            continue
        last = payload.get("last_use")
        start = datetime.fromisoformat(last).timestamp() - EPOCH0 if last else t
        where = _where(home.days, start, t)
        night = payload.get("urgent_after_h") is not None and payload["urgent_after_h"] - payload["warning_after_h"] < 2
        rule = "night" if night else payload.get("thresholds", "")
        counts[f"{kind}:{severity}:{where}:{rule}"] += 1
        if not show:
            continue
        i = bisect.bisect_right(starts, t)
        ends = (starts[i] - start) / HOUR if i < len(starts) else float("nan")
        day = home.days[min(len(home.days) - 1, int(t // DAY))]
        print(
            f"  seed {result.seed} day {int(t // DAY)} {kind}:{severity} {where}: silence from {_local(start)} "
            f"alarm {_local(t)} at {payload.get('silence_h')} h (limits {payload.get('warning_after_h')}/"
            f"{payload.get('urgent_after_h')} {payload.get('thresholds', '')} {payload.get('reason', '')}) "
            f"ended after {ends:.1f} h; wake {_local(day.wake)} bed {_local(day.bed)} {' '.join(day.notes)}"
        )
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wellbeing.diagnose", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--seeds", type=_seed_range, default=tuple(range(1, 31)), metavar="A-B")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--door", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="counts only, not every alarm")
    parser.add_argument("--answer", type=float, default=0.0, metavar="P", help="as python -m bench.wellbeing's")
    parser.add_argument("--phone", action="store_true", help="as python -m bench.wellbeing's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.seeds[0] >= 6001:
        raise SystemExit("diagnose is for tuning seeds (below 6001): the report seeds are run once, not looked into")
    results = evaluate(
        args.model,
        args.seeds,
        args.days,
        _settings(args.set),
        jobs=args.jobs,
        door=args.door,
        answer=args.answer,
        phone=args.phone,
    )
    total: Counter[str] = Counter()
    months = sum(r.months for r in results)
    for r in results:
        total += describe(args.model, r, args.days, not args.quiet)
    print(f"false alarms per household-month ({months:.1f} household-months):")
    for name, n in sorted(total.items()):
        print(f"  {name}: {n / months:.2f} ({n})")
    print("found later than 12 h or not at all:")
    for r in results:
        for inc in r.incidents:
            if inc.kind != "decline" and (inc.node_s is None or inc.node_s > 12 * HOUR):
                found = "never" if inc.node_s is None else f"{inc.node_s / HOUR:.2f} h"
                print(f"  seed {r.seed} {inc.kind} at {_local(inc.at)}: {found} by {inc.found_by}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
