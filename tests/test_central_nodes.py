"""Central: node registration with claim keys, hashed tokens and rotation, auth, heartbeat and node health."""

from __future__ import annotations

import hashlib
import sqlite3

import requests

from tests.fixtures.central import CLAIM_KEY, OTHER_SITE, SITE, wire_event

LIFT = "cbxc-b7-u2-lift1"


def register_raw(central, **overrides) -> requests.Response:
    body = {"claim_key": CLAIM_KEY, "node_id": LIFT, "role": "elevator", "site": SITE, "location": "Building 7"}
    body.update(overrides)
    return requests.post(f"{central.url}/api/v1/nodes/register", json=body, timeout=10)


def test_register_answers_a_token_once_and_stores_only_its_hash(central):
    answer = register_raw(central)
    assert answer.status_code == 201
    token = answer.json()["token"]
    assert answer.json()["node_id"] == LIFT and len(token) >= 40
    central.stop()  # closes the database: everything is in the main file now
    raw = b"".join(p.read_bytes() for p in central.db_path.parent.glob("central.sqlite3*"))
    assert token.encode() not in raw
    with sqlite3.connect(central.db_path) as db:
        (stored,) = db.execute("SELECT token_hash FROM nodes WHERE node_id = ?", (LIFT,)).fetchone()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    central.start()
    assert central.post_events(token, [wire_event(LIFT, 1)]).status_code == 200
    for shown in (central.nodes()[0], central.node(LIFT)):  # never shown again, not even its hash
        assert "token" not in shown and "token_hash" not in shown and token not in str(shown)


def test_wrong_claim_key_or_unknown_site_is_403_and_registers_nothing(central):
    wrong = register_raw(central, claim_key="not-the-key-of-this-site")
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "forbidden" and "claim_key" in wrong.json()["fields"]
    other_sites_key = register_raw(central, site=OTHER_SITE)  # CLAIM_KEY belongs to SITE, not OTHER_SITE
    assert other_sites_key.status_code == 403
    assert register_raw(central, site="no-such-site").status_code == 403
    assert central.nodes() == []


def test_reregistering_rotates_the_token(central):
    old = central.register(LIFT, "elevator", location="Building 7")
    new = central.register(LIFT, "elevator", location="Building 7, car top")
    assert new != old
    refused = central.post_events(old, [wire_event(LIFT, 1)])
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert central.post_events(new, [wire_event(LIFT, 1)]).status_code == 200
    node = central.node(LIFT)
    assert node["registrations"] == 2 and node["location"] == "Building 7, car top"


def test_a_node_cannot_move_to_another_site(central):
    central.register(LIFT)
    answer = register_raw(central, site=OTHER_SITE, claim_key="test-claim-key-siping-000002")
    assert answer.status_code == 409
    assert SITE in answer.json()["message"]


def test_registration_body_is_validated_with_the_field_named(central):
    answer = register_raw(central, node_id="Bad Id!", role="toaster")
    assert answer.status_code == 422
    assert set(answer.json()["fields"]) == {"node_id", "role"}
    missing = requests.post(f"{central.url}/api/v1/nodes/register", json={"node_id": LIFT}, timeout=10)
    assert missing.status_code == 422
    assert {"claim_key", "role", "site"} <= set(missing.json()["fields"])
    bad_contact_role = register_raw(central, contacts={"neighbour": [{"name": "Li"}]})
    assert bad_contact_role.status_code == 422
    assert bad_contact_role.json()["fields"] == ["contacts.neighbour"]


def test_node_calls_need_a_valid_token(central):
    token = central.register(LIFT)
    url = f"{central.url}/api/v1/events"
    body = {"node_wall_time": 1.0, "events": [wire_event(LIFT, 1)]}
    no_token = requests.post(url, json=body, timeout=10)
    assert no_token.status_code == 401 and no_token.json()["error"] == "unauthorized"
    wrong = requests.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    operator_key = requests.post(url, json=body, headers=central.operator_headers, timeout=10)
    assert operator_key.status_code == 403  # a valid credential, but an operator key is not a node token
    assert operator_key.json()["error"] == "forbidden"
    assert central.events() == []
    assert central.post_events(token, body["events"]).status_code == 200


def test_operator_calls_need_an_operator_key(central):
    token = central.register(LIFT)
    url = f"{central.url}/api/v1/alerts"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong-key"}, timeout=10).status_code == 401
    as_node = requests.get(url, headers=central.node_headers(token), timeout=10)
    assert as_node.status_code == 403
    assert requests.get(url, headers=central.operator_headers, timeout=10).status_code == 200


def test_a_node_cannot_write_another_nodes_events(central):
    lift = central.register(LIFT)
    central.register("cbxc-b12-meters", "meter")
    own, other, missing = wire_event(LIFT, 1), wire_event("cbxc-b12-meters", 1), wire_event(LIFT, 2)
    del missing["node_id"]
    answer = central.post_events(lift, [own, other, missing])
    # one rejection per event, never a 403 for the batch (a node takes 403 as an auth block)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == [own["id"]]
    codes = {r["id"]: (r["code"], r["index"]) for r in answer.json()["rejected"]}
    assert codes == {other["id"]: ("foreign_event", 1), missing["id"]: ("invalid_event", 2)}
    assert [e["id"] for e in central.events()] == [own["id"]]  # the other node's event was not stored


def test_heartbeat_is_stored_and_shown_with_last_seen(central):
    token = central.register(LIFT)
    assert central.nodes()[0]["last_seen_at"] is None and central.nodes()[0]["stale"] is True
    health = {
        "node_wall_time": 1_790_000_000.0,
        "uptime_s": 3600.5,
        "version": "0.1.0",
        "outbox_depth": {"alert": 0, "state": 2, "reading": 40},
        "dropped": {"reading": 3},
        "dead_letters": 1,
        "last_sensor_read": 1_789_999_990.0,
        "clock_synced": False,
        "health": {"modbus": {"errors": 2}},  # the role's own fields
        "modbus": {"errors": 2},  # an unknown key: ignored, so a node's stored health stays bounded
    }
    answer = requests.post(
        f"{central.url}/api/v1/heartbeat", json=health, headers=central.node_headers(token), timeout=10
    )
    assert answer.status_code == 200 and answer.json()["ok"] is True and answer.json()["ignored"] == ["modbus"]
    node = central.node(LIFT)
    assert node["health"]["outbox_depth"] == {"alert": 0, "state": 2, "reading": 40}
    assert node["health"]["health"] == {"modbus": {"errors": 2}} and node["health"]["clock_synced"] is False
    assert "modbus" not in node["health"]
    assert node["last_heartbeat_at"] is not None and node["stale"] is False
    bad = requests.post(
        f"{central.url}/api/v1/heartbeat", json={"uptime_s": "long"}, headers=central.node_headers(token), timeout=10
    )
    assert bad.status_code == 422 and bad.json()["fields"] == ["uptime_s"]


def test_unknown_node_detail_is_404_with_a_json_error(central):
    answer = requests.get(f"{central.url}/api/v1/nodes/no-such-node", headers=central.operator_headers, timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"


def test_a_partial_heartbeat_keeps_the_other_health_fields(central):
    token = central.register(LIFT)
    url = f"{central.url}/api/v1/heartbeat"
    full = {"uptime_s": 10.0, "version": "0.1.0", "outbox_depth": {"alert": 0, "state": 0, "reading": 5}}
    requests.post(url, json=full, headers=central.node_headers(token), timeout=10)
    selftest = {"version": "0.1.1", "selftest": {"source": "provision selftest", "ok": True}}
    requests.post(url, json=selftest, headers=central.node_headers(token), timeout=10)
    health = central.node(LIFT)["health"]
    assert health["version"] == "0.1.1" and health["selftest"]["ok"] is True
    assert health["outbox_depth"] == {"alert": 0, "state": 0, "reading": 5} and health["uptime_s"] == 10.0


def test_a_node_reads_its_own_record_only(central):
    token = central.register(LIFT)
    central.register("cbxc-b12-meters", "meter")
    own = requests.get(f"{central.url}/api/v1/nodes/{LIFT}", headers=central.node_headers(token), timeout=10)
    assert own.status_code == 200 and own.json()["node_id"] == LIFT and "token_hash" not in own.json()
    other = requests.get(f"{central.url}/api/v1/nodes/cbxc-b12-meters", headers=central.node_headers(token))
    assert other.status_code == 403
    listing = requests.get(f"{central.url}/api/v1/nodes", headers=central.node_headers(token), timeout=10)
    assert listing.status_code == 403
