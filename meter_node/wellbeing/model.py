"""The per-household model: how long this home's silences last given when they began, and thresholds that meet a
false-alarm budget.

From the ended silences of the last ``history_days`` (one hour or longer, at home) the model estimates, for a
silence beginning in each half hour of a weekday or a weekend day, how often it would outlast a threshold T
(a kernel over +-90 min of start time, the other kind of day at a third of the weight, and a smooth tail: each
silence of length L counts exp(-(T - L) / m) for T beyond it, m a robust kernel bandwidth of the silences begun
near that time (Silverman's rule on the spread or the interquartile range), so one odd day does not set the line and a home whose silences run long gets a long tail).
With fewer than ``history_days`` days learned the budget shrinks in proportion (a young estimate is optimistic). It then chooses a warning and an urgent threshold per start time that minimise the expected time to detect
a fall (weighted by how much of the day each start time's silences cover) while the expected false alarms a
month stay within the budget (a Lagrange multiplier found by bisection), inside the fixed outer limits. A silence
held over the night is judged by the morning (``night.py``).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import datetime, tzinfo

from meter_node.wellbeing.night import NO_MORNING, bedtime, held_to_morning, judge_night, median_of, morning_times
from meter_node.wellbeing.settings import WellbeingSettings
from meter_node.wellbeing.state import DayRecord
from meter_node.wellbeing.timeline import HOUR, SLOT_S, SLOTS, WEEK_SHARE

_KERNEL_MIN = 90.0
_OTHER_KIND = 1.0 / 3.0  # weight of a weekday's silence for a weekend threshold and the other way round
_PRIOR_PER_DAY = 0.5 / 30.0  # unseen harmless silences of 2 h or more: half a month, spread over the day
_PRIOR_MEAN_S = 3.0 * HOUR
PARTS = (("night", 0, 6), ("morning", 6, 12), ("afternoon", 12, 18), ("evening", 18, 24))
WATCHABLE_H = 12.0


@dataclass(frozen=True)
class Thresholds:
    """Seconds of silence before a warning and an urgent alert, per start slot, for [weekday, weekend]."""

    warning: tuple[tuple[float, ...], tuple[float, ...]]
    urgent: tuple[tuple[float, ...], tuple[float, ...]]
    wake_s: tuple[float | None, float | None]  # the usual (median) first use, seconds after midnight
    bed_s: float | None  # the usual start of the night's silence, seconds after midnight (past 24 h: after it)
    morning_warning_s: float | None  # missed_morning turns warning then (seconds after midnight)
    expected_warnings: float  # false warnings a month the model expects (silence and morning)
    expected_urgent: float
    floor_warnings: float  # false warnings a month from silences past the outer limits: no threshold avoids them
    warning_budget: float  # the budget the thresholds were chosen for (young estimates get less)
    detect_h: dict[str, float]  # expected hours to a warning after a fall, per part of the day
    detect_urgent_h: dict[str, float]

    @property
    def watchable(self) -> bool:
        """Within 12 h of a fall in every part of the day, and the outer limits alone within the budget."""
        return all(v <= WATCHABLE_H for v in self.detect_h.values()) and self.floor_warnings <= self.warning_budget


def _outlasting(samples: list[tuple[float, float]], grid: list[float], scale: float) -> list[float]:
    """For each threshold of the evenly spaced ``grid``: the weighted count of (weight, length) samples outlasting
    it, a sample of length L counting exp(-(T - L) / scale) for T beyond it. Linear in samples + grid (a running
    product over the grid), as this runs for every start slot every day."""
    n = len(grid)
    longer = [0.0] * (n + 1)  # weight whose length is beyond grid[i], by the first index it is not beyond
    entering = [0.0] * n  # the tail's value where it starts, by that index
    step = grid[1] - grid[0] if n > 1 else 1.0
    for w, length in samples:
        j = bisect.bisect_left(grid, length)  # grid[j] >= length: from j on the sample is in its tail
        longer[j] += w
        if j < n:
            entering[j] += w * math.exp(-(grid[j] - length) / scale)
    out = [0.0] * n
    beyond = sum(longer)
    tail, decay = 0.0, math.exp(-step / scale)
    for i in range(n):
        beyond -= longer[i]
        tail = tail * decay + entering[i]
        out[i] = beyond + tail
    return out


class _Slots:
    """Per (kind of day, start slot): how often a silence begun there outlasts each threshold of a grid, and how
    much of the day such silences cover (where a fall would wait for that slot's threshold)."""

    def __init__(self, silences: list[tuple[bool, int, float]], days: tuple[float, float], grid: list[float]) -> None:
        self.grid = grid
        raw: list[list[list[float]]] = [[[] for _ in range(SLOTS)] for _ in range(2)]
        for weekend, slot, length in silences:
            raw[int(weekend)][slot].append(length)
        self.rates: list[list[list[float]]] = []
        self.weights: list[list[float]] = []
        prior = [_PRIOR_PER_DAY / SLOTS * math.exp(-max(0.0, t - 2 * HOUR) / _PRIOR_MEAN_S) for t in grid]
        for kind in (0, 1):
            n_days = max(1.0, days[kind] + _OTHER_KIND * days[1 - kind])
            rates, weights = [], []
            for k in range(SLOTS):
                near = [
                    (w * (1.0 if other == kind else _OTHER_KIND) / n_days, length)
                    for offset, w in _KERNEL
                    for other in (0, 1)
                    for length in raw[other][(k + offset) % SLOTS]
                ]
                # the tail beyond what was seen: exponential with a robust bandwidth of the silences begun near this
                # time (a home whose long silences vary a lot has a long tail), at least 15 minutes
                seen = _outlasting(near, grid, _bandwidth(near))
                rates.append([p + x for p, x in zip(prior, seen, strict=True)])
                weights.append(sum(w * min(length, 12 * HOUR) for w, length in near) + 900.0)
            self.rates.append(rates)
            self.weights.append(weights)


def _bandwidth(samples: list[tuple[float, float]]) -> float:
    """How far beyond its length a silence still counts (the tail's scale): a robust kernel bandwidth (Silverman's
    0.9 min(sd, IQR / 1.34) n^-1/5, weighted) of the (weight, length) samples of 2 h or more, at least 15 minutes.
    The IQR keeps a rare long silence from widening every other one's tail (its own sample already counts)."""
    ordered = sorted((x for x in samples if x[1] >= 2 * HOUR), key=lambda x: x[1])
    mass = sum(w for w, _ in ordered)
    if mass <= 0:
        return 900.0
    mean = sum(w * length for w, length in ordered) / mass
    sd = math.sqrt(sum(w * (length - mean) ** 2 for w, length in ordered) / mass)
    iqr = _weighted_quantile(ordered, 0.75 * mass) - _weighted_quantile(ordered, 0.25 * mass)
    n_eff = mass**2 / sum(w * w for w, _ in ordered)
    spread = min(sd, iqr / 1.34) if iqr > 0 else sd
    return max(900.0, 0.9 * spread * n_eff**-0.2)


def _weighted_quantile(ordered: list[tuple[float, float]], at: float) -> float:
    seen = 0.0
    for w, length in ordered:
        seen += w
        if seen >= at:
            return length
    return ordered[-1][1]


# triangular kernel over start slots (+-90 min), normalised so a silence counts once in total
_KERNEL = tuple((d, (1.0 - abs(d) / 3.0) / 3.0) for d in range(-2, 3))


def _rate_at(rates: list[float], grid: list[float], t: float) -> float:
    """The rate of outlasting a threshold ``t`` between the grid's points: geometric between the two around it (a
    tail falls about exponentially), the grid's own value on a point."""
    i = bisect.bisect_right(grid, t) - 1
    if i < 0 or i >= len(grid) - 1:
        return rates[max(0, min(i, len(grid) - 1))]
    a, b = rates[i], rates[i + 1]
    f = (t - grid[i]) / (grid[i + 1] - grid[i])
    return a * (b / a) ** f if a > 0.0 and b > 0.0 else a + (b - a) * f


def _choose(
    slots: _Slots, low: list[list[int]], high: list[list[int]], budget: float, cap: float = math.inf
) -> list[list[int]]:
    """Per slot, an index into the grid (from ``low`` to ``high``) minimising the expected time to detect, weight x T,
    while the false alarms a month they add stay within ``budget``: every slot starts at its largest threshold
    and the cheapest steps down (least false alarms per hour of detection gained, on each slot's lower convex
    hull) are taken while the budget allows; that is the Lagrangian optimum. Silences longer than the outer limits
    alarm whatever is chosen (the safety floor): the budget is for what the learned thresholds add. A grid point
    above ``cap`` (the outer limit between two points) stands for the cap, at the cap's rate."""
    grid = [min(g, cap) for g in slots.grid]
    chosen = [list(row) for row in high]
    steps: list[tuple[float, int, int, int, float]] = []  # (false alarms per weighted second, kind, slot, to, cost)
    total = 0.0
    for kind in (0, 1):
        for k in range(SLOTS):
            rates = slots.rates[kind][k]
            cost = [30.0 * WEEK_SHARE[kind] * _rate_at(rates, slots.grid, g) for g in grid]
            weight = WEEK_SHARE[kind] * slots.weights[kind][k]
            top = high[kind][k]
            hull = [top]
            for i in range(top - 1, low[kind][k] - 1, -1):  # lower convex hull from the top down
                while len(hull) >= 2 and _slope(cost, grid, hull[-2], hull[-1]) >= _slope(cost, grid, hull[-1], i):
                    hull.pop()
                hull.append(i)
            for a, b in zip(hull, hull[1:], strict=False):
                added = cost[b] - cost[a]
                steps.append((added / (weight * (grid[a] - grid[b])), kind, k, b, added))
    steps.sort()
    for _, kind, k, to, added in steps:
        if total + added > budget:
            break
        if to < chosen[kind][k]:
            total += added
            chosen[kind][k] = to
    return chosen


def _slope(cost: list[float], grid: list[float], a: int, b: int) -> float:
    """False alarms added per second of threshold taken off, from grid index a down to b."""
    return (cost[b] - cost[a]) / (grid[a] - grid[b])


def fit(
    silences: list[list[float]],
    days: list[DayRecord],
    tz: tzinfo,
    settings: WellbeingSettings,
    warning_budget: float,
    with_morning: bool = True,
) -> Thresholds:
    """The thresholds for one household from its valid ``days`` and its ended ``silences`` [start, s, out]."""
    valid = {d.date for d in days}
    kinds = (sum(not d.weekend for d in days), sum(d.weekend for d in days))
    samples = []
    for start, length, out in silences:
        local = datetime.fromtimestamp(start, tz)
        if not out and local.date().isoformat() in valid:
            samples.append((local.weekday() >= 5, (local.hour * 60 + local.minute) // 30, length))
    grid = _grid(settings.warning_min_h * HOUR, settings.urgent_max_h * HOUR, SLOT_S)
    slots = _Slots(samples, (float(kinds[0]), float(kinds[1])), grid)
    # with fewer days than history_days the estimate is young (optimistic): the budget shrinks in proportion
    young = min(1.0, len(days) / settings.history_days)
    warning_budget *= young
    urgent_budget = settings.urgent_budget_per_month * young
    # the morning rule's warning and the night's urgent alert take at most a quarter and a half of the budgets
    morning_w, night_urgent, morning_expected, night_expected = (
        morning_times(days, settings, 0.25 * warning_budget, 0.5 * urgent_budget) if with_morning else NO_MORNING
    )
    wake = (
        median_of([d.first_use_s for d in days if not d.weekend]),
        median_of([d.first_use_s for d in days if d.weekend]),
    )
    top = len(grid) - 1
    # the grid point at or just above the outer limit; a warning chosen there is the limit itself (below)
    w_top = min(top, bisect.bisect_left(grid, settings.warning_max_h * HOUR - 1.0))
    # the night's slots are the morning's: fixed below, no budget spent on them here
    marks_w = [[-1.0] * SLOTS for _ in (0, 1)]
    marks_u = [[-1.0] * SLOTS for _ in (0, 1)]
    bed = bedtime(samples)
    judge_night(marks_w, marks_u, night_urgent, bed, settings)
    night = [[marks_u[kind][k] >= 0.0 for k in range(SLOTS)] for kind in (0, 1)]
    w_high = [[w_top] * SLOTS for _ in (0, 1)]
    w_low = [[w_top if night[kind][k] else 0 for k in range(SLOTS)] for kind in (0, 1)]
    w_max = settings.warning_max_h * HOUR
    w_idx = _choose(slots, w_low, w_high, max(0.0, warning_budget - morning_expected), cap=w_max)
    # by day the social worker is called only well after the family (rare long outings are not in every month)
    margin = max(settings.urgent_after_warning_min * 60.0, settings.urgent_margin_h * HOUR)
    after = int(math.ceil(margin / SLOT_S - 1e-9))
    u_low = [
        [top if night[kind][k] else min(top, i + after) for k, i in enumerate(row)] for kind, row in enumerate(w_idx)
    ]
    u_idx = _choose(slots, u_low, [[top] * SLOTS for _ in (0, 1)], max(0.0, urgent_budget - night_expected))
    warning = [[min(grid[i], w_max) for i in row] for row in w_idx]
    urgent = [[grid[i] for i in row] for row in u_idx]
    judge_night(warning, urgent, night_urgent, bed, settings)
    if with_morning:
        held_to_morning(urgent, samples, bed, days, urgent_budget, settings)
    expected_w = morning_expected + _expected(slots, warning)
    expected_u = night_expected + _expected(slots, urgent)
    floor = _expected(slots, [[w_max] * SLOTS] * 2)
    detect, detect_urgent = _monitorability(silences, days, tz, warning, urgent)
    return Thresholds(
        (tuple(warning[0]), tuple(warning[1])),
        (tuple(urgent[0]), tuple(urgent[1])),
        wake,
        bed,
        morning_w,
        round(expected_w, 2),
        round(expected_u, 2),
        round(floor, 2),
        warning_budget,
        detect,
        detect_urgent,
    )


def _expected(slots: _Slots, chosen: list[list[float]]) -> float:
    """False alarms a month the thresholds ``chosen`` (per kind of day and start slot) are expected to give."""
    return sum(
        30.0 * WEEK_SHARE[kind] * _rate_at(slots.rates[kind][k], slots.grid, chosen[kind][k])
        for kind in (0, 1)
        for k in range(SLOTS)
    )


def _grid(low: float, high: float, step: float) -> list[float]:
    n = max(0, int(math.floor((high - low) / step + 1e-9)))
    return [low + i * step for i in range(n + 1)] if high > low else [high]


def _monitorability(
    silences: list[list[float]],
    days: list[DayRecord],
    tz: tzinfo,
    warning: list[list[float]],
    urgent: list[list[float]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Expected hours from a fall to the warning (and to the urgent alert), per part of the day, over the learned
    days: a fall at each half hour finds the silence then going on (or a recent use) and waits for its threshold."""
    spans = sorted((s, s + length) for s, length, out in silences if not out)
    starts = [s for s, _ in spans]
    sums = {name: [0.0, 0.0, 0] for name, _, _ in PARTS}
    for day in days:
        midnight = datetime.fromisoformat(day.date).replace(tzinfo=tz).timestamp()
        for k in range(SLOTS):
            t = midnight + (k + 0.5) * SLOT_S
            i = bisect.bisect_right(starts, t) - 1
            anchor = spans[i][0] if i >= 0 and spans[i][1] > t else t - 600.0
            local = datetime.fromtimestamp(anchor, tz)
            kind = int(local.weekday() >= 5)
            slot = (local.hour * 60 + local.minute) // 30
            part = PARTS[min(3, k // 12)][0]
            sums[part][0] += max(0.0, anchor + warning[kind][slot] - t)
            sums[part][1] += max(0.0, anchor + urgent[kind][slot] - t)
            sums[part][2] += 1
    detect = {p: round(v[0] / v[2] / HOUR, 1) if v[2] else 0.0 for p, v in sums.items()}
    detect_urgent = {p: round(v[1] / v[2] / HOUR, 1) if v[2] else 0.0 for p, v in sums.items()}
    return detect, detect_urgent
