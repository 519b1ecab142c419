"""The meter node across a restart in the middle of an incident: the alert book owns what is open, so the same
alert goes on whether the state file was kept, lost, or written before the alert. Same rig as test_meter_node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.clock import ManualClock
from meter_node.node import STATE_FILE
from tests import test_meter_node
from tests.test_meter_node import NODE_ID, ONE_METER, START_WALL, Harness, TableBus, node_config

harnesses = test_meter_node.harnesses  # the fixtures: nodes closed after the test, a registered central
registered = test_meter_node.registered


@pytest.mark.parametrize("saved", ["kept", "lost", "older"])
def test_restart_in_the_middle_of_an_incident_keeps_the_same_alert(
    registered: Any, tmp_path: Path, harnesses: list[Harness], saved: str
) -> None:
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    config = node_config(tmp_path, registered.url, ONE_METER)
    clock = ManualClock(wall=START_WALL)
    state = tmp_path / "data" / NODE_ID / STATE_FILE
    first = Harness(config, bus, clock)
    first.run(7 * 3600)
    before_alert = state.read_text()
    first.run(2 * 3600)  # silent from the start: inactivity raised at 8 h
    first.sync()
    first.close()
    assert state.is_file()
    raised = registered.events(NODE_ID, kind="inactivity")
    assert [e["state"] for e in raised] == ["raised"]
    if saved == "lost":  # a damaged card: the monitor learns afresh, the alert book still holds the alert
        state.unlink()
    elif saved == "older":  # the crash came after the alert was stored and before the state file was written
        state.write_text(before_alert)

    second = Harness(config, bus, clock)  # the process restarted: same data dir, same clock
    harnesses.append(second)
    assert second.node.monitors["b12-301"].open_incidents()["inactivity"] == "warning"  # the book's, each time
    second.run(2 * 3600)
    second.close()
    third = Harness(config, bus, clock)  # and once more, now on the state the second run saved
    harnesses.append(third)
    third.run(2 * 3600)  # still silent: never cleared, and urgent is an update of the same alert
    third.sync()
    events = registered.events(NODE_ID, kind="inactivity")
    assert "cleared" not in [e["state"] for e in events]
    if saved == "kept":  # lost: the silence's start is unknown; older: the 2 h without state are not counted
        assert third.node.monitors["b12-301"].open_incidents()["inactivity"] == "urgent"
    bus.litres[1] = 5010.0  # water again (two minutes of use): cleared
    third.run(60)
    bus.litres[1] = 5020.0
    third.run(15 * 60)
    third.sync()
    events = registered.events(NODE_ID, kind="inactivity")
    states = [e["state"] for e in events if not e["payload"].get("renotify")]
    assert states[0] == "raised" and states[-1] == "cleared" and "raised" not in states[1:]
    assert len({e["alert_id"] for e in events}) == 1
    assert len([a for a in registered.alerts() if a["kind"] == "inactivity"]) == 1


def _mornings(bus: TableBus, clock: ManualClock) -> Any:
    """3 L a minute from 06:00 to 06:20 every day, then silence."""

    def use(now: float) -> None:
        if (clock.wall() - START_WALL) % 86400 < 20 * 60:
            bus.litres[1] = float(bus.litres[1]) + 3.0  # type: ignore[arg-type]  # the table holds floats here

    return use


def test_a_start_before_ntp_does_not_date_the_outages_water_by_the_stopped_clock(
    registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """A Pi has no clock of its own: after an 8 h power cut it starts at the time it stopped, and NTP steps it
    forward minutes later. Water used during the cut, read before the step, was dated at the stopped time, so
    after the step the household looked silent for the whole cut (in a pure-rule experiment, 40 inactivity alerts
    for 20 households where the right clock gave 6). Now the rules wait for NTP, at most clock_wait_min."""
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    config = node_config(tmp_path, registered.url, ONE_METER)
    clock = ManualClock(wall=START_WALL)
    first = Harness(config, bus, clock)
    first.run(26 * 3600, _mornings(bus, clock))  # to 08:00 on day 2
    first.sync()
    first.close()
    day_1 = {a["alert_id"] for a in registered.alerts()}  # silent from 06:20 until the next morning
    bus.litres[1] = float(bus.litres[1]) + 40.0  # type: ignore[arg-type]  # used during the cut, 08:00-16:00
    stopped = ManualClock(wall=START_WALL + 26 * 3600 + 30, monotonic=50.0, synced=False)
    second = Harness(config, bus, stopped)
    harnesses.append(second)
    second.run(4 * 60)  # reads at 08:00 by the stopped clock
    stopped.set_wall(START_WALL + 34 * 3600 + 5 * 60, synced=True)  # NTP: 16:05
    second.run(3 * 3600)  # to 19:05: the last water proves life at 16:05 at the latest
    second.sync()
    assert [(a["severity"], a["payload"]) for a in registered.alerts() if a["alert_id"] not in day_1] == []


def test_im_ok_pressed_before_ntp_is_dated_when_the_clock_is_right(
    registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """The same cut, no water during it, but "I'm OK" pressed at 08:02 by the stopped clock (16:02 in truth): a
    sign of life then, not 8 h before NTP's step."""
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    config = node_config(tmp_path, registered.url, ONE_METER)
    clock = ManualClock(wall=START_WALL)
    first = Harness(config, bus, clock)
    first.run(26 * 3600, _mornings(bus, clock))  # water from 06:00 to 06:20 on day 2, then none: to 08:00
    first.sync()
    first.close()
    day_1 = {a["alert_id"] for a in registered.alerts()}
    stopped = ManualClock(wall=START_WALL + 26 * 3600 + 30, monotonic=50.0, synced=False)
    second = Harness(config, bus, stopped)
    harnesses.append(second)
    second.run(2 * 60)
    second.node.press_ok("b12-301")
    second.run(2 * 60)
    stopped.set_wall(START_WALL + 34 * 3600 + 5 * 60, synced=True)  # NTP: 16:05
    second.run(2 * 3600)  # to 18:05: silent since the press at 16:05
    second.sync()
    assert [(a["severity"], a["payload"]) for a in registered.alerts() if a["alert_id"] not in day_1] == []


def test_without_ntp_the_rules_run_after_the_wait(registered: Any, tmp_path: Path, harnesses: list[Harness]) -> None:
    """A node that never reaches NTP still watches its households, on its own clock, after clock_wait_min."""
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    config = node_config(tmp_path, registered.url, ONE_METER, extra="clock_wait_min = 10")
    clock = ManualClock(wall=START_WALL, synced=False)
    h = Harness(config, bus, clock)
    harnesses.append(h)
    h.run(8.5 * 3600, _mornings(bus, clock))  # 8 h 10 min of silence since 06:20
    h.sync()
    assert [(a["kind"], a["severity"]) for a in registered.alerts()] == [("inactivity", "warning")]


def _cut_and_late_ntp(
    registered: Any, tmp_path: Path, harnesses: list[Harness], used: float
) -> tuple[Harness, list[dict[str, Any]]]:
    """An 8 h cut from 08:00 on day 2 (``used`` litres drawn during it), the node back at 16:00 on its stopped
    clock, waiting 10 min for NTP in vain; its rules then run on the stopped clock until NTP answers at 17:05.
    Returns the node and the alerts raised after the cut."""
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    config = node_config(tmp_path, registered.url, ONE_METER, extra="clock_wait_min = 10")
    clock = ManualClock(wall=START_WALL)
    first = Harness(config, bus, clock)
    first.run(26 * 3600, _mornings(bus, clock))  # water from 06:00 to 06:20 on day 2, then none: to 08:00
    first.sync()
    first.close()
    day_1 = {a["alert_id"] for a in registered.alerts()}  # silent from 06:20 until the next morning
    bus.litres[1] = float(bus.litres[1]) + used  # type: ignore[arg-type]  # the table holds floats here
    stopped = ManualClock(wall=START_WALL + 26 * 3600 + 30, monotonic=50.0, synced=False)
    second = Harness(config, bus, stopped)
    harnesses.append(second)
    second.run(65 * 60)  # the wait, then 55 min of rules on the stopped clock
    assert second.node.clock_watch.redated == 0
    stopped.set_wall(START_WALL + 35 * 3600 + 5 * 60, synced=True)  # NTP, at 17:05
    second.run(2 * 3600)  # to 19:05
    second.sync()
    return second, [a for a in registered.alerts() if a["alert_id"] not in day_1]


def test_ntp_after_the_wait_dates_again_what_the_rules_saw(
    registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """NTP reached only after clock_wait_min: the rules had dated the cut's water by the stopped clock (08:10), and
    NTP's step made a 9 h silence of it, a warning for a household that used water all through the cut. Now what
    the rules saw since the start is dated again by the monotonic clock: the water proves life at 16:10."""
    second, alerts = _cut_and_late_ntp(registered, tmp_path, harnesses, used=40.0)
    assert second.node.clock_watch.redated > 0
    assert [(a["severity"], a["payload"]) for a in alerts] == []


def test_a_silence_through_the_cut_is_still_found_after_a_late_ntp(
    registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """No water during the cut nor after it: silent since the last use at 06:15. Dating again must not hide it:
    warning at NTP's step (17:05, 10.8 h), urgent at 18:15 (12 h)."""
    second, alerts = _cut_and_late_ntp(registered, tmp_path, harnesses, used=0.0)
    assert [(a["kind"], a["severity"]) for a in alerts] == [("inactivity", "urgent")]
    assert second.node.monitors["b12-301"].open_incidents()["inactivity"] == "urgent"
    events = registered.events(NODE_ID, kind="inactivity")
    day_2 = [e for e in events if e["wall_time"] > START_WALL + 26 * 3600]
    assert [e["severity"] for e in day_2 if not e["payload"].get("renotify")] == ["warning", "urgent"]
    urgent_at = day_2[-1]["wall_time"] - START_WALL  # START_WALL is 06:00 on day 1
    assert 36 * 3600 <= urgent_at <= 36 * 3600 + 30 * 60
