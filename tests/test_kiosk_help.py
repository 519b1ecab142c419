"""The kiosk's help: one alert to the property desk however often she asks, the screen that says so, and the
screen and voice that say a person at the desk has her call (kiosk/ride.py, HelpTakenIn)."""

from __future__ import annotations

from kiosk.ride import RideMachine
from kiosk.ride_events import (
    Back,
    Cancel,
    Car,
    ConfirmCancel,
    Help,
    HelpTakenIn,
    PollRide,
    Press,
    RaiseAlert,
    RideEvent,
    RideReply,
    SendRequest,
    Tick,
)
from tests.test_kiosk_ride import CAR, T, machine, of, poll_until, shown, spoken, to_assigned, to_searching


def test_no_reassurance_over_the_help_screen() -> None:
    m = machine()
    to_searching(m)
    m.handle(30, Help())
    seen = poll_until(m, 30, 100, status="searching")
    assert "searching_wait" not in spoken(seen)


def test_help_from_any_screen_raises_one_alert_and_says_someone_is_told() -> None:
    m = machine()
    to_assigned(m)
    out = m.handle(10, Help("button"))
    alerts = of(out, RaiseAlert)
    assert len(alerts) == 1 and alerts[0].kind == "help_requested" and alerts[0].severity == "warning"
    assert alerts[0].payload["plate"] == CAR.plate and alerts[0].payload["kiosk_state"] == "assigned"
    assert shown(out) == ["help_requested"] and spoken(out) == ["help_requested"]
    out = m.handle(12, Help())  # pressed again: the voice again, no second alert
    assert not of(out, RaiseAlert) and spoken(out) == ["help_requested"]
    out = m.handle(13, Press())  # the big button on the help screen orders nothing
    assert not of(out, SendRequest) and spoken(out) == ["help_requested"]
    # the ride went on underneath; a new car (or the arrival) ends the help screen so the plate shows
    m.handle(13.5, Tick())
    other = Car("沪B·12345", colour_zh="金黄色", model_zh="大众途安")
    out = m.handle(13.6, RideReply("req-1", "ride-1", "assigned", other, eta_s=100))
    assert shown(out) == ["assigned"] and m.overlay is None


def test_help_screen_times_out_back_to_the_ride() -> None:
    m = machine()
    out = m.handle(1, Help())
    assert of(out, RaiseAlert) and m.shown == "help_requested"
    assert m.handle(90.9, Tick()) == []
    assert shown(m.handle(91.1, Tick())) == ["idle"]


def answered(m: RideMachine, now: float, event: RideEvent) -> list:
    """``event``'s effects, the ride's poll among them answered at once (the car still coming)."""
    out = m.handle(now, event)
    if of(out, PollRide):
        m.handle(now, RideReply("req-1", "ride-1", "assigned", CAR, eta_s=200))
    return out


def test_the_desk_taking_the_call_in_replaces_the_help_screen_and_is_said_once() -> None:
    m = machine()
    to_assigned(m)
    answered(m, 10, Help())
    poll_until(m, 10, 39, eta_s=200)
    out = answered(m, 40, HelpTakenIn())
    assert shown(out) == ["help_taken_in"] and spoken(out) == ["help_taken_in"] and not of(out, RaiseAlert)
    assert m.view().ride_state == "assigned"  # the car is still coming underneath
    out = answered(m, 45, Help())  # asked again once taken in: told again, still one alert
    assert spoken(out) == ["help_taken_in"] and not of(out, RaiseAlert) and m.shown == "help_taken_in"
    out = answered(m, 46, Press())  # the big button orders nothing here either
    assert not of(out, SendRequest) and spoken(out) == ["help_taken_in"]
    # the screen stays help_hold_s from the last time it was told, then the ride shows again
    assert T.help_hold_s == 90.0
    for now in range(47, 45 + 90):
        answered(m, now, Tick())
    assert m.shown == "help_taken_in"
    assert shown(answered(m, 45 + 90.1, Tick())) == ["assigned"]


def test_taken_in_after_the_help_screen_timed_out_is_shown_again_and_a_new_hold_is_a_new_alert() -> None:
    m = machine()
    m.handle(1, Help())
    m.handle(95, Tick())
    assert m.shown == "idle"
    out = m.handle(150, HelpTakenIn())  # the desk was slow; she is most likely still waiting there
    assert shown(out) == ["help_taken_in"] and spoken(out) == ["help_taken_in"]
    assert shown(m.handle(240.1, Tick())) == ["idle"]
    out = m.handle(300, Help())  # after the screen has gone, asking again tells the desk again
    assert [a.kind for a in of(out, RaiseAlert)] == ["help_requested"] and m.shown == "help_requested"


def test_taken_in_while_she_answers_the_cancel_question_is_said_and_the_question_stays() -> None:
    m = machine()
    to_assigned(m)
    m.handle(5, Help())
    m.handle(6, Back())
    m.handle(7, Cancel())
    assert m.shown == "confirm_cancel"
    out = m.handle(8, HelpTakenIn())
    assert spoken(out) == ["help_taken_in"] and not shown(out) and m.shown == "confirm_cancel"
    m.handle(9, ConfirmCancel())
    assert m.state == "cancelled"
