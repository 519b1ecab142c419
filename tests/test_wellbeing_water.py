"""The wellbeing monitor's water rules, pure (a ManualClock-free Home feeding totals): base flow and leaks,
continuous flow (a tap left on), missed mornings and daily volumes. Silences, learning, away and state are in
test_wellbeing.py."""

from __future__ import annotations

from tests.test_wellbeing import Home, day_at, kinds


# ---------------------------------------------------------------------------------------------- base flow
def test_a_dripping_tap_does_not_hide_a_silent_home() -> None:
    home = Home(day_at(8))
    home.use(6)
    for _ in range(2):  # two days with a 2 L/h drip under normal use
        for _ in range(8):
            home.idle(2, drip_lph=2.0, resolution=1.0)
            home.use(8)
        home.idle(home.until(8), drip_lph=2.0, resolution=1.0)
        home.use(6)
    assert home.monitor.profile()["base_flow_lph"] >= 1.0
    home.seen.clear()
    home.idle(7.5, drip_lph=2.0, resolution=1.0)
    assert not any(d.kind == "inactivity" for d in home.seen)
    home.idle(1, drip_lph=2.0, resolution=1.0)
    assert ("inactivity", "raised", "warning") in kinds(home.seen)


def test_a_new_leak_beating_in_and_out_of_the_use_window_does_not_hide_a_silent_home() -> None:
    # a running toilet starts at 8 L/h on a 1 L meter (a pulse every 7.5 min: two in some 10-minute windows, one
    # in others); the flow runs that come and go with it never stood out as use, so their ends are no sign of life.
    # In the leak's first hour (before the short-term floor knows it) its pulses still look like use.
    home = Home(day_at(8))
    home.use(6)
    home.idle(8.6, drip_lph=8.0, resolution=1.0)
    assert [d for d in home.seen if d.kind == "inactivity"] == []
    raised = home.idle(0.5, drip_lph=8.0, resolution=1.0)
    assert kinds(raised) == [("inactivity", "raised", "warning")]
    assert raised[0].payload["last_use"] < "2026-05-04T09:00"


def test_a_flush_on_top_of_a_leak_running_for_hours_is_a_use() -> None:
    # the bench's compact household 129 (tuning seeds 31-200): a running cistern (24 L/h) began at 16:27 and is not
    # base flow before a day has passed; every flush of the next 23 hours fell inside the leak's one flow run, whose
    # water proves life only up to the usual longest run: a false warning, a false urgent alert, then a real
    # collapse that afternoon found by the next morning's rule at 19.8 h
    home = Home(day_at(16))
    for _ in range(8):  # a day without the leak: the quietest 2 h of the last day stay 0 L/h for a day
        home.use(6)
        home.idle(3)
    home.use(6)
    home.idle(3, drip_lph=24.0, resolution=1.0)
    flush = home.t
    home.use(6, minutes=2.5)
    home.idle(0.2, drip_lph=24.0, resolution=1.0)
    assert home.monitor.data.anchor >= flush - 60.0 * home.settings.refill_min


def test_a_tap_left_running_proves_nothing_after_the_usual_longest_run_even_after_an_hour() -> None:
    # the same rule must not take a steady running tap (a fall at the sink) for a person once it is its own floor
    home = Home(day_at(8))
    home.use(6)
    home.idle(1)
    opened = home.t
    home.idle(2.5, drip_lph=360.0, resolution=1.0)
    assert home.monitor.data.anchor <= opened + 60.0 + 0.5 * home.settings.continuous_flow_h * 3600.0


def test_leak_suspected_after_a_day_without_a_quiet_span_and_cleared_after_two_quiet_nights() -> None:
    home = Home(day_at(8))
    home.use(6)
    found = home.idle(30, drip_lph=3.0, resolution=1.0)
    leak = [d for d in found if d.kind == "leak_suspected"]
    assert leak and leak[0].state == "raised" and leak[0].severity == "info"
    assert leak[0].payload["base_flow_lph"] >= 1.0
    home.seen.clear()
    home.idle(home.until(8))
    assert not any(d.kind == "leak_suspected" and d.state == "cleared" for d in home.seen)  # one quiet night
    home.use(6)
    home.idle(home.until(8))
    assert any(d.kind == "leak_suspected" and d.state == "cleared" for d in home.seen)


def test_no_leak_alert_for_ordinary_use_with_quiet_nights() -> None:
    home = Home(day_at(8))
    for _ in range(2):
        for _ in range(6):
            home.use(6)
            home.idle(2)
        home.idle(home.until(8))
    assert not any(d.kind == "leak_suspected" for d in home.seen)


# ---------------------------------------------------------------------------------------- continuous flow
def test_tap_running_2_h_is_urgent_not_before() -> None:
    home = Home(day_at(10))
    home.use(6 * 119, minutes=119)
    assert not any(d.kind == "continuous_flow" for d in home.seen)
    found = home.use(6 * 3, minutes=3)
    assert ("continuous_flow", "raised", "urgent") in kinds(found)
    cleared = home.idle(0.5)
    assert ("continuous_flow", "cleared", "urgent") in kinds(cleared)


def test_slow_nonstop_flow_is_a_leak_not_a_tap_left_on() -> None:
    home = Home(day_at(10))
    home.use(0.5 * 180, minutes=180)  # 0.5 L/min: below tap_flow_lpm
    assert not any(d.kind == "continuous_flow" for d in home.seen)


def test_acknowledging_a_running_tap_takes_it_down_to_info() -> None:
    home = Home(day_at(10))
    home.use(6 * 125, minutes=125)
    assert home.monitor.open_incidents()["continuous_flow"] == "urgent"
    found = home.monitor.acknowledge(home.t)
    assert ("continuous_flow", "updated", "info") in kinds(found)


# ---------------------------------------------------------------------------------------------- mornings
def test_missed_morning_info_at_9_warning_30_min_later() -> None:
    home = Home(day_at(20))
    home.use(6)
    home.idle(home.until(8, 59))
    assert not any(d.kind == "missed_morning" for d in home.seen)
    home.idle(2 / 60)
    assert ("missed_morning", "raised", "info") in kinds(home.seen)
    home.idle(0.5)
    assert ("missed_morning", "updated", "warning") in kinds(home.seen)
    found = home.use(6)
    assert ("missed_morning", "cleared", "warning") in kinds(found)


def test_first_use_just_before_the_deadline_means_no_morning_alert() -> None:
    home = Home(day_at(20))
    home.use(6)
    home.idle(home.until(8, 56))
    home.use(6)
    home.idle(2)
    assert not any(d.kind == "missed_morning" for d in home.seen)


def test_use_before_morning_start_does_not_count_as_the_first_use() -> None:
    home = Home(day_at(20))
    home.use(6)
    home.idle(home.until(3))
    home.use(6)  # a night toilet visit at 03:00
    home.idle(home.until(9, 2))
    assert ("missed_morning", "raised", "info") in kinds(home.seen)


# ---------------------------------------------------------------------------------------- daily volumes
def _day_with(litres: float, uses: int = 4) -> Home:
    home = Home(day_at(0, 1))
    home.idle(home.until(7))
    for _ in range(uses):
        home.use(litres / uses)
        home.idle(3)
    home.idle(home.until(0, 5))
    return home


def test_a_day_below_10_litres_is_low_and_above_is_not() -> None:
    low = [d for d in _day_with(8.0).seen if d.kind == "low_daily_volume"]
    assert [(d.state, d.severity) for d in low] == [("raised", "warning")]
    assert low[0].payload["reason"] == "below_fixed"
    assert not any(d.kind == "low_daily_volume" for d in _day_with(12.0).seen)


def test_high_daily_volume_at_2_m3_not_below() -> None:
    home = Home(day_at(7))
    home.use(1990, minutes=100)
    assert not any(d.kind == "high_daily_volume" for d in home.seen)
    home.idle(0.2)
    found = home.use(20, minutes=3)
    assert ("high_daily_volume", "raised", "warning") in kinds(found)
    home.idle(home.until(0, 5))
    assert ("high_daily_volume", "cleared", "warning") in kinds(home.seen)
