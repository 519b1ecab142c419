"""The ride state machine: every transition, double presses, retries that reuse the request id, central errors."""

from __future__ import annotations

import types

import pytest

from kiosk.config import RideTimingSection
from kiosk.ride import RideMachine
from kiosk.ride_events import (
    ACTIVE_STATES,
    STATES,
    Back,
    Cancel,
    CancelRide,
    Car,
    CentralRejected,
    CentralUnreachable,
    ConfirmCancel,
    Help,
    HelpTakenIn,
    NetworkDown,
    NetworkUp,
    PollRide,
    Press,
    Probe,
    Report,
    RideReply,
    SendRequest,
    Show,
    Speak,
    Tick,
)
from kiosk.texts import speakable_plate

T = RideTimingSection(
    poll_interval_s=3,
    retry_interval_s=5,
    reply_timeout_s=25,
    request_give_up_s=180,
    search_give_up_s=600,
    assigned_max_s=2700,
    result_hold_s=30,
)
CAR = Car("沪A·D12345", colour="white", model="Volkswagen Lavida", colour_zh="白色", model_zh="大众朗逸")


def machine() -> RideMachine:
    ids = (f"req-{n}" for n in range(1, 1_000_000))
    return RideMachine(T, make_request_id=lambda: next(ids), now=0.0)


def of(effects: list, kind: type | types.UnionType) -> list:
    return [e for e in effects if isinstance(e, kind)]


def shown(effects: list) -> list[str]:
    return [e.view.state for e in of(effects, Show)]


def spoken(effects: list) -> list[str]:
    return [e.key for e in of(effects, Speak)]


def reports(effects: list) -> list[str]:
    return [e.kind for e in of(effects, Report)]


def to_searching(m: RideMachine, now: float = 0.0) -> None:
    m.handle(now, Press())
    m.handle(now + 0.5, RideReply("req-1", "ride-1", "searching"))
    assert m.state == "searching"


def to_assigned(m: RideMachine, now: float = 0.0) -> None:
    to_searching(m, now)
    m.handle(now + 3, Tick())
    m.handle(now + 3.5, RideReply("req-1", "ride-1", "assigned", CAR, eta_s=240))
    assert m.state == "assigned"


# ------------------------------------------------------------------------------------------- the happy path
def test_press_shows_requesting_at_once_and_sends_one_request() -> None:
    m = machine()
    out = m.handle(0.0, Press("screen"))
    assert m.state == "requesting"
    # feedback (screen + voice) comes before the network effect, in the same call
    assert shown(out) == ["requesting"] and spoken(out) == ["requesting"]
    assert out.index(of(out, Show)[0]) < out.index(of(out, SendRequest)[0])
    assert of(out, SendRequest) == [SendRequest("req-1")]
    assert reports(out) == ["button_pressed", "ride_requested"]


def test_full_ride_idle_to_arrived_to_idle() -> None:
    m = machine()
    to_searching(m)
    out = m.handle(3.5, Tick())
    assert of(out, PollRide) == [PollRide("req-1", "ride-1")]
    out = m.handle(4.0, RideReply("req-1", "ride-1", "assigned", CAR, eta_s=240))
    assert m.state == "assigned" and shown(out) == ["assigned"]
    speak = of(out, Speak)[0]
    assert speak.key == "assigned" and speak.params["plate"] == CAR.plate and speak.params["eta_min"] == 4
    assert of(out, Show)[0].view.eta_due == pytest.approx(244.0)
    assert "ride_assigned" in reports(out)
    assert m.handle(5.0, Tick()) == []  # nothing due before the poll interval
    assert of(m.handle(7.0, Tick()), PollRide)
    out = m.handle(7.5, RideReply("req-1", "ride-1", "arrived", CAR, eta_s=0))
    assert m.state == "arrived" and shown(out) == ["arrived"] and "ride_arrived" in reports(out)
    assert of(out, Show)[0].view.car == CAR  # the plate stays on screen while the car is at the gate
    assert m.handle(187.0, Tick()) == []  # the plate stays while the resident finds the car (3 min)
    out = m.handle(187.5, Tick())
    assert m.state == "idle" and shown(out) == ["idle"] and m.car is None


def test_request_answered_assigned_directly() -> None:
    m = machine()
    m.handle(0, Press())
    out = m.handle(1, RideReply("req-1", "ride-1", "assigned", CAR, eta_s=60))
    assert m.state == "assigned" and shown(out) == ["assigned"]


def test_assigned_updates_eta_without_repeating_voice() -> None:
    m = machine()
    to_assigned(m)
    m.handle(6.5, Tick())
    out = m.handle(7.0, RideReply("req-1", "ride-1", "assigned", CAR, eta_s=100))
    assert spoken(out) == [] and m.eta_due == pytest.approx(107.0)


def test_new_car_is_announced() -> None:
    m = machine()
    to_assigned(m)
    m.handle(6.5, Tick())
    other = Car("沪B·12345", "黄色", "荣威")
    out = m.handle(7.0, RideReply("req-1", "ride-1", "assigned", other, eta_s=100))
    assert spoken(out) == ["assigned"] and of(out, Speak)[0].params["plate"] == other.plate


def test_poll_waits_for_the_reply_in_flight() -> None:
    m = machine()
    to_searching(m)
    assert of(m.handle(3.5, Tick()), PollRide)
    assert not of(m.handle(10.0, Tick()), PollRide)  # the first poll has not answered yet


# -------------------------------------------------------------------------------- one press = one car
def test_double_press_orders_one_car_and_repeats_status() -> None:
    m = machine()
    m.handle(0, Press())
    out = m.handle(0.3, Press())
    assert of(out, SendRequest) == [] and spoken(out) == ["requesting"] and m.request_id == "req-1"
    m.handle(1, RideReply("req-1", "ride-1", "searching"))
    out = m.handle(2, Press("button"))
    assert of(out, SendRequest) == [] and spoken(out) == ["searching"] and m.state == "searching"


def test_press_while_assigned_repeats_plate_and_eta() -> None:
    m = machine()
    to_assigned(m)
    out = m.handle(63.5, Press("button"))
    assert spoken(out) == ["assigned"]
    assert of(out, Speak)[0].params == {
        "plate": CAR.plate,
        "colour": "white",
        "model": "Volkswagen Lavida",
        "colour_zh": "白色",
        "model_zh": "大众朗逸",
        "eta_min": 3,
        "minutes": 1,
    }
    assert m.state == "assigned" and not of(out, SendRequest)


def test_retry_after_timeout_reuses_the_request_id() -> None:
    m = machine()
    m.handle(0, Press())
    out = m.handle(25, Tick())  # the worker never answered
    assert m.state == "offline" and shown(out) == ["offline"] and spoken(out) == ["offline"]
    assert "central_unreachable" in reports(out)
    out = m.handle(30, Tick())
    assert of(out, SendRequest) == [SendRequest("req-1")]
    out = m.handle(31, CentralUnreachable("req-1", "connection refused"))
    assert spoken(out) == []  # already offline: no repeated announcement
    out = m.handle(36, Tick())
    assert of(out, SendRequest) == [SendRequest("req-1")]
    out = m.handle(36.2, RideReply("req-1", "ride-1", "searching"))
    assert m.state == "searching" and "central_reachable" in reports(out)


def test_press_while_offline_with_a_pending_order_does_not_order_again() -> None:
    m = machine()
    m.handle(0, Press())
    m.handle(1, CentralUnreachable("req-1", "timeout"))
    out = m.handle(2, Press())
    assert not of(out, SendRequest) and spoken(out) == ["offline"] and m.request_id == "req-1"


# ------------------------------------------------------------------------------------------ offline
def test_unreachable_goes_offline_at_once_and_reconnects_by_itself() -> None:
    m = machine()
    m.handle(0, Press())
    out = m.handle(0.2, CentralUnreachable("req-1", "connection refused"))
    assert m.state == "offline" and shown(out) == ["offline"] and spoken(out) == ["offline"]
    assert of(m.handle(4.9, Tick()), SendRequest) == []
    assert of(m.handle(5.2, Tick()), SendRequest) == [SendRequest("req-1")]
    out = m.handle(5.4, RideReply("req-1", "ride-1", "searching"))
    assert m.state == "searching"


def test_offline_during_search_keeps_polling_the_same_ride() -> None:
    m = machine()
    to_searching(m)
    m.handle(3.5, Tick())
    m.handle(4, CentralUnreachable("req-1", "timeout"))
    assert m.state == "offline"
    out = m.handle(9, Tick())
    assert of(out, PollRide) == [PollRide("req-1", "ride-1")]
    m.handle(9.2, RideReply("req-1", "ride-1", "assigned", CAR, eta_s=30))
    assert m.state == "assigned"


def test_undelivered_order_is_given_up_and_cancelled_in_case_it_got_through() -> None:
    m = machine()
    m.handle(0, Press())
    now = 0.0
    sent, out = 1, []
    while m.request_id is not None:
        now += 5
        out = m.handle(now, Tick())
        for e in out:
            if isinstance(e, SendRequest):
                sent += 1
                assert e.request_id == "req-1"
                m.handle(now + 0.1, CentralUnreachable(e.request_id, "timeout"))
    assert sent > 15  # retried all along, always with the same id
    assert m.state == "offline" and m.request_id is None and m.cancel_owed == "req-1"
    assert "ride_given_up" in reports(out) and of(out, CancelRide) == [CancelRide("req-1", None)]
    assert of(m.handle(now + 5, Tick()), Probe)  # still offline: keeps checking for the central by itself
    # offline with nothing ordered: a press gives the hotline, never a new order (a new ride starts from idle)
    out = m.handle(now + 2, Press())
    assert spoken(out) == ["offline"] and not of(out, SendRequest)


def test_network_down_at_idle_shows_offline_and_probes_until_up() -> None:
    m = machine()
    out = m.handle(0, NetworkDown("uploader failing"))
    assert m.state == "offline" and spoken(out) == ["offline"]
    out = m.handle(5, Tick())
    assert of(out, Probe) == [Probe()]
    m.handle(5.5, CentralUnreachable(None, "refused"))
    assert m.state == "offline"
    out = m.handle(10.5, Tick())
    assert of(out, Probe)
    out = m.handle(11, NetworkUp())
    assert m.state == "idle" and shown(out) == ["idle"]


def test_press_while_offline_without_an_order_gives_the_hotline_and_orders_nothing() -> None:
    m = machine()
    m.handle(0, NetworkDown())
    out = m.handle(1, Press())
    assert m.state == "offline" and spoken(out) == ["offline"] and not of(out, SendRequest)
    m.handle(2, NetworkUp())
    out = m.handle(3, Press())
    assert m.state == "requesting" and of(out, SendRequest) == [SendRequest("req-1")]


def test_network_up_resends_a_pending_order_at_once() -> None:
    m = machine()
    m.handle(0, Press())
    m.handle(0.5, CentralUnreachable("req-1", "refused"))
    out = m.handle(1, NetworkUp())
    assert of(out, SendRequest) == [SendRequest("req-1")]


def test_network_down_during_a_ride_is_left_to_the_ride_requests() -> None:
    m = machine()
    to_searching(m)
    assert m.handle(1, NetworkDown()) == [] and m.state == "searching"


def test_every_state_is_reachable_and_shown() -> None:
    seen = set()
    m = machine()
    record = lambda out: seen.update(shown(out))  # noqa: E731
    record(m.handle(0, NetworkDown()))
    record(m.handle(1, NetworkUp()))
    record(m.handle(2, Press()))
    record(m.handle(2.1, RideReply("req-1", "ride-1", "searching")))
    record(m.handle(5.1, Tick()))
    record(m.handle(5.2, RideReply("req-1", "ride-1", "assigned", CAR, 10)))
    record(m.handle(8.2, Tick()))
    record(m.handle(8.3, RideReply("req-1", "ride-1", "arrived", CAR, 0)))
    record(m.handle(9, Back()))
    record(m.handle(9.05, Press()))
    record(m.handle(9.1, Cancel()))
    record(m.handle(9.2, Press()))
    record(m.handle(10, Press()))
    record(m.handle(10.1, RideReply("req-3", "ride-3", "no_car")))
    record(m.handle(10.5, Help()))
    record(m.handle(10.55, HelpTakenIn()))
    record(m.handle(10.6, Back()))
    record(m.handle(11, Press()))
    record(m.handle(11.05, Press()))
    record(m.handle(11.1, CentralRejected("req-4", 401, "bad token")))
    record(m.handle(11.2, Press()))
    record(m.handle(11.3, Press()))
    record(m.handle(11.4, RideReply("req-5", "ride-5", "assigned", CAR, 60)))
    record(m.handle(11.5, Cancel()))
    record(m.handle(12, Back()))
    record(m.handle(11.4 + 60 + 300, Tick()))
    assert seen == set(STATES)
    assert seen >= ACTIVE_STATES


def test_plate_is_spoken_character_by_character() -> None:
    assert speakable_plate("沪A·D12345") == "沪 A D 1 2 3 4 5"
    assert speakable_plate("沪B-12 345") == "沪 B 1 2 3 4 5"


def test_resume_after_restart_polls_the_saved_ride_and_orders_nothing() -> None:
    m = machine()
    out = m.resume(0.0, "req-old", "ride-old")
    assert m.state == "searching" and of(out, PollRide) == [PollRide("req-old", "ride-old")]
    assert not of(out, SendRequest) and "ride_resumed" in reports(out)
    m.handle(0.2, RideReply("req-old", "ride-old", "assigned", CAR, eta_s=60))
    assert m.state == "assigned"


def test_resume_of_an_order_without_answer_resends_the_same_request_id() -> None:
    m = machine()
    out = m.resume(0.0, "req-old", None)
    assert m.state == "requesting" and of(out, SendRequest) == [SendRequest("req-old")]


@pytest.mark.parametrize("status", ["arrived", "no_car", "cancelled"])
def test_resumed_ride_closed_meanwhile_goes_quietly_to_idle(status: str) -> None:
    m = machine()
    m.resume(0.0, "req-old", "ride-old")
    out = m.handle(0.2, RideReply("req-old", "ride-old", status, CAR))
    assert m.state == "idle" and spoken(out) == ["idle"] and "ride_closed_while_down" in reports(out)
    assert m.active_ride() is None


# ------------------------------------------------------------------------------ issue 11: the kiosk flow
def test_press_on_arrived_repeats_the_plate_and_never_orders_a_second_taxi() -> None:
    m = machine()
    to_assigned(m)
    m.handle(4, RideReply("req-1", "ride-1", "arrived", CAR, eta_s=0))
    for t in (5, 20, 100):
        out = m.handle(t, Press("button"))
        assert spoken(out) == ["arrived"] and of(out, Speak)[0].params["plate"] == CAR.plate
        assert not of(out, SendRequest) and m.state == "arrived" and m.request_id is None
    assert m.handle(183.9, Tick()) == [] and m.state == "arrived"  # still the plate, 3 min after arrival
    assert shown(m.handle(184.1, Tick())) == ["idle"]
    assert of(m.handle(185, Press()), SendRequest) == [SendRequest("req-2")]  # a new ride, from idle


def test_back_on_arrived_closes_the_ride_at_once() -> None:
    m = machine()
    to_assigned(m)
    m.handle(4, RideReply("req-1", "ride-1", "arrived", CAR, eta_s=0))
    assert shown(m.handle(10, Back())) == ["idle"] and m.car is None


@pytest.mark.parametrize("how", ["keep", "timeout", "big button"])
def test_cancel_after_a_driver_accepted_asks_and_keeps_the_ride_unless_confirmed(how: str) -> None:
    m = machine()
    to_assigned(m)
    out = m.handle(10, Cancel())
    assert shown(out) == ["confirm_cancel"] and spoken(out) == ["confirm_cancel"] and not of(out, CancelRide)
    assert m.view().ride_state == "assigned" and m.view().car == CAR
    assert of(out, PollRide)  # the ride goes on under the question: polls continue
    m.handle(10.6, RideReply("req-1", "ride-1", "assigned", CAR, eta_s=200))
    assert m.shown == "confirm_cancel"
    if how == "keep":
        out = m.handle(12, Back())
    elif how == "timeout":
        assert m.handle(39.9, Tick()) == [] or m.shown == "confirm_cancel"
        out = m.handle(40.1, Tick())
    else:
        out = m.handle(12, Press("button"))
    assert "assigned" in shown(out) and m.shown == "assigned" and m.request_id == "req-1"
    assert not of(out, CancelRide) and "ride_cancelled" not in reports(out)


def test_confirmed_cancel_cancels_and_a_second_tap_on_the_same_place_is_harmless() -> None:
    m = machine()
    to_assigned(m)
    m.handle(10, Cancel())
    assert m.handle(10.3, Cancel()) == [] or m.shown == "confirm_cancel"  # an anxious second tap: nothing
    out = m.handle(12, ConfirmCancel())
    assert m.state == "cancelled" and of(out, CancelRide) == [CancelRide("req-1", "ride-1")]


def test_arrival_during_the_cancel_question_shows_the_plate() -> None:
    m = machine()
    to_assigned(m)
    m.handle(10, Cancel())
    m.handle(12.6, Tick())
    out = m.handle(13, RideReply("req-1", "ride-1", "arrived", CAR, eta_s=0))
    assert shown(out) == ["arrived"] and m.overlay is None
    assert m.handle(14, ConfirmCancel()) == [] or m.state == "arrived"


def poll_until(m: RideMachine, start: float, until: float, status: str = "assigned", eta_s: float = 0.0) -> list:
    """Tick every second from ``start`` + 1 to ``until``, answering every poll with ``status``; every effect."""
    seen: list = []
    now = start
    while now + 1 <= until:
        now += 1
        out = m.handle(now, Tick())
        seen += out
        if of(out, PollRide):
            seen += m.handle(
                now + 0.1, RideReply("req-1", "ride-1", status, CAR if status != "searching" else None, eta_s)
            )
    return seen


def test_car_late_five_minutes_after_the_promised_eta_with_hotline_and_help() -> None:
    m = machine()
    to_assigned(m)  # assigned at 3.5 with eta 240 s: due at 243.5, late from 543.5
    seen = poll_until(m, 3.5, 542.5)
    assert m.state == "assigned" and "car_late" not in shown(seen)
    seen = poll_until(m, 542.5, 543.5)
    assert m.state == "car_late" and shown(seen) == ["car_late"] and spoken(seen) == ["car_late"]
    assert "ride_late" in reports(seen)
    seen = poll_until(m, 543.5, 600)  # still assigned at the central: stays late, polls go on
    assert m.state == "car_late" and not shown(seen)
    out = m.handle(601, Cancel())
    assert shown(out) == ["confirm_cancel"]  # a driver accepted: still asks first
    m.handle(602, Back())
    m.handle(603, Tick())
    out = m.handle(603.1, RideReply("req-1", "ride-1", "arrived", CAR, eta_s=0))
    assert m.state == "arrived" and shown(out) == ["arrived"]


def test_a_late_car_that_never_comes_is_cancelled_after_assigned_max() -> None:
    m = machine()
    to_assigned(m)
    seen = poll_until(m, 3.5, 2703.5)
    assert "ride_expired" in reports(seen) and m.state == "idle"
    assert CancelRide("req-1", "ride-1") in of(seen, CancelRide)


def test_searching_shows_minutes_waited_and_reassures_every_minute() -> None:
    m = machine()
    to_searching(m)  # pressed at 0, searching from 0.5
    assert m.view().waiting_since == 0.0
    seen = poll_until(m, 0.5, 200, status="searching")
    prompts = [e for e in of(seen, Speak) if e.key == "searching_wait"]
    assert [p.params["minutes"] for p in prompts] == [1, 2, 3]
    assert not shown(seen)  # a prompt, not a new screen


def test_plain_cancel_before_a_driver_accepts_needs_no_confirmation() -> None:
    m = machine()
    to_searching(m)
    out = m.handle(2, Cancel())
    assert m.state == "cancelled" and "confirm_cancel" not in shown(out)
