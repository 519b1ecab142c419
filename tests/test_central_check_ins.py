"""The social worker's resident page lists the node's questions to the resident (``check_in``) and how each ended.

The real central on a loopback port, on SQLite and on PostgreSQL; the events are the meter node's as it sends them
(asking first is docs/wellbeing.md's "Asking the resident first"): answered by a press, no answer so the family was
told (at once, or in the night after a bedtime question), water ended the silence first, and one whose time to
answer is not up. A malformed question from a node does
not break the page.
"""

from __future__ import annotations

import time

import pytest

from tests.console_helpers import alert_event
from tests.fixtures.central import wire_event

METER, FLAT = "cbxc-b12-meters", "B12-301"
HOME = {"meter_id": "b12-301", "resident": FLAT}


def _asked(t: float, asked_for: str = "inactivity", alert_due_s: int = 600) -> dict:
    payload = {**HOME, "asked_for": asked_for, "answer_within_s": 600, "alert_due_s": alert_due_s}
    return wire_event(METER, kind="check_in", wall_time=t, payload=payload)


@pytest.mark.both_engines
def test_each_question_says_whether_she_answered_the_family_was_told_or_water_came_first(central) -> None:
    meter = central.register(METER, "meter", location="12号楼")
    now = time.time()
    day = now - 2 * 86400
    events = [
        _asked(day),  # answered 3 minutes later
        wire_event(METER, kind="im_ok_pressed", wall_time=day + 180, payload=HOME),
        _asked(day + 6 * 3600, "missed_morning"),  # no answer: the warning came when due
        {**alert_event(METER, "missed_morning", "warning", **HOME), "wall_time": day + 6 * 3600 + 610},
        _asked(day + 12 * 3600),  # water ended the silence: nothing told
        _asked(day + 16 * 3600, alert_due_s=5 * 3600),  # at bedtime, no answer: the warning came in the night
        {**alert_event(METER, "inactivity", "warning", **HOME), "wall_time": day + 21 * 3600},
        _asked(now - 60),  # the time to answer is not up
        _asked(now - 40 * 86400),  # outside the 30 days counted
        wire_event(METER, kind="im_ok_pressed", wall_time=now - 40 * 86400 + 60, payload=HOME),
        # another flat on the same node: not this resident's
        _asked(day + 3600) | {"payload": {"meter_id": "b12-302", "resident": "B12-302", "asked_for": "inactivity"}},
        # a press long after the question is not its answer
        wire_event(METER, kind="im_ok_pressed", wall_time=day + 12 * 3600 + 700, payload=HOME),
    ]
    assert central.post_events(meter, events).status_code == 200

    got = central.get(f"/residents/changbai-xincun/{FLAT}")["check_ins"]

    outcomes = [(round(c["at"] - day), c["asked_for"], c["outcome"]) for c in got["recent"]]
    assert outcomes == [
        (-38 * 86400, "inactivity", "answered"),
        (0, "inactivity", "answered"),
        (6 * 3600, "missed_morning", "told"),
        (12 * 3600, "inactivity", "ended"),
        (16 * 3600, "inactivity", "told"),
        (round(now - 60 - day), "inactivity", "waiting"),
    ]
    assert got["recent"][1]["outcome_at"] == pytest.approx(day + 180, abs=0.01)
    assert got["recent"][2]["outcome_at"] == pytest.approx(day + 6 * 3600 + 610, abs=0.01)
    assert got["recent"][4]["outcome_at"] == pytest.approx(day + 21 * 3600, abs=0.01)
    assert [c["at_bedtime"] for c in got["recent"]] == [False, False, False, False, True, False]
    assert (got["days"], got["asked"], got["answered"]) == (30, 5, 1)


def test_a_malformed_question_from_a_node_does_not_break_the_page(central) -> None:
    meter = central.register(METER, "meter", location="12号楼")
    now = time.time()
    bad = [
        _asked(now - 7200) | {"payload": {**HOME, "asked_for": ["inactivity"], "answer_within_s": "ten minutes"}},
        _asked(now - 3600) | {"payload": {**HOME, "answer_within_s": -5}},
    ]
    assert central.post_events(meter, bad).status_code == 200

    got = central.get(f"/residents/changbai-xincun/{FLAT}")["check_ins"]["recent"]

    assert [(c["asked_for"], c["within_s"], c["outcome"]) for c in got] == [(None, 0.0, "ended"), (None, 0.0, "ended")]
