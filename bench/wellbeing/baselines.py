"""The services' fixed rules, run beside the node on the same readings: Nagano (Sakaki) and Shanghai."""

from __future__ import annotations

from collections import deque

from bench.wellbeing.household import HOUR


class Nagano:
    """Sakaki (Nagano) pilot rule: no use for 8 h, or use going on for 2 h, mails the family."""

    name = "nagano"

    def __init__(self) -> None:
        self.last_total: float | None = None
        self.last_use = 0.0
        self.silence_alarm = False
        self.flow_start = 0.0
        self.last_rise = -1e18
        self.flow_alarm = False

    def update(self, t: float, total: float | None) -> bool:
        if total is None:
            return False
        last = self.last_total
        self.last_total = total
        if last is None or total < last:
            self.last_use = max(self.last_use, t) if last is None else self.last_use
            return False
        if total > last:
            if t - self.last_rise > 600:  # use counts as continuous while the counter moves every 10 min
                self.flow_start, self.flow_alarm = t, False
            self.last_rise = self.last_use = t
            self.silence_alarm = False
            if not self.flow_alarm and t - self.flow_start >= 2 * HOUR:
                self.flow_alarm = True
                return True
        elif not self.silence_alarm and t - self.last_use >= 8 * HOUR:
            self.silence_alarm = True
            return True
        return False


class Shanghai:
    """Shanghai street rule: less than 10 L in 12 h sends someone to the door."""

    name = "shanghai"

    def __init__(self) -> None:
        self.changes: deque[tuple[float, float]] = deque()
        self.alarm = False

    def update(self, t: float, total: float | None) -> bool:
        if total is None:
            return False
        changes = self.changes
        if changes and total < changes[-1][1]:
            changes.clear()
        if not changes or total != changes[-1][1]:
            changes.append((t, total))
        cut = t - 12 * HOUR
        while len(changes) >= 2 and changes[1][0] <= cut:
            changes.popleft()
        if changes[0][0] > cut:
            return False
        low = total - changes[0][1] < 10.0
        fire = low and not self.alarm
        self.alarm = low
        return fire
