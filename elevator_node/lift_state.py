"""What the lift detector remembers, as one dataclass (``LiftState``), and how it is carried across a restart:
``export`` to JSON-ready data, ``restore`` with every stored time moved onto the new run's clock."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

STATE_VERSION = 1
Timing = Literal["monotonic", "wall_clock", "lower_bound"]
TIMING_RANK = {"monotonic": 0, "wall_clock": 1, "lower_bound": 2}  # how well a duration is known, best first


@dataclass(frozen=True)
class LiftSnapshot:
    """The car's inputs at one moment. ``None`` means the sensor is not fitted."""

    door_closed: bool
    occupied: bool
    moving: bool | None = None
    in_door_zone: bool | None = None
    alarm_button: bool | None = None
    inspection: bool | None = None
    power_ok: bool | None = None


@dataclass
class LiftState:
    """Everything the detector remembers; JSON-ready. Fields named ``*_at``/``*_since`` are times on ``now``."""

    started: bool = False
    last_at: float | None = None
    # door: raw contact, and the confirmed state (an opening counts once it lasted door_open_confirm_s)
    door_raw_closed: bool = True
    door_raw_since: float | None = None
    door_closed: bool = True
    door_closed_since: float | None = None
    door_open_since: float | None = None
    # occupancy: raw input, and the effective "someone is in the car" (presence with dropout, or the PIR latch)
    occ_raw: bool = False
    occ_raw_since: float | None = None
    occupied: bool = False
    occupied_since: float | None = None
    # movement
    moving: bool | None = None
    moving_since: float | None = None
    still_since: float | None = None
    in_zone: bool | None = None
    zone_since: float | None = None
    level_changed_at: float | None = None
    alarm: bool | None = None
    alarm_since: float | None = None
    alarm_hold_counted: bool = False
    power_ok: bool | None = None
    power_since: float | None = None
    inspection: bool = False
    inspection_since: float | None = None
    inspection_ended_at: float | None = None
    # sensor-fault bookkeeping
    occ_on_openings: int = 0
    occ_silent_openings: int = 0
    moves_since_door_change: int = 0
    flap_changes: dict[str, list[float]] = field(default_factory=dict)
    # open incidents: "kind|key" -> {kind, key, start_at, raised_at, ...}
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # set by from_state: [time, timing] of each restart; a start before it was carried over with that timing
    restores: list[list[Any]] = field(default_factory=list)
    restore_note_due: bool = False


def is_time_field(name: str) -> bool:
    return name.endswith("_at") or name.endswith("_since")


def later(*times: float | None) -> float:
    """The latest of the given start times; ``None`` (no constraint) counts as the beginning of time."""
    return max((t for t in times if t is not None), default=-math.inf)


def export(state: LiftState) -> dict[str, Any]:
    """A JSON-ready copy of the whole state, times on the detector's ``now`` axis."""
    return {"version": STATE_VERSION, "state": dataclasses.asdict(state)}


def restore(exported: dict[str, Any], *, shift: float, timing: Timing) -> LiftState:
    """The state ``export`` gave, continued after a restart.

    ``shift`` is added to every stored time to put it on the new ``now`` axis; ``timing`` says how well that is
    known (``monotonic``: same boot; ``wall_clock``: both wall clocks were synced; ``lower_bound``: the downtime
    is unknown and not counted). Incidents still open are reported once as ``updated`` with ``restored: true`` on
    the next update. Raises ValueError on a state it cannot read.
    """
    if not isinstance(exported, dict) or exported.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported detector state version: {exported.get('version')!r}")
    raw = dict(exported["state"])
    known = {f.name for f in dataclasses.fields(LiftState)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown detector state fields: {sorted(unknown)}")

    def moved(value: Any) -> Any:
        return None if value is None else float(value) + shift

    for name in list(raw):
        if is_time_field(name):
            raw[name] = moved(raw[name])
    raw["flap_changes"] = {k: [float(t) + shift for t in v] for k, v in raw.get("flap_changes", {}).items()}
    incidents = {}
    for ident, inc in raw.get("incidents", {}).items():
        inc = dict(inc)
        for name in list(inc):
            if is_time_field(name):
                inc[name] = moved(inc[name])
        worse = TIMING_RANK.get(timing, 2) > TIMING_RANK.get(inc.get("timing", "monotonic"), 2)
        inc["timing"] = timing if worse else inc.get("timing", "monotonic")
        incidents[ident] = inc
    raw["incidents"] = incidents
    raw["restores"] = [[float(at) + shift, str(how)] for at, how in raw.get("restores", [])][-16:]
    state = LiftState(**raw)
    if state.started and state.last_at is not None:
        state.restores.append([state.last_at, timing])
        state.restore_note_due = bool(incidents)
    return state
