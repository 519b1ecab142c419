"""The elevator node across restarts: its detector state in the outbox, saved with the alerts it decides, and
how times carry over a restart or a reboot. Same rig as test_elevator_node (MockFactory pins, ManualClock)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from common.clock import ManualClock
from common.config import NodeConfig, OutboxSection
from common.outbox import Outbox, peek_state
from elevator_node.config import DEFAULT_REASSURANCE
from elevator_node.node import LEGACY_STATE_FILE, STATE_KEY, restart_shift
from tests import test_elevator_node
from tests.test_elevator_node import (
    NODE_ID,
    START_WALL,
    Harness,
    boarded,
    lift,
    node_config,
)

harnesses = test_elevator_node.harnesses  # the fixture: every node made is closed after the test


# --------------------------------------------------------------------------------------------- restart
def test_restart_during_an_entrapment_continues_the_same_alert(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    clock = ManualClock(wall=START_WALL)
    config = node_config(tmp_path)
    first, car = boarded(mock_factory, config, clock, harnesses)
    first.run(100.0)
    alert_id = first.alert_events()[0].alert_id
    first.close()  # the node stops; the car stays as it is
    clock.advance(20.0)  # down for 20 s; the wall clock is synced
    second = Harness(config, clock)
    harnesses.append(second)
    car.resync()  # the pins were made again; the callbacks run the restored detector with the real inputs
    # the raise from before the restart is still waiting in the outbox (never synced), then the restore note
    events = [e for e in second.runtime.outbox.batch(1000) if e.kind == "entrapment"][1:]
    assert [(e.kind, e.state, e.alert_id) for e in events] == [("entrapment", "updated", alert_id)]
    assert events[0].payload["restored"] is True and events[0].payload["timing"] == "wall_clock"
    assert events[0].payload["seconds_trapped"] == pytest.approx(120.0, abs=1.0)
    assert second.speaker.texts == [DEFAULT_REASSURANCE]  # at once: the passenger heard nothing meanwhile
    car.apply(door="open")
    second.run(3.0)
    assert [(e.state, e.alert_id) for e in second.alert_events()][-1] == ("cleared", alert_id)


def test_restart_before_the_threshold_times_from_the_real_start(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    clock = ManualClock(wall=START_WALL)
    config = node_config(tmp_path)
    first, car = boarded(mock_factory, config, clock, harnesses)
    first.run(60.0)
    first.close()
    clock.advance(20.0)
    second = Harness(config, clock)
    harnesses.append(second)
    car.resync()
    second.run(9.0)
    assert second.alert_events() == []
    second.run(2.0)
    raised = second.alert_events()
    assert [(e.kind, e.state) for e in raised] == [("entrapment", "raised")]
    assert raised[0].payload["timing"] == "wall_clock"
    assert raised[0].payload["seconds_trapped"] == pytest.approx(90.0, abs=1.0)


def test_unsynced_reboot_counts_from_the_last_save_and_says_so(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    clock = ManualClock(wall=START_WALL, synced=False)
    config = node_config(tmp_path)
    first, car = boarded(mock_factory, config, clock, harnesses)
    first.run(60.0)
    first.close()
    clock.advance(20.0)
    second = Harness(config, clock)
    harnesses.append(second)
    car.resync()
    second.run(29.0)
    assert second.alert_events() == []  # 60 s before + 29 s after: the 20 s downtime is not counted
    second.run(2.0)
    raised = second.alert_events()
    assert raised[0].payload["timing"] == "lower_bound"


def test_restart_shift() -> None:
    saved = {"saved_mono": 5000.0, "saved_wall": 1000.0, "wall_synced": True, "boot_id": "a"}
    same = restart_shift(saved, now_mono=5100.0, now_wall=1100.0, wall_synced=True, boot_id="a")
    assert same == (0.0, "monotonic")
    # a reboot: monotonic restarts at 10, wall says 300 s passed since the save
    shift, timing = restart_shift(saved, now_mono=10.0, now_wall=1300.0, wall_synced=True, boot_id="b")
    assert timing == "wall_clock" and 5000.0 + shift == pytest.approx(10.0 - 300.0)
    shift, timing = restart_shift(saved, now_mono=10.0, now_wall=1300.0, wall_synced=False, boot_id="b")
    assert timing == "lower_bound" and 5000.0 + shift == pytest.approx(10.0)
    # a wall clock that went backwards cannot measure the downtime
    _, timing = restart_shift(saved, now_mono=10.0, now_wall=900.0, wall_synced=True, boot_id=None)
    assert timing == "lower_bound"
    # same boot id but the monotonic clock is behind: not the same boot after all
    _, timing = restart_shift(saved, now_mono=10.0, now_wall=1300.0, wall_synced=True, boot_id="a")
    assert timing == "wall_clock"


def saved_state(config: NodeConfig) -> Any:
    """The detector state a node left in its outbox, read as another process would."""
    text = peek_state(config.state_dir / "outbox.sqlite", STATE_KEY)
    return None if text is None else json.loads(text)


def set_saved_state(config: NodeConfig, clock: ManualClock, text: str | None) -> None:
    """Replace (None: remove) the detector state in a stopped node's outbox."""
    outbox = Outbox(config.state_dir / "outbox.sqlite", OutboxSection(), clock, node_id=NODE_ID)
    try:
        outbox.put_state({STATE_KEY: text})
    finally:
        outbox.close()


def test_the_state_is_in_the_outbox_with_its_alerts_and_unreadable_state_starts_fresh(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(wall=START_WALL)
    config = node_config(tmp_path)
    first, car = boarded(mock_factory, config, clock, harnesses)
    first.run(5.0)
    assert saved_state(config)["detector"]["state"]["door_closed"] is True
    first.run(86.0)  # the entrapment is raised: its incident is saved in the same transaction as the alert
    incidents = saved_state(config)["detector"]["state"]["incidents"]
    assert [inc["kind"] for inc in incidents.values()] == ["entrapment"]
    assert not (config.state_dir / LEGACY_STATE_FILE).exists()
    first.close()
    set_saved_state(config, clock, "{ not json")
    with caplog.at_level(logging.ERROR):
        second = Harness(config, clock)
    harnesses.append(second)
    car.resync()
    assert "unreadable" in caplog.text
    second.run(91.0)  # a fresh detector sees the trapped passenger from its own start: the same alert goes on
    assert [(e.kind, e.state) for e in second.alert_events()] == [("entrapment", "raised"), ("entrapment", "updated")]


def test_an_older_versions_state_file_is_taken_over_once(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(wall=START_WALL)
    config = node_config(tmp_path)
    first, car = boarded(mock_factory, config, clock, harnesses)
    first.run(95.0)
    record = saved_state(config)
    first.close()
    set_saved_state(config, clock, None)  # as an older version left it: the state in its own file
    legacy = config.state_dir / LEGACY_STATE_FILE
    legacy.write_text(json.dumps(record), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        second = Harness(config, clock)
    harnesses.append(second)
    car.resync()
    assert "elevator state restored" in caplog.text and "open without detector state" not in caplog.text
    second.run(1.0)
    assert not legacy.exists() and saved_state(config)["detector"]["state"]["incidents"]
    assert [e.payload.get("restored") for e in second.alert_events()][-1] is True  # the same incident goes on


def test_lost_state_with_an_open_alert_clears_it_only_if_not_seen_again(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    clock = ManualClock(wall=START_WALL)
    config = node_config(tmp_path)
    first, car = boarded(mock_factory, config, clock, harnesses)
    first.run(95.0)
    alert_id = first.alert_events()[0].alert_id
    first.close()
    set_saved_state(config, clock, '{"version": 0}')  # a state this version cannot use
    second = Harness(config, clock)
    harnesses.append(second)
    car.apply(door="open")  # the passenger got out while the node was down
    car.apply(occupied=False)
    second.run(149.0)
    assert second.runtime.alerts.is_open("entrapment")  # kept while the detector might still see it
    second.run(2.0)
    last = second.alert_events()[-1]
    assert (last.kind, last.state, last.alert_id) == ("entrapment", "cleared", alert_id)
    assert last.payload["reason"] == "not_seen_after_restart"


def test_a_flapping_input_does_not_write_the_state_on_every_edge(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(wall=START_WALL)
    h = Harness(node_config(tmp_path), clock)
    harnesses.append(h)
    store = h.runtime.outbox._store  # noqa: SLF001 - every write of the outbox goes through its commit
    writes: list[Any] = []
    real_commit = store.commit

    def counting_commit(events: Any, state: Any = None) -> None:
        if state and STATE_KEY in state:
            writes.append(state)
        real_commit(events, state)

    monkeypatch.setattr(store, "commit", counting_commit)
    car = lift(mock_factory, h)
    h.node.step()
    car.apply(door="closed", occupied=False, in_door_zone=True, moving=False)
    h.run(2.0)
    writes.clear()
    for i in range(50):  # a loose door wire: 10 edges a second for 5 s, each one a gpiozero callback
        clock.advance(0.1)
        car.apply(door="open" if i % 2 == 0 else "closed")
    faults = [e for e in h.alert_events() if e.kind == "sensor_fault"]
    assert [(e.state, e.payload["key"]) for e in faults] == [("raised", "door:flapping")]
    assert 3 <= len(writes) <= 8  # about one a second, plus the forced save when the fault was raised
