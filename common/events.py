"""The one event schema on the wire, and ``Detection``, what a pure detector reports before it becomes an Event.

An Event's id is a UUID made on the node when the event is created and never changes; the central uses it to
make ingest idempotent. ``seq`` is a per-node number that only grows, given by the outbox when the event is
first stored, so the central can see a lost event as a gap. Every kind, its severities, recipients and payload
fields: ``common.catalogue``.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common import catalogue
from common.catalogue import Priority, Severity, State

if TYPE_CHECKING:
    from common.clock import Clock

# drain order: lower first
PRIORITY_RANK: dict[str, int] = {"alert": 0, "state": 1, "reading": 2}


@dataclass(frozen=True)
class Detection:
    """What a pure detector emits from ``update(now, snapshot)``.

    ``state`` is raised/updated/cleared for an incident (one incident = one alert) and ``observed`` for a
    one-off fact (a meter reset, a press). ``key`` tells incidents of the same kind apart (e.g. a meter id).
    ``at`` is the detector's (monotonic or trace) time of the detection.
    """

    kind: str
    state: State
    at: float
    severity: Severity = "warning"
    payload: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""

    def __post_init__(self) -> None:
        # checked where it is made, as make_event checks what is stored: a detector's test fails on a field the
        # catalogue does not list, even where no event is made (the wellbeing rules, the lift's detector)
        catalogue.check(self.kind, self.severity, self.state, self.payload)


@dataclass(frozen=True)
class Event:
    """One event as stored in the outbox and sent to the central."""

    id: str
    node_id: str
    kind: str
    severity: Severity
    state: State
    priority: Priority
    wall_time: float
    clock_synced: bool
    payload: Mapping[str, Any] = field(default_factory=dict)
    alert_id: str | None = None
    recipients: tuple[str, ...] = ()
    seq: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict sent to the central: every field, by name (``WIRE_FIELDS``)."""
        wire = {name: getattr(self, name) for name in WIRE_FIELDS}
        wire["payload"] = dict(self.payload)
        wire["recipients"] = list(self.recipients)
        return wire

    def with_seq(self, seq: int) -> Event:
        """This event with its outbox ``seq`` (the constructor with every field as it is, but ``seq``)."""
        return Event(
            self.id,
            self.node_id,
            self.kind,
            self.severity,
            self.state,
            self.priority,
            self.wall_time,
            self.clock_synced,
            self.payload,
            self.alert_id,
            self.recipients,
            seq,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Event:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["recipients"] = tuple(values.get("recipients", ()))
        return cls(**values)


# the keys of an event on the wire (docs/api.md; the central's WireEvent has exactly these)
WIRE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Event))


def new_event_id() -> str:
    """A fresh event id (UUID4, canonical text form)."""
    return str(uuid.uuid4())


def make_event(
    node_id: str,
    kind: str,
    *,
    clock: Clock | None = None,
    wall_time: float | None = None,
    clock_synced: bool | None = None,
    severity: Severity = "info",
    state: State = "observed",
    priority: Priority = "state",
    payload: Mapping[str, Any] | None = None,
    alert_id: str | None = None,
    recipients: tuple[str, ...] = (),
) -> Event:
    """Create an Event with a new id; the outbox gives it its ``seq`` when stored. Its time: ``clock``'s wall
    time and whether that is synced now, unless ``wall_time`` or ``clock_synced`` say otherwise (one of the two
    is needed). An event that does not match its kind in the catalogue is logged (an error in the tests), never
    refused."""
    if clock is not None:
        wall_time = clock.wall() if wall_time is None else wall_time
        clock_synced = clock.wall_synced() if clock_synced is None else clock_synced
    if wall_time is None or clock_synced is None:
        raise TypeError("make_event needs a clock, or wall_time and clock_synced")
    catalogue.check(kind, severity, state, payload or {})
    return Event(
        id=new_event_id(),
        node_id=node_id,
        kind=kind,
        severity=severity,
        state=state,
        priority=priority,
        wall_time=wall_time,
        clock_synced=clock_synced,
        payload=dict(payload or {}),
        alert_id=alert_id,
        recipients=recipients,
    )
