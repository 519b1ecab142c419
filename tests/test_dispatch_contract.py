"""The taxi dispatch adapter against a dispatcher on loopback that speaks the contract (a real HTTP server), with
the kiosk's own client (kiosk/client.py) on the other side: create, signed callbacks, cancel, and a dispatcher
that is down, refuses, hangs or goes quiet, each giving the kiosk no_car at once, never a hang."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from central.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from kiosk.client import RidesClient

SECRET = "dispatch-shared-secret-0001"
KIOSK = "cbxc-north-gate-kiosk"


class Dispatcher:
    """A dispatcher on 127.0.0.1: checks each request's signature, records it, answers as told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, bool]] = []
        self.answer = (201, {"provider_ride_id": "P-1"})
        self.hang_s = 0.0
        self.closed = False
        self.released = threading.Event()  # ends a hang at close()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = verify(
                    SECRET,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    raw,
                    self.headers.get(SIGNATURE_HEADER, ""),
                    time.time(),
                )
                outer.requests.append((self.path, json.loads(raw), ok))
                if outer.hang_s:
                    outer.released.wait(outer.hang_s)
                status, body = outer.answer
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.released.set()
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def dispatcher():
    d = Dispatcher()
    yield d
    d.close()


def kiosk_client(central) -> RidesClient:
    token = central.register(KIOSK, "kiosk", pickup_point="长白新村北门")
    return RidesClient(central.url, token, "长白新村北门", read_timeout_s=10.0)


def callback(central, body: dict, secret: str = SECRET) -> requests.Response:
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, raw)}
    return requests.post(f"{central.url}/api/v1/dispatch/callback", data=raw, headers=headers, timeout=10)


def http_dispatch(url: str, **extra) -> dict:
    return {"provider": "http", "url": url, "secret": SECRET, "timeout_s": 1.0, **extra}


def test_a_ride_goes_to_the_dispatcher_and_its_signed_callbacks_move_it(make_central, dispatcher) -> None:
    central = make_central(dispatch=http_dispatch(dispatcher.url))
    kiosk = kiosk_client(central)
    ride = kiosk.request("press-1", phone_tail="3642")
    assert ride.status == "searching"
    path, body, signed = dispatcher.requests[0]
    assert path == "/rides" and signed and body["schema"] == "changbai-dispatch/1"
    assert body["pickup_point"] == "长白新村北门" and body["phone_tail"] == "3642"
    assert body["callback_url"] == central.url + "/api/v1/dispatch/callback"
    car = {
        "plate": "沪A·D12345",
        "colour_zh": "天蓝色",
        "model_zh": "大众途安",
        "colour": "sky blue",
        "model": "VW Touran",
    }
    assert callback(central, {"ride_id": ride.ride_id, "status": "assigned", "car": car, "eta_s": 180}).json()[
        "changed"
    ]
    now = kiosk.status(ride.ride_id)
    assert now.car is not None and now.eta_s is not None
    assert now.status == "assigned" and now.car.plate == "沪A·D12345" and 170 <= now.eta_s <= 180
    forged = callback(central, {"ride_id": ride.ride_id, "status": "no_car"}, secret="someone-else-secret-000")
    assert forged.status_code == 401 and forged.json()["schema"] == "changbai-error/1"
    assert kiosk.status(ride.ride_id).status == "assigned"
    callback(central, {"ride_id": ride.ride_id, "status": "arrived"})
    assert kiosk.status(ride.ride_id).status == "arrived"
    assert not callback(central, {"ride_id": ride.ride_id, "status": "searching"}).json()["changed"]  # ended stays
    assert callback(central, {"ride_id": "ride-nope", "status": "arrived"}).status_code == 404
    assert kiosk.request("press-1").ride_id == ride.ride_id and len(dispatcher.requests) == 1  # a retried press


def test_cancel_reaches_the_dispatcher(make_central, dispatcher) -> None:
    central = make_central(dispatch=http_dispatch(dispatcher.url))
    kiosk = kiosk_client(central)
    ride = kiosk.request("press-2")
    assert kiosk.cancel(ride.ride_id).status == "cancelled"
    path, body, signed = dispatcher.requests[-1]
    assert path == "/rides/P-1/cancel" and body == {"ride_id": ride.ride_id} and signed


@pytest.mark.parametrize("case", ["down", "refuses", "hangs", "garbage"])
def test_a_dispatcher_that_fails_gives_the_kiosk_no_car_at_once(make_central, dispatcher, case) -> None:
    url = dispatcher.url
    if case == "down":
        dispatcher.close()
    elif case == "refuses":
        dispatcher.answer = (409, {"reason": "no cars in this area"})
    elif case == "hangs":
        dispatcher.hang_s = 60.0  # far beyond the adapter's 1 s timeout: an answer before it is the timeout's doing
    else:
        dispatcher.answer = (200, ["not", "the", "contract"])
    central = make_central(dispatch=http_dispatch(url))
    kiosk = kiosk_client(central)
    started = time.monotonic()
    ride = kiosk.request(f"press-{case}")
    took = time.monotonic() - started
    # "at once": the kiosk's request returns with no_car while the dispatcher still hangs (60 s) and long before
    # the search timeout (120 s). The bound leaves room for a loaded machine; the 1 s timeout itself is the
    # adapter's setting, not a figure this test can measure reliably.
    assert ride.status == "no_car" and took < 20.0, (ride, took)
    reason = central.get(f"/rides/{ride.ride_id}")["no_car_reason"]
    assert reason == ("provider_refused" if case == "refuses" else "provider_down")


def test_a_dispatcher_that_goes_quiet_ends_in_no_car_after_the_search_timeout(make_central, dispatcher) -> None:
    central = make_central(dispatch=http_dispatch(dispatcher.url, search_timeout_s=120))
    kiosk = kiosk_client(central)
    ride = kiosk.request("press-quiet")
    assert ride.status == "searching"
    central.clock.advance(121)
    assert kiosk.status(ride.ride_id).status == "no_car"
    assert central.get(f"/rides/{ride.ride_id}")["no_car_reason"] == "no_answer"


def test_the_simulated_fleet_stays_the_default_provider(central) -> None:
    kiosk = kiosk_client(central)
    ride = kiosk.request("press-fleet")
    assert ride.status in ("searching", "assigned")
    assert central.get(f"/rides/{ride.ride_id}")["no_car_reason"] is None
