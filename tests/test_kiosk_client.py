"""The ride flow against the real central on loopback: client + controller + machine, no screen, no GPIO."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests

from common.clock import SystemClock
from common.speech.voice import Voice
from common.spoken import phone_for_listening, plate_for_listening
from kiosk.client import CentralRejectedError, CentralUnreachableError, RidesClient, parse_ride
from kiosk.config import RideTimingSection
from kiosk.controller import KioskController
from kiosk.ride import RideMachine
from kiosk.ride_events import Report
from kiosk.texts import load_texts
from tests.conftest import eventually
from tests.speech_helpers import RecordingSpeaker

NODE = "cbxc-north-gate-kiosk"
FAST = RideTimingSection(
    poll_interval_s=0.1,
    retry_interval_s=0.2,
    reply_timeout_s=5,
    request_give_up_s=30,
    search_give_up_s=30,
    assigned_max_s=60,
    result_hold_s=20,
)


class Flow:
    """A controller wired to the central, its worker running; ``wait_for(state)`` ticks in real time."""

    def __init__(self, url: str, token: str | None, read_timeout_s: float = 3.0) -> None:
        self.client = RidesClient(url, token, "长白新村北门", connect_timeout_s=1, read_timeout_s=read_timeout_s)
        self.speaker = RecordingSpeaker()
        self.reports: list[Report] = []
        self.views: list[str] = []
        self.controller = KioskController(
            RideMachine(FAST, now=time.monotonic()),
            self.client,
            SystemClock(),
            load_texts(None, "长白新村北门", "021-6543 2100"),
            voice=Voice(self.speaker),
            record=self.reports.append,
        )
        self.controller.add_listener(lambda view: self.views.append(view.state))
        self.controller.start()

    def wait_for(self, *states: str, timeout: float = 10.0) -> str:
        def reached() -> str:
            self.controller.tick()
            return self.controller.state if self.controller.state in states else ""

        return eventually(reached, timeout, what=f"the kiosk in {states}; it showed {self.views}")

    def close(self) -> None:
        self.controller.stop()
        self.client.close()


@pytest.fixture
def flow(central) -> Iterator[Callable[..., Flow]]:
    made: list[Flow] = []

    def make(token: str | None = "register", read_timeout_s: float = 3.0) -> Flow:
        if token == "register":
            token = central.register(NODE, "kiosk", location="North gate", pickup_point="长白新村北门")
        made.append(Flow(central.url, token, read_timeout_s))
        return made[-1]

    yield make
    for f in made:
        f.close()


def test_press_orders_one_car_that_is_assigned_and_arrives(central, flow) -> None:
    f = flow()
    f.controller.press("screen")
    assert f.views[0] == "requesting"  # on screen before any network answer
    f.wait_for("assigned")
    view = f.controller.view()
    rides = central.rides()
    assert len(rides) == 1 and rides[0]["node_id"] == NODE and rides[0]["pickup_point"] == "长白新村北门"
    assert view.car is not None and view.car.plate == rides[0]["assigned"]["plate"]
    assert view.car.colour_zh == rides[0]["assigned"]["colour_zh"]
    assert any(plate_for_listening(view.car.plate) in s for s in f.speaker.texts)
    f.wait_for("arrived", timeout=15)
    assert [r.kind for r in f.reports][:2] == ["button_pressed", "ride_requested"]
    assert "ride_arrived" in [r.kind for r in f.reports]


def test_presses_while_active_never_order_a_second_car(central, flow) -> None:
    f = flow()
    for _ in range(5):
        f.controller.press("button")
    f.wait_for("searching", "assigned")
    f.controller.press("screen")
    f.wait_for("assigned")
    f.controller.press("screen")
    assert len(central.rides()) == 1
    assert f.controller.counts["requests"] == 1


def test_central_down_goes_offline_at_once_then_reconnects_with_the_same_request(central, flow) -> None:
    f = flow()
    central.stop()
    f.controller.press("screen")
    f.wait_for("offline", timeout=5)
    assert any(phone_for_listening("021-6543 2100") in s for s in f.speaker.texts)
    assert "central_unreachable" in [r.kind for r in f.reports]
    central.start()
    f.wait_for("assigned", timeout=10)
    assert len(central.rides()) == 1
    assert f.controller.counts["requests"] >= 2  # retried, with one request id: one ride


def test_failed_order_is_retried_without_a_second_car(central, flow) -> None:
    f = flow()
    central.faults.fail_next(1, status=502, path_prefix="/api/v1/rides")
    f.controller.press("screen")
    f.wait_for("assigned", timeout=10)
    assert len(central.rides()) == 1


def test_order_stored_but_answer_lost_is_the_same_ride_on_retry(central, flow) -> None:
    f = flow(read_timeout_s=0.5)
    # the central stores the ride after the kiosk gave up waiting: the retry must find it, not order another
    central.faults.fail_next(1, status=None, delay_s=1.0, path_prefix="/api/v1/rides")
    f.controller.press("screen")
    f.wait_for("offline", timeout=5)
    f.wait_for("searching", "assigned", timeout=10)
    eventually(lambda: central.faults.delayed_done == 1, what="the central handles the delayed original")
    assert len(central.rides()) == 1
    assert f.controller.counts["requests"] >= 2


def test_cancel_reaches_the_central(central, flow) -> None:
    f = flow()
    f.controller.press("screen")
    f.wait_for("searching", "assigned")
    f.controller.cancel("screen")
    assert f.controller.state == "cancelled"

    def cancelled() -> bool:
        f.controller.tick()  # the kiosk takes the central's answer on a tick: it owes no cancel after it
        return central.rides()[0]["status"] == "cancelled" and f.controller.machine.cancel_owed is None

    eventually(cancelled, 10, 0.05, "the ride cancelled at the central, and the kiosk told so")


def test_unknown_token_shows_the_error_screen(central, flow) -> None:
    f = flow(token="not-a-token")
    f.controller.press("screen")
    f.wait_for("error")
    assert central.rides() == []
    assert any(r.kind == "central_error" and r.payload["http_status"] == 401 for r in f.reports)


def test_missing_token_file_is_an_error_not_a_crash(central, flow) -> None:
    f = flow(token=None)
    f.controller.press("screen")
    assert f.wait_for("error") == "error"
    assert central.rides() == []  # nothing ordered without a token
    errors = [r for r in f.reports if r.kind == "central_error"]
    assert errors and "no node token" in errors[0].payload["reason"], f.reports


def test_client_error_classes(central) -> None:
    token = central.register(NODE, "kiosk")
    client = RidesClient(central.url, token, "北门", connect_timeout_s=1, read_timeout_s=2)
    try:
        first = client.request("req-abc")
        assert first.status == "searching" and client.request("req-abc").ride_id == first.ride_id
        with pytest.raises(CentralRejectedError) as info:
            client.request("bad id with spaces")
        assert info.value.http_status == 422
        with pytest.raises(CentralRejectedError):
            client.status("ride-does-not-exist")
        client.probe()
        central.faults.fail_next(1, status=503, path_prefix="/api/v1/rides")
        with pytest.raises(CentralUnreachableError):
            client.status(first.ride_id)
        central.faults.fail_next(1, status=200, body=b"<html>captive portal</html>", path_prefix="/api/v1/rides")
        with pytest.raises(CentralRejectedError):
            client.status(first.ride_id)
    finally:
        client.close()
    dead = RidesClient("http://127.0.0.1:9", "t", "北门", connect_timeout_s=0.5, read_timeout_s=0.5)
    with pytest.raises(CentralUnreachableError):
        dead.request("req-1")
    with pytest.raises(CentralUnreachableError):
        dead.probe()
    dead.close()


def test_elevator_token_may_not_order_rides(central) -> None:
    token = central.register("cbxc-b7-u2-lift1", "elevator")
    client = RidesClient(central.url, token, "北门")
    with pytest.raises(CentralRejectedError) as info:
        client.request("req-1")
    assert info.value.http_status == 403
    client.close()


@pytest.mark.parametrize("bad", [None, [], {"status": "searching"}, {"ride_id": "r1"}])
def test_reply_outside_the_contract_is_rejected(bad: object) -> None:
    with pytest.raises(CentralRejectedError):
        parse_ride(bad)


def test_token_never_in_the_error_text(central) -> None:
    client = RidesClient("http://127.0.0.1:9", "secret-token-123", "北门", connect_timeout_s=0.3, read_timeout_s=0.3)
    with pytest.raises(CentralUnreachableError) as info:
        client.request("req-1")
    assert "secret-token-123" not in str(info.value)
    client.close()
    assert requests  # the client speaks requests; nothing else is mocked here
