"""What goes into the ride machine (events: presses, replies, time) and what comes out (effects: show, speak, send).

Plain frozen dataclasses, no behaviour: kiosk/ride.py decides, kiosk/controller.py carries the effects out.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# what the screen needs lives in kiosk.view (drawn before the rest of the kiosk is imported); the same names here
from kiosk.view import STATES as STATES
from kiosk.view import Car as Car
from kiosk.view import RideState as RideState
from kiosk.view import RideView as RideView

# screens shown over the ride's own state, which goes on underneath
OVERLAYS: frozenset[str] = frozenset({"help_requested", "help_taken_in", "confirm_cancel"})
# the two help screens: the desk has been told, then a person at the desk has the call
HELP_SCREENS: frozenset[str] = frozenset({"help_requested", "help_taken_in"})
# a result the resident reads, then the kiosk is free again
RESULT_STATES: frozenset[str] = frozenset({"arrived", "no_car", "cancelled", "error"})
# a car is (or may be) on its way for this kiosk
ACTIVE_STATES: frozenset[str] = frozenset({"requesting", "searching", "assigned", "car_late"})
# a driver has accepted: cancelling asks first
DRIVER_STATES: frozenset[str] = frozenset({"assigned", "car_late"})
# what the central's GET /rides/{id} may answer
CENTRAL_STATUSES: frozenset[str] = frozenset({"searching", "assigned", "arrived", "no_car", "cancelled"})
# a ride the central closed: its status -> the kiosk's state
CLOSED_BY_CENTRAL: dict[str, RideState] = {"arrived": "arrived", "no_car": "no_car", "cancelled": "cancelled"}


# ------------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Button:
    """A button the resident pressed; ``source`` says which input ("screen", "button", ...)."""

    source: str = "screen"


class Press(Button):
    """The call button (screen or arcade button)."""


class Cancel(Button):
    """The cancel button (after a driver accepted it only asks: confirm_cancel)."""


class ConfirmCancel(Button):
    """The "yes, cancel" button of confirm_cancel."""


class Back(Button):
    """Back, keep the ride, or close: leaves an overlay, or a result screen for idle."""


class Help(Button):
    """The help button on the screen, or the arcade button held down: tell the property desk."""


@dataclass(frozen=True)
class Tick:
    """Time passes; timeouts and polls are due on ticks."""


@dataclass(frozen=True)
class RideReply:
    """The central answered POST /rides or GET /rides/{id} for ``request_id``."""

    request_id: str
    ride_id: str
    status: str
    car: Car | None = None
    eta_s: float | None = None


@dataclass(frozen=True)
class CentralUnreachable:
    """A request for ``request_id`` (None: a probe) got no HTTP answer, or a 5xx: try again later."""

    request_id: str | None
    reason: str


@dataclass(frozen=True)
class CentralRejected:
    """The central refused the request (4xx, or a reply that breaks the contract): retrying will not help."""

    request_id: str | None
    http_status: int
    reason: str


@dataclass(frozen=True)
class CancelDone:
    """The central confirmed the cancel of ``request_id``'s ride."""

    request_id: str


@dataclass(frozen=True)
class NetworkDown:
    """The node learned from elsewhere (uploader, link) that the central cannot be reached."""

    reason: str = ""


@dataclass(frozen=True)
class NetworkUp:
    """The central answered again (a probe or any other request)."""


@dataclass(frozen=True)
class HelpTakenIn:
    """A person at the property desk acknowledged the kiosk's help request at the central (EN 81-28's "alarm
    acknowledged", common/acks.py): the resident is told on the screen and aloud."""


RideEvent = (
    Press
    | Cancel
    | ConfirmCancel
    | Back
    | Help
    | Tick
    | RideReply
    | CentralUnreachable
    | CentralRejected
    | CancelDone
    | NetworkDown
    | NetworkUp
    | HelpTakenIn
)


# ------------------------------------------------------------------------------------------------ effects
@dataclass(frozen=True)
class Show:
    view: RideView


@dataclass(frozen=True)
class Speak:
    """A voice prompt: ``key`` names a text in the texts file, ``params`` fill it in."""

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendRequest:
    """POST /rides with this request id (the same id on every retry: the central orders one car)."""

    request_id: str


@dataclass(frozen=True)
class PollRide:
    request_id: str
    ride_id: str


@dataclass(frozen=True)
class CancelRide:
    """POST /rides/{id}/cancel; with ride_id None the worker first learns it by re-sending the request."""

    request_id: str
    ride_id: str | None


@dataclass(frozen=True)
class Probe:
    """Check whether the central answers at all (offline with nothing to send)."""


@dataclass(frozen=True)
class RaiseAlert:
    """An incident for the alert book (help_requested): stored in the outbox before anything else."""

    kind: str
    severity: Literal["info", "warning", "urgent"]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """An event for the outbox: presses, ride outcomes, faults."""

    kind: str
    severity: Literal["info", "warning", "urgent"] = "info"
    payload: Mapping[str, Any] = field(default_factory=dict)


Effect = Show | Speak | SendRequest | PollRide | CancelRide | Probe | RaiseAlert | Report


def new_request_id() -> str:
    return str(uuid.uuid4())
