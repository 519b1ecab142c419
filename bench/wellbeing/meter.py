"""Turn simulated water uses into what a node sees: meter totals at poll times, pulse-sized, with faults."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from bench.wellbeing.household import DAY, HOUR, Use


@dataclass(frozen=True)
class MeterSetup:
    """How the household is metered: pulse size, poll interval, and a fixed schedule of faults."""

    resolution_l: float
    poll_s: float
    gaps: tuple[tuple[float, float], ...] = ()  # (start, end) sim seconds with no reading at all
    resets: tuple[float, ...] = ()  # meter replaced: the total starts again from 0
    fail_per_mille: int = 5  # isolated failed reads

    @classmethod
    def draw(cls, rng: random.Random, resolution_l: float, poll_s: float, days: int) -> MeterSetup:
        gaps = []
        for _ in range(max(1, days // 10)):  # a bus or power outage every ~10 days: 5 min to 3 h
            start = rng.uniform(0, days * DAY)
            gaps.append((start, start + rng.uniform(300, 3 * HOUR)))
        resets = (rng.uniform(0.3, 0.9) * days * DAY,) if rng.random() < 0.3 else ()
        return cls(resolution_l, poll_s, tuple(sorted(gaps)), resets)


def _total_at(segments: list[Use], t: float) -> float:
    return sum(min(u.duration, max(0.0, t - u.start)) * u.flow for u in segments if u.start < t)


def readings(
    uses: list[Use], leaks: list[Use], meter: MeterSetup, t_from: float, t_to: float, epoch0: float
) -> Iterator[tuple[float, float | None]]:
    """(Unix time, total litres or None) at every poll in [t_from, t_to)."""
    segments = sorted([*uses, *leaks], key=lambda u: u.start)
    res = meter.resolution_l
    poll = meter.poll_s
    k = math.ceil(t_from / poll)
    t = k * poll
    # state at t: completed volume and the uses still running
    done = 0.0
    i = 0
    active: list[Use] = []
    n = len(segments)
    while i < n and segments[i].start <= t:
        u = segments[i]
        if u.end <= t:
            done += u.litres
        else:
            active.append(u)
        i += 1
    resets = [r for r in meter.resets]
    reset_base = 0.0
    offset = 12345.0  # a meter is never new
    while resets and resets[0] <= t:
        reset_base = _total_at(segments, resets.pop(0))
        offset = 0.0
    gaps = [g for g in meter.gaps if g[1] > t]
    fail = meter.fail_per_mille
    while t < t_to:
        while i < n and segments[i].start <= t:
            active.append(segments[i])
            i += 1
        if active:
            still = []
            running = 0.0
            for u in active:
                if u.end <= t:
                    done += u.litres
                else:
                    still.append(u)
                    running += (t - u.start) * u.flow
            active = still
            total = done + running
        else:
            total = done
        if resets and resets[0] <= t:
            reset_base = _total_at(segments, resets.pop(0))
            offset = 0.0
        while gaps and gaps[0][1] <= t:
            gaps.pop(0)
        if (gaps and gaps[0][0] <= t) or (k * 2654435761) % 1000 < fail:
            yield epoch0 + t, None
        else:
            yield epoch0 + t, math.floor((total - reset_base + offset) / res + 1e-9) * res
        k += 1
        t = k * poll
