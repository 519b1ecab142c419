"""The event catalogue: every kind of event a node sends to the central, with its severities, who is told and
its payload fields. The one answer to "what does a node send?": nodes take their kinds, severities and
recipients from here, the central validates against it, and docs/api.md's table is generated from it
(``python -m common.catalogue_doc --write docs/api.md``; a test fails when the page is stale).

A payload field means the same in every kind that carries it (``common.event_fields.FIELDS``). An event of a catalogued kind with
a field not listed for it, or a severity it does not have, is a catalogue problem: logged on a node (an alert is
never refused for it), an error in the tests (``STRICT``), noted by the central.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
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

ALERT_FIELDS = ("key", "renotify", "open_for_s", "reason")
LIFT_FIELDS = ("building", "unit", "lift", "timing", "restored", *ALERT_FIELDS)
HOUSEHOLD = ("meter_id", "resident")
METER = ("key", "meter_id")  # a meter's own state events
MODBUS_COUNTS = ("no_response", "crc", "slave_exception", "wrong_responder", "short_frame", "modbus_error")


@dataclass(frozen=True)
class EventKind:
    """One kind of event: who sends it, its severities (the usual first; a clear may be ``info``), how it is
    usually sent, who is told, its payload fields (names from ``common.event_fields.FIELDS``) and what it means."""

    name: str
    sender: Sender
    severities: tuple[Severity, ...]
    priority: Priority
    recipients: tuple[Recipient, ...]
    payload: tuple[str, ...]
    summary: str
    reopens: bool = False  # a re-send after a person closed it opens it again (a trapped passenger: central alerts)


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
        reopens=True,
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
        reopens=True,
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
            *METER,
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
        (*METER, "reason", "previous_litres", "new_litres"),
        "the counter went back (a reset or a replaced meter); totals go on from the old value",
    ),
    EventKind(
        "implausible_reading",
        "meter",
        _I,
        "state",
        TECHNICIANS,
        (
            *METER,
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
        "home_device_fault",
        "meter",
        _W,
        "alert",
        TECHNICIANS,
        (*ALERT_FIELDS, *HOUSEHOLD, "device"),
        "a home's 'I'm OK' or 'going out' button or door contact could not be opened: its water is still watched",
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
            "last_pulse",
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
            "expected_false_warnings_per_month",
            "expected_false_urgent_per_month",
            "expected_false_warnings_past_limits",
            "detect_h",
            "detect_urgent_h",
            "watchable",
        ),
        "once a day: what the model has learned about the household",
    ),
    EventKind(
        "check_in",
        "meter",
        _I,
        "state",
        ("social_worker",),
        ("key", *HOUSEHOLD, "asked_for", "answer_within_s", "alert_due_s"),
        "the resident was asked in the home (chime) to press 'I'm OK' before the family hears of a silence (at "
        "bedtime for one they would hear of in the night)",
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
