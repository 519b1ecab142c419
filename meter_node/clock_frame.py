"""The time the wellbeing rules date their inputs by, and re-dating them when the wall clock is set.

A Pi starts after a power cut at the time it stopped. The meter node waits for NTP (``clock_wait_min``), but not
for ever: without NTP its rules must still run. If NTP (or a technician) sets the clock after the wait, the rules
had dated everything since the start by the stopped clock, and the step would turn the whole cut into a silence: a
false alarm for every household on the bus at once. So while the clock is not synchronised, the node keeps each
input it gives a monitor with its monotonic time, and a copy of the monitors as they were when that began. When
the clock is set, the copies are fed the same inputs again, each dated by the new clock (its time now less the
monotonic time since), and take the place of the monitors. Elapsed time is the monotonic clock's: the cut becomes
a gap of its true length, and no silence is made or lost. A fall during or after the cut is still found.

A clock that was synchronised and is then set by hand (``date -s`` makes it unsynchronised) is not followed: the
rules go on dating by the synchronised clock's time (monotonic time plus its last offset) until NTP is back, so a
clock set hours back or ahead neither delays an alarm nor raises a false one.
"""

from __future__ import annotations

import copy
import logging
import math
from array import array
from collections.abc import Mapping
from typing import Literal

from common.clock import Clock
from common.events import Detection
from meter_node.wellbeing import WellbeingMonitor

log = logging.getLogger(__name__)

Input = Literal["read", "ok", "out", "door"]
INPUTS: tuple[Input, ...] = ("read", "ok", "out", "door")
STEP_S = 60.0  # the wall clock moving this much more than the monotonic one is a step (NTP slews far less)
KEEP_S = 2 * 86400.0  # inputs kept at most this long (19 bytes each); then a new segment begins


def give(monitor: WellbeingMonitor, what: Input, t: float, litres: float | None = None) -> list[Detection]:
    """One input to a household's monitor: a meter read (``litres`` None: a failed read), "I'm OK" (``ok``),
    the away button (``out``) or the door contact."""
    if what == "read":
        return monitor.update(t, litres)
    if what == "door":
        return monitor.door(t)
    return monitor.acknowledge(t) if what == "ok" else monitor.going_out(t)


class StaleClock:
    """The inputs given to the monitors since the wall clock was last seen synchronised or set (the node's start
    without NTP, NTP lost, or a step), with their monotonic times, and the monitors as they were then."""

    def __init__(self, monitors: Mapping[str, WellbeingMonitor], wall: float, mono: float) -> None:
        self.start = {key: copy.deepcopy(monitor) for key, monitor in monitors.items()}
        self.keys = list(monitors)
        self.offset = wall - mono  # the wall clock's frame: wall less monotonic time
        self._mono = array("d")
        self._litres = array("d")  # nan: a failed read, or not a read
        self._key = array("H")
        self._what = array("B")

    def __len__(self) -> int:
        return len(self._mono)

    def full(self, mono: float) -> bool:
        """Inputs kept for ``KEEP_S`` already: a new segment begins (what came before is not re-dated)."""
        return bool(self._mono) and mono - self._mono[0] > KEEP_S

    def record(self, key: str, what: Input, mono: float, litres: float | None = None) -> None:
        """Keep one input given to monitor ``key`` at monotonic time ``mono``."""
        self._mono.append(mono)
        self._litres.append(math.nan if litres is None else litres)
        self._key.append(self.keys.index(key))
        self._what.append(INPUTS.index(what))

    def redo(self, wall: float, mono: float) -> dict[str, WellbeingMonitor]:
        """The monitors as they would be had each input been dated by the wall clock now (``wall`` at monotonic
        ``mono``). The detections they make on the way are not returned: the live monitors told the family what
        they found then; ``WellbeingMonitor.take_over`` tells the difference."""
        monitors = self.start
        for at, litres, key, what in zip(self._mono, self._litres, self._key, self._what, strict=True):
            give(monitors[self.keys[key]], INPUTS[what], wall - (mono - at), None if math.isnan(litres) else litres)
        return monitors


class ClockWatch:
    """The node's side: gives the monitors their inputs, dated by the rules' clock (monotonic time plus ``frame``),
    keeps them while the wall clock is not synchronised, and on each ``check`` follows the wall clock: it re-dates
    what it kept when a clock never synchronised since the start is set or synchronised."""

    def __init__(self, clock: Clock, monitors: Mapping[str, WellbeingMonitor]) -> None:
        self.clock = clock
        wall, mono = clock.wall(), clock.monotonic()
        self.frame = wall - mono  # the rules' time is monotonic time plus this
        self.trusted = clock.wall_synced()  # the frame is a synchronised clock's
        self.stale = None if self.trusted else StaleClock(monitors, wall, mono)
        self.redated = 0  # inputs dated again, for health and tests

    def give(
        self, monitors: Mapping[str, WellbeingMonitor], key: str, what: Input, mono: float, litres: float | None = None
    ) -> list[Detection]:
        """Input ``what`` to monitor ``key``, made at monotonic time ``mono``."""
        if self.stale is not None and self.stale.full(mono):
            # two days without NTP: only what comes from now on is re-dated (a step then leaves the join a gap)
            log.warning("wall clock not synchronised for %g h: re-dating what the rules see from now on", KEEP_S / 3600)
            self.stale = StaleClock(monitors, mono + self.stale.offset, mono)
        if self.stale is not None:
            self.stale.record(key, what, mono, litres)
        return give(monitors[key], what, mono + self.frame, litres)

    def check(self, monitors: dict[str, WellbeingMonitor]) -> list[tuple[str, Detection]]:
        """Follow the wall clock: when a clock not synchronised since the start is set or synchronised, the
        monitors in ``monitors`` are replaced by their re-dated copies; returned is what the family must be told of
        the difference (``clock_corrected``)."""
        wall, mono, synced = self.clock.wall(), self.clock.monotonic(), self.clock.wall_synced()
        offset, stale, out = wall - mono, self.stale, []
        if synced:
            if stale is not None and len(stale) and abs(offset - self.frame) > STEP_S:
                out = self._redo(stale, monitors, wall, mono, offset - self.frame)
            elif stale is None and abs(offset - self.frame) > STEP_S:  # NTP itself stepped: rare, and right
                log.warning("synchronised wall clock stepped by %+.0f s: not re-dated", offset - self.frame)
            self.frame, self.trusted, self.stale = offset, True, None
            return out
        if stale is None:  # synchronisation lost (NTP out of reach, or the clock set by hand): keep inputs from now
            stale = self.stale = StaleClock(monitors, wall, mono)
        if abs(offset - stale.offset) <= STEP_S:  # the clock has not moved since the inputs began to be kept
            return out
        if self.trusted:
            log.warning(
                "wall clock set by %+.0f s, not synchronised: the rules keep the synchronised clock's time until NTP",
                offset - self.frame,
            )
            self.stale = StaleClock(monitors, wall, mono)  # inputs from here on, in case NTP comes back elsewhere
            return out
        out = self._redo(stale, monitors, wall, mono, offset - self.frame) if len(stale) else []
        self.frame, self.stale = offset, StaleClock(monitors, wall, mono)  # a clock never synchronised: followed
        return out

    def _redo(
        self, stale: StaleClock, monitors: dict[str, WellbeingMonitor], wall: float, mono: float, step: float
    ) -> list[tuple[str, Detection]]:
        try:
            redone = stale.redo(wall, mono)
            told = {key: monitor.open_incidents() for key, monitor in monitors.items()}
            found = [(key, d) for key, m in redone.items() for d in m.take_over(told[key], wall, "clock_corrected")]
        except Exception:  # noqa: BLE001 - the monitors carry on undated, as before: loud, not fatal
            log.exception("wall clock stepped by %+.0f s: re-dating what the rules saw failed", step)
            return []
        log.warning("wall clock stepped by %+.0f s: %d input(s) to the rules dated again", step, len(stale))
        monitors.update(redone)
        self.redated += len(stale)
        return found
