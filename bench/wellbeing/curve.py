"""The trade-off curve: time to detect against false alarms per household-month as the budget varies, per model.

``python -m bench.wellbeing.curve [--seeds A-B] [--out docs/img/wellbeing-tradeoff.png]`` evaluates every household
model at several warning budgets (the urgent budget moves with it, in the default ratio 0.3 : 2) and draws one line
per model with matplotlib (the ``bench`` extra): false warnings against the median time to detect on the left, false
urgent alerts against recall within 12 h on the right, with the issue's targets as dashed lines. The default budget
is starred. ``--set``, ``--answer`` and ``--door`` are those of ``python -m bench.wellbeing`` (``--label`` names such
a curve). ``--model M --out /tmp/M.png > M.json`` runs one model; ``--points A.json --points B.json`` draws the
curves of such runs together.
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

from bench.wellbeing.__main__ import _seed_range, _settings  # noqa: E402
from bench.wellbeing.evaluate import evaluate  # noqa: E402
from bench.wellbeing.models import MODELS  # noqa: E402
from bench.wellbeing.summary import summarise  # noqa: E402
from meter_node.wellbeing import WellbeingSettings  # noqa: E402

BUDGETS = (0.5, 1.0, 2.0, 4.0, 8.0)
ROOT = Path(__file__).resolve().parents[2]
# the targets: (at home, long outings) false warnings a household-month, median hours; false urgent; recall
TARGET_WARNINGS = (3.0, 6.0)
TARGET_MEDIAN_H = 4.0
TARGET_URGENT = 0.5
TARGET_RECALL_12H = (0.99, 0.85)


def points(
    model: str,
    seeds: tuple[int, ...],
    days: int,
    jobs: int,
    budgets: tuple[float, ...] = BUDGETS,
    base: WellbeingSettings | None = None,
    door: bool = False,
    answer: float = 0.0,
) -> list[dict[str, float]]:
    """One point per budget: false warnings and urgent alerts a household-month, median hours, recall 12 and 24 h."""
    out = []
    base = base or WellbeingSettings()
    ratio = base.urgent_budget_per_month / base.warning_budget_per_month
    for budget in budgets:
        settings = dataclasses.replace(base, warning_budget_per_month=budget, urgent_budget_per_month=budget * ratio)
        summary = summarise(evaluate(model, seeds, days, settings, jobs=jobs, door=door, answer=answer))
        false = summary["false_per_household_month"]
        out.append(
            {
                "budget": budget,
                "false_warnings": false["node_warning"],
                "false_urgent": false["node_urgent"],
                "median_h": summary["node"]["median_h"] or float("nan"),
                "recall_12h": summary["node"]["recall_12h"],
                "recall_24h": summary["node"]["recall_24h"],
            }
        )
        print(f"{model} budget {budget}: {out[-1]}", file=sys.stderr)
    return out


def draw(curves: dict[str, list[dict[str, float]]], title: str, path: Path) -> None:
    """Two panels: warnings against the median time to detect, urgent alerts against recall within 12 h."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5), dpi=100)
    default = WellbeingSettings().warning_budget_per_month
    for name, pts in curves.items():
        for ax, xs, ys in ((left, "false_warnings", "median_h"), (right, "false_urgent", "recall_12h")):
            scale = 100.0 if ys.startswith("recall") else 1.0
            (line,) = ax.plot([p[xs] for p in pts], [p[ys] * scale for p in pts], marker="o", label=name)
            star = [p for p in pts if p["budget"] == default]
            ax.plot([p[xs] for p in star], [p[ys] * scale for p in star], "*", ms=14, color=line.get_color())
    for warnings, what in zip(TARGET_WARNINGS, ("at home", "long outings"), strict=True):
        left.axvline(warnings, ls="--", color="grey", lw=1)
        left.annotate(f"target {what}", (warnings, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top")
    left.axhline(TARGET_MEDIAN_H, ls="--", color="grey", lw=1)
    right.axvline(TARGET_URGENT, ls="--", color="grey", lw=1)
    for recall in TARGET_RECALL_12H:
        right.axhline(recall * 100, ls="--", color="grey", lw=1)
    left.set(xlabel="false warnings per household-month", ylabel="median hours from a collapse to the first alert")
    right.set(xlabel="false urgent alerts per household-month", ylabel="collapses found within 12 h (%)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(title, size=10)
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
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a [meter.wellbeing] setting")
    parser.add_argument("--answer", type=float, default=0.0, metavar="P", help="the chance a check-in is answered")
    parser.add_argument("--door", action="store_true", help="every household has a door contact")
    parser.add_argument("--label", default="", help="added to each curve's name, e.g. 'asking'")
    parser.add_argument("--title", default="", help="the picture's title (default: the budgets and the seeds)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "wellbeing-tradeoff.png")
    parser.add_argument(
        "--points", type=Path, action="append", default=[], help="the JSON a run printed: draw its curves from it"
    )
    args = parser.parse_args(argv)
    curves: dict[str, list[dict[str, float]]] = {}
    for saved in args.points:  # one run per model side by side on a shared machine, drawn together
        curves.update(json.loads(saved.read_text(encoding="utf-8")))
    base = _settings(args.set)
    for m in args.model or ([] if curves else sorted(MODELS)):
        name = f"{m}, {args.label}" if args.label else m
        curves[name] = points(m, args.seeds, args.days, args.jobs, args.budgets, base, args.door, args.answer)
    budgets = ", ".join(f"{b:g}" for b in args.budgets)
    title = (
        args.title or f"warning budgets {budgets} a month (star: the default), seeds {args.seeds[0]}-{args.seeds[-1]}"
    )
    draw(curves, title, args.out)
    print(json.dumps(curves, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
