"""The ``[elevator]`` config section: the lift's identity, its sensor pins, the detector thresholds, voice prompts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from common.config import ButtonPin, InputPin, setting

# The seed's question ("is the lift still running?") with the reassurance that help has been called.
DEFAULT_QUESTION = "请问电梯还在运行吗？请保持冷静，我们已通知物业和维保人员，救援人员正在赶来。"
DEFAULT_REASSURANCE = "请保持冷静，不要扒门。我们已通知物业和维保人员，救援人员正在赶来。"
DEFAULT_ALARM_ACK = "已收到您的求助，我们已通知物业和维保人员，请保持冷静。"
DEFAULT_TAKEN_IN = "物业值班人员已经确认了您的报警，救援人员正在赶来，请保持冷静，不要扒门。"


@dataclass(frozen=True, kw_only=True)
class VoicePrompts:
    """What the car says during an entrapment and after a held alarm button: text (espeak-ng) or WAV files."""

    question: str = setting(DEFAULT_QUESTION, help="said once at the entrapment threshold")
    reassurance: str = setting(DEFAULT_REASSURANCE, help="repeated every repeat_s until the entrapment clears")
    alarm_ack: str = setting(DEFAULT_ALARM_ACK, help="said when a held alarm button raises an alert")
    taken_in: str = setting(
        DEFAULT_TAKEN_IN, help="said once when a person at the central acknowledges the alarm (EN 81-28)"
    )
    question_wav: Path | None = setting(None, help="WAV played instead of the question text")
    reassurance_wav: Path | None = setting(None, help="WAV played instead of the reassurance text")
    alarm_ack_wav: Path | None = setting(None, help="WAV played instead of the alarm_ack text")
    taken_in_wav: Path | None = setting(None, help="WAV played instead of the taken_in text")
    repeat_s: float = setting(60.0, min=10.0, max=900.0, help="seconds between reassurances")


@dataclass(frozen=True, kw_only=True)
class ElevatorConfig:
    """One lift car: who it is, which sensors are wired to which pins, and when a condition becomes an alert."""

    building: str = setting(help="building number or name")
    unit: str = setting("", help="unit (stairwell) within the building")
    lift: str = setting("1", help="lift number within the unit")
    # inputs: door and occupancy are required, the rest optional (omit when not fitted)
    door: InputPin = setting(help="door contact: active = doors closed")
    occupancy: InputPin = setting(help="mmWave presence or PIR output: active = someone seen")
    occupancy_kind: Literal["presence", "motion"] = setting(
        "presence", help="presence: mmWave, true while someone is there; motion: PIR, sees movement only"
    )
    moving: InputPin | None = setting(None, help="car running relay or vibration switch: active = moving")
    level_zone: InputPin | None = setting(None, help="door-zone (levelling) magnet: active = car at a floor")
    alarm_button: ButtonPin | None = setting(None, help="in-car alarm button (its hold_s is not used)")
    inspection: InputPin | None = setting(None, help="inspection/maintenance key switch: active = inspection")
    power_fail: InputPin | None = setting(None, help="UPS HAT power-fail signal: active = mains lost")
    # thresholds
    entrapment_s: float = setting(90.0, min=10.0, max=600.0, help="doors closed, occupied, still for this long")
    door_open_confirm_s: float = setting(
        2.0, min=0.0, max=10.0, help="a door opening shorter than this is a bounce and does not reset timers"
    )
    occupancy_dropout_s: float = setting(
        2.0, min=0.0, max=30.0, help="presence: a gap shorter than this does not count as an empty car"
    )
    vacant_clear_s: float = setting(
        30.0, min=0.0, max=600.0, help="presence: nobody seen this long clears a raised entrapment (doors shut)"
    )
    stopped_outside_door_zone_s: float = setting(60.0, min=5.0, max=600.0, help="needs level_zone")
    door_held_open_s: float = setting(120.0, min=10.0, max=3600.0)
    door_open_while_moving_s: float = setting(1.0, min=0.0, max=30.0, help="needs moving")
    door_open_while_moving_in_zone_s: float = setting(
        5.0, min=0.0, max=60.0, help="the same inside the door zone (advance opening, re-levelling)"
    )
    alarm_hold_s: float = setting(3.0, min=0.0, max=60.0, help="alarm button held this long counts")
    alarm_bypass_s: float = setting(
        30.0, min=0.0, max=300.0, help="with the doors open a press counts only when held this long"
    )
    power_loss_s: float = setting(2.0, min=0.0, max=60.0, help="power-fail signal this long counts")
    # sensor faults
    occupancy_stuck_cycles: int = setting(10, min=2, max=1000, help="occupancy on through this many door openings")
    occupancy_silent_cycles: int = setting(
        30, min=2, max=10000, help="this many door openings without any occupancy seen"
    )
    door_stuck_h: float = setting(2.0, min=0.1, max=168.0, help="door contact unchanged this long ...")
    door_stuck_moves: int = setting(4, min=1, max=1000, help="... while the car started moving this many times")
    flap_window_s: float = setting(10.0, min=1.0, max=600.0)
    flap_max_changes: int = setting(
        12, min=3, max=1000, help="more changes of one input within flap_window_s is a wiring fault"
    )
    flap_clear_s: float = setting(60.0, min=1.0, max=3600.0, help="a flapping input quiet this long is fine again")
    inspection_stuck_h: float = setting(12.0, min=0.5, max=168.0, help="inspection mode longer than this is a fault")
    # node
    tick_s: float = setting(0.5, min=0.05, max=0.5, help="the detector runs at least this often")
    state_save_s: float = setting(30.0, min=1.0, max=600.0, help="state refresh while a timer runs")
    voice: VoicePrompts = setting(default_factory=VoicePrompts, help="voice prompts in the car")

    def problems(self) -> list[str]:
        found = []
        pins: dict[int, str] = {}
        for name in ("door", "occupancy", "moving", "level_zone", "alarm_button", "inspection", "power_fail"):
            pin = getattr(self, name)
            if pin is None:
                continue
            if pin.pin in pins:
                found.append(f"{name}.pin = {pin.pin}: already used by {pins[pin.pin]}")
            pins[pin.pin] = name
        if self.door_open_confirm_s >= self.entrapment_s:
            found.append("door_open_confirm_s must be shorter than entrapment_s")
        if self.occupancy_dropout_s >= self.entrapment_s:
            found.append("occupancy_dropout_s must be shorter than entrapment_s")
        if self.alarm_bypass_s < self.alarm_hold_s:
            found.append("alarm_bypass_s must be at least alarm_hold_s")
        return found


def identity(section: ElevatorConfig) -> dict[str, str]:
    """Which car: the building, unit and lift every lift event carries."""
    return {"building": section.building, "unit": section.unit, "lift": section.lift}


def default_section(**settings: Any) -> ElevatorConfig:
    """The section the detector runs on without a config file (a trace replay, tests): every default but
    ``settings``, no identity. The detector reads no pins; the two required ones are placeholders."""
    return dataclasses.replace(ElevatorConfig(building="", door=InputPin(pin=0), occupancy=InputPin(pin=1)), **settings)
