"""The trade-off curve: time to detect against false alarms per household-month as the budget varies, per model.

``python -m bench.wellbeing.curve [--seeds A-B] [--out docs/img/wellbeing-tradeoff.png]`` evaluates every household
model at several warning budgets (the urgent budget moves with it, in the default ratio 0.3 : 2) and draws one line
per model with matplotlib (the ``bench`` extra). The default budget is marked on each line. ``--model M --out
/tmp/M.png > M.json`` runs one model; ``--points A.json --points B.json`` draws the models of such runs together.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a Pi or in CI
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from bench.wellbeing.__main__ import _seed_range  # noqa: E402
from bench.wellbeing.evaluate import evaluate  # noqa: E402
from bench.wellbeing.models import MODELS  # noqa: E402
from bench.wellbeing.summary import summarise  # noqa: E402
from meter_node.wellbeing import WellbeingSettings  # noqa: E402

BUDGETS = (0.5, 1.0, 2.0, 4.0, 8.0)
ROOT = Path(__file__).resolve().parents[2]


def points(
    model: str, seeds: tuple[int, ...], days: int, jobs: int, budgets: tuple[float, ...] = BUDGETS
) -> list[dict[str, float]]:
    """One point per budget: false warnings and urgent alerts a household-month, median hours, recall 12 h."""
    out = []
    base = WellbeingSettings()
    ratio = base.urgent_budget_per_month / base.warning_budget_per_month
    for budget in budgets:
        settings = dataclasses.replace(base, warning_budget_per_month=budget, urgent_budget_per_month=budget * ratio)
        summary = summarise(evaluate(model, seeds, days, settings, jobs=jobs))
        false = summary["false_per_household_month"]
        out.append(
            {
                "budget": budget,
                "false_alarms": round(false["node_warning"] + false["node_urgent"], 2),
                "false_urgent": false["node_urgent"],
                "median_h": summary["node"]["median_h"] or float("nan"),
                "recall_12h": summary["node"]["recall_12h"],
            }
        )
        print(f"{model} budget {budget}: {out[-1]}", file=sys.stderr)
    return out


def draw(
    curves: dict[str, list[dict[str, float]]], seeds: tuple[int, ...], budgets: tuple[float, ...], path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    default = WellbeingSettings().warning_budget_per_month
    for model, pts in curves.items():
        xs = [p["false_alarms"] for p in pts]
        ys = [p["median_h"] for p in pts]
        (line,) = ax.plot(xs, ys, marker="o", label=model)
        for p in pts:
            if p["budget"] == default:
                ax.plot([p["false_alarms"]], [p["median_h"]], marker="*", markersize=14, color=line.get_color())
    ax.set_xlabel("false warnings + urgent alerts per household-month")
    ax.set_ylabel("median hours from a collapse to the first alert")
    ax.set_title(
        f"Wellbeing model: warning budgets {', '.join(map(str, budgets))} a month (star: the default, {default:g}), "
        f"seeds {seeds[0]}-{seeds[-1]}"
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wellbeing.curve", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seed_range, default=tuple(range(1, 41)), metavar="A-B")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--model", action="append", choices=sorted(MODELS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--budgets", type=lambda t: tuple(float(x) for x in t.split(",")), default=BUDGETS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "wellbeing-tradeoff.png")
    parser.add_argument(
        "--points", type=Path, action="append", default=[], help="the JSON a run printed: draw its models from it"
    )
    args = parser.parse_args(argv)
    curves: dict[str, list[dict[str, float]]] = {}
    for saved in args.points:  # one run per model side by side on a shared machine, drawn together
        curves.update(json.loads(saved.read_text(encoding="utf-8")))
    for m in args.model or ([] if curves else sorted(MODELS)):
        curves[m] = points(m, args.seeds, args.days, args.jobs, args.budgets)
    draw(curves, args.seeds, args.budgets, args.out)
    print(json.dumps(curves, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
