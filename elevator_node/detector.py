"""The lift rules as a pure state machine: ``ElevatorDetector.update(now, snapshot) -> list[Detection]``.

It never reads a clock, sleeps or touches hardware. ``now`` is seconds on any monotonic axis (the node's
monotonic clock, or a trace's ``t``). ``export_state()``/``from_state()`` carry it across a node restart.
"""

from __future__ import annotations

import math
from typing import Any

from common.catalogue import CATALOGUE, State, severity
from common.events import Detection
from elevator_node.config import ElevatorConfig, identity
from elevator_node.lift_state import TIMING_RANK, LiftSnapshot, LiftState, Timing, export, later, restore

# the lift's incidents; their severities and recipients are the catalogue's (common/catalogue.py)
KINDS = tuple(name for name, kind in CATALOGUE.items() if kind.sender == "elevator" and kind.priority == "alert")
INSPECTION_KIND = "inspection_mode"
# names used by Chinese lift-monitoring platforms (REFERENCE.md): trapped at a floor / between floors
LABEL_AT_FLOOR = "平层关人"
LABEL_BETWEEN_FLOORS = "非平层关人"
LABEL_TRAPPED = "困人"
_EPS = 1e-9
# inputs watched for flapping; a panicking passenger may press the alarm button faster than any sensor changes
_FLAP_INPUTS = ("door", "occupancy", "moving", "level_zone", "inspection", "power")


class ElevatorDetector:
    """Turns lift snapshots into incidents: raised once, updated on material changes, cleared; see docs/elevator.md."""

    def __init__(self, settings: ElevatorConfig) -> None:
        self.settings = settings  # the [elevator] section itself: a renamed setting fails here, never silently
        self._s = LiftState()
        self._out: list[Detection] = []
        self._now = 0.0

    # ------------------------------------------------------------------------------------------ public API
    def update(self, now: float, snapshot: LiftSnapshot) -> list[Detection]:
        """Feed the inputs at ``now`` (call on every change and at least every 0.5 s); returns new detections."""
        s = self._s
        if s.last_at is not None and now < s.last_at:
            now = s.last_at  # time never runs backwards for the rules
        self._now = now
        self._out = []
        if s.restore_note_due:
            s.restore_note_due = False
            for inc in list(s.incidents.values()):
                self._emit(inc, "updated", {"restored": True})
        if not s.started:
            self._first(now, snapshot)
        else:
            # a change can arrive late (a busy node, a restart): what the old inputs had reached by now counts
            # first, as if the tick had run just before the change
            self._rules(now)
            self._inputs(now, snapshot)
        self._rules(now)
        s.last_at = now
        return self._out

    def _rules(self, now: float) -> None:
        self._confirm(now)
        self._sensor_faults(now)
        if not self._s.inspection:
            self._entrapment(now)
            self._door_open_while_moving(now)
            self._stopped_outside_door_zone(now)
            self._door_held_open(now)
            self._alarm_button(now)
            self._power_loss(now)

    def next_deadline(self) -> float | None:
        """The earliest future time at which a timer may expire (a superset: nothing may happen then)."""
        s, st = self._s, self.settings
        if not s.started or s.last_at is None:
            return None
        cands: list[float] = []
        add = cands.append
        if not s.door_raw_closed and s.door_closed and s.door_raw_since is not None:
            add(s.door_raw_since + st.door_open_confirm_s)
        if st.occupancy_kind == "presence" and not s.occ_raw and s.occupied and s.occ_raw_since is not None:
            add(s.occ_raw_since + self._vacancy_limit())
        start = self._entrapment_start()
        if start is not None:
            add(start + st.entrapment_s)
        start = self._stopped_start()
        if start is not None:
            add(start + st.stopped_outside_door_zone_s)
        if not s.door_closed and s.door_open_since is not None:
            add(later(s.door_open_since, s.inspection_ended_at) + st.door_held_open_s)
        if not s.door_raw_closed and s.moving and s.door_raw_since is not None:
            begin = later(s.door_raw_since, s.moving_since, s.inspection_ended_at)
            add(begin + st.door_open_while_moving_s)
            add(begin + st.door_open_while_moving_in_zone_s)
        if s.alarm and s.alarm_since is not None:
            begin = later(s.alarm_since, s.inspection_ended_at)
            add(begin + st.alarm_hold_s)
            add(begin + st.alarm_bypass_s)
        if s.power_ok is False and s.power_since is not None:
            add(later(s.power_since, s.inspection_ended_at) + st.power_loss_s)
        if s.door_raw_since is not None:
            add(s.door_raw_since + st.door_stuck_h * 3600)
        if s.inspection and s.inspection_since is not None:
            add(s.inspection_since + st.inspection_stuck_h * 3600)
        for name, changes in s.flap_changes.items():
            if changes and self._open(("sensor_fault", f"{name}:flapping")):
                add(changes[-1] + st.flap_clear_s)
        future = [c for c in cands if c > s.last_at + _EPS and math.isfinite(c)]
        return min(future) if future else None

    def busy(self) -> bool:
        """True while an incident is open or a timer runs whose start a restart should not lose."""
        s = self._s
        return bool(
            s.incidents
            or self._entrapment_start() is not None
            or self._stopped_start() is not None
            or not s.door_closed
            or s.alarm
            or s.power_ok is False
        )

    def open_incidents(self) -> list[dict[str, Any]]:
        """The incidents raised and not yet cleared (copies)."""
        return [dict(inc) for inc in self._s.incidents.values()]

    def export_state(self) -> dict[str, Any]:
        """A JSON-ready copy of the whole state, times on this detector's ``now`` axis."""
        return export(self._s)

    @classmethod
    def from_state(
        cls, settings: ElevatorConfig, exported: dict[str, Any], *, shift: float, timing: Timing
    ) -> ElevatorDetector:
        """A detector continuing ``exported`` after a restart (``lift_state.restore``: the shift, the timing)."""
        detector = cls(settings)
        detector._s = restore(exported, shift=shift, timing=timing)
        return detector

    def _timing_of(self, start: float) -> str:
        """How well a duration from ``start`` is known: the worst timing of the restarts since ``start``."""
        timings = [how for at, how in self._s.restores if start < at - _EPS]
        return max(timings, key=lambda how: TIMING_RANK.get(how, 2), default="monotonic")

    # ------------------------------------------------------------------------------------------- inputs
    def _first(self, now: float, snap: LiftSnapshot) -> None:
        s = self._s
        s.started = True
        s.door_raw_closed = s.door_closed = snap.door_closed
        s.door_raw_since = now
        s.door_closed_since = now if snap.door_closed else None
        s.door_open_since = None if snap.door_closed else now
        s.occ_raw, s.occ_raw_since = snap.occupied, now
        if self.settings.occupancy_kind == "presence" or snap.door_closed:
            s.occupied = snap.occupied
            s.occupied_since = now if snap.occupied else None
        s.moving, s.moving_since = snap.moving, now
        s.still_since = now
        s.in_zone, s.zone_since, s.level_changed_at = snap.in_door_zone, now, now
        s.alarm, s.alarm_since = snap.alarm_button, now
        s.power_ok, s.power_since = snap.power_ok, now
        if snap.inspection:
            self._inspection_on(now)

    def _inputs(self, now: float, snap: LiftSnapshot) -> None:
        s = self._s
        if snap.door_closed != s.door_raw_closed:
            self._changed("door", now)
            s.door_raw_closed, s.door_raw_since = snap.door_closed, now
            s.moves_since_door_change = 0
            self._clear(("sensor_fault", "door:stuck"), {"reason": "door_changed"})
            if snap.door_closed and not s.door_closed:
                s.door_closed, s.door_closed_since, s.door_open_since = True, now, None
        if snap.occupied != s.occ_raw:
            self._changed("occupancy", now)
            s.occ_raw, s.occ_raw_since = snap.occupied, now
            if snap.occupied:
                s.occ_silent_openings = 0
                self._clear(("sensor_fault", "occupancy:silent"), {"reason": "occupancy_seen"})
            else:
                s.occ_on_openings = 0
                self._clear(("sensor_fault", "occupancy:stuck_on"), {"reason": "occupancy_off"})
        if snap.moving != s.moving:
            if s.moving is not None and snap.moving is not None:
                self._changed("moving", now)
            if snap.moving:
                s.moves_since_door_change += 1
            else:
                s.still_since = now
            s.moving, s.moving_since = snap.moving, now
        if snap.in_door_zone != s.in_zone:
            if s.in_zone is not None and snap.in_door_zone is not None:
                self._changed("level_zone", now)
                s.level_changed_at = now
                if s.moving is None:
                    s.moves_since_door_change += 1  # without a motion input a zone change is the evidence
            s.in_zone, s.zone_since = snap.in_door_zone, now
        if snap.alarm_button != s.alarm:
            s.alarm, s.alarm_since, s.alarm_hold_counted = snap.alarm_button, now, False
        if snap.power_ok != s.power_ok:
            if s.power_ok is not None and snap.power_ok is not None:
                self._changed("power", now)
            s.power_ok, s.power_since = snap.power_ok, now
        inspection = bool(snap.inspection)
        if inspection != s.inspection:
            self._changed("inspection", now)
            if inspection:
                self._inspection_on(now)
            else:
                self._inspection_off(now)

    def _changed(self, name: str, now: float) -> None:
        """Count a change of one input for the flapping rule."""
        st = self.settings
        changes = [t for t in self._s.flap_changes.get(name, []) if t > now - st.flap_window_s + _EPS]
        changes.append(now)
        self._s.flap_changes[name] = changes[-st.flap_max_changes :]
        if len(changes) >= st.flap_max_changes:
            self._raise(
                "sensor_fault",
                f"{name}:flapping",
                now,
                {
                    "input": name,
                    "fault": "flapping",
                    "changes": len(changes),
                    "window_s": st.flap_window_s,
                },
            )

    def _confirm(self, now: float) -> None:
        """Promote a door opening or a presence gap that lasted long enough; the PIR latch."""
        s, st = self._s, self.settings
        opened_at, gap_at = s.door_raw_since, s.occ_raw_since  # set by the first update, before any rule runs
        if (
            not s.door_raw_closed
            and s.door_closed
            and opened_at is not None
            and now - opened_at >= st.door_open_confirm_s - _EPS
        ):
            self._door_opened(now)
        if st.occupancy_kind == "presence":
            if s.occ_raw and not s.occupied:
                s.occupied, s.occupied_since = True, s.occ_raw_since
            elif not s.occ_raw and s.occupied and gap_at is not None and now - gap_at >= self._vacancy_limit() - _EPS:
                s.occupied, s.occupied_since = False, None
                self._clear(("entrapment", ""), {"reason": "vacant"})
        elif s.occ_raw and s.door_closed and not s.occupied:
            # PIR: a still passenger is invisible, so the car stays occupied until the doors open again
            s.occupied, s.occupied_since = True, now

    def _vacancy_limit(self) -> float:
        """How long a presence sensor must see nobody before the car counts as empty. Nobody can leave a shut
        car, so once an entrapment is raised a gap is far more likely the sensor losing a still passenger."""
        st = self.settings
        if self._open(("entrapment", "")) is not None:
            return max(st.occupancy_dropout_s, st.vacant_clear_s)
        return st.occupancy_dropout_s

    def _door_opened(self, now: float) -> None:
        s, st = self._s, self.settings
        s.door_closed, s.door_closed_since, s.door_open_since = False, None, s.door_raw_since
        if st.occupancy_kind == "motion":
            s.occupied, s.occupied_since = False, None
        self._clear(("entrapment", ""), {"reason": "door_opened"})
        if s.occ_raw:
            s.occ_on_openings += 1
            self._occupancy_fault(now, "stuck_on", s.occ_on_openings, st.occupancy_stuck_cycles)
        elif not s.inspection:
            s.occ_silent_openings += 1
            self._occupancy_fault(now, "silent", s.occ_silent_openings, st.occupancy_silent_cycles)

    def _occupancy_fault(self, now: float, fault: str, openings: int, limit: int) -> None:
        """The presence sensor read the same (``fault``) at ``openings`` door openings in a row: a sensor fault
        from ``limit`` on (a stuck or a dead sensor cannot tell anyone is trapped)."""
        if openings >= limit:
            self._raise(
                "sensor_fault",
                f"occupancy:{fault}",
                now,
                {"input": "occupancy", "fault": fault, "door_openings": openings},
            )

    def _inspection_on(self, now: float) -> None:
        s = self._s
        s.inspection, s.inspection_since = True, now
        suppressed = [inc for inc in s.incidents.values() if inc["kind"] != "sensor_fault"]
        self._observe({"active": True, "cleared": [inc["kind"] for inc in suppressed]})
        for inc in suppressed:
            self._clear((inc["kind"], inc["key"]), {"reason": "inspection"})

    def _inspection_off(self, now: float) -> None:
        s = self._s
        lasted = now - s.inspection_since if s.inspection_since is not None else None
        s.inspection, s.inspection_since, s.inspection_ended_at = False, None, now
        self._observe({"active": False, "lasted_s": None if lasted is None else round(lasted, 3)})
        self._clear(("sensor_fault", "inspection:stuck_on"), {"reason": "inspection_off"})

    # --------------------------------------------------------------------------------------------- rules
    def _entrapment_start(self) -> float | None:
        """When the current closed-occupied-still spell began, or None when there is none."""
        s = self._s
        if s.inspection or not s.door_closed or not s.occupied:
            return None
        if s.moving:
            return None
        if s.moving is None and s.in_zone is not None:
            still = s.level_changed_at  # no motion input: the car is still while the zone does not change
        elif s.moving is False:
            still = s.still_since
        else:
            still = None  # neither fitted: doors closed + occupied alone (see docs/elevator.md)
        return later(s.door_closed_since, s.occupied_since, still, s.inspection_ended_at)

    def _entrapment(self, now: float) -> None:
        s, st = self._s, self.settings
        ident = ("entrapment", "")
        inc = self._open(ident)
        if inc is not None:
            zone, moving = s.in_zone, s.moving
            if inc.get("in_door_zone") != zone or inc.get("moving") != moving:
                inc["in_door_zone"], inc["moving"] = zone, moving
                self._emit(inc, "updated", {})
            return
        start = self._entrapment_start()
        # a door bounce or a presence gap not yet confirmed holds the alarm back without restarting the timer
        held = not s.door_raw_closed or (st.occupancy_kind == "presence" and not s.occ_raw)
        if start is None or held or now - start < st.entrapment_s - _EPS:
            return
        self._raise(
            "entrapment",
            "",
            now,
            {"occupancy_kind": st.occupancy_kind, "stillness_from": self._stillness_source()},
            start_at=start,
            in_door_zone=s.in_zone,
            moving=s.moving,
        )

    def _stillness_source(self) -> str:
        s = self._s
        if s.moving is not None:
            return "moving"
        return "level_zone" if s.in_zone is not None else "none"

    def _door_open_while_moving(self, now: float) -> None:
        s, st = self._s, self.settings
        ident = ("door_open_while_moving", "")
        if s.door_raw_closed or not s.moving:
            self._clear(ident, {"reason": "door_closed" if s.door_raw_closed else "stopped"})
            return
        if self._open(ident):
            return
        start = later(s.door_raw_since, s.moving_since, s.inspection_ended_at)
        limit = st.door_open_while_moving_in_zone_s if s.in_zone else st.door_open_while_moving_s
        if now - start >= limit - _EPS:
            self._raise(ident[0], "", now, {}, start_at=start, in_door_zone=s.in_zone)

    def _stopped_start(self) -> float | None:
        s = self._s
        if s.inspection or s.in_zone is not False or s.moving:
            return None
        still = s.still_since if s.moving is False else s.level_changed_at
        return later(still, s.zone_since, s.inspection_ended_at)

    def _stopped_outside_door_zone(self, now: float) -> None:
        s, st = self._s, self.settings
        ident = ("stopped_outside_door_zone", "")
        start = self._stopped_start()
        if start is None:
            self._clear(ident, {"reason": "moving" if s.moving else "in_door_zone"})
            return
        if not self._open(ident) and now - start >= st.stopped_outside_door_zone_s - _EPS:
            self._raise(ident[0], "", now, {"door_closed": s.door_closed}, start_at=start)

    def _door_held_open(self, now: float) -> None:
        s, st = self._s, self.settings
        ident = ("door_held_open", "")
        if s.door_closed:
            self._clear(ident, {"reason": "door_closed"})
            return
        start = later(s.door_open_since, s.inspection_ended_at)
        if not self._open(ident) and now - start >= st.door_held_open_s - _EPS:
            self._raise(ident[0], "", now, {"occupied": s.occ_raw}, start_at=start)

    def _alarm_button(self, now: float) -> None:
        s, st = self._s, self.settings
        ident = ("alarm_button", "")
        inc = self._open(ident)
        if not s.alarm:
            if inc is not None and not s.door_closed:
                self._clear(ident, {"reason": "door_open"})
            return
        if s.alarm_hold_counted:
            return
        start = later(s.alarm_since, s.inspection_ended_at)
        # with the doors open the passenger can walk out: only a long hold gets past the misuse filter
        limit = st.alarm_hold_s if s.door_closed else st.alarm_bypass_s
        if now - start < limit - _EPS:
            return
        s.alarm_hold_counted = True
        if inc is None:
            self._raise(
                ident[0], "", now, {"door_closed": s.door_closed, "in_door_zone": s.in_zone}, start_at=start, presses=1
            )
        else:
            inc["presses"] = inc.get("presses", 1) + 1
            self._emit(inc, "updated", {})

    def _power_loss(self, now: float) -> None:
        s, st = self._s, self.settings
        ident = ("power_loss", "")
        if s.power_ok is not False:
            self._clear(ident, {"reason": "power_restored"})
            return
        start = later(s.power_since, s.inspection_ended_at)
        if not self._open(ident) and now - start >= st.power_loss_s - _EPS:
            self._raise(ident[0], "", now, {}, start_at=start)

    def _sensor_faults(self, now: float) -> None:
        s, st = self._s, self.settings
        if (
            s.door_raw_since is not None
            and s.moves_since_door_change >= st.door_stuck_moves
            and now - s.door_raw_since >= st.door_stuck_h * 3600 - _EPS
        ):
            self._raise(
                "sensor_fault",
                "door:stuck",
                now,
                {
                    "input": "door",
                    "fault": "stuck",
                    "unchanged_s": round(now - s.door_raw_since, 3),
                    "car_moves": s.moves_since_door_change,
                },
            )
        if (
            s.inspection
            and s.inspection_since is not None
            and now - s.inspection_since >= st.inspection_stuck_h * 3600 - _EPS
        ):
            self._raise(
                "sensor_fault",
                "inspection:stuck_on",
                now,
                {"input": "inspection", "fault": "stuck_on", "on_s": round(now - s.inspection_since, 3)},
            )
        for name, changes in s.flap_changes.items():
            if changes and now - changes[-1] >= st.flap_clear_s - _EPS:
                self._clear(("sensor_fault", f"{name}:flapping"), {"reason": "quiet"})

    # ---------------------------------------------------------------------------------------- incidents
    def _open(self, ident: tuple[str, str]) -> dict[str, Any] | None:
        return self._s.incidents.get(f"{ident[0]}|{ident[1]}")

    def _raise(
        self, kind: str, key: str, now: float, payload: dict[str, Any], start_at: float | None = None, **extra: Any
    ) -> None:
        ident = f"{kind}|{key}"
        if ident in self._s.incidents:
            return
        start = now if start_at is None else start_at
        s = self._s
        inc = {"kind": kind, "key": key, "start_at": start, "raised_at": now, "timing": self._timing_of(start), **extra}
        inc["facts"] = payload
        s.incidents[ident] = inc
        self._emit(inc, "raised", {})

    def _clear(self, ident: tuple[str, str], payload: dict[str, Any]) -> None:
        inc = self._s.incidents.pop(f"{ident[0]}|{ident[1]}", None)
        if inc is not None:
            self._emit(inc, "cleared", payload)

    def _observe(self, payload: dict[str, Any]) -> None:
        body = {**identity(self.settings), **payload}
        self._out.append(Detection(INSPECTION_KIND, "observed", self._now, "info", body, ""))

    def _emit(self, inc: dict[str, Any], state: State, extra: dict[str, Any]) -> None:
        kind, now = inc["kind"], self._now
        body: dict[str, Any] = {**identity(self.settings)}
        body.update(inc.get("facts", {}))
        lasted = round(now - inc["start_at"], 3)
        if kind == "entrapment":
            zone = inc.get("in_door_zone")
            body["seconds_trapped"] = lasted
            body["in_door_zone"] = zone
            body["label_zh"] = LABEL_TRAPPED if zone is None else LABEL_AT_FLOOR if zone else LABEL_BETWEEN_FLOORS
            body["moving"] = inc.get("moving")
        else:
            body["seconds"] = lasted
            if "in_door_zone" in inc:
                body["in_door_zone"] = inc["in_door_zone"]
            if "presses" in inc:
                body["presses"] = inc["presses"]
        body["timing"] = inc.get("timing", "monotonic")
        body.update(extra)
        self._out.append(Detection(kind, state, now, severity(kind), body, inc["key"]))
