"""The ``[elevator]`` config section: the lift's identity, its sensor pins and the detector thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import InputPin, setting


@dataclass(frozen=True, kw_only=True)
class ElevatorConfig:
    building: str = setting(help="building number or name")
    unit: str = setting("", help="unit (stairwell) within the building")
    lift: str = setting("1", help="lift number within the unit")
    door: InputPin = setting(help="door contact: active = doors closed")
    occupancy: InputPin = setting(help="mmWave presence or PIR output")
    entrapment_s: float = setting(90.0, min=10.0, max=600.0)
