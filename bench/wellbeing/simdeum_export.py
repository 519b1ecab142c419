"""Households from pysimdeum (KWR-Water/pysimdeum, EUPL-1.2), the peer-reviewed SIMDEUM end-use simulator.

Run only inside the separate venv that ``bench.wellbeing.simdeum`` makes (pysimdeum 1.0.1 needs pandas < 2.1);
never imported by our code. For each seed: one person, a senior (SIMDEUM's Dutch statistics), simulated day by
day with a fresh presence each day (so getting up, leaving and coming home vary day to day, as the issue asks),
one JSON file with every end-use event (start, seconds, litres per second, end use) and each day's getting-up,
leaving, coming-home and sleeping times. ``--variant home`` keeps the same person at home all day (SIMDEUM's
senior is away a median of about 8 h a day).

    .venv-simdeum/bin/python bench/wellbeing/simdeum_export.py --variant out --seeds 1-40 --days 60 --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from pysimdeum.core.house import Property
from pysimdeum.core.statistics import Statistics
from pysimdeum.core.user import Presence, User

DAY_S = 86400


def _house(stats: Statistics, rng_gender: float):
    house = Property(statistics=stats).built_house(house_type="one_person")
    # the household statistics draw a senior for one person in three; we want one every time
    house.users = [User(id="user_1", age="senior", gender="female" if rng_gender < 0.54 else "male", job=False)]
    house.furnish_house()
    return house


def _events(flow: np.ndarray, offset: int, enduse: str) -> list[list[float | str]]:
    """Runs of constant nonzero flow as [start s, seconds, L/s, end use]."""
    out: list[list[float | str]] = []
    change = np.flatnonzero(np.diff(flow) != 0) + 1
    edges = np.concatenate(([0], change, [len(flow)]))
    for a, b in zip(edges[:-1], edges[1:], strict=False):
        if flow[a] > 0:
            out.append([int(offset + a), int(b - a), round(float(flow[a]), 5), enduse])
    return out


def household(seed: int, days: int, variant: str) -> dict:
    np.random.seed(seed)
    stats = Statistics()
    house = _house(stats, np.random.uniform())
    user = house.users[0]
    start = pd.Timestamp("2026-03-02")  # a Monday: weekdays and weekends as SIMDEUM has them
    uses: list[list[float | str]] = []
    diary = []
    for d in range(days):
        date = start + pd.Timedelta(days=d)
        presence = Presence(weekday=date.dayofweek < 5, user=user, stats=stats)
        if variant == "home":
            # the same person, never out (one minute: pysimdeum reads an empty absence, go == home, as a whole day away)
            presence.home = presence.go + pd.Timedelta(minutes=1)
        user.presence = presence.pdf()
        consumption = house.simulate(date=date, duration="1 day")
        # per-user end uses sit in the user's column, shared ones (kitchen tap, machines) in the household's
        flows = consumption.values[:DAY_S, :, :, 0, 0].sum(axis=1)
        for k, appliance in enumerate(house.appliances):
            uses += _events(flows[:, k], d * DAY_S, appliance.statistics["classname"])
        day = {
            "index": d,
            "wake": d * DAY_S + presence.up.total_seconds(),
            "bed": d * DAY_S + presence.sleep.total_seconds(),
            "out": []
            if presence.home - presence.go <= pd.Timedelta(minutes=1)
            else [[d * DAY_S + presence.go.total_seconds(), d * DAY_S + presence.home.total_seconds()]],
        }
        diary.append(day)
    uses.sort(key=lambda u: u[0])
    appliances = [a.statistics["classname"] for a in house.appliances]
    wc = next(a for a in house.appliances if a.statistics["classname"] == "Wc")
    return {
        "seed": seed,
        "variant": variant,
        "pysimdeum": "1.0.1",
        "appliances": appliances,
        "wc": {"subtype": wc.name, "litres_per_s": wc.statistics["intensity"]},
        "uses": uses,
        "days": diary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("home", "out"), required=True)
    parser.add_argument("--seeds", required=True, help="A-B")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    first, _, last = args.seeds.partition("-")
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in range(int(first), int(last or first) + 1):
        path = args.out / f"{args.variant}-{seed}-{args.days}d.json"
        if path.exists():
            continue
        data = household(seed, args.days, args.variant)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two runs making the same household never share a file
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        tmp.replace(path)
        print(f"{path.name}: {len(data['uses'])} end-use events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
