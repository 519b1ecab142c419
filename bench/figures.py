"""The figure every benchmark returns, and the table the bench runner prints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure: what, the value, its unit, and the target or peer it is compared with."""

    name: str
    value: float | str
    unit: str = ""
    target: str = ""


def print_table(figures: list[Figure]) -> None:
    rows = [(f.name, _fmt(f.value), f.unit, f.target) for f in figures]
    header = ("figure", "value", "unit", "target / peer")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _fmt(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
