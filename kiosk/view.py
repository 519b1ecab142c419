"""What the screen draws of a ride: the states, the car, and the view of one moment.

Apart from kiosk.ride_events (the ride machine's events and effects, which re-exports these) so the idle screen
comes up before the ride machine, its events and the network client are even imported (kiosk start-up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

# every screen, in the order the snapshots and the docs list them
RideState = Literal[
    "idle",
    "requesting",
    "searching",
    "assigned",
    "arrived",
    "car_late",
    "no_car",
    "cancelled",
    "offline",
    "error",
    "help_requested",
    "help_taken_in",
    "confirm_cancel",
]
STATES: tuple[RideState, ...] = get_args(RideState)


@dataclass(frozen=True)
class Car:
    """The taxi the central assigned."""

    plate: str
    colour: str = ""  # English, as the central's fleet names it
    model: str = ""
    colour_zh: str = ""
    model_zh: str = ""


@dataclass(frozen=True)
class RideView:
    """Everything a screen needs to draw a state (monotonic times): ``eta_due`` when the car should be there,
    ``waiting_since`` the press that started the ride, ``ride_state`` the ride's own state under an overlay."""

    state: RideState
    car: Car | None = None
    eta_due: float | None = None
    ride_id: str | None = None
    since: float = 0.0
    cancellable: bool = False  # a ride the resident can still cancel (also while offline)
    waiting_since: float | None = None
    ride_state: RideState | None = None
