"""The evaluation summary as a markdown table (docs/wellbeing.md) and as bench figures."""

from __future__ import annotations

from typing import Any

from bench.figures import Figure


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _h(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} h"


def markdown(summary: dict[str, Any], seeds: tuple[int, ...], days: int) -> str:
    false = summary["false_per_household_month"]
    lines = [
        f"{summary['households']} households (seeds {seeds[0]}-{seeds[-1]}), {days} days each, "
        f"{summary['household_months']} household-months counted after learning; "
        f"{summary['node']['incidents']} acute incidents.",
        "",
        "| system | recall 6 h | recall 12 h | recall 24 h | median time to detect | false alarms / household-month |",
        "|---|---|---|---|---|---|",
    ]
    node, urgent = summary["node"], summary["node_urgent"]
    lines.append(
        f"| this node (warning or urgent) | {_pct(node['recall_6h'])} | {_pct(node['recall_12h'])} | "
        f"{_pct(node['recall_24h'])} | {_h(node['median_h'])} | info {false['node_info']:.2f}, "
        f"warning {false['node_warning']:.2f}, urgent {false['node_urgent']:.2f} |"
    )
    lines.append(
        f"| this node, urgent only | {_pct(urgent['recall_6h'])} | {_pct(urgent['recall_12h'])} | "
        f"{_pct(urgent['recall_24h'])} | {_h(urgent['median_h'])} | {false['node_urgent']:.2f} |"
    )
    for name, label in (("nagano", "Nagano: 8 h no use / 2 h flow"), ("shanghai", "Shanghai: < 10 L in 12 h")):
        row = summary[name]
        lines.append(
            f"| {label} | {_pct(row['recall_6h'])} | {_pct(row['recall_12h'])} | {_pct(row['recall_24h'])} | "
            f"{_h(row['median_h'])} | {false[name]:.2f} |"
        )
    lines += [
        "",
        "| incident | n | node median | node recall 12 h | Nagano median | Shanghai median |",
        "|---|---|---|---|---|---|",
    ]
    for kind, row in summary["per_kind"].items():
        lines.append(
            f"| {kind} | {row['n']} | {_h(row['node_median_h'])} | {_pct(row['node_recall_12h'])} | "
            f"{_h(row['nagano_median_h'])} | {_h(row['shanghai_median_h'])} |"
        )
    lines += [
        "",
        "| meter | households | node recall 12 h | node median | false warning / hh-month | false urgent / hh-month |",
        "|---|---|---|---|---|---|",
    ]
    for setup, row in summary["by_setup"].items():
        lines.append(
            f"| {setup} | {row['households']} | {_pct(row['recall_12h'])} | {_h(row['median_h'])} | "
            f"{row['false_warning']:.2f} | {row['false_urgent']:.2f} |"
        )
    decline = summary["decline"]
    lines += [
        "",
        f"Gradual decline (use falling to 30% over 21 days): low_daily_volume raised in {decline['node_found']} of "
        f"{decline['n']}; median {decline['node_median_days_after_50pct']} days after use fell to 50% "
        "(negative: before).",
        f"Leaks simulated: {summary['leaks']['simulated']}, leak_suspected alerts: {summary['leaks']['alerts']}.",
        "False alarms by kind and severity (count): "
        + ", ".join(f"{k} {v}" for k, v in summary["false_by_kind"].items()),
    ]
    return "\n".join(lines)


def figures(summary: dict[str, Any]) -> list[Figure]:
    node, urgent, false = summary["node"], summary["node_urgent"], summary["false_per_household_month"]
    out = [
        Figure("wellbeing recall within 12 h", round(100 * node["recall_12h"], 1), "%", ">= 99%"),
        Figure("wellbeing recall within 6 h", round(100 * node["recall_6h"], 1), "%", ""),
        Figure("wellbeing recall within 24 h", round(100 * node["recall_24h"], 1), "%", ""),
        Figure("wellbeing median time to detect", node["median_h"] or "-", "h", ""),
        Figure("wellbeing median time to urgent", urgent["median_h"] or "-", "h", ""),
        Figure("wellbeing false urgent / household-month", false["node_urgent"], "", "<= 0.5"),
        Figure("wellbeing false warning / household-month", false["node_warning"], "", ""),
        Figure("wellbeing false info / household-month", false["node_info"], "", ""),
    ]
    for name, label in (("nagano", "Nagano 8 h/2 h"), ("shanghai", "Shanghai 10 L/12 h")):
        out.append(Figure(f"{label} recall within 12 h", round(100 * summary[name]["recall_12h"], 1), "%", "peer"))
        out.append(Figure(f"{label} median time to detect", summary[name]["median_h"] or "-", "h", "peer"))
        out.append(Figure(f"{label} false alarms / household-month", false[name], "", "peer"))
    return out
