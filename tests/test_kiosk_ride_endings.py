"""The ride state machine's endings, pure (no clock, no network): cancel from every state, the central closing or
refusing a ride, and giving up. The happy path, one press = one car, offline and the kiosk flow are in
test_kiosk_ride.py."""

from __future__ import annotations

import pytest

from kiosk.ride_events import (
    Cancel,
    CancelDone,
    CancelRide,
    Car,
    CentralRejected,
    CentralUnreachable,
    ConfirmCancel,
    PollRide,
    Press,
    Report,
    RideReply,
    SendRequest,
    Tick,
)
from tests.test_kiosk_ride import CAR, machine, of, reports, shown, spoken, to_assigned, to_searching


# -------------------------------------------------------------------------------------- cancel
@pytest.mark.parametrize("where", ["requesting", "searching", "assigned", "offline"])
def test_cancel_from_every_active_state(where: str) -> None:
    m = machine()
    if where == "requesting":
        m.handle(0, Press())
    elif where == "searching":
        to_searching(m)
    elif where == "assigned":
        to_assigned(m)
    else:
        m.handle(0, Press())
        m.handle(0.5, CentralUnreachable("req-1", "refused"))
    assert m.state == where
    out = m.handle(4, Cancel())
    if where == "assigned":  # a driver accepted: the kiosk asks first
        assert shown(out) == ["confirm_cancel"] and m.state == "assigned" and not of(out, CancelRide)
        out = m.handle(4.5, ConfirmCancel())
    assert m.state == "cancelled" and shown(out) == ["cancelled"] and spoken(out) == ["cancelled"]
    assert "ride_cancelled" in reports(out)
    expected_ride = None if where in ("requesting", "offline") else "ride-1"
    assert of(out, CancelRide) == [CancelRide("req-1", expected_ride)]
    # no more polls or requests for the cancelled ride
    assert not of(m.handle(10, Tick()), PollRide | SendRequest)


def test_cancel_is_retried_until_the_central_confirms() -> None:
    m = machine()
    to_searching(m)
    m.handle(1, Cancel())
    m.handle(1.2, CentralUnreachable("req-1", "refused"))
    assert of(m.handle(6.1, Tick()), CancelRide) == [CancelRide("req-1", "ride-1")]
    m.handle(6.2, CancelDone("req-1"))
    assert not of(m.handle(20, Tick()), CancelRide)


def test_cancel_before_the_order_answered_learns_the_ride_id_from_the_late_answer() -> None:
    m = machine()
    m.handle(0, Press())
    m.handle(0.1, Cancel())
    out = m.handle(0.5, RideReply("req-1", "ride-1", "searching"))
    assert m.state == "cancelled" and out == []  # the late answer changes nothing on screen
    assert of(m.handle(5.2, Tick()), CancelRide) == [CancelRide("req-1", "ride-1")]


def test_cancel_refused_stops_retrying() -> None:
    m = machine()
    to_searching(m)
    m.handle(1, Cancel())
    out = m.handle(1.2, CentralRejected("req-1", 409, "ride already closed"))
    assert "cancel_refused" in reports(out) and m.cancel_owed is None and m.state == "cancelled"


def test_cancel_on_a_result_returns_to_idle_and_at_idle_does_nothing() -> None:
    m = machine()
    to_searching(m)
    m.handle(1, Cancel())
    out = m.handle(2, Cancel())
    assert m.state == "idle" and shown(out) == ["idle"]
    out = m.handle(3, Cancel())
    assert m.state == "idle" and not of(out, CancelRide)


def test_late_reply_for_a_cancelled_ride_is_ignored_after_a_new_press() -> None:
    m = machine()
    to_searching(m)
    m.handle(1, Cancel())
    m.handle(2, Press())  # cancelled -> idle
    m.handle(2, Press())
    assert m.request_id == "req-2"
    out = m.handle(2.1, RideReply("req-1", "ride-1", "assigned", CAR, eta_s=60))
    assert m.state == "requesting" and out == []


# --------------------------------------------------------------------------------- central outcomes
@pytest.mark.parametrize("status", ["no_car", "cancelled", "arrived"])
def test_central_closes_the_ride(status: str) -> None:
    m = machine()
    to_searching(m)
    m.handle(3.1, Tick())
    out = m.handle(3.2, RideReply("req-1", "ride-1", status, CAR if status == "arrived" else None))
    assert m.state == status and shown(out) == [status] and spoken(out) == [status]
    assert f"ride_{status}" in reports(out)
    assert not of(m.handle(10, Tick()), PollRide)
    m.handle(33.2, Tick())
    assert m.state == ("arrived" if status == "arrived" else "idle")  # the plate stays 3 minutes
    m.handle(183.2, Tick())
    assert m.state == "idle"


def test_searching_gives_up_with_no_car_and_cancels_at_the_central() -> None:
    m = machine()
    to_searching(m)
    now = 0.5
    while m.state == "searching":
        now += 3
        for e in m.handle(now, Tick()):
            if isinstance(e, PollRide):
                m.handle(now + 0.1, RideReply("req-1", "ride-1", "searching"))
    assert m.state == "no_car" and 600 <= now < 604
    assert m.cancel_owed == "req-1"


def test_assigned_forever_returns_to_idle() -> None:
    m = machine()
    to_assigned(m)
    m.handle(2703.5, Tick())
    assert m.state == "idle"


def test_offline_for_the_whole_ride_gives_up() -> None:
    m = machine()
    to_searching(m)
    m.handle(1, CentralUnreachable("req-1", "refused"))
    for now in range(6, 2710, 5):
        for e in m.handle(float(now), Tick()):
            if isinstance(e, PollRide):
                m.handle(now + 0.1, CentralUnreachable("req-1", "refused"))
    assert m.state == "offline" and m.request_id is None and m.cancel_owed == "req-1"


@pytest.mark.parametrize("http_status", [401, 403, 422])
def test_central_rejects_the_order(http_status: int) -> None:
    m = machine()
    m.handle(0, Press())
    out = m.handle(0.3, CentralRejected("req-1", http_status, "nope"))
    assert m.state == "error" and shown(out) == ["error"] and spoken(out) == ["error"]
    assert of(out, Report)[0].severity == "warning" and "central_error" in reports(out)
    assert not of(m.handle(10, Tick()), SendRequest)
    m.handle(30.3, Tick())
    assert m.state == "idle"


def test_press_on_error_returns_to_idle_and_the_next_press_orders() -> None:
    m = machine()
    m.handle(0, Press())
    m.handle(0.3, CentralRejected("req-1", 500, "bug"))
    out = m.handle(1, Press())
    assert m.state == "idle" and not of(out, SendRequest) and spoken(out) == ["idle"]
    out = m.handle(2, Press())
    assert m.state == "requesting" and of(out, SendRequest) == [SendRequest("req-2")]


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (RideReply("req-1", "ride-1", "teleported"), "unknown ride status"),
        (RideReply("req-1", "ride-1", "assigned", None, 30), "without a plate"),
        (RideReply("req-1", "ride-1", "assigned", Car(""), 30), "without a plate"),
    ],
)
def test_reply_breaking_the_contract_is_an_error_and_cancels(reply: RideReply, why: str) -> None:
    m = machine()
    to_searching(m)
    m.handle(3.1, Tick())
    out = m.handle(3.2, reply)
    assert m.state == "error"
    assert why in of(out, Report)[0].payload["reason"]
    assert m.cancel_owed == "req-1"
