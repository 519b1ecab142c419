"""The event catalogue: every kind of event a node sends to the central, with its severities, who is told and
its payload fields. The one answer to "what does a node send?": nodes take their kinds, severities and
recipients from here, the central validates against it, and docs/api.md's table is generated from it
(``python -m common.catalogue --write docs/api.md``; a test fails when the page is stale).

A payload field means the same in every kind that carries it (``FIELDS``). An event of a catalogued kind with
a field not listed for it, or a severity it does not have, is a catalogue problem: logged on a node (an alert is
never refused for it), an error in the tests (``STRICT``), noted by the central.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "urgent"]
State = Literal["raised", "updated", "cleared", "observed"]
Priority = Literal["alert", "state", "reading"]
Recipient = Literal["property_management", "maintenance", "family", "social_worker", "operator"]
Sender = Literal["elevator", "meter", "kiosk", "any"]

SEVERITIES: tuple[Severity, ...] = get_args(Severity)
STATES: tuple[State, ...] = get_args(State)
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
RECIPIENTS: tuple[Recipient, ...] = get_args(Recipient)
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}  # info < warning < urgent
KIND_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
# set by the tests: a catalogue problem raises instead of being logged
STRICT = False

LIFT: tuple[Recipient, ...] = ("property_management", "maintenance")
TECHNICIANS: tuple[Recipient, ...] = ("maintenance", "operator")

# every payload field, with its meaning (one name, one meaning, whichever kind carries it)
FIELDS: dict[str, str] = {
    # added by the alert book to any alert
    "key": "which incident of this kind (a meter id, a sensor); absent for the only one",
    "renotify": "true on a re-send of an alert still open (every renotify_s)",
    "open_for_s": "seconds the alert has been open, on a re-send",
    "reason": "why it cleared or happened, one word or a short phrase",
    # a lift car
    "building": "the lift's building",
    "unit": "the lift's unit (stairwell)",
    "lift": "the lift's number within the unit",
    "timing": "how well the duration is known: monotonic, wall_clock (across a restart) or lower_bound",
    "restored": "true on the first update after the node restarted with the incident open",
    "seconds": "how long the condition has lasted",
    "seconds_trapped": "seconds the doors have been closed with someone in a still car",
    "in_door_zone": "the car is at a floor (null: no level sensor)",
    "label_zh": "the platform name of the case: 平层关人 (at a floor), 非平层关人 (between floors), 困人",
    "moving": "the car was moving (null: no movement sensor)",
    "occupancy_kind": "presence (mmWave) or motion (PIR)",
    "stillness_from": "which input says the car is still: moving, level_zone or door",
    "door_closed": "the doors were closed",
    "occupied": "someone was seen in the car",
    "presses": "alarm-button presses counted in this incident",
    "input": "the faulty input (door, occupancy, moving, ...)",
    "fault": "what is wrong with it: flapping, stuck, stuck_on, silent",
    "changes": "changes of the input within window_s",
    "window_s": "the flapping window",
    "door_openings": "door openings counted for the fault",
    "unchanged_s": "seconds the door contact did not change",
    "car_moves": "times the car moved meanwhile",
    "on_s": "seconds the inspection switch has been on",
    "active": "inspection mode is on",
    "cleared": "the alerts inspection mode cleared",
    "lasted_s": "how long inspection mode lasted",
    # a water meter and its household
    "meter_id": "the meter (its [[meter.meters]] id)",
    "resident": "the household the meter watches",
    "total_litres": "the meter's total, offset for resets",
    "raw_litres": "the total as the meter reads it",
    "read_wall": "wall time of the read",
    "previous_litres": "the total before",
    "new_litres": "the total after a reset",
    "reading_litres": "the refused reading",
    "elapsed_s": "seconds since the last good reading",
    "allowed_litres": "the most water that could have flowed meanwhile",
    "suppressed_since_last": "implausible readings not reported since the last report",
    "status": "the meter's (or the ride's) status now",
    "previous": "the status before",
    "silent_s": "seconds without an answer from the meter",
    "reads_ok": "good reads",
    "reads_failed": "failed reads",
    "resets": "counter resets seen",
    "rollovers": "counter rollovers seen",
    "implausible": "implausible readings",
    "bad_value": "reads with a value the profile cannot decode",
    "no_response": "Modbus: no reply",
    "crc": "Modbus: bad CRC",
    "slave_exception": "Modbus: exception reply",
    "wrong_responder": "Modbus: reply from another slave or function",
    "short_frame": "Modbus: reply cut short",
    "modbus_error": "Modbus: other error",
    "port_error": "the serial port failed",
    "error": "the exception, as text",
    "silence_h": "hours without a sign of life",
    "last_use": "local time of the last water use",
    "warning_after_h": "the household's warning threshold, hours",
    "urgent_after_h": "the household's urgent threshold, hours (null: none)",
    "thresholds": "where the thresholds come from: learned or fixed",
    "escalate_after_s": "seconds without an acknowledgement before the central escalates to the social worker",
    "deadline": "local time by which a morning use was expected",
    "acknowledged": "true when an 'I'm OK' press took the alert down",
    "flow_minutes": "minutes the water has been running",
    "litres": "litres in that run",
    "rate_lpm": "litres per minute",
    "warning_after_min": "the warning threshold, minutes",
    "urgent_after_min": "the urgent threshold, minutes",
    "base_flow_lph": "the flow that never stops, litres per hour",
    "day_litres": "litres used that day",
    "usual_litres": "the household's usual day, litres",
    "limit_litres": "the learned limit, litres",
    "date": "the local date",
    "adaptive": "the thresholds are learned from this household",
    "learned_days": "days the model has learned from",
    "morning_deadline_s": "seconds after morning_start by which a use is expected",
    "resolution_l": "the meter's smallest step, litres",
    "urgent_budget_per_month": "false urgent alerts allowed per month",
    "warning_budget_per_month": "false warnings allowed per month",
    "usual_daily_litres": "the usual day, litres",
    "usual_longest_flow_min": "the usual longest run, minutes",
    # a kiosk
    "source": "what was pressed: screen or button",
    "state": "what the screen showed",
    "kiosk_state": "what the screen showed",
    "request_id": "the kiosk's ride request id (idempotency key at the central)",
    "ride_id": "the central's ride id",
    "plate": "the taxi's plate",
    "by": "who cancelled",
    "why": "why the kiosk gave up",
    "http_status": "the central's HTTP status",
    "part": "the broken part: screen, gpio, ...",
    # the node itself
    "errors_in_window": "tick errors within the storm window",
    "last_error": "the last error, as text",
    "ok": "every self-test check passed",
    "checks": "each self-test check and its result",
    "interval_h": "hours between self-tests",
    "count": "how many",
    "first_seq": "first seq dropped",
    "last_seq": "last seq dropped",
    "priority": "the priority of what was dropped",
    "moved_to": "where the damaged file was moved",
    "salvaged_events": "events salvaged from it",
    "dead_letters_lost": "dead letters that could not be salvaged",
    "seq_resumed_at": "the seq numbering goes on from here",
    "volatile": "events held in memory only",
    "unclean_stop": "the node did not stop cleanly",
    "seq_not_stored_from": "first seq number that may never have been stored",
    "seq_not_stored_to": "last such number",
    "max_lost_readings": "the most readings the stop can have cost",
    "note": "what the numbers mean",
}
ALERT_FIELDS = ("key", "renotify", "open_for_s", "reason")
LIFT_FIELDS = ("building", "unit", "lift", "timing", "restored", *ALERT_FIELDS)
HOUSEHOLD = ("meter_id", "resident")
MODBUS_COUNTS = ("no_response", "crc", "slave_exception", "wrong_responder", "short_frame", "modbus_error")


@dataclass(frozen=True)
class EventKind:
    """One kind of event: who sends it, its severities (the usual first; a clear may be ``info``), how it is
    usually sent, who is told, its payload fields (names from ``FIELDS``) and what it means."""

    name: str
    sender: Sender
    severities: tuple[Severity, ...]
    priority: Priority
    recipients: tuple[Recipient, ...]
    payload: tuple[str, ...]
    summary: str


def _kinds(*kinds: EventKind) -> dict[str, EventKind]:
    return {kind.name: kind for kind in kinds}


_W: tuple[Severity, ...] = ("warning",)
_I: tuple[Severity, ...] = ("info",)
_U: tuple[Severity, ...] = ("urgent",)
_ANY: tuple[Severity, ...] = ("warning", "urgent", "info")
CATALOGUE: dict[str, EventKind] = _kinds(
    # ------------------------------------------------------------------------------------------- a lift car
    EventKind(
        "entrapment",
        "elevator",
        _U,
        "alert",
        LIFT,
        (*LIFT_FIELDS, "seconds_trapped", "in_door_zone", "label_zh", "moving", "occupancy_kind", "stillness_from"),
        "someone in a still car with the doors closed for entrapment_s (90 s): the trapped-person alert",
    ),
    EventKind(
        "door_open_while_moving",
        "elevator",
        _U,
        "alert",
        LIFT,
        (*LIFT_FIELDS, "seconds", "in_door_zone"),
        "the doors open while the car moves",
    ),
    EventKind(
        "stopped_outside_door_zone",
        "elevator",
        _W,
        "alert",
        LIFT,
        (*LIFT_FIELDS, "seconds", "door_closed"),
        "the car stopped between floors",
    ),
    EventKind(
        "door_held_open",
        "elevator",
        _W,
        "alert",
        LIFT,
        (*LIFT_FIELDS, "seconds", "occupied"),
        "the doors open for door_held_open_s",
    ),
    EventKind(
        "alarm_button",
        "elevator",
        _U,
        "alert",
        LIFT,
        (*LIFT_FIELDS, "seconds", "door_closed", "in_door_zone", "presses"),
        "the in-car alarm button held for alarm_hold_s",
    ),
    EventKind("power_loss", "elevator", _U, "alert", LIFT, (*LIFT_FIELDS, "seconds"), "the UPS reports mains lost"),
    EventKind(
        "sensor_fault",
        "elevator",
        _W,
        "alert",
        LIFT,
        (
            *LIFT_FIELDS,
            "seconds",
            "input",
            "fault",
            "changes",
            "window_s",
            "door_openings",
            "unchanged_s",
            "car_moves",
            "on_s",
        ),
        "an input flaps, sticks or never changes: the rules cannot trust it",
    ),
    EventKind(
        "inspection_mode",
        "elevator",
        _I,
        "state",
        LIFT,
        ("building", "unit", "lift", "active", "cleared", "lasted_s"),
        "inspection mode on (the lift rules pause) or off",
    ),
    # ---------------------------------------------------------------------------------------- a water meter
    EventKind(
        "meter_reading",
        "meter",
        _I,
        "reading",
        (),
        (*HOUSEHOLD, "total_litres", "raw_litres", "read_wall"),
        "a meter's total (the first after a start goes out as a state event)",
    ),
    EventKind(
        "meter_offline",
        "meter",
        _W,
        "alert",
        TECHNICIANS,
        (*ALERT_FIELDS, "meter_id", "silent_s", "resets", "port_error", *MODBUS_COUNTS),
        "a meter stopped answering",
    ),
    EventKind(
        "meter_health",
        "meter",
        _I,
        "state",
        TECHNICIANS,
        (
            "key",
            "meter_id",
            "status",
            "previous",
            "reads_ok",
            "reads_failed",
            "resets",
            "rollovers",
            "implausible",
            "bad_value",
            "port_error",
            *MODBUS_COUNTS,
        ),
        "a meter's read status changed (ok, degraded, offline) with its counters",
    ),
    EventKind(
        "meter_reset",
        "meter",
        _W,
        "state",
        TECHNICIANS,
        ("key", "meter_id", "reason", "previous_litres", "new_litres"),
        "the counter went back (a reset or a replaced meter); totals go on from the old value",
    ),
    EventKind(
        "implausible_reading",
        "meter",
        _I,
        "state",
        TECHNICIANS,
        (
            "key",
            "meter_id",
            "previous_litres",
            "reading_litres",
            "elapsed_s",
            "allowed_litres",
            "suppressed_since_last",
        ),
        "a reading more water could not have flowed through the meter: ignored",
    ),
    EventKind(
        "wellbeing_fault",
        "meter",
        _W,
        "alert",
        TECHNICIANS,
        (*ALERT_FIELDS, "meter_id", "error"),
        "the wellbeing rules failed for one household: it is not watched until this clears",
    ),
    EventKind(
        "inactivity",
        "meter",
        _ANY,
        "alert",
        ("family", "social_worker"),
        (
            *ALERT_FIELDS,
            *HOUSEHOLD,
            "silence_h",
            "last_use",
            "warning_after_h",
            "urgent_after_h",
            "thresholds",
            "escalate_after_s",
            "acknowledged",
        ),
        "no water used for longer than the household's threshold: family first, the social worker when urgent",
    ),
    EventKind(
        "missed_morning",
        "meter",
        _ANY,
        "alert",
        ("family", "social_worker"),
        (*ALERT_FIELDS, *HOUSEHOLD, "deadline", "silence_h", "escalate_after_s", "acknowledged"),
        "no water by the household's usual morning time",
    ),
    EventKind(
        "continuous_flow",
        "meter",
        _ANY,
        "alert",
        ("family", "social_worker"),
        (
            *ALERT_FIELDS,
            *HOUSEHOLD,
            "flow_minutes",
            "litres",
            "rate_lpm",
            "warning_after_min",
            "urgent_after_min",
            "escalate_after_s",
            "acknowledged",
        ),
        "water running for hours (a tap left open, a fall in the shower)",
    ),
    EventKind(
        "leak_suspected",
        "meter",
        _ANY,
        "alert",
        ("family",),
        (*ALERT_FIELDS, *HOUSEHOLD, "base_flow_lph"),
        "a flow that never stops (a dripping tap, a running cistern)",
    ),
    EventKind(
        "low_daily_volume",
        "meter",
        _ANY,
        "alert",
        ("family", "social_worker"),
        (*ALERT_FIELDS, *HOUSEHOLD, "day_litres", "usual_litres", "limit_litres", "date", "escalate_after_s"),
        "a day with far less water than usual",
    ),
    EventKind(
        "high_daily_volume",
        "meter",
        _ANY,
        "alert",
        ("family",),
        (*ALERT_FIELDS, *HOUSEHOLD, "day_litres", "usual_litres", "limit_litres", "date"),
        "a day with far more water than usual",
    ),
    EventKind(
        "wellbeing_profile",
        "meter",
        _I,
        "state",
        ("social_worker",),
        (
            "key",
            *HOUSEHOLD,
            "adaptive",
            "base_flow_lph",
            "learned_days",
            "morning_deadline_s",
            "resolution_l",
            "urgent_budget_per_month",
            "warning_budget_per_month",
            "usual_daily_litres",
            "usual_longest_flow_min",
        ),
        "once a day: what the model has learned about the household",
    ),
    EventKind(
        "im_ok_pressed",
        "meter",
        _I,
        "state",
        ("family",),
        ("key", *HOUSEHOLD),
        "the household's 'I'm OK' button",
    ),
    EventKind(
        "going_out_pressed",
        "meter",
        _I,
        "state",
        ("family",),
        ("key", *HOUSEHOLD),
        "the household's 'going out' button (away mode)",
    ),
    # --------------------------------------------------------------------------------------------- a kiosk
    EventKind(
        "help_requested",
        "kiosk",
        _W,
        "alert",
        ("property_management",),
        (*ALERT_FIELDS, "source", "kiosk_state", "request_id", "plate", "why"),
        "a resident held the arcade button for help",
    ),
    EventKind(
        "kiosk_fault",
        "kiosk",
        _W,
        "alert",
        ("maintenance",),
        (*ALERT_FIELDS, "part"),
        "a part of the kiosk is broken (the screen, the GPIO)",
    ),
    EventKind("button_pressed", "kiosk", _I, "state", (), ("source", "state"), "a press, and what the screen showed"),
    EventKind("ride_requested", "kiosk", _I, "state", (), ("request_id", "source"), "a ride asked of the central"),
    EventKind(
        "ride_assigned", "kiosk", _I, "state", (), ("request_id", "ride_id", "plate"), "a taxi accepted the ride"
    ),
    EventKind("ride_arrived", "kiosk", _I, "state", (), ("request_id", "ride_id"), "the taxi is at the pickup point"),
    EventKind("ride_no_car", "kiosk", _I, "state", (), ("request_id", "ride_id"), "no taxi took the ride"),
    EventKind("ride_cancelled", "kiosk", _I, "state", (), ("request_id", "ride_id", "by", "source"), "cancelled"),
    EventKind(
        "ride_resumed", "kiosk", _I, "state", (), ("request_id", "ride_id"), "a ride followed again after a restart"
    ),
    EventKind(
        "ride_closed_while_down",
        "kiosk",
        _I,
        "state",
        (),
        ("request_id", "status"),
        "the central closed the ride while the kiosk could not reach it",
    ),
    EventKind(
        "ride_late", "kiosk", _W, "state", (), ("request_id", "ride_id", "plate"), "the taxi is past its ETA + 5 min"
    ),
    EventKind("ride_expired", "kiosk", _W, "state", (), ("request_id", "ride_id"), "the ride's time ran out"),
    EventKind("ride_given_up", "kiosk", _W, "state", (), ("request_id", "ride_id", "why"), "the kiosk gave up"),
    EventKind(
        "cancel_refused", "kiosk", _W, "state", (), ("request_id", "ride_id", "reason"), "the central kept the ride"
    ),
    EventKind("central_unreachable", "kiosk", _W, "state", (), ("reason",), "the kiosk cannot reach the central"),
    EventKind("central_reachable", "kiosk", _I, "state", (), (), "the central answers again"),
    EventKind("central_error", "kiosk", _W, "state", (), ("http_status", "reason"), "the central refused a ride call"),
    # ------------------------------------------------------------------------------------- any node itself
    EventKind(
        "node_fault",
        "any",
        _W,
        "alert",
        ("maintenance",),
        (*ALERT_FIELDS, "errors_in_window", "last_error"),
        "an exception storm in the node's loop",
    ),
    EventKind(
        "selftest",
        "any",
        ("info", "warning"),
        "state",
        (),
        ("ok", "checks", "interval_h"),
        "the periodic self-test (EN 81-28 for a lift): warning when a check failed",
    ),
    EventKind(
        "outbox_dropped",
        "any",
        _W,
        "state",
        (),
        ("count", "first_seq", "last_seq", "priority", "reason"),
        "the outbox hit its bound and dropped the oldest readings",
    ),
    EventKind(
        "outbox_corrupt",
        "any",
        _W,
        "state",
        (),
        ("error", "moved_to", "salvaged_events", "dead_letters_lost", "seq_resumed_at", "volatile"),
        "the outbox file was damaged, moved aside and salvaged",
    ),
    EventKind(
        "outbox_resumed",
        "any",
        _I,
        "state",
        (),
        ("unclean_stop", "seq_not_stored_from", "seq_not_stored_to", "max_lost_readings", "note"),
        "the outbox opened after an unclean stop: the seq numbers that may never have been stored",
    ),
)


class CatalogueError(ValueError):
    """An event that does not match its kind in the catalogue (raised only in ``STRICT`` mode)."""


def recipients(kind: str) -> tuple[Recipient, ...]:
    """Who is told of ``kind`` (empty for an unknown kind: the central's operators see it)."""
    entry = CATALOGUE.get(kind)
    return entry.recipients if entry is not None else ()


def severity(kind: str) -> Severity:
    """The usual severity of ``kind``."""
    return CATALOGUE[kind].severities[0]


def problems(kind: str, severity: str, state: str, payload: Mapping[str, Any]) -> list[str]:
    """What is wrong with an event of a catalogued kind; [] for a match and for a kind not in the catalogue."""
    entry = CATALOGUE.get(kind)
    if entry is None:
        return []
    found = []
    allowed = set(entry.severities) | ({"info"} if state == "cleared" else set())
    if severity not in allowed:
        found.append(f"{kind}: severity {severity!r}; allowed {', '.join(sorted(allowed))}")
    extra = sorted(set(payload) - set(entry.payload))
    if extra:
        found.append(f"{kind}: payload fields {extra} are not in the catalogue (common/catalogue.py)")
    return found


_reported: set[str] = set()


def check(kind: str, severity: str, state: str, payload: Mapping[str, Any]) -> None:
    """Log each catalogue problem once (raise ``CatalogueError`` in ``STRICT`` mode). Never refuses an event."""
    for problem in problems(kind, severity, state, payload):
        if STRICT:
            raise CatalogueError(problem)
        if problem not in _reported:
            _reported.add(problem)
            log.warning("event catalogue: %s", problem)


# ------------------------------------------------------------------------------------------ docs/api.md
BEGIN_MARK = "<!-- event catalogue: generated by `python -m common.catalogue --write docs/api.md` -->"
END_MARK = "<!-- end of the event catalogue -->"
SENDER_TITLES = {"elevator": "a lift car", "meter": "a water meter", "kiosk": "a kiosk", "any": "any node"}


def render() -> str:
    """The catalogue as Markdown: one table of kinds per sender, then every payload field and its meaning."""
    lines = [BEGIN_MARK, ""]
    for sender, title in SENDER_TITLES.items():
        lines += [f"**Sent by {title}**", "", "| kind | severity | to | payload | what |", "|---|---|---|---|---|"]
        for kind in CATALOGUE.values():
            if kind.sender != sender:
                continue
            to = ", ".join(kind.recipients) or "operators"
            fields = ", ".join(f"`{name}`" for name in kind.payload if name not in ALERT_FIELDS) or "-"
            lines.append(f"| `{kind.name}` | {' / '.join(kind.severities)} | {to} | {fields} | {kind.summary} |")
        lines.append("")
    lines += [
        f"Every alert may also carry {', '.join(f'`{name}`' for name in ALERT_FIELDS)}. The payload fields:",
        "",
        "| field | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in sorted(FIELDS.items())]
    return "\n".join([*lines, "", END_MARK])


def replace_in(text: str) -> str:
    """``text`` (docs/api.md) with the generated part between the marks replaced by ``render()``."""
    start, end = text.index(BEGIN_MARK), text.index(END_MARK) + len(END_MARK)
    return text[:start] + render() + text[end:]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Print the event catalogue as Markdown, or --write it into a page.")
    parser.add_argument("--write", type=Path, metavar="PAGE", help="replace the generated part of PAGE")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(replace_in(args.write.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(render())
