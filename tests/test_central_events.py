"""Central: event ingest (idempotent by id), validation, body limits, seq gaps and clock correction."""

from __future__ import annotations

import http.client
import json
import time

import pytest
import requests

from tests.fixtures.central import wire_event

pytestmark = pytest.mark.both_engines  # the same cases on SQLite and PostgreSQL

LIFT = "cbxc-b7-u2-lift1"


@pytest.fixture
def lift(central) -> str:
    return central.register(LIFT, "elevator", location="Building 7, Unit 2")


def test_a_replayed_batch_is_acknowledged_and_stored_once(central, lift):
    batch = [wire_event(LIFT, seq) for seq in range(1, 6)]
    first = central.post_events(lift, batch)
    assert first.status_code == 200
    assert first.json()["accepted"] == [e["id"] for e in batch] and first.json()["rejected"] == []
    again = central.post_events(lift, batch)  # the node did not see the answer and sends it again
    assert again.status_code == 200 and again.json()["accepted"] == [e["id"] for e in batch]
    overlap = central.post_events(lift, batch[3:] + [wire_event(LIFT, 6)])
    assert len(overlap.json()["accepted"]) == 3
    stored = central.events(LIFT)
    assert [e["seq"] for e in stored] == [1, 2, 3, 4, 5, 6]
    assert len({e["id"] for e in stored}) == 6
    assert central.node(LIFT)["replays"] == 7 and central.node(LIFT)["events_received"] == 6


def test_stored_event_keeps_every_wire_field(central, lift):
    event = wire_event(
        LIFT,
        1,
        kind="trapped_passenger",
        severity="urgent",
        state="raised",
        priority="alert",
        payload={"door_closed_s": 91.5, "note": "电梯困人"},
        alert_id="4a1f7d0e-1111-4222-8333-944455556666",
        recipients=["property_management", "maintenance"],
    )
    central.post_events(lift, [event])
    (stored,) = central.events(LIFT)
    for key, value in event.items():
        assert stored[key] == value, key


def test_a_malformed_body_is_422_naming_the_field(central, lift):
    url = f"{central.url}/api/v1/events"
    headers = central.node_headers(lift)
    no_events = requests.post(url, json={"node_wall_time": 1.0}, headers=headers, timeout=10)
    assert no_events.status_code == 422
    assert no_events.json()["fields"] == ["events"] and "events" in no_events.json()["message"]
    text_time = requests.post(url, json={"node_wall_time": "noon", "events": []}, headers=headers, timeout=10)
    assert text_time.status_code == 422 and text_time.json()["fields"] == ["node_wall_time"]
    not_json = requests.post(url, data=b"{not json", headers={**headers, "Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"] == "invalid_body"


def test_invalid_events_are_rejected_one_by_one_with_the_reason(central, lift):
    good = wire_event(LIFT, 1)
    bad_severity = wire_event(LIFT, 2, severity="catastrophic")
    bad_id = wire_event(LIFT, 3, id="not-a-uuid")
    text_synced = wire_event(LIFT, 4, clock_synced="yes")
    bad_recipient = wire_event(LIFT, 5, recipients=["neighbour"])
    answer = central.post_events(lift, [good, bad_severity, bad_id, text_synced, bad_recipient, "junk"])
    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == [good["id"]]
    reasons = {r["index"]: r for r in body["rejected"]}
    assert reasons[1]["id"] == bad_severity["id"] and reasons[1]["reason"].startswith("severity:")
    assert reasons[2]["reason"].startswith("id:") and "UUID" in reasons[2]["reason"]
    assert reasons[3]["reason"].startswith("clock_synced:")
    assert reasons[4]["reason"].startswith("recipients[0]:")
    assert reasons[5]["id"] is None
    assert [e["id"] for e in central.events(LIFT)] == [good["id"]]


def test_one_oversize_event_is_rejected_not_the_batch(make_central):
    central = make_central(server={"max_event_bytes": 1024})
    token = central.register(LIFT)
    big = wire_event(LIFT, 1, payload={"blob": "x" * 2000})
    small = wire_event(LIFT, 2)
    body = central.post_events(token, [big, small]).json()
    assert body["accepted"] == [small["id"]]
    assert body["rejected"][0]["id"] == big["id"] and "bytes" in body["rejected"][0]["reason"]


def test_an_oversize_body_is_413_by_content_length_and_while_streaming(make_central):
    central = make_central(server={"max_body_bytes": 4096})
    token = central.register(LIFT)
    events = [wire_event(LIFT, seq, payload={"pad": "x" * 200}) for seq in range(1, 30)]
    declared = central.post_events(token, events)
    assert declared.status_code == 413 and declared.json()["error"] == "body_too_large"

    # chunked transfer: no Content-Length, the limit is enforced on the bytes as they arrive
    payload = json.dumps({"node_wall_time": time.time(), "events": events}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", central.port, timeout=10)
    try:
        chunks = (payload[i : i + 1000] for i in range(0, len(payload), 1000))
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        conn.request("POST", "/api/v1/events", body=chunks, headers=headers, encode_chunked=True)
        streamed = conn.getresponse()
        assert streamed.status == 413
        assert json.loads(streamed.read())["error"] == "body_too_large"
    finally:
        conn.close()
    assert central.events() == []
    small = central.post_events(token, events[:2])
    assert small.status_code == 200 and len(small.json()["accepted"]) == 2


def test_too_many_events_in_one_batch_is_413(make_central):
    central = make_central(server={"max_events_per_batch": 10})
    token = central.register(LIFT)
    answer = central.post_events(token, [wire_event(LIFT, seq) for seq in range(1, 12)])
    assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"
    assert central.events() == []


def test_missing_seq_numbers_are_reported_as_gaps(central, lift):
    central.post_events(lift, [wire_event(LIFT, s) for s in (3, 4, 5, 8, 12)])
    node = central.node(LIFT)
    assert node["seq_gaps"] == [[1, 2], [6, 7], [9, 11]]
    assert node["seq_missing"] == 7 and node["max_seq"] == 12
    assert central.nodes()[0]["seq_missing"] == 7
    central.post_events(lift, [wire_event(LIFT, s) for s in (1, 2, 6, 7, 9, 10, 11)])  # late, not lost
    assert central.node(LIFT)["seq_gaps"] == [] and central.node(LIFT)["seq_missing"] == 0


def test_a_reused_seq_number_is_counted_not_hidden(central, lift):
    central.post_events(lift, [wire_event(LIFT, 1), wire_event(LIFT, 2)])
    central.post_events(lift, [wire_event(LIFT, 2)])  # a different event with the same number
    node = central.node(LIFT)
    assert node["seq_conflicts"] == 1 and node["seq_missing"] == 0 and node["events_received"] == 3


def test_unsynced_wall_time_is_corrected_by_the_nodes_own_clock(central, lift):
    # the node booted without NTP: its clock reads 1970 + a bit; the event happened 120 s before the upload
    node_now = 86_400.0
    event = wire_event(LIFT, 1, wall_time=node_now - 120.0, clock_synced=False)
    synced = wire_event(LIFT, 2, wall_time=1_790_000_000.0, clock_synced=True)
    before = time.time()
    central.post_events(lift, [event, synced], node_wall_time=node_now)
    after = time.time()
    stored = {e["seq"]: e for e in central.events(LIFT)}
    corrected = stored[1]
    assert corrected["wall_time"] == node_now - 120.0  # the raw value is kept beside the correction
    assert corrected["time_corrected"] is True
    assert before - 120.0 <= corrected["time"] <= after - 120.0
    assert corrected["time"] == pytest.approx(corrected["received_at"] - 120.0)
    assert stored[2]["time"] == 1_790_000_000.0 and stored[2]["time_corrected"] is False


def test_an_event_id_of_another_node_is_rejected_not_acknowledged(central, lift):
    meter = central.register("cbxc-b12-meters", "meter")
    theirs = wire_event("cbxc-b12-meters", 1)
    central.post_events(meter, [theirs])
    copy = dict(theirs, node_id=LIFT)
    body = central.post_events(lift, [copy]).json()
    assert body["accepted"] == [] and body["rejected"][0]["id"] == theirs["id"]
    assert [e["node_id"] for e in central.events()] == ["cbxc-b12-meters"]


def test_null_payload_or_recipients_count_as_empty(central, lift):
    event = wire_event(LIFT, 1, payload=None, recipients=None)
    assert central.post_events(lift, [event]).json()["accepted"] == [event["id"]]
    (stored,) = central.events(LIFT)
    assert stored["payload"] == {} and stored["recipients"] == []


def test_events_can_be_filtered_by_node_and_kind(central, lift):
    meter = central.register("cbxc-b12-meters", "meter")
    central.post_events(lift, [wire_event(LIFT, 1, kind="door_state"), wire_event(LIFT, 2, kind="entrapment")])
    central.post_events(meter, [wire_event("cbxc-b12-meters", 1, kind="reading")])
    assert [e["kind"] for e in central.events(LIFT, kind="entrapment")] == ["entrapment"]
    assert [e["node_id"] for e in central.events(kind="reading")] == ["cbxc-b12-meters"]
    assert len(central.events()) == 3


def test_a_storage_failure_is_a_503_json_error_and_nothing_is_acknowledged(central, lift):
    central._server.app.state.store.close()  # the database becomes unusable under the running server
    answer = central.post_events(lift, [wire_event(LIFT, 1)])
    assert answer.status_code == 503 and answer.json()["error"] == "storage_error"
    assert answer.headers["Retry-After"] == "30"
