"""Simulated lift sensors: drive gpiozero MockFactory pins from a scenario, as the real contacts would.

Each sensor is a ``SensorPin``: its pin and the level the node's gpiozero device reads as active, made from the
same spec the node builds its device from (``SensorPin.of_input``/``of_button``), whatever the wiring polarity.
The role maps its config to sensors (``elevator_node.sim.lift_sensors``).

Sensors (True = the named condition holds): ``door_closed``, ``occupied``, ``moving``, ``in_door_zone``,
``alarm_button`` (pressed), ``inspection``, ``power_fail``. Aliases: ``door`` = "open"/"closed",
``level`` = ``in_door_zone``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from hal.gpio import ButtonSpec, InputSpec
from hal.sim.timeline import ScriptPlayer

log = logging.getLogger(__name__)

SENSORS: tuple[str, ...] = (
    "door_closed",
    "occupied",
    "moving",
    "in_door_zone",
    "alarm_button",
    "inspection",
    "power_fail",
)
Scenario = Sequence[tuple[float, Mapping[str, Any]]]


@dataclass(frozen=True)
class SensorPin:
    """A simulated sensor's BCM pin and the level (True = high) at which the node reads it active."""

    pin: int
    active_high: bool

    @classmethod
    def of_input(cls, spec: InputSpec) -> SensorPin:
        return cls(spec.pin, spec.active_high)

    @classmethod
    def of_button(cls, spec: ButtonSpec) -> SensorPin:
        return cls(spec.pin, not spec.pull_up)  # a pull-up button is pressed when it pulls the pin low


def normalise(values: Mapping[str, Any]) -> dict[str, bool]:
    """Scenario values as {sensor: active}; aliases resolved, anything unknown refused with the allowed names."""
    out: dict[str, bool] = {}
    for name, value in values.items():
        if name == "door":
            if value not in ("open", "closed"):
                raise ValueError(f"door = {value!r}: allowed 'open' or 'closed'")
            out["door_closed"] = value == "closed"
            continue
        sensor = "in_door_zone" if name == "level" else name
        if sensor not in SENSORS:
            raise ValueError(f"unknown lift sensor {name!r}; allowed: door, level, {', '.join(SENSORS)}")
        if not isinstance(value, bool):
            raise ValueError(f"{name} = {value!r}: expected true or false")
        out[sensor] = value
    return out


class LiftSimulator(ScriptPlayer):
    """Lift sensors on MockFactory pins. ``apply(door="closed", occupied=True)`` or ``play(scenario, clock)``."""

    def __init__(self, factory: MockFactory, pins: Mapping[str, SensorPin]) -> None:
        unknown = set(pins) - set(SENSORS)
        if unknown:
            raise ValueError(f"unknown lift sensors {sorted(unknown)}; allowed: {', '.join(SENSORS)}")
        self.factory = factory
        self.pins = dict(pins)
        self._state: dict[str, bool] = dict.fromkeys(self.pins, False)
        self._lock = threading.Lock()
        super().__init__()

    @staticmethod
    def level_for(spec: SensorPin, active: bool) -> bool:
        """The pin level (True = high) at which the node's device reads ``active``."""
        return spec.active_high if active else not spec.active_high

    def _pin(self, sensor: str) -> MockPin:
        return self.factory.pin(self.pins[sensor].pin)

    def apply(self, **values: Any) -> None:
        """Set sensors now, e.g. ``apply(door="closed", occupied=True, moving=False)``."""
        self.set(values)

    def set(self, values: Mapping[str, Any]) -> None:
        """Like ``apply`` for a mapping; a sensor that is not fitted is an error (the scenario is wrong)."""
        wanted = normalise(values)
        missing = [s for s in wanted if s not in self.pins]
        if missing:
            raise ValueError(f"sensors not fitted on this lift: {', '.join(missing)}; fitted: {', '.join(self.pins)}")
        with self._lock:
            for sensor, active in wanted.items():
                self._state[sensor] = active
                self._drive(sensor, active)

    def resync(self) -> None:
        """Drive every pin to the current state again (after the node opened or re-opened its devices)."""
        with self._lock:
            for sensor, active in self._state.items():
                self._drive(sensor, active)

    def _drive(self, sensor: str, active: bool) -> None:
        pin = self._pin(sensor)
        if self.level_for(self.pins[sensor], active):
            pin.drive_high()
        else:
            pin.drive_low()

    def state(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._state)

    # --------------------------------------------------------------------------------------- scenarios
    _player_name = "lift-sim"

    def _steps(self, scenario: Scenario) -> list[tuple[float, dict[str, bool]]]:
        return sorted(((float(t), normalise(v)) for t, v in scenario), key=lambda step: step[0])

    def _apply(self, t: float, values: dict[str, bool]) -> None:
        self.set(values)
        log.debug("lift sim t=%.1f s: %s", t, values)


def steps_between(scenario: Scenario, after: float, until: float) -> Iterable[tuple[float, dict[str, bool]]]:
    """The steps with ``after < t <= until``, in order: for a caller that steps time itself, without threads."""
    for t, values in sorted(scenario, key=lambda step: step[0]):
        if after < t <= until:
            yield t, normalise(values)
