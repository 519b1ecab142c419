"""A lift with a trapped passenger for the simulated community: the real node on MockFactory pins, a scenario.

``SimulatedLift(config, clock, factory)`` builds the real ``ElevatorNode`` (its runtime, outbox, uploader and
speaker unless given) on the pins of ``factory`` and a ``hal.sim.lift.LiftSimulator`` wired like the config;
``start(scenario)`` runs both on background threads in the clock's time, ``stop()`` ends them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpiozero.pins.mock import MockFactory

from common.clock import Clock
from common.config import NodeConfig
from common.service import NodeRuntime
from elevator_node.config import ElevatorConfig
from elevator_node.node import build_node
from hal.audio import Speaker
from hal.sim.lift import LiftSimulator, SensorPin, normalise

Scenario = Sequence[tuple[float, Mapping[str, Any]]]


def lift_sensors(factory: MockFactory, section: ElevatorConfig) -> LiftSimulator:
    """The simulated sensors an ``[elevator]`` section wires; sensors not fitted are left out."""
    inputs = {
        "door_closed": section.door,
        "occupied": section.occupancy,
        "moving": section.moving,
        "in_door_zone": section.level_zone,
        "inspection": section.inspection,
        "power_fail": section.power_fail,
    }
    pins = {sensor: SensorPin.of_input(spec) for sensor, spec in inputs.items() if spec is not None}
    if section.alarm_button is not None:
        pins["alarm_button"] = SensorPin.of_button(section.alarm_button)
    return LiftSimulator(factory, pins)


def trapped_passenger_scenario(
    stuck_at: float = 20.0, rescue_after_s: float = 600.0, alarm_hold_s: float = 10.0
) -> list[tuple[float, dict]]:
    """A resident rides from a floor, the car stops between floors at ``stuck_at`` and stays there until a
    technician brings it to a floor ``rescue_after_s`` later and opens the doors. The resident holds the alarm
    button ``alarm_hold_s`` from ``stuck_at`` + 120 s. Optional sensors that the lift does not have are dropped
    by ``SimulatedLift.start``.

    Run it at a clock speed of 50 or less: the 3 s alarm-button hold must survive the node's state and outbox
    writes (fsync) in real time. Expected from the node (defaults): stopped_outside_door_zone at stuck_at + 60 s, entrapment (非平层关人)
    at stuck_at + 90 s with the question spoken, reassurance every 60 s, updates when the car moves and
    reaches the floor, cleared 2 s after the doors open.
    """
    rescued = stuck_at + rescue_after_s
    return [
        (0.0, {"door": "open", "occupied": False, "moving": False, "in_door_zone": True, "alarm_button": False}),
        (stuck_at - 15.0, {"occupied": True}),  # the resident walks in
        (stuck_at - 12.0, {"door": "closed"}),
        (stuck_at - 10.0, {"moving": True, "in_door_zone": False}),
        (stuck_at, {"moving": False}),  # stuck between floors
        (stuck_at + 120.0, {"alarm_button": True}),  # the resident holds the alarm button
        (stuck_at + 120.0 + alarm_hold_s, {"alarm_button": False}),
        (rescued, {"moving": True}),  # the technician moves the car to a floor
        (rescued + 6.0, {"moving": False, "in_door_zone": True}),
        (rescued + 8.0, {"door": "open"}),
        (rescued + 12.0, {"occupied": False}),  # the resident walks out
        (rescued + 20.0, {"door": "closed"}),
    ]


class SimulatedLift:
    """The real elevator node and its simulated sensors, for the community runner and benchmarks."""

    def __init__(
        self,
        config: NodeConfig,
        clock: Clock,
        factory: MockFactory,
        *,
        runtime: NodeRuntime | None = None,
        speaker: Speaker | None = None,
    ) -> None:
        self.sensors = lift_sensors(factory, config.role_config)
        self.node = build_node(config, clock, runtime=runtime, speaker=speaker)
        self.clock = clock

    def start(self, scenario: Scenario | None = None) -> None:
        """Start the node's thread, then play ``scenario`` (default: the trapped passenger) from now."""
        self.node.start()
        if scenario is None:
            scenario = trapped_passenger_scenario()
        steps = [(t, {k: v for k, v in normalise(values).items() if k in self.sensors.pins}) for t, values in scenario]
        self.sensors.start(steps, self.clock)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the scenario to finish; True when it did."""
        return self.sensors.wait(timeout)

    def stop(self) -> None:
        """Stop the scenario and the node (which closes its runtime and speaker)."""
        self.sensors.stop()
        self.node.stop()
