"""Recall, time to detect and false alarms per household-month from the households' results."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench.wellbeing.evaluate import ACUTE, WHEREABOUTS, HouseholdResult
from bench.wellbeing.household import DAY, HOUR


def _recall(values: list[float | None], hours: float) -> float:
    return sum(v is not None and v <= hours * HOUR for v in values) / max(1, len(values))


def _median_h(values: list[float | None]) -> float | None:
    """Median hours to detect, a miss counting as never (None when half or more were missed)."""
    if not values:
        return None
    ordered = sorted(math.inf if v is None else v / HOUR for v in values)
    middle = statistics.median(ordered)
    return None if math.isinf(middle) else round(middle, 2)


def _system(values: list[float | None]) -> dict[str, Any]:
    return {
        "incidents": len(values),
        "recall_6h": round(_recall(values, 6), 3),
        "recall_12h": round(_recall(values, 12), 3),
        "recall_24h": round(_recall(values, 24), 3),
        "median_h": _median_h(values),
    }


def _per_month(results: list[HouseholdResult], months: float, severity: str) -> float:
    return round(sum(r.false_node[severity] for r in results) / max(months, 1e-9), 3)


def summarise(results: list[HouseholdResult]) -> dict[str, Any]:
    months = sum(r.months for r in results)
    acute = [i for r in results for i in r.incidents if i.kind in ACUTE]
    decline = [i for r in results for i in r.incidents if i.kind == "decline"]
    rows: dict[str, Any] = {"households": len(results), "household_months": round(months, 1)}
    rows["node"] = _system([i.node_s for i in acute])
    rows["node_urgent"] = _system([i.node_urgent_s for i in acute])
    for name in ("nagano", "shanghai"):
        rows[name] = _system([i.baseline_s.get(name) for i in acute])
    rows["per_kind"] = {
        kind: {
            "n": len(sel),
            "node_median_h": _median_h([i.node_s for i in sel]),
            "node_recall_12h": round(_recall([i.node_s for i in sel], 12), 3),
            "urgent_recall_12h": round(_recall([i.node_urgent_s for i in sel], 12), 3),
            "nagano_median_h": _median_h([i.baseline_s.get("nagano") for i in sel]),
            "shanghai_median_h": _median_h([i.baseline_s.get("shanghai") for i in sel]),
        }
        for kind in ACUTE
        if (sel := [i for i in acute if i.kind == kind])
    }
    found = [i.node_s / DAY for i in decline if i.node_s is not None]
    rows["decline"] = {
        "n": len(decline),
        "node_found": len(found),
        "node_median_days_after_50pct": round(statistics.median(found), 1) if found else None,
    }
    rows["false_per_household_month"] = {
        "node_info": _per_month(results, months, "info"),
        "node_warning": _per_month(results, months, "warning"),
        "node_urgent": _per_month(results, months, "urgent"),
        "node_any": round(sum(sum(r.false_node.values()) for r in results) / max(months, 1e-9), 3),
        "nagano": round(sum(r.false_baseline["nagano"] for r in results) / max(months, 1e-9), 3),
        "shanghai": round(sum(r.false_baseline["shanghai"] for r in results) / max(months, 1e-9), 3),
    }
    asked = sum(sum(r.checks_in.values()) for r in results)
    where = {k: sum(r.checks_in.get(k, 0) for r in results) for k in WHEREABOUTS}
    rows["checks_in"] = {
        "per_household_month": round(asked / max(months, 1e-9), 3),
        "answered": round(sum(r.answered for r in results) / max(asked, 1), 3),
        "where_per_household_month": {k: round(v / max(months, 1e-9), 3) for k, v in where.items()},
    }
    by_kind: dict[str, int] = {}
    for r in results:
        for k, v in r.false_by_kind.items():
            by_kind[k] = by_kind.get(k, 0) + v
    rows["false_by_kind"] = dict(sorted(by_kind.items()))
    by_setup: dict[str, Any] = {}
    for setup in sorted({(r.resolution_l, r.poll_s) for r in results}):
        chosen = [r for r in results if (r.resolution_l, r.poll_s) == setup]
        sel_months = sum(r.months for r in chosen)
        values = [i.node_s for r in chosen for i in r.incidents if i.kind in ACUTE]
        by_setup[f"{setup[0]:g} L / {setup[1]:g} s"] = {
            "households": len(chosen),
            "recall_12h": round(_recall(values, 12), 3),
            "median_h": _median_h(values),
            "false_warning": _per_month(chosen, sel_months, "warning"),
            "false_urgent": _per_month(chosen, sel_months, "urgent"),
        }
    rows["by_setup"] = by_setup
    rows["leaks"] = {"simulated": sum(r.leaks for r in results), "alerts": sum(r.leaks_found for r in results)}
    rows["misses_12h"] = sorted(
        (r.seed, i.kind, None if i.node_s is None else round(i.node_s / HOUR, 2))
        for r in results
        for i in r.incidents
        if i.kind in ACUTE and (i.node_s is None or i.node_s > 12 * HOUR)
    )
    return rows
