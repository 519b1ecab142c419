"""The per-household model: the budget, monitorability, night, outings, the door and the saved state's versions."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import pytest

from common.statefile import StateError
from meter_node.wellbeing import PROFILE_KIND, WellbeingMonitor, WellbeingSettings
from meter_node.wellbeing.model import fit
from tests.test_wellbeing import TZ, Home, day_at, kinds

FIXTURE = Path(__file__).parent / "fixtures" / "wellbeing_state_v1.json"


def _days(home: Home, days: int, *, out: tuple[int, int] | None = None, first: tuple[int, int] = (7, 0)) -> None:
    """A regular person for ``days`` days: up at ``first``, water every 90 min to 21:00 (not while out)."""
    for _ in range(days):
        home.idle(home.until(*first))
        hour = first[0] + first[1] / 60
        while hour < 21:
            if out is None or not out[0] <= hour < out[1]:
                home.use(6)
            home.idle(1.5 - 2 / 60)
            hour += 1.5


def _inactivity(found: list) -> list:
    return [d for d in found if d.kind == "inactivity"]


def test_a_larger_budget_gives_thresholds_no_later_and_the_expected_false_alarms_follow_it() -> None:
    home = Home(day_at(6))
    _days(home, 20)
    days = home.monitor.timeline.valid_days()
    silences = home.monitor.data.silences
    tight = fit(silences, days, TZ, WellbeingSettings(), 0.5)
    loose = fit(silences, days, TZ, WellbeingSettings(), 6.0)
    assert all(
        a >= b
        for row_a, row_b in zip(tight.warning, loose.warning, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )
    assert sum(map(sum, tight.warning)) > sum(map(sum, loose.warning))
    assert tight.expected_warnings <= loose.expected_warnings
    low = dataclasses.replace(WellbeingSettings(), warning_min_h=2.0, warning_max_h=14.0)
    learned = fit(silences, days, TZ, low, 2.0)
    assert all(2 * 3600 <= w <= 14 * 3600 for row in learned.warning for w in row)  # inside the outer limits


def test_an_outer_limit_between_grid_points_is_costed_at_its_own_rate() -> None:
    # 11.9 h lies between the model's half-hour grid points: its floor of false warnings is neither 11.5 h's nor 12 h's
    home = Home(day_at(6))
    _days(home, 20)
    days, silences = home.monitor.timeline.valid_days(), home.monitor.data.silences
    floors = [
        fit(silences, days, TZ, dataclasses.replace(WellbeingSettings(), warning_max_h=h), 2.0).floor_warnings
        for h in (11.5, 11.9, 12.0)
    ]
    assert floors[0] > floors[1] > floors[2]


def test_the_profile_event_reports_monitorability_per_part_of_the_day_once_a_day() -> None:
    home = Home(day_at(6))
    _days(home, 16)
    profiles = home.profiles
    assert len(profiles) >= 15 and all(p.kind == PROFILE_KIND and p.state == "observed" for p in profiles)
    first, last = profiles[0].payload, profiles[-1].payload
    assert first["adaptive"] is False and "detect_h" not in first  # still learning
    assert last["adaptive"] is True and last["watchable"] is True
    assert set(last["detect_h"]) == {"night", "morning", "afternoon", "evening"}
    assert last["detect_h"]["afternoon"] < 6.0  # water every 90 min by day: a fall is found within hours
    json.dumps(last, allow_nan=False)


def test_a_home_out_all_day_every_day_is_flagged_as_not_watchable_at_the_budget() -> None:
    home = Home(day_at(6))
    _days(home, 16, out=(9, 21))  # out from 09:00 until after 21:00 every day: 12 h and more without water
    profile = home.monitor.profile()
    assert profile["adaptive"] is True
    # every day's silence outlasts the outer limits: no threshold keeps the false warnings within the budget
    assert profile["watchable"] is False
    assert profile["expected_false_warnings_past_limits"] > profile["warning_budget_per_month"]


def test_an_ordinary_outing_learned_from_the_pattern_raises_no_urgent_alert() -> None:
    home = Home(day_at(6))
    _days(home, 18, out=(13, 19))  # the activity centre every afternoon
    home.seen.clear()
    _days(home, 1, out=(13, 19))
    assert [d for d in _inactivity(home.seen) if d.severity == "urgent"] == []


def test_a_night_collapse_after_a_toilet_visit_is_urgent_by_the_usual_first_use_plus_3_h() -> None:
    home = Home(day_at(6))
    _days(home, 16)  # first use at 07:00
    home.idle(home.until(2))
    home.use(6, minutes=3)  # 02:01-02:03: a flush and its cistern refilling, then the fall
    home.seen.clear()
    home.idle(home.until(10, 10))
    urgent = [d for d in _inactivity(home.seen) if d.severity == "urgent"]
    assert urgent, kinds(home.seen)
    # one late morning, one warning: the missed-morning rule's; the inactivity alert comes once, urgent
    assert [d.severity for d in _inactivity(home.seen) if d.state != "cleared"] == ["urgent"]
    assert [d for d in home.seen if d.kind == "missed_morning" and d.severity == "warning"]
    local = datetime.fromtimestamp(urgent[0].at, TZ)
    assert (9, 0) <= (local.hour, local.minute) <= (10, 5)  # first use about 07:00
    assert urgent[0].payload["last_use"].endswith("02:01:00+08:00")  # the refill is part of the flush


def test_the_door_says_out_then_the_outer_limits_apply_and_water_or_the_door_says_back() -> None:
    home = Home(day_at(8))
    home.use(6, minutes=1)
    home.idle(0.5)
    home.monitor.door(home.t)
    found = home.idle(13.4)  # no water after the door: out, not silent (past warning_max_h, 12 h, at home)
    assert _inactivity(found) == []
    found = home.idle(0.7)  # past out_warning_h (14 h) after the door: the outer limit while out
    assert [d.payload["thresholds"] for d in _inactivity(found)] == ["out"]
    back = home.monitor.door(home.t)  # back in: the warning ends, and says the door ended it (not water)
    assert home.monitor.data.out_since is None and home.monitor.data.door_t is None
    assert [(d.state, d.payload["reason"]) for d in _inactivity(back)] == [("cleared", "door")]


def test_the_away_button_is_out_until_the_next_use() -> None:
    home = Home(day_at(8))
    home.use(6, minutes=1)
    home.monitor.going_out(home.t)
    assert _inactivity(home.idle(10)) == []
    home.use(6)
    assert home.monitor.data.out_since is None


def test_a_state_saved_by_the_rules_before_issue_14_still_loads_and_carries_on() -> None:
    old = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert old["version"] == 1
    monitor = WellbeingMonitor(WellbeingSettings(), TZ, old, key="b12-301")
    assert monitor.data.history and monitor.data.history[0].date == old["history"][0]["date"]
    assert monitor.open_incidents() == {"missed_morning": "warning", "inactivity": "warning"}
    again = monitor.update(old["last_t"] + 60, old["last_total"] + 6)  # water: what was open clears
    assert {(d.kind, d.state) for d in again} >= {("inactivity", "cleared"), ("missed_morning", "cleared")}
    saved = monitor.state()
    assert saved["version"] == 7
    WellbeingMonitor(WellbeingSettings(), TZ, json.loads(json.dumps(saved)))


def test_a_version_3_state_in_the_middle_of_a_flow_run_loads_as_a_run_at_a_persons_pace() -> None:
    home = Home(day_at(8))
    home.use(6, minutes=1)
    home.idle(3)
    home.use(30, minutes=20)  # a run still going on
    saved = home.monitor.state()
    assert saved["run"] is not None
    v3 = saved | {"version": 3, "run": {k: v for k, v in saved["run"].items() if k != "brisk"}}
    monitor = WellbeingMonitor(WellbeingSettings(), TZ, v3)
    assert monitor.data.run is not None and monitor.data.run.brisk  # it keeps proving life as it did
    assert monitor.state()["version"] == 7


def test_a_version_4_state_loads_without_the_time_between_its_last_pulses() -> None:
    home = Home(day_at(8))
    home.use(6, minutes=1)
    saved = home.monitor.state()
    v4 = {k: v for k, v in saved.items() if k != "pulse_gap"} | {"version": 4}
    monitor = WellbeingMonitor(WellbeingSettings(), TZ, v4)
    assert monitor.data.pulse_gap is None and monitor.state()["version"] == 7


def test_a_version_2_state_with_a_warning_open_loads_and_says_nothing_twice() -> None:
    home = Home(day_at(8))
    home.use(6, minutes=1)
    assert ("inactivity", "raised", "warning") in kinds(home.idle(8.1))
    v2 = {k: v for k, v in home.monitor.state().items() if k != "reported_since"} | {"version": 2}
    monitor = WellbeingMonitor(WellbeingSettings(), TZ, v2)
    assert monitor.open_incidents() == {"inactivity": "warning"}
    assert monitor.update(home.t + 60, home.total) == []  # the open warning is this silence's: not said again
    assert monitor.state()["reported_since"] == {"inactivity": home.monitor.state()["reported_since"]["inactivity"]}


def test_a_state_of_a_newer_version_or_with_a_field_missing_is_refused_naming_it() -> None:
    saved = Home(day_at(8)).monitor.state()
    with pytest.raises(StateError, match="version 99"):
        WellbeingMonitor(WellbeingSettings(), TZ, {**saved, "version": 99})
    broken = {k: v for k, v in saved.items() if k != "anchor"}
    with pytest.raises(StateError, match="anchor"):
        WellbeingMonitor(WellbeingSettings(), TZ, broken)


def test_the_away_button_then_the_door_to_leave_is_still_out_and_the_next_door_is_back() -> None:
    home = Home(day_at(8))
    home.use(6, minutes=1)
    home.monitor.going_out(home.t)
    home.idle(1 / 60)
    home.monitor.door(home.t)  # a minute later the door opens: leaving, not back
    home.monitor.door(home.t + 4.0)  # and shuts behind her (the contact says both moves)
    assert home.monitor.data.out_since is not None
    assert _inactivity(home.idle(9)) == []  # out past the day's 8 h: not silent at home
    home.monitor.door(home.t + 60.0 * home.settings.door_out_min)  # the door well after: back in
    assert home.monitor.data.out_since is None and home.monitor.data.door_t is None


def _out_till_morning(home: Home, days: int) -> None:
    """Every third day the resident goes out after the 10:00 use and uses no water until 07:00 the next morning."""
    for i in range(days):
        _days(home, 1, out=(11, 24) if i % 3 == 2 else None)


def test_a_day_silence_this_home_often_holds_to_the_morning_is_not_urgent_before_its_usual_first_use() -> None:
    home = Home(day_at(6))
    _out_till_morning(home, 18)
    home.seen.clear()
    _days(home, 1, out=(11, 24))  # 10:00 to 07:00: 21 h, past the 20 h outer limit at 06:00
    home.idle(home.until(7))
    found = _inactivity(home.seen)
    assert [d.severity for d in found if d.state == "raised"] == ["warning"], kinds(home.seen)  # the family hears
    assert [d for d in found if d.severity == "urgent"] == []  # no call to the social worker at dawn
    learned = home.monitor.thresholds(False)
    assert learned is not None and max(learned.urgent[0]) <= WellbeingSettings().held_urgent_max_h * 3600


def test_a_fall_in_a_day_silence_held_to_the_morning_is_still_urgent_soon_after_the_usual_first_use() -> None:
    home = Home(day_at(6))
    _out_till_morning(home, 18)
    _days(home, 1, out=(11, 24))
    home.seen.clear()
    home.idle(home.until(9, 30))  # no water this morning: she fell
    urgent = [d for d in _inactivity(home.seen) if d.severity == "urgent"]
    assert urgent, kinds(home.seen)
    local = datetime.fromtimestamp(urgent[0].at, TZ)
    assert (7, 0) < (local.hour, local.minute) <= (9, 0)  # by the learned deadline for the first use (07:00 + margin)
