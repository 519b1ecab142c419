"""Central: taxi rides for kiosks with the simulated fleet (idempotent request id, assignment, arrival, cancel)."""

from __future__ import annotations

import re

import pytest
import requests

from central.config import FleetSection
from central.fleet import plan_dispatch, ride_view

KIOSK = "cbxc-north-gate-kiosk"
PICKUP = "长白新村北门 Changbai Xincun North Gate"
PLATE = re.compile(r"^沪[AB]·(?:[DF]\d{5}|\d{5}|[A-HJ-NP-Z]\d{4})$")


def order(central, token: str, request_id: str, **body) -> requests.Response:
    return requests.post(
        f"{central.url}/api/v1/rides",
        json={"request_id": request_id, **body},
        headers=central.node_headers(token),
        timeout=10,
    )


def status(central, token: str, ride_id: str) -> dict:
    answer = requests.get(f"{central.url}/api/v1/rides/{ride_id}", headers=central.node_headers(token), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def cancel(central, token: str, ride_id: str) -> requests.Response:
    return requests.post(
        f"{central.url}/api/v1/rides/{ride_id}/cancel", json={}, headers=central.node_headers(token), timeout=10
    )


@pytest.fixture
def kiosk(central) -> str:
    return central.register(KIOSK, "kiosk", location="North gate", pickup_point=PICKUP)


def test_the_same_request_id_is_the_same_ride_never_a_second_car(central, kiosk):
    first = order(central, kiosk, "press-0001", phone_tail="3642")
    assert first.status_code == 201
    ride = first.json()
    assert ride["status"] == "searching" and ride["pickup_point"] == PICKUP and ride["phone_tail"] == "3642"
    again = order(central, kiosk, "press-0001", phone_tail="3642")
    assert again.status_code == 200 and again.json()["ride_id"] == ride["ride_id"]
    other = order(central, kiosk, "press-0002")
    assert other.status_code == 201 and other.json()["ride_id"] != ride["ride_id"]
    assert len(central.rides()) == 2


@pytest.fixture
def slow_fleet(make_central):
    """A fleet at real speed: only the test's clock.advance() moves a ride on, however slow the machine."""
    central = make_central(fleet={"time_scale": 1.0})
    return central, central.register(KIOSK, "kiosk", pickup_point=PICKUP)


def test_a_ride_is_assigned_counts_down_and_arrives(slow_fleet):
    central, kiosk = slow_fleet
    ride = order(central, kiosk, "press-0003").json()
    assert status(central, kiosk, ride["ride_id"])["status"] == "searching"
    central.clock.advance(2.01)  # past the longest assign delay
    assigned = status(central, kiosk, ride["ride_id"])
    assert assigned["status"] == "assigned"
    car = assigned["assigned"]
    assert PLATE.match(car["plate"]), car["plate"]
    assert car["colour"] and car["colour_zh"] and car["model"] and car["model_zh"]
    assert 0 < assigned["eta_s"] <= 60
    central.clock.advance(10)
    later = status(central, kiosk, ride["ride_id"])
    assert later["status"] == "assigned" and later["eta_s"] <= assigned["eta_s"] - 9
    assert later["assigned"] == car
    central.clock.advance(60)
    arrived = status(central, kiosk, ride["ride_id"])
    assert arrived["status"] == "arrived" and arrived["eta_s"] == 0 and arrived["assigned"] == car
    assert cancel(central, kiosk, ride["ride_id"]).status_code == 409  # the car is there: nothing to cancel


def test_pickup_point_falls_back_to_the_kiosk_location_or_is_given(central):
    token = central.register("cbxc-east-gate-kiosk", "kiosk", location="East gate")
    assert order(central, token, "r1").json()["pickup_point"] == "East gate"
    assert order(central, token, "r2", pickup_point="Clinic door").json()["pickup_point"] == "Clinic door"


def test_no_car_found(make_central):
    central = make_central(fleet={"no_car_rate": 1.0})
    token = central.register(KIOSK, "kiosk", pickup_point=PICKUP)
    ride = order(central, token, "press-0004").json()
    assert ride["status"] == "searching"
    central.clock.advance(1.0)
    answer = status(central, token, ride["ride_id"])
    assert answer["status"] == "no_car" and answer["assigned"] is None and answer["no_car_at"] is not None
    assert cancel(central, token, ride["ride_id"]).status_code == 409


def test_cancel_while_searching_and_again(central, kiosk):
    ride = order(central, kiosk, "press-0005").json()
    first = cancel(central, kiosk, ride["ride_id"])
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert cancel(central, kiosk, ride["ride_id"]).json()["cancelled_at"] == first.json()["cancelled_at"]
    central.clock.advance(120)
    assert status(central, kiosk, ride["ride_id"])["status"] == "cancelled"  # never assigned after a cancel
    again = order(central, kiosk, "press-0005")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"  # same request: same ride


def test_cancel_after_assignment_keeps_the_car_details(slow_fleet):
    central, kiosk = slow_fleet
    ride = order(central, kiosk, "press-0006").json()
    central.clock.advance(2.01)
    assert status(central, kiosk, ride["ride_id"])["status"] == "assigned"
    cancelled = cancel(central, kiosk, ride["ride_id"]).json()
    assert cancelled["status"] == "cancelled" and cancelled["assigned"]["plate"]


def test_only_kiosks_order_and_only_their_own_rides(central, kiosk):
    lift = central.register("cbxc-b7-u2-lift1", "elevator")
    assert order(central, lift, "press-0007").status_code == 403
    ride = order(central, kiosk, "press-0008").json()
    other = central.register("cbxc-east-gate-kiosk", "kiosk")
    peek = requests.get(f"{central.url}/api/v1/rides/{ride['ride_id']}", headers=central.node_headers(other))
    assert peek.status_code == 403
    assert cancel(central, other, ride["ride_id"]).status_code == 403
    as_operator = requests.get(f"{central.url}/api/v1/rides/{ride['ride_id']}", headers=central.operator_headers)
    assert as_operator.status_code == 200
    unknown = requests.get(f"{central.url}/api/v1/rides/ride-nope", headers=central.node_headers(kiosk))
    assert unknown.status_code == 404
    assert requests.post(f"{central.url}/api/v1/rides", json={"request_id": "x"}).status_code == 401


def test_ride_request_is_validated(central, kiosk):
    bad = order(central, kiosk, "", phone_tail="36420")
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"request_id", "phone_tail"}


def test_a_restarted_central_keeps_its_rides(central, kiosk):
    ride = order(central, kiosk, "press-0009").json()
    central.stop()
    central.start()
    again = order(central, kiosk, "press-0009")
    assert again.status_code == 200 and again.json()["ride_id"] == ride["ride_id"]


# ------------------------------------------------------------------------------------ the pure fleet
FLEET = FleetSection(seed=3, assign_delay_min_s=20, assign_delay_max_s=90, eta_min_s=120, eta_max_s=420)


def test_same_seed_and_request_give_the_same_car():
    assert plan_dispatch(FLEET, "kiosk\x1fr1") == plan_dispatch(FLEET, "kiosk\x1fr1")
    plans = [plan_dispatch(FLEET, f"kiosk\x1fr{i}") for i in range(200)]
    assert len({p.plate for p in plans}) > 150
    assert all(PLATE.match(p.plate) for p in plans)
    assert all(20 <= p.assign_after_s <= 90 and 120 <= p.eta_s <= 420 for p in plans)
    share = sum(p.no_car for p in plans) / len(plans)
    assert 0.0 < share < 0.15  # default no_car_rate 0.05
    other_seed = FleetSection(seed=4, assign_delay_min_s=20, assign_delay_max_s=90, eta_min_s=120, eta_max_s=420)
    assert plan_dispatch(other_seed, "kiosk\x1fr1") != plans[1]


def test_ride_view_timeline_at_time_scale():
    plan = plan_dispatch(FleetSection(no_car_rate=0.0), "k\x1fr")
    start, scale = 1000.0, 10.0
    assigned_at = start + plan.assign_after_s / scale
    arrives_at = assigned_at + plan.eta_s / scale
    assert ride_view(plan, start, assigned_at - 0.001, scale)["status"] == "searching"
    at_assign = ride_view(plan, start, assigned_at, scale)
    assert at_assign["status"] == "assigned" and at_assign["eta_s"] == round(plan.eta_s)
    assert ride_view(plan, start, arrives_at, scale)["status"] == "arrived"
    late_cancel = ride_view(plan, start, arrives_at + 5, scale, cancelled_at=arrives_at + 1)
    assert late_cancel["status"] == "arrived"  # a cancel after arrival changes nothing


def test_an_operator_lists_and_cancels_rides(central, kiosk):
    ride = order(central, kiosk, "press-0010").json()
    assert [r["ride_id"] for r in central.rides()] == [ride["ride_id"]]
    answer = requests.post(
        f"{central.url}/api/v1/rides/{ride['ride_id']}/cancel",
        json={"reason": "resident called the centre"},
        headers=central.operator_headers,
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert status(central, kiosk, ride["ride_id"])["status"] == "cancelled"
