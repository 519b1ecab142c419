"""The `central` test fixture itself: injected faults, outage (stop/start on the same port and database), paging."""

from __future__ import annotations

import time

import pytest
import requests

from tests.fixtures.central import wire_event

LIFT = "cbxc-b7-u2-lift1"


def test_injected_failures_come_first_then_the_real_central(central):
    token = central.register(LIFT)
    central.faults.fail_next(2, status=500)
    central.faults.fail_next(1, status=429, retry_after=7)
    central.faults.fail_next(1, status=200, body=b"<html>captive portal</html>")
    event = wire_event(LIFT, 1)
    answers = [central.post_events(token, [event]) for _ in range(5)]
    assert [a.status_code for a in answers] == [500, 500, 429, 200, 200]
    assert answers[2].headers["Retry-After"] == "7"
    with pytest.raises(ValueError):
        answers[3].json()
    assert answers[4].json()["accepted"] == [event["id"]]
    assert [h["status"] for h in central.faults.hits] == [500, 500, 429, 200]
    assert central.faults.pending() == 0
    assert len(central.events(LIFT)) == 1


def test_faults_match_only_their_path(central):
    token = central.register(LIFT)
    central.faults.fail_next(1, status=503, path_prefix="/api/v1/rides")
    assert central.post_events(token, [wire_event(LIFT, 1)]).status_code == 200
    assert central.faults.pending() == 1
    central.faults.clear()
    assert central.faults.pending() == 0


def test_a_slow_answer_is_handled_after_the_client_gave_up(central):
    token = central.register(LIFT)
    central.faults.fail_next(1, status=None, delay_s=1.0)
    event = wire_event(LIFT, 1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            f"{central.url}/api/v1/events",
            json={"node_wall_time": time.time(), "events": [event]},
            headers=central.node_headers(token),
            timeout=(2, 0.3),
        )
    deadline = time.monotonic() + 10
    while not central.events(LIFT):  # the central stored it although nobody heard the answer
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert central.post_events(token, [event]).json()["accepted"] == [event["id"]]  # the replay
    assert len(central.events(LIFT)) == 1


def test_an_outage_refuses_connections_then_serves_the_same_data_on_the_same_port(central):
    token = central.register(LIFT)
    central.post_events(token, [wire_event(LIFT, 1)])
    url = central.url
    central.stop()
    assert not central.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/api/v1/health", timeout=2)
    central.start()
    assert central.url == url
    assert len(central.events(LIFT)) == 1
    assert central.post_events(token, [wire_event(LIFT, 2)]).status_code == 200  # the token still works


def test_events_helper_reads_every_page(central):
    token = central.register(LIFT)
    for start in range(0, 10_050, 5000):
        batch = [wire_event(LIFT, seq) for seq in range(start + 1, min(start + 5000, 10_050) + 1)]
        assert central.post_events(token, batch).status_code == 200
    events = central.events(LIFT)
    assert len(events) == 10_050 and events[-1]["seq"] == 10_050
