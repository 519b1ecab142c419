"""A household's water use from its meter's cumulative totals: litres per local day and per hour (pure).

Totals are read every few minutes; the use in a bucket [a, b) is T(b) - T(a) with T the total interpolated
linearly between readings (so a reading just after midnight does not move a day's water into the next). A total
that goes down (a meter replaced or reset) starts a new series: the drop is never counted as use. Buckets with no
reading on both sides are None (unknown), never 0: "no data" must not look like "no water".
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

Reading = tuple[float, float]  # (time, total litres)


def _segments(readings: Sequence[Reading]) -> list[list[Reading]]:
    """Runs of readings whose total never goes down."""
    out: list[list[Reading]] = []
    for t, total in sorted(readings):
        if out and total >= out[-1][-1][1]:
            out[-1].append((t, total))
        else:
            out.append([(t, total)])
    return out


def _total_at(seg: list[Reading], times: list[float], t: float) -> float | None:
    if t < times[0] or t > times[-1]:
        return None
    i = bisect.bisect_left(times, t)
    if times[i] == t:
        return seg[i][1]
    (t0, v0), (t1, v1) = seg[i - 1], seg[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def use_between(readings: Sequence[Reading], edges: Sequence[float]) -> list[float | None]:
    """Litres used between consecutive ``edges`` (len(edges) - 1 buckets); None where the meter did not cover it."""
    segs = [(s, [t for t, _ in s]) for s in _segments(readings)]
    out: list[float | None] = []
    for a, b in zip(edges, edges[1:], strict=False):
        used, covered = 0.0, 0.0
        for seg, times in segs:
            lo, hi = max(a, times[0]), min(b, times[-1])
            if hi <= lo:
                continue
            used += (_total_at(seg, times, hi) or 0.0) - (_total_at(seg, times, lo) or 0.0)
            covered += hi - lo
        out.append(round(used, 1) if covered >= 0.5 * (b - a) else None)
    return out


def day_edges(now: float, days: int, tz: str = "Asia/Shanghai") -> list[float]:
    """Local midnights: the last ``days`` whole days and today so far (days + 2 edges, the last one ``now``)."""
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [(today - timedelta(days=d)).timestamp() for d in range(days, -1, -1)]
    return [*starts, now]


def hour_edges(now: float, hours: int) -> list[float]:
    top = now - now % 3600
    return [top - 3600 * h for h in range(hours - 1, -1, -1)] + [now]


def last_use(readings: Sequence[Reading], min_litres: float = 1.0) -> float | None:
    """When the total last grew by at least ``min_litres`` between two readings (the end of that interval)."""
    pairs = sorted(readings)
    for (_t0, v0), (t1, v1) in zip(reversed(pairs[:-1]), reversed(pairs[1:]), strict=False):
        if v1 - v0 >= min_litres:
            return t1
    return None
