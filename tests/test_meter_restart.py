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
