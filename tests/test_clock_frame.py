"""meter_node/clock_frame.py: what the wellbeing rules saw on a clock not yet synchronised, dated again when it
steps, on the pure monitors with a ManualClock (the node's own case is in test_meter_restart.py)."""

from __future__ import annotations

import copy
import logging
import random
from typing import Any

import pytest

from common.clock import ManualClock
from common.events import Detection
from meter_node import clock_frame
from meter_node.clock_frame import ClockWatch
from meter_node.wellbeing import WellbeingMonitor, WellbeingSettings

TZ = "Asia/Shanghai"
T0 = 1_767_196_800  # 2026-01-01 00:00 in Shanghai
DAY = 86400


def _readings(days: int, seed: int = 3) -> list[tuple[int, float]]:
    """(time, total litres) each minute: uses from 07:00 to 22:00, 1-3 h apart, 4-30 L each (whole seconds and
    litres, so dating again by the monotonic clock gives the very same floats)."""
    rng = random.Random(seed)
    uses: dict[int, float] = {}
    for day in range(days):
        t = T0 + day * DAY + 7 * 3600 + rng.randrange(0, 3600, 60)
        while t < T0 + day * DAY + 22 * 3600:
            uses[t] = float(rng.choice([4, 6, 9, 15, 30]))
            t += rng.randrange(3600, 3 * 3600, 60)
    total, out = 1000.0, []
    for t in range(T0, T0 + days * DAY, 60):
        total += uses.get(t, 0.0)
        out.append((t, total))
    return out


def _monitor(state: dict[str, Any] | None = None) -> WellbeingMonitor:
    """A household's monitor, on a copy of ``state`` (a monitor takes the lists of the state it is given)."""
    return WellbeingMonitor(WellbeingSettings(), TZ, copy.deepcopy(state), key="h")


def _fed(readings: list[tuple[int, float]], monitor: WellbeingMonitor | None = None) -> WellbeingMonitor:
    monitor = monitor or _monitor()
    for t, total in readings:
        monitor.update(t, total)
    return monitor


def _through_a_stale_clock(
    readings: list[tuple[int, float]], restart: dict[str, Any], stopped_at: float, ntp_at: int
) -> tuple[dict[str, WellbeingMonitor], ClockWatch, list[Detection]]:
    """A node restarted on ``restart`` (its saved state) with its clock showing ``stopped_at`` at the first of
    ``readings``, fed them, and NTP setting the right time at ``ntp_at``."""
    clock = ManualClock(wall=stopped_at, monotonic=5000.0, synced=False)
    monitors = {"h": _monitor(restart)}
    watch = ClockWatch(clock, monitors)
    first, found = readings[0][0], []
    for t, total in readings:
        clock.advance(5000.0 + (t - first) - clock.monotonic())
        if t >= ntp_at and not clock.wall_synced():
            clock.set_wall(t, synced=True)
        found += [d for _, d in watch.check(monitors)]
        found += watch.give(monitors, "h", "read", clock.monotonic(), total)
    return monitors, watch, found


@pytest.mark.parametrize("stopped", ["at the cut", "an hour before the last reading"])
def test_dated_again_the_rules_are_as_if_the_clock_had_been_right(stopped: str) -> None:
    """Three weeks learned, an 8 h cut, the node back on a stopped clock and NTP only 3 h later. Dated again at
    the step, the monitor's whole state is the state of one fed the same readings on the right clock; with the
    readings dated as they came (no watch), it is not. A clock saved an hour before the last reading (fake-hwclock)
    had the rules ignore the first hour's readings as older than what they had seen."""
    readings = _readings(24)
    cut_from, cut_to = T0 + 21 * DAY + 10 * 3600, T0 + 21 * DAY + 18 * 3600
    before = [r for r in readings if r[0] < cut_from]
    after = [r for r in readings if r[0] >= cut_to]
    restart = _fed(before).state()
    right = _fed(after, _monitor(restart))
    stopped_at = cut_from if stopped == "at the cut" else before[-1][0] - 3600.0
    monitors, watch, _ = _through_a_stale_clock(after, restart, stopped_at, ntp_at=cut_to + 3 * 3600)
    assert watch.redated == 3 * 60 and watch.stale is None
    assert monitors["h"].state() == right.state()
    undated = _monitor(restart)
    for t, total in after:
        undated.update(t if t >= cut_to + 3 * 3600 else stopped_at + (t - cut_to), total)
    assert undated.state() != right.state()


def test_an_alert_of_the_wrong_clock_is_cleared_when_it_steps_back() -> None:
    """A node back from a 1 h cut with its clock 10 h ahead (set wrong by hand, not synchronised): by it the home
    was silent 11 h and more, a false warning and then urgent alert. NTP's step back dates the readings again: no
    silence, the alert is cleared (``clock_corrected``), and nothing else is raised."""
    readings = _readings(24)
    cut_from = T0 + 21 * DAY + 22 * 3600 + 60  # after the evening's last use
    before = [r for r in readings if r[0] < cut_from]
    after = [r for r in readings if cut_from + 3600 <= r[0] < cut_from + 5 * 3600]
    restart = _fed(before).state()
    ahead = after[0][0] + 10 * 3600.0
    monitors, watch, found = _through_a_stale_clock(after, restart, ahead, ntp_at=cut_from + 4 * 3600)
    said = [(d.kind, d.state, d.severity, d.payload.get("reason")) for d in found if d.kind == "inactivity"]
    assert said == [
        ("inactivity", "raised", "warning", None),
        ("inactivity", "updated", "urgent", None),
        ("inactivity", "cleared", "urgent", "clock_corrected"),
    ]
    assert monitors["h"].open_incidents() == {} and watch.redated > 0


def test_a_step_of_a_synchronised_clock_is_logged_not_dated_again(caplog: pytest.LogCaptureFixture) -> None:
    """NTP itself stepping a synchronised clock is taken as right (rare: a synchronised clock does not drift by a
    minute)."""
    clock = ManualClock(wall=float(T0), synced=True)
    monitors = {"h": _monitor()}
    watch = ClockWatch(clock, monitors)
    assert watch.stale is None
    for minute in range(5):
        clock.advance(60.0)
        watch.give(monitors, "h", "read", clock.monotonic(), 100.0 + minute)
    clock.set_wall(clock.wall() - 4 * 3600)
    with caplog.at_level(logging.WARNING, logger="meter_node.clock_frame"):
        assert watch.check(monitors) == []
    assert "synchronised wall clock stepped by -14400 s: not re-dated" in caplog.text
    assert watch.redated == 0 and watch.frame == clock.wall() - clock.monotonic()


def _silent_after_the_morning(set_by: float, synced_after: bool) -> list[tuple[float, str, str]]:
    """A household learned for three weeks, silent from its last use before 09:00 on day 21; at 09:00 the clock is
    set by ``set_by`` seconds (``synced_after``: and synchronised, as NTP does). Returned: (hours after that use,
    kind, severity) of each inactivity alert raised or updated in the silence, by the monotonic clock."""
    readings = [r for r in _readings(22) if r[0] < T0 + 21 * DAY + 9 * 3600]
    last_use, total = next(r for i, r in reversed(list(enumerate(readings))) if r[1] != readings[i - 1][1])
    silent = [r for r in readings if r[0] <= last_use] + [(last_use + 60 * m, total) for m in range(1, 20 * 60)]
    clock = ManualClock(wall=float(T0), monotonic=float(T0), synced=True)
    monitors = {"h": _monitor()}
    watch = ClockWatch(clock, monitors)
    out = []
    for t, total in silent:
        clock.advance(t - clock.monotonic())
        if t == T0 + 21 * DAY + 9 * 3600:
            clock.set_wall(clock.wall() + set_by, synced=synced_after)
        found = [d for _, d in watch.check(monitors)] + watch.give(monitors, "h", "read", t, total)
        out += [((t - last_use) / 3600, d.kind, d.severity) for d in found if t > last_use and d.state != "cleared"]
    return [x for x in out if x[1] == "inactivity"]


@pytest.mark.parametrize("set_by", [-4 * 3600.0, 10 * 3600.0])
def test_a_synchronised_clock_set_by_hand_does_not_move_the_alarm(set_by: float) -> None:
    """Set back 4 h by hand, the rules took the silence's readings as older than the last and raised the alarm 4 h
    late; set 10 h ahead, at once. ``date -s`` leaves the clock unsynchronised: the rules keep dating by the
    synchronised clock's time, so the alarm comes as it would have."""
    right = _silent_after_the_morning(0.0, True)
    assert right and right[0][2] == "warning"
    assert _silent_after_the_morning(set_by, False) == right


def test_a_clock_not_synchronised_for_days_keeps_two_days_of_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs are kept at most ``KEEP_S``; then a new segment begins from the monitors as they are (memory stays
    bounded: 19 bytes an input)."""
    monkeypatch.setattr(clock_frame, "KEEP_S", 3600.0)
    clock = ManualClock(wall=float(T0), synced=False)
    monitors = {"h": _monitor()}
    watch = ClockWatch(clock, monitors)
    first = watch.stale
    for _ in range(150):
        clock.advance(60.0)
        watch.give(monitors, "h", "read", clock.monotonic(), 100.0)
    assert watch.stale is not None and watch.stale is not first
    assert len(watch.stale) <= 61


def test_a_clock_set_by_hand_twice_is_not_followed_until_ntp_is_back() -> None:
    """Set by hand, then set again, and not synchronised in between: the rules keep the synchronised clock's
    time throughout; NTP back at that time re-dates nothing."""
    clock = ManualClock(wall=float(T0), synced=True)
    monitors = {"h": _monitor()}
    watch = ClockWatch(clock, monitors)
    frame = watch.frame
    for set_by in (10 * 3600.0, -3 * 3600.0):
        clock.set_wall(clock.wall() + set_by, synced=False)
        for minute in range(30):
            clock.advance(60.0)
            assert watch.check(monitors) == []
            watch.give(monitors, "h", "read", clock.monotonic(), 100.0 + minute)
            assert watch.frame == frame
    assert monitors["h"].data.last_t == clock.monotonic() + frame
    clock.set_wall(clock.monotonic() + frame, synced=True)  # NTP: the synchronised clock's time again
    assert watch.check(monitors) == [] and watch.redated == 0 and watch.stale is None
