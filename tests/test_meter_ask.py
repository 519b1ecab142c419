"""The meter node asking the resident first (``[meter.wellbeing] ask_first_min``) with a real central: only a home
with a chime and an "I'm OK" button is asked, its answer tells nobody; a home's own quiet hours; no chime at night
for a note that messages nobody. The rules themselves: tests/test_wellbeing_ask.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from common.clock import ManualClock
from common.config import ConfigError
from meter_node.voice import CHIME_TEXT
from tests import test_meter_node
from tests.test_meter_node import NODE_ID, ONE_METER, START_WALL, Harness, Speaker, TableBus, node_config

harnesses = test_meter_node.harnesses  # the fixtures: nodes closed after the test, a registered central
registered = test_meter_node.registered


def second_flat(household: str = "chime = true") -> str:
    """ONE_METER's neighbour: flat B12-302 at slave address 2, ``household`` in place of its ``chime = true``."""
    flat = ONE_METER.replace("b12-301", "b12-302").replace("B12-301", "B12-302").replace("address = 1", "address = 2")
    return flat.replace("chime = true", household)


def two_flats_bus() -> TableBus:
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    bus.add(2, "u32_le_litres", 7000.0)
    return bus


def test_a_home_with_a_chime_and_a_button_is_asked_first_and_an_answer_tells_nobody(
    registered: Any, tmp_path: Path, harnesses: list[Harness], mock_factory: Any
) -> None:
    asked = ONE_METER.replace("chime = true", "chime = true, ok_button = { pin = 5, bounce_s = 0.0 }")
    unasked, bus = second_flat(), two_flats_bus()
    speaker = Speaker()
    config = node_config(tmp_path, registered.url, asked + unasked, extra="wellbeing = { ask_first_min = 10.0 }")
    h = Harness(config, bus, ManualClock(wall=START_WALL), speaker)
    harnesses.append(h)
    h.run(3.42 * 3600)  # both silent since 06:00: the morning's note at 09:00; its warning is due at 09:30
    h.sync()
    assert [e["payload"]["resident"] for e in registered.events(NODE_ID, kind="check_in")] == ["B12-301"]
    told = {(a["payload"]["resident"], a["kind"], a["severity"]) for a in registered.alerts(state="open")}
    assert told == {("B12-301", "missed_morning", "info"), ("B12-302", "missed_morning", "info")}
    assert speaker.texts.count(CHIME_TEXT) == 3  # both morning notes, and the question in B12-301 at 09:20
    pin = mock_factory.pin(5)
    pin.drive_low()  # B12-301 answers "I'm OK"
    pin.drive_high()
    h.run(3600)
    h.sync()
    heard = {(a["payload"]["resident"], a["severity"]) for a in registered.alerts()}
    assert ("B12-302", "warning") in heard and ("B12-301", "warning") not in heard  # only the unasked home's family
    assert registered.events(NODE_ID, kind="im_ok_pressed")[0]["payload"]["resident"] == "B12-301"


def test_asking_first_with_no_home_that_can_be_asked_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ask_first_min = 10: no household has both chime = true and an ok_button"):
        node_config(tmp_path, "http://127.0.0.1:9", ONE_METER, extra="wellbeing = { ask_first_min = 10.0 }")


def test_a_home_keeping_late_hours_has_its_own_quiet_hours_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    late = ONE_METER.replace("chime = true", 'chime = true, ok_button = { pin = 5 }, quiet_hours = "23:30-08:00"')
    config = node_config(tmp_path, "http://127.0.0.1:9", late, extra="wellbeing = { ask_first_min = 10.0 }")
    home = config.role_config.meters[0].household
    got = home.settings(config.role_config.wellbeing)
    assert (got.ask_first_min, got.ask_quiet_from, got.ask_quiet_until) == (10.0, "23:30", "08:00")
    plain = replace(home, quiet_hours="").settings(config.role_config.wellbeing)
    assert (plain.ask_quiet_from, plain.ask_quiet_until) == ("22:00", "07:00")  # the node's [meter.wellbeing]
    with pytest.raises(ConfigError, match="quiet_hours"):
        node_config(tmp_path, "http://127.0.0.1:9", late.replace("23:30-08:00", "23-8"))


def test_a_home_chooses_the_bedtime_question_or_takes_the_nodes(tmp_path: Path) -> None:
    asked = ONE_METER.replace("chime = true", "chime = true, ok_button = { pin = 5 }, ask_at_bedtime = true")
    config = node_config(tmp_path, "http://127.0.0.1:9", asked, extra="wellbeing = { ask_first_min = 10.0 }")
    home, node_wide = config.role_config.meters[0].household, config.role_config.wellbeing
    assert not node_wide.ask_at_bedtime and home.settings(node_wide).ask_at_bedtime
    assert not replace(home, ask_at_bedtime=None).settings(node_wide).ask_at_bedtime  # omitted: the node's
    with pytest.raises(ConfigError, match="ask_at_bedtime"):
        node_config(tmp_path, "http://127.0.0.1:9", asked.replace("ask_at_bedtime = true", 'ask_at_bedtime = "yes"'))


def test_an_info_note_in_the_quiet_hours_does_not_wake_her(
    registered: Any, tmp_path: Path, harnesses: list[Harness], mock_factory: Any
) -> None:
    quiet = ONE_METER.replace("chime = true", "chime = true, ok_button = { pin = 5 }")
    awake = second_flat('chime = true, ok_button = { pin = 6 }, quiet_hours = "12:00-12:00"')  # never quiet
    bus = two_flats_bus()
    h = Harness(node_config(tmp_path, registered.url, quiet + awake), bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    last = [h.clock.monotonic()]

    def leak(now: float) -> None:  # 3 L/h that never stops, in both flats: a leak, not a person
        for slave in (1, 2):
            litres = bus.litres[slave]
            assert isinstance(litres, float)
            bus.litres[slave] = litres + 3.0 * (now - last[0]) / 3600
        last[0] = now

    h.run(23.9 * 3600, leak)  # from 06:00 to 05:54 the next day
    by_day = len(h.speaker.texts)
    assert by_day == 4  # the morning's notes and the afternoon's warnings chime in both homes
    h.run(0.5 * 3600, leak)  # 06:00: the leak is suspected in both (info), in the quiet hours
    h.sync()
    leaks = registered.events(NODE_ID, kind="leak_suspected")
    assert {(e["payload"]["resident"], e["severity"]) for e in leaks} == {("B12-301", "info"), ("B12-302", "info")}
    assert len(h.speaker.texts) == by_day + 1  # only the home without quiet hours is woken for a note
