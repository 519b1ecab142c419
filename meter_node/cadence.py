"""Which meter reads become ``meter_reading`` events (SD card wear against a live total at the central)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReadingCadence:
    """Which reads become ``meter_reading`` events: SD cards wear, and a cumulative total loses nothing when
    sampled. Recorded: the first good read, a changed total at most once per ``min_interval_s`` window, and an
    unchanged one once per ``sample_s`` window (so the central sees the meter alive). The windows are on one
    grid for every meter, so the readings of all meters fall in the same poll cycle and go to disk in one
    transaction. Pure: fed (monotonic time, total)."""

    min_interval_s: float
    sample_s: float
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)  # meter -> (at, total)

    def seen(self, meter_id: str) -> bool:
        return meter_id in self._last

    def due(self, meter_id: str, at: float, total: float | None) -> bool:
        if total is None:
            return False
        last = self._last.get(meter_id)
        if last is None:
            return True
        changed = abs(total - last[1]) >= 1e-6
        if changed and self._window(at, self.min_interval_s) > self._window(last[0], self.min_interval_s):
            return True
        return self._window(at, self.sample_s) > self._window(last[0], self.sample_s)

    def recorded(self, meter_id: str, at: float, total: float) -> None:
        self._last[meter_id] = (at, total)

    @staticmethod
    def _window(at: float, length: float) -> float:
        return at // length if length > 0 else at
