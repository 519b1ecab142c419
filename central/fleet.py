"""The simulated taxi fleet: a pure, seeded dispatch plan per ride, and the ride's status at a given time.

A ride's plan (no car or which car, after how long, how far away) is drawn once from ``seed`` and the ride's key,
so the same seed and request give the same car. Its status is a function of (plan, requested_at, now,
cancelled_at): nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from central.config import FleetSection

# (colour zh, colour en): Shanghai taxi companies each paint their cars one colour
CAR_COLOURS: tuple[tuple[str, str], ...] = (
    ("天蓝色", "sky blue"),
    ("金黄色", "golden yellow"),
    ("白色", "white"),
    ("绿色", "green"),
    ("深蓝色", "dark blue"),
)
CAR_MODELS: tuple[tuple[str, str], ...] = (
    ("大众途安", "Volkswagen Touran"),
    ("荣威Ei5", "Roewe Ei5"),
    ("大众朗逸", "Volkswagen Lavida"),
    ("比亚迪秦", "BYD Qin"),
    ("别克GL8", "Buick GL8"),
)
# plate letters skip I and O, as Chinese plates do
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

RIDE_STATUSES: tuple[str, ...] = ("searching", "assigned", "arrived", "no_car", "cancelled")


@dataclass(frozen=True)
class DispatchPlan:
    """What the fleet will do for one ride, in fleet seconds after the request."""

    no_car: bool
    assign_after_s: float
    eta_s: float
    plate: str
    colour_zh: str
    colour_en: str
    model_zh: str
    model_en: str


def make_plate(rng: random.Random) -> str:
    """A Shanghai-style plate: new-energy 沪A·D12345 (D/F + 5 digits) or classic 沪B·12345 / 沪B·X1234."""
    style = rng.random()
    if style < 0.5:
        return f"沪A·{rng.choice('DF')}{rng.randrange(100000):05d}"
    if style < 0.8:
        return f"沪B·{rng.randrange(100000):05d}"
    return f"沪B·{rng.choice(PLATE_LETTERS)}{rng.randrange(10000):04d}"


def plan_dispatch(fleet: FleetSection, ride_key: str) -> DispatchPlan:
    """The deterministic plan of the ride with ``ride_key`` (node id + request id) under ``fleet``'s seed."""
    rng = random.Random(f"{fleet.seed}\x1f{ride_key}")
    no_car = rng.random() < fleet.no_car_rate
    assign_after = rng.uniform(fleet.assign_delay_min_s, fleet.assign_delay_max_s)
    eta = rng.uniform(fleet.eta_min_s, fleet.eta_max_s)
    colour = rng.choice(CAR_COLOURS)
    model = rng.choice(CAR_MODELS)
    return DispatchPlan(
        no_car=no_car,
        assign_after_s=round(assign_after, 3),
        eta_s=round(eta, 3),
        plate=make_plate(rng),
        colour_zh=colour[0],
        colour_en=colour[1],
        model_zh=model[0],
        model_en=model[1],
    )


def ride_view(
    plan: DispatchPlan, requested_at: float, now: float, time_scale: float, cancelled_at: float | None = None
) -> dict[str, Any]:
    """The ride's status at wall time ``now``: status, the car once assigned, ``eta_s`` counting down.

    Real seconds since the request times ``time_scale`` are fleet seconds. A cancel takes effect at
    ``cancelled_at`` unless the ride had already ended (arrived or no car) by then.
    """
    assigned_at = requested_at + plan.assign_after_s / time_scale
    arrives_at = assigned_at + plan.eta_s / time_scale
    ended_at = assigned_at if plan.no_car else arrives_at
    view: dict[str, Any] = {"status": "searching", "assigned": None, "eta_s": None}
    view.update(assigned_at=None, arrived_at=None, no_car_at=None, cancelled_at=None)
    if cancelled_at is not None and cancelled_at < ended_at and now >= cancelled_at:
        view.update(status="cancelled", cancelled_at=cancelled_at)
        if cancelled_at >= assigned_at:
            view.update(assigned=_car(plan), assigned_at=assigned_at)
        return view
    if now < assigned_at:
        return view
    if plan.no_car:
        view.update(status="no_car", no_car_at=assigned_at)
        return view
    view.update(assigned=_car(plan), assigned_at=assigned_at)
    if now < arrives_at:
        elapsed_fleet_s = (now - assigned_at) * time_scale
        view.update(status="assigned", eta_s=max(0, round(plan.eta_s - elapsed_fleet_s)))
        return view
    view.update(status="arrived", arrived_at=arrives_at, eta_s=0)
    return view


def _car(plan: DispatchPlan) -> dict[str, str]:
    return {
        "plate": plan.plate,
        "colour": plan.colour_en,
        "colour_zh": plan.colour_zh,
        "model": plan.model_en,
        "model_zh": plan.model_zh,
    }
