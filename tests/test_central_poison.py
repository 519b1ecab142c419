"""Central fault suite, poisoned input (issue 12 High 1, Low 9): values no client can read back are refused at
ingest, one event at a time; what is acknowledged is stored exactly once; every read keeps answering, also over
rows stored before the check existed."""

from __future__ import annotations

import json
import sqlite3
import uuid

import requests

from tests.fixtures.central import wire_event

LIFT = "cbxc-b7-u2-lift1"
ERROR_SCHEMA = "changbai-error/1"


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"d": value}
    return value


def post_raw(central, token: str, text: str) -> requests.Response:
    """POST /events with a body written by hand (requests refuses to write NaN; a node's json.dumps does not)."""
    headers = {**central.node_headers(token), "Content-Type": "application/json"}
    return requests.post(f"{central.url}/api/v1/events", data=text.encode("utf-8"), headers=headers, timeout=10)


def assert_reads_work(central) -> None:
    """What the operator page and the district platform read: every list, every alert, every node."""
    for state in ("open", "acknowledged", "resolved", "active", "all"):
        central.get("/alerts", state=state)
    for alert in central.alerts():
        central.get(f"/alerts/{alert['id']}")
    central.events()
    central.nodes()
    for node in central.nodes():
        central.node(node["node_id"])


def test_poisoned_events_are_rejected_one_by_one_and_the_rest_stored_once(central):
    token = central.register(LIFT)
    good = [wire_event(LIFT, seq, payload={"n": seq}) for seq in (1, 2, 3)]
    alert = wire_event(LIFT, 4, kind="entrapment", severity="urgent", state="raised", priority="alert")
    alert.update(alert_id="lift-b7-1", recipients=["maintenance"], payload={"seconds_trapped": 90})
    poisoned = {
        "deep": wire_event(LIFT, 5, kind="entrapment", state="raised", alert_id="deep", payload=nested(260)),
        "nan": wire_event(LIFT, 6, payload={"v": "NAN_HERE"}),
        "infinity": wire_event(LIFT, 7, payload={"v": "INF_HERE"}),
        "surrogate": wire_event(LIFT, 8, alert_id="SURROGATE_HERE", state="raised"),
        "seq 2^63": wire_event(LIFT, 2**63),
        "seq 10^30": wire_event(LIFT, 10**30),
        "huge": wire_event(LIFT, 9, payload={"blob": "x" * 70_000}),
        "no node_id": {k: v for k, v in wire_event(LIFT, 10).items() if k != "node_id"},
    }
    batch = [good[0], *poisoned.values(), good[1], alert, good[2]]
    text = json.dumps({"node_wall_time": 1.0e9, "events": batch})
    text = text.replace('"NAN_HERE"', "NaN").replace('"INF_HERE"', "-Infinity")
    text = text.replace('"SURROGATE_HERE"', '"\\ud800"')
    for _attempt in range(2):  # the second time is a node replaying after a lost answer
        answer = post_raw(central, token, text)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["accepted"] == [good[0]["id"], good[1]["id"], alert["id"], good[2]["id"]]
        rejected = {r["index"]: r for r in body["rejected"]}
        assert sorted(rejected) == list(range(1, 1 + len(poisoned)))
        assert {r["code"] for r in rejected.values()} == {"invalid_event"}
        reasons = [rejected[i]["reason"] for i in sorted(rejected)]
        assert "deeper than 32" in reasons[0] and "NaN" in reasons[1] and "Infinity" in reasons[2]
        assert "surrogate" in reasons[3] and "64-bit" in reasons[4] and "64-bit" in reasons[5]
        assert "bytes" in reasons[6] and "node_id" in reasons[7]
    stored = central.events()
    assert [e["id"] for e in stored] == body["accepted"]  # each acknowledged event once, nothing else
    assert [a["alert_id"] for a in central.alerts()] == ["lift-b7-1"]
    assert_reads_work(central)


def test_poisoned_heartbeats_and_registrations_are_422_and_nothing_is_stored(central):
    token = central.register(LIFT)
    url = f"{central.url}/api/v1/heartbeat"
    headers = {**central.node_headers(token), "Content-Type": "application/json"}
    for text in (
        json.dumps({"health": nested(260)}),
        '{"health": {"temp": NaN}}',
        '{"version": "\\udfff"}',
        '{"health": {"big": 99999999999999999999}}',
    ):
        answer = requests.post(url, data=text.encode(), headers=headers, timeout=10)
        assert answer.status_code == 422, (text[:40], answer.text)
        assert answer.json()["schema"] == ERROR_SCHEMA and answer.json()["error"] == "invalid_body"
    register = {"claim_key": central.claim_key, "node_id": "cbxc-b8-lift", "role": "elevator", "site": central.site}
    text = json.dumps({**register, "location": "SURROGATE"}).replace('"SURROGATE"', '"\\ud83d"')
    answer = requests.post(
        f"{central.url}/api/v1/nodes/register",
        data=text.encode(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 422 and "surrogate" in answer.json()["message"]
    assert [n["node_id"] for n in central.nodes()] == [LIFT]
    assert central.node(LIFT)["health"] is None
    assert_reads_work(central)


def test_documents_that_cannot_even_be_parsed_are_422(central):
    token = central.register(LIFT)
    headers = {**central.node_headers(token), "Content-Type": "application/json"}
    url = f"{central.url}/api/v1/events"
    for data in (
        b"[" * 200_000,  # nesting past any recursion limit
        b'{"node_wall_time": 1, "events": ["\xff\xfe"]}',  # not UTF-8
        b'{"node_wall_time": 1, "events": [' + b"9" * 5000 + b"]}",  # past Python's integer digit limit
    ):
        answer = requests.post(url, data=data, headers=headers, timeout=10)
        assert answer.status_code == 422, answer.text
        assert answer.json()["schema"] == ERROR_SCHEMA and answer.json()["error"] == "invalid_body"
    assert central.events() == []


def test_numbers_out_of_range_in_the_query_or_path_are_422(central):
    central.register(LIFT)
    headers = central.operator_headers
    for path in (
        "/events?after=1e20",
        "/events?after=100000000000000000000",
        "/alerts/1e20",
        "/alerts/100000000000000000000",
        "/alerts/0",
        "/alerts/100000000000000000000/ack",
    ):
        method = requests.post if path.endswith("/ack") else requests.get
        answer = method(f"{central.url}/api/v1{path}", headers=headers, timeout=10)
        assert answer.status_code == 422, (path, answer.status_code, answer.text)
        assert answer.json()["schema"] == ERROR_SCHEMA


def test_rows_stored_before_the_check_are_still_readable(central):
    """A central upgraded with a 260-level payload, NaN and an endless health already in its database."""
    token = central.register(LIFT)
    alert = wire_event(LIFT, 1, kind="entrapment", severity="urgent", state="raised", priority="alert")
    alert.update(alert_id="old-1", recipients=["maintenance"])
    assert central.post_events(token, [alert, wire_event(LIFT, 2)]).json()["accepted"]
    deep = json.dumps(nested(260))
    db = sqlite3.connect(central.db_path)
    with db:
        db.execute("UPDATE events SET payload = ?", (deep,))
        db.execute("UPDATE alerts SET payload = ?", ('{"v": NaN, "w": Infinity}',))
        db.execute("UPDATE nodes SET health = ?", ('{"version": "0.1.0", "x": {"y": NaN}, "z": "not json',))
    db.close()
    assert_reads_work(central)
    events = central.events()
    assert "nested deeper" in json.dumps(events[0]["payload"])
    assert central.alerts()[0]["payload"] == {"v": "nan", "w": "inf"}
    assert "unreadable" in central.node(LIFT)["health"]
    # the node's next heartbeat replaces the unreadable health with the known keys it sends
    answer = requests.post(
        f"{central.url}/api/v1/heartbeat",
        json={"version": "0.2.0"},
        headers=central.node_headers(token),
        timeout=10,
    )
    assert answer.status_code == 200
    assert central.node(LIFT)["health"]["version"] == "0.2.0"


def test_every_refusal_carries_the_typed_error_body(central):
    token = central.register(LIFT)
    url = central.url + "/api/v1"
    answers = [
        requests.get(f"{url}/alerts", timeout=10),  # 401
        requests.get(f"{url}/alerts", headers=central.node_headers(token), timeout=10),  # 403
        requests.get(f"{url}/alerts/999", headers=central.operator_headers, timeout=10),  # 404
        requests.delete(f"{url}/events", timeout=10),  # 405
        requests.post(f"{url}/events", json={}, headers=central.node_headers(token), timeout=10),  # 422
        requests.get(f"{central.url}/nowhere/{uuid.uuid4()}", timeout=10),  # 404 off the API
    ]
    for answer in answers:
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert body["schema"] == ERROR_SCHEMA and set(body) == {"schema", "error", "message", "fields"}
    assert [a.status_code for a in answers] == [401, 403, 404, 405, 422, 404]
