"""The request bodies of the v1 contract (docs/api.md), validated once at the edge.

Every body inherits ``StoredBody``: the whole raw body passes the JSON value check (depth, finite numbers,
64-bit integers, valid text) before its fields are validated.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, TypeAdapter, field_validator

from central.jsonvalues import StoredBody
from common.catalogue import KIND_PATTERN, Priority, Recipient, Severity, State
from common.contract import NODE_ID_PATTERN, SITE_PATTERN

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
# the largest integer every JSON reader keeps exact (I-JSON, RFC 7493); stored values may go to 2^63 - 1
MAX_SAFE_INT = 2**53 - 1


def _json_integer(value: Any) -> Any:
    """A JSON integer: an int, or a number with no fraction (JSON Schema counts 1.0 as an integer); not a bool."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("should be an integer")
    return value


JsonInteger = BeforeValidator(_json_integer)
Counts = Annotated[int, Field(strict=False, ge=0, le=MAX_SAFE_INT), JsonInteger]
SeqNumber = Annotated[int, Field(strict=False, ge=0, le=2**63 - 1), JsonInteger]


class Contact(BaseModel):
    """One person to reach: a name and a phone number (free text)."""

    model_config = ConfigDict(extra="forbid")
    name: ShortText
    phone: ShortText = ""
    note: ShortText = ""


class RegisterBody(StoredBody):
    """POST /nodes/register."""

    model_config = ConfigDict(extra="forbid")
    claim_key: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    node_id: Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN)]
    role: Literal["elevator", "meter", "kiosk"]
    site: Annotated[str, StringConstraints(pattern=SITE_PATTERN)]
    area: ShortText = ""
    location: ShortText = ""
    pickup_point: ShortText = ""
    contacts: dict[Recipient, Annotated[list[Contact | ShortText], Field(max_length=20)]] = Field(default_factory=dict)


class EventBatch(StoredBody):
    """POST /events: the node's wall time at upload and its events (each checked and validated on its own)."""

    isolated = ("events",)
    node_wall_time: FiniteFloat
    events: list[Any]


class WireEvent(StoredBody):
    """One event as ``common.events.Event.to_wire()`` makes it (exactly ``WIRE_FIELDS``), its values from the
    catalogue (``common.catalogue``); unknown keys are ignored (newer nodes)."""

    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    node_id: str
    kind: Annotated[str, StringConstraints(pattern=KIND_PATTERN)]
    severity: Severity
    state: State
    priority: Priority
    wall_time: FiniteFloat
    clock_synced: Annotated[bool, Field(strict=True)]
    payload: dict[str, Any] = Field(default_factory=dict)
    alert_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    recipients: list[Recipient] = Field(default_factory=list)
    seq: SeqNumber | None = None

    # null where an object or a list belongs carries no information: not worth dead-lettering an alert for
    @field_validator("payload", mode="before")
    @classmethod
    def _null_payload(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("recipients", mode="before")
    @classmethod
    def _null_recipients(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError("not a UUID") from None
        return value


WIRE_EVENT = TypeAdapter(WireEvent)

HEALTH_SECTIONS = ("selftest", "outbox", "sync", "health")


class HeartbeatBody(StoredBody):
    """POST /heartbeat: the node's health. Only these keys are stored; any other key is ignored (and named in
    the answer), so a node's stored health stays bounded."""

    model_config = ConfigDict(extra="allow")
    node_id: ShortText | None = None
    role: ShortText | None = None
    node_wall_time: FiniteFloat | None = None
    uptime_s: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] | None = None
    version: ShortText | None = None
    outbox_depth: Counts | dict[str, Counts] | None = None
    dropped: Counts | dict[str, Counts] | None = None
    dead_letters: Counts | None = None
    last_sensor_read: FiniteFloat | None = None
    clock_synced: Annotated[bool, Field(strict=True)] | None = None
    selftest: dict[str, Any] | None = None
    outbox: dict[str, Any] | None = None
    sync: dict[str, Any] | None = None
    health: dict[str, Any] | None = None


HEARTBEAT_KEYS = frozenset(HeartbeatBody.model_fields)


class AlertAction(StoredBody):
    """POST /alerts/{id}/ack: who (defaults to the operator key's name) and a note kept at the desk."""

    model_config = ConfigDict(extra="forbid")
    by: Annotated[str, StringConstraints(min_length=1, max_length=80)] | None = None
    note: ShortText = ""


class Resolution(AlertAction):
    """POST /alerts/{id}/resolve: as an acknowledgement, and the words sent to the people told of the alert with
    the news that it was closed (the note is never sent)."""

    tell: ShortText = ""


class RideRequest(StoredBody):
    """POST /rides from a kiosk."""

    model_config = ConfigDict(extra="forbid")
    request_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
    pickup_point: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    phone_tail: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")] | None = None


class CancelBody(StoredBody):
    """POST /rides/{id}/cancel: an optional reason."""

    model_config = ConfigDict(extra="forbid")
    reason: ShortText = ""
