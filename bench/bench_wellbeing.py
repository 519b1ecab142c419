"""Wellbeing rules on simulated elderly households: recall and false alarms beside the services' fixed rules.

Report seeds only (the rules were tuned on bench.wellbeing.evaluate.TUNE_SEEDS). ``--quick``: 8 households x 45 days.
"""

from __future__ import annotations

from bench.figures import Figure
from bench.wellbeing.__main__ import QUICK_SEEDS
from bench.wellbeing.evaluate import REPORT_SEEDS, evaluate
from bench.wellbeing.report import figures


def run(quick: bool) -> list[Figure]:
    summary = evaluate(QUICK_SEEDS if quick else REPORT_SEEDS, 45 if quick else 60)
    out = [Figure("wellbeing households evaluated", summary["households"], "", "")]
    return out + figures(summary)
