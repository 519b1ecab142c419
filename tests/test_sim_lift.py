"""The lift sensor simulator drives MockFactory pins so that devices built by hal.gpio read the scenario."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from common.clock import FastClock, ManualClock
from common.config import ButtonPin, InputPin, load_config
from elevator_node.sim import lift_sensors
from hal.gpio import make_button, make_input
from hal.sim.lift import LiftSimulator, SensorPin, steps_between

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# one wiring of every kind: active-low contacts with pull-ups, a sensor output, a normally-closed contact
PINS: dict[str, InputPin | ButtonPin] = {
    "door_closed": InputPin(pin=17, active_high=False, pull_up=True),
    "occupied": InputPin(pin=27, active_high=True),
    "moving": InputPin(pin=22, active_high=True, pull_up=False),
    "in_door_zone": InputPin(pin=23, active_high=True, pull_up=True),
    "alarm_button": ButtonPin(pin=24),
    "inspection": InputPin(pin=25, active_high=False, pull_up=None),
    "power_fail": InputPin(pin=26, active_high=False, pull_up=False),
}


def sensor(spec: InputPin | ButtonPin) -> SensorPin:
    return SensorPin.of_button(spec) if isinstance(spec, ButtonPin) else SensorPin.of_input(spec)


@pytest.fixture
def lift(mock_factory: MockFactory):
    devices = {
        name: make_button(spec) if isinstance(spec, ButtonPin) else make_input(spec) for name, spec in PINS.items()
    }
    sim = LiftSimulator(mock_factory, {name: sensor(spec) for name, spec in PINS.items()})
    sim.set(dict.fromkeys(PINS, False))
    yield sim, devices
    sim.stop()


def active(devices) -> dict[str, bool]:
    return {name: bool(device.is_active) for name, device in devices.items()}


def test_apply_drives_what_each_device_reads(lift) -> None:
    sim, devices = lift
    assert active(devices) == dict.fromkeys(PINS, False)
    for sensor in PINS:
        sim.apply(**{sensor: True})
        assert active(devices)[sensor], sensor
        assert sum(active(devices).values()) == 1, active(devices)
        sim.apply(**{sensor: False})
    assert active(devices) == dict.fromkeys(PINS, False)


def test_aliases_door_and_level(lift) -> None:
    sim, devices = lift
    sim.apply(door="closed", level=True)
    assert devices["door_closed"].is_active and devices["in_door_zone"].is_active
    sim.apply(door="open")
    assert not devices["door_closed"].is_active
    assert sim.state()["door_closed"] is False


def test_bad_scenarios_are_refused(lift, mock_factory: MockFactory) -> None:
    sim, _ = lift
    with pytest.raises(ValueError, match="allowed"):
        sim.apply(trapdoor=True)
    with pytest.raises(ValueError, match="'open' or 'closed'"):
        sim.apply(door="ajar")
    with pytest.raises(ValueError, match="true or false"):
        sim.apply(occupied="yes")
    partial = LiftSimulator(mock_factory, {"door_closed": sensor(PINS["door_closed"])})
    with pytest.raises(ValueError, match="not fitted"):
        partial.apply(moving=True)


# an entrapment: the car stops between floors, doors stay closed with someone inside
ENTRAPMENT: list[tuple[float, dict[str, Any]]] = [
    (0.0, {"door": "open", "occupied": True, "level": True}),
    (5.0, {"door": "closed", "moving": True, "level": False}),
    (12.0, {"moving": False}),
    (120.0, {"alarm_button": True}),
    (124.0, {"alarm_button": False}),
]


def test_play_on_a_manual_clock(lift) -> None:
    sim, devices = lift
    clock = ManualClock()
    closed = threading.Event()
    stopped = threading.Event()
    pressed = threading.Event()
    devices["door_closed"].when_activated = closed.set
    devices["moving"].when_deactivated = stopped.set
    devices["alarm_button"].when_pressed = pressed.set
    sim.start(ENTRAPMENT, clock)
    assert devices["door_closed"].wait_for_inactive(5) and devices["occupied"].wait_for_active(5)
    assert not closed.is_set()  # time has not moved: the doors are still open
    clock.advance(5)
    assert closed.wait(5) and devices["moving"].is_active
    clock.advance(7)
    assert stopped.wait(5)
    assert not devices["in_door_zone"].is_active and devices["door_closed"].is_active
    assert not pressed.is_set()
    clock.advance(110)
    assert pressed.wait(5)
    clock.advance(10)
    assert sim.wait(5)
    assert sim.state() == {
        "door_closed": True,
        "occupied": True,
        "moving": False,
        "in_door_zone": False,
        "alarm_button": False,
        "inspection": False,
        "power_fail": False,
    }
    assert active(devices) == sim.state()


def test_play_on_a_fast_clock_keeps_the_order(lift) -> None:
    sim, devices = lift
    seen: list[str] = []
    devices["door_closed"].when_activated = lambda: seen.append("door closed")
    devices["moving"].when_activated = lambda: seen.append("moving")
    devices["moving"].when_deactivated = lambda: seen.append("stopped")
    devices["alarm_button"].when_pressed = lambda: seen.append("alarm")
    sim.play(ENTRAPMENT, FastClock(speed=2000.0))  # two minutes of lift in about 60 ms
    assert seen == ["door closed", "moving", "stopped", "alarm"]
    assert not devices["alarm_button"].is_pressed


def test_stop_ends_a_scenario_early(lift) -> None:
    sim, devices = lift
    clock = ManualClock()
    sim.start([(0.0, {"occupied": True}), (3600.0, {"power_fail": True})], clock)
    assert devices["occupied"].wait_for_active(5)
    sim.stop()
    assert sim.wait(1)
    clock.advance(7200)
    assert not devices["power_fail"].is_active
    sim.play([(0.0, {"power_fail": True})], clock)  # a stopped simulator plays the next scenario
    assert devices["power_fail"].is_active


def test_resync_after_the_node_reopens_its_devices(lift, mock_factory: MockFactory) -> None:
    sim, devices = lift
    sim.apply(door="closed")
    devices["door_closed"].close()  # the node restarts: closing gives the pin back to its pull-up
    door_spec = PINS["door_closed"]
    assert isinstance(door_spec, InputPin)
    door = make_input(door_spec)
    assert not door.is_active
    sim.resync()
    assert door.is_active


def test_from_the_example_elevator_config(mock_factory: MockFactory) -> None:
    section = load_config(EXAMPLES / "elevator.toml").role_config
    door = make_input(section.door)
    occupancy = make_input(section.occupancy)
    sim = lift_sensors(mock_factory, section)
    assert set(sim.pins) >= {"door_closed", "occupied"}
    sim.apply(door="closed", occupied=True)
    assert door.is_active and occupancy.is_active
    sim.apply(door="open", occupied=False)
    assert not door.is_active and not occupancy.is_active


def test_steps_between_for_callers_that_step_time() -> None:
    steps = list(steps_between(ENTRAPMENT, after=0.0, until=12.0))
    assert [t for t, _ in steps] == [5.0, 12.0]
    assert steps[0][1] == {"door_closed": True, "moving": True, "in_door_zone": False}


@pytest.mark.parametrize(
    ("spec", "active_level"),
    [
        (ButtonPin(pin=5), False),  # pressed pulls the pin low
        (ButtonPin(pin=5, pull_up=False), True),
        (InputPin(pin=5, active_high=False, pull_up=True), False),
        (InputPin(pin=5, active_high=True, pull_up=True), True),
        (InputPin(pin=5), True),
    ],
)
def test_level_for_each_wiring(mock_factory: MockFactory, spec, active_level: bool) -> None:
    assert LiftSimulator.level_for(sensor(spec), True) is active_level
    assert LiftSimulator.level_for(sensor(spec), False) is (not active_level)
    device = make_button(spec) if isinstance(spec, ButtonPin) else make_input(spec)
    sim = LiftSimulator(mock_factory, {"alarm_button" if isinstance(spec, ButtonPin) else "inspection": sensor(spec)})
    sim.set(dict.fromkeys(sim.pins, True))
    assert device.is_active
    sim.set(dict.fromkeys(sim.pins, False))
    assert not device.is_active
