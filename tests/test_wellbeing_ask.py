"""Asking the resident first (``ask_first_min``): a check-in in the home before the family hears of a silence."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import pytest

from meter_node.wellbeing import CHECK_IN_KIND, WellbeingMonitor, WellbeingSettings, recipients_for
from meter_node.wellbeing.state import VERSION
from tests.test_wellbeing import TZ, Home, _routine, day_at, kinds

ASK = WellbeingSettings(ask_first_min=10.0)
BEDTIME = WellbeingSettings(ask_first_min=10.0, ask_at_bedtime=True)


def _minutes_until_found(home: Home, limit_h: float = 2.0) -> list:
    for _ in range(round(limit_h * 60)):
        if found := home.idle(1 / 60):
            return found
    raise AssertionError(f"nothing within {limit_h} h")


def _silent_until_asked(hour: int = 8) -> Home:
    home = Home(day_at(hour), ASK)
    home.use(6, minutes=3)  # 2 L steps: a fine meter (a 6 L step would be a coarse meter's pulse)
    assert home.idle(7.5) == []
    asked = _minutes_until_found(home)  # 10 minutes before the fixed 8 h warning
    assert kinds(asked) == [(CHECK_IN_KIND, "observed", "info")]  # the home is asked; the family is not told
    assert asked[0].payload["asked_for"] == "inactivity"
    assert asked[0].payload["answer_within_s"] == 600
    assert recipients_for(asked[0]) == ("social_worker",)
    return home


def test_without_an_answer_the_family_is_told_when_the_time_to_answer_is_up() -> None:
    home = _silent_until_asked()
    assert home.idle(10 / 60 - 1 / 60) == []
    told = home.idle(1 / 60)
    assert kinds(told) == [("inactivity", "raised", "warning")]
    assert told[0].payload["silence_h"] == pytest.approx(8.0, abs=0.02)  # when due, as without asking
    # the urgent step is not asked again and not held back: 12 h of silence, as without asking
    assert home.idle(4 - 1 / 60) == []
    assert kinds(home.idle(1 / 60)) == [("inactivity", "updated", "urgent")]


def test_an_answer_tells_nobody_and_restarts_the_clock() -> None:
    home = _silent_until_asked(5)  # asked at 12:50, so the next silence's question comes before the quiet hours
    home.idle(3 / 60)
    assert home.monitor.acknowledge(home.t) == []  # nothing was raised, so nothing clears
    assert home.idle(7.5) == []  # a new silence from the press
    assert kinds(_minutes_until_found(home)) == [(CHECK_IN_KIND, "observed", "info")]  # asked again


def test_water_while_asked_is_an_answer_too() -> None:
    home = _silent_until_asked()
    home.idle(2 / 60)
    assert home.use(6, minutes=3) == []
    assert home.idle(7.5) == []  # a new silence from the water


def test_she_is_not_woken_in_the_quiet_hours_the_alert_is_told_unasked() -> None:
    home = Home(day_at(15), ASK)  # a use at 15:00: the fixed 8 h warning falls at 23:00, in the quiet hours
    home.use(6, minutes=3)
    found = home.idle(8.5)
    assert kinds(found) == [("inactivity", "raised", "warning")]  # no chime at night; told when due, as without
    assert found[0].payload["silence_h"] == pytest.approx(8.0, abs=0.02)


def _asked_at_bedtime() -> Home:
    """A use at 15:00, then nothing: the 8 h warning would reach her family at 23:01, in her sleep."""
    home = Home(day_at(15), BEDTIME)
    home.use(6, minutes=3)
    assert home.idle(home.until(21, 49)) == []
    asked = home.idle(2 / 60)
    assert kinds(asked) == [(CHECK_IN_KIND, "observed", "info")]
    assert datetime.fromtimestamp(asked[0].at, TZ).strftime("%H:%M") == "21:50"  # before the quiet hours, not in them
    assert asked[0].payload["answer_within_s"] == 600
    assert asked[0].payload["alert_due_s"] == pytest.approx(71 * 60, abs=61)  # the warning it comes before: 23:01
    return home


def test_a_silence_her_family_would_hear_of_in_her_sleep_is_asked_about_before_bedtime() -> None:
    home = _asked_at_bedtime()
    found = home.idle(2)
    assert kinds(found) == [("inactivity", "raised", "warning")]  # unanswered: told when due, not asked again
    assert found[0].payload["silence_h"] == pytest.approx(8.0, abs=0.02)


def test_an_answer_at_bedtime_lets_the_family_sleep() -> None:
    home = _asked_at_bedtime()
    home.idle(2 / 60)
    assert home.monitor.acknowledge(home.t) == []
    assert home.idle(home.until(7)) == []  # a new silence from 21:52, judged by the night's limits


def _evenings_end_at_20() -> Home:
    """16 days of a resident whose water runs every 2 h from 04:00 and last at 20:00: in bed soon after."""
    home = Home(day_at(3), BEDTIME)
    _routine(home, 16, wake=(4, 0))
    home.idle(home.until(4))
    for _ in range(7):  # 04:00 to 16:00
        home.use(8)
        home.idle(2 - 2 / 60)
    home.use(8)  # at 18:00, and no water at 20:00
    return home


def test_the_bedtime_question_comes_an_hour_before_her_learned_bedtime_and_again_before_the_alert() -> None:
    home = _evenings_end_at_20()
    assert home.monitor.profile()["adaptive"] is True
    found = home.idle(3.6)  # the learned warning for a silence from 18:00 comes at 21:31, before the quiet hours
    at = [(d.kind, datetime.fromtimestamp(d.at, TZ).strftime("%H:%M")) for d in found]
    # at bedtime, not at 21:50 when she is asleep; unanswered, and nobody told yet: asked again before the alert
    assert at == [(CHECK_IN_KIND, "18:50"), (CHECK_IN_KIND, "21:21"), ("inactivity", "21:31")]


def _evening_silence() -> tuple[Home, list]:
    home = Home(day_at(19, 5), ASK)  # into the night: the fixed night limit, 12 h, falls a few minutes after 07:00
    home.use(6, minutes=3)
    return home, home.idle(11.9)  # to 07:02


def test_a_question_due_in_the_quiet_hours_is_asked_when_they_end_with_the_time_left() -> None:
    home, found = _evening_silence()
    assert kinds(found) == [(CHECK_IN_KIND, "observed", "info")]
    asked = found[0]
    assert datetime.fromtimestamp(asked.at, TZ).strftime("%H:%M") == "07:00"  # not at 06:5x, in her sleep
    told = _minutes_until_found(home)
    assert kinds(told) == [("inactivity", "raised", "warning")]
    assert told[0].payload["silence_h"] == pytest.approx(12.0, abs=0.02)  # not held: due as without asking
    assert 0 < asked.payload["answer_within_s"] < 600  # the time she really had
    assert asked.payload["answer_within_s"] == pytest.approx(told[0].at - asked.at, abs=61)


def test_an_answer_when_the_quiet_hours_end_tells_nobody() -> None:
    home, _ = _evening_silence()
    home.idle(1 / 60)
    assert home.monitor.acknowledge(home.t) == []
    assert home.idle(2) == []


def test_nobody_is_asked_when_the_door_says_she_is_out() -> None:
    home = Home(day_at(7), ASK)
    home.use(6, minutes=1)
    home.idle(0.5)
    home.monitor.door(home.t)  # out at 07:31, no water after it
    found = home.idle(14.2)  # the outer limit while out (14 h after the door) falls at 21:31, before the quiet hours
    assert kinds(found) == [("inactivity", "raised", "warning")]  # no chime in an empty flat
    assert found[0].payload["thresholds"] == "out"


def test_with_no_quiet_hours_she_is_asked_at_any_hour() -> None:
    anytime = WellbeingSettings(ask_first_min=10.0, ask_quiet_from="00:00", ask_quiet_until="00:00")
    home = Home(day_at(15), anytime)
    home.use(6, minutes=3)
    found = home.idle(8.5)
    assert kinds(found) == [(CHECK_IN_KIND, "observed", "info"), ("inactivity", "raised", "warning")]
    assert found[1].at - found[0].at == pytest.approx(600, abs=61)


def test_a_later_alert_in_a_silence_nobody_answered_is_not_asked_again() -> None:
    home = Home(day_at(20), ASK)  # an evening use, then nothing: the night limits, then the morning
    home.use(6, minutes=3)
    found = home.idle(16.5)
    assert [k for k in kinds(found) if k[0] == CHECK_IN_KIND] == [(CHECK_IN_KIND, "observed", "info")]
    raised = [d for d in found if d.state == "raised"]
    assert raised and all(d.at >= found[0].at + 600 for d in raised)  # the first one waited for the answer
    assert {d.kind for d in raised} == {"inactivity", "missed_morning"}


def test_an_alert_due_before_it_could_be_asked_is_told_at_once() -> None:
    """A silence that passed its threshold in a gap (counted once the readings are back) is not held for a question
    nobody could have been asked in time."""
    home = Home(day_at(8), ASK)
    home.use(6, minutes=3)
    home.idle(7.5)
    home.fail(1.0)  # the bus is down over the 8 h mark; no water meanwhile
    assert kinds(home.idle(1 / 60)) == [("inactivity", "raised", "warning")]


def test_asking_is_off_by_default() -> None:
    home = Home(day_at(8))
    home.use(6, minutes=3)
    assert home.idle(7.5) == []
    assert kinds(_minutes_until_found(home)) == [("inactivity", "raised", "warning")]


def test_a_restart_while_asking_neither_asks_again_nor_forgets_the_alert() -> None:
    home = _silent_until_asked()
    home.idle(4 / 60)
    saved = json.loads(json.dumps(home.monitor.state()))
    assert saved["version"] == VERSION == 7 and saved["asking"]
    again = Home(day_at(8), ASK, state=saved)
    again.t, again.total = home.t, home.total
    assert again.idle(6 / 60 - 1 / 60) == []
    assert kinds(again.idle(1 / 60)) == [("inactivity", "raised", "warning")]


def test_a_version_5_state_loads_with_nobody_asked() -> None:
    home = Home(day_at(8), ASK)
    home.use(6, minutes=3)
    saved = home.monitor.state()
    v5 = {k: v for k, v in saved.items() if k not in ("ask_t", "asking")} | {"version": 5}
    monitor = WellbeingMonitor(ASK, TZ, v5)
    assert monitor.data.ask_t is None and not monitor.data.asking and monitor.state()["version"] == 7


def test_an_answer_teaches_the_model_nothing_the_silence_is_learned_whole() -> None:
    """The node's own question must not change what the model learns (else asking moves every threshold)."""
    homes = {}
    for asking in (True, False):
        home = Home(day_at(8), ASK if asking else None)
        home.use(6, minutes=3)
        home.idle(7.9)  # 10 minutes before the fixed 8 h warning: asked, or not
        home.monitor.acknowledge(home.t)  # an answer; without asking, a plain press
        home.idle(2)
        home.use(6, minutes=3)
        homes[asking] = [round(length / 3600, 1) for _, length, _ in home.monitor.data.silences]
    assert homes[True] == [9.9]  # one silence, 08:03 to the water at 18:00
    assert homes[False] == [7.9, 2.0]  # a plain "I'm OK" is a sign of life the model learns, as before


def test_an_answered_morning_is_not_the_days_first_use_as_learned() -> None:
    home = Home(day_at(6), ASK)
    found = home.idle(3.4)  # no water since 06:00: the morning's note at 09:00, the question before its warning
    assert (CHECK_IN_KIND, "observed", "info") in kinds(found)
    home.monitor.acknowledge(home.t)
    assert home.idle(1) == []
    home.use(6, minutes=3)  # her first water, at 10:24
    home.idle(home.until(0, 30))  # the day closes
    first = home.monitor.data.history[-1].first_use_s
    assert first is not None and abs(first - (10 * 3600 + 24 * 60)) <= 180


def test_a_version_6_state_loads_with_nothing_left_unlearned() -> None:
    home = Home(day_at(8), ASK)
    home.use(6, minutes=3)
    saved = home.monitor.state()
    v6 = {k: v for k, v in saved.items() if k not in ("learn_from", "paired_learn_from")} | {"version": 6}
    v6["day"] = {k: v for k, v in saved["day"].items() if k != "first_learned"}
    monitor = WellbeingMonitor(ASK, TZ, v6)
    assert monitor.data.learn_from is None and monitor.data.day is not None
    assert monitor.data.day.first_learned == monitor.data.day.first_use is not None


def _learned_with_and_without_asking(meanwhile: Callable[[Home, bool], None]) -> dict[bool, list[tuple[int, int]]]:
    """The silences learned when the home is asked (and ``meanwhile`` may answer) and when it is not."""
    learned = {}
    for asking in (True, False):
        home = Home(day_at(8), ASK if asking else None)
        home.use(6, minutes=3)
        home.idle(7.87)  # asked (or not) a few minutes ago
        meanwhile(home, asking)
        home.idle(3)
        home.use(6, minutes=3)
        learned[asking] = [(round(start), round(length)) for start, length, _ in home.monitor.data.silences]
    return learned


def test_water_under_way_when_she_answered_ends_the_silence_as_learned_as_without_asking() -> None:
    def slow_tap_and_press(home: Home, asking: bool) -> None:
        home.use(2.5, minutes=5)  # a slow tap: not yet a sign of life (it proves one when it stops)
        if asking:
            assert home.monitor.data.asking
            home.monitor.acknowledge(home.t)  # she presses "I'm OK" while it runs
        home.use(1.5, minutes=3)

    learned = _learned_with_and_without_asking(slow_tap_and_press)
    assert learned[True] == learned[False] and len(learned[True]) == 2


def test_a_press_answering_the_question_after_her_water_teaches_nothing_either() -> None:
    def water_then_press(home: Home, asking: bool) -> None:
        home.use(6, minutes=3)
        home.idle(2 / 60)
        if asking:
            home.monitor.acknowledge(home.t)  # she answers the chime after her water

    learned = _learned_with_and_without_asking(water_then_press)
    assert learned[True] == learned[False] and len(learned[True]) == 2
