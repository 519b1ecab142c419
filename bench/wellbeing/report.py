"""The evaluation summary as a markdown table (docs/wellbeing.md) and as bench figures."""

from __future__ import annotations

from typing import Any

from bench.figures import Figure


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _h(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} h"


def peer_row(summary: dict[str, Any]) -> str:
    """One row in the issue's table layout (the product side's measure on the pysimdeum households)."""
    node, urgent, false = summary["node"], summary["node_urgent"], summary["false_per_household_month"]
    return (
        f"| {_pct(node['recall_12h'])} | {_pct(node['recall_24h'])} | {_pct(urgent['recall_12h'])} | "
        f"{_h(node['median_h'])} | {false['node_urgent']:.2f} | {false['node_warning']:.2f} | {false['node_any']:.2f} |"
    )


PEER_HEADER = (
    "| model | seeds | recall 12 h | recall 24 h | urgent within 12 h | median detect | false urgent / hh-month "
    "| false warning / hh-month | false any / hh-month |\n|---|---|---|---|---|---|---|---|---|"
)


def markdown(summary: dict[str, Any], seeds: tuple[int, ...], days: int, model: str = "compact") -> str:
    false = summary["false_per_household_month"]
    lines = [
        f"Model {model}: {summary['households']} households (seeds {seeds[0]}-{seeds[-1]}), {days} days each, "
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
        "| incident | n | node median | node recall 12 h | urgent within 12 h | Nagano median | Shanghai median |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, row in summary["per_kind"].items():
        lines.append(
            f"| {kind} | {row['n']} | {_h(row['node_median_h'])} | {_pct(row['node_recall_12h'])} | "
            f"{_pct(row['urgent_recall_12h'])} | "
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
        f"Check-ins (the resident asked first): {summary['checks_in']['per_household_month']:.2f} / household-month "
        "(where she was: "
        + ", ".join(f"{k} {v:.2f}" for k, v in summary["checks_in"]["where_per_household_month"].items())
        + f"), {_pct(summary['checks_in']['answered'])} answered.",
        "False alarms by kind and severity (count): "
        + ", ".join(f"{k} {v}" for k, v in summary["false_by_kind"].items()),
        "Found later than 12 h or not at all (seed, incident, hours): "
        + (", ".join(f"{s} {k} {h if h is not None else 'never'}" for s, k, h in summary["misses_12h"]) or "none"),
        "",
        PEER_HEADER,
        f"| {model} | {seeds[0]}-{seeds[-1]} " + peer_row(summary),
    ]
    return "\n".join(lines)


def figures(summary: dict[str, Any], model: str, at_home: bool) -> list[Figure]:
    """The bench runner's figures for one model, each beside the issue's target for that kind of household."""
    node, urgent, false = summary["node"], summary["node_urgent"], summary["false_per_household_month"]
    name = f"wellbeing {model}:"
    out = [
        Figure(
            f"{name} recall within 12 h", round(100 * node["recall_12h"], 1), "%", ">= 99%" if at_home else ">= 85%"
        ),
        Figure(f"{name} recall within 24 h", round(100 * node["recall_24h"], 1), "%", "" if at_home else ">= 99%"),
        Figure(f"{name} urgent within 12 h", round(100 * urgent["recall_12h"], 1), "%", ""),
        Figure(f"{name} median time to detect", node["median_h"] or "-", "h", "<= 4 h" if at_home else ""),
        Figure(f"{name} false urgent / household-month", false["node_urgent"], "", "<= 0.5"),
        Figure(f"{name} false warning / household-month", false["node_warning"], "", "<= 3" if at_home else "<= 6"),
    ]
    for peer, label in (("nagano", "Nagano 8 h/2 h"), ("shanghai", "Shanghai 10 L/12 h")):
        row = summary[peer]
        out.append(Figure(f"{name} {label} recall within 12 h", round(100 * row["recall_12h"], 1), "%", "peer"))
        out.append(Figure(f"{name} {label} false alarms / household-month", false[peer], "", "peer"))
    return out
