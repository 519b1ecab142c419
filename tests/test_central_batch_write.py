"""A node's batch written with a few statements (issue 15): never half-stored, never doubled, whatever mixes in it
(a copy inside the batch, events of an earlier batch, an id another node's batch took meanwhile, alert events
whose order matters), on both engines."""

from __future__ import annotations

from typing import Any

import pytest

from central.storage import open_store
from central.storage.events import ROWS_PER_INSERT, EventLog
from tests.fixtures.central import wire_event

NODE, OTHER = "cbxc-b7-u2-lift1", "cbxc-b7-u3-lift1"


def _open(target: str):
    store = open_store(target)
    for node in (NODE, OTHER):
        store.nodes.register({"node_id": node, "role": "elevator", "site": "changbai-xincun"}, "tok-" + node, 1.0)
    return store


def _stored(store, node_id: str) -> list[dict[str, Any]]:
    return [e for e in store.events.page(node_id=node_id, limit=10_000)]


def _alert(seq: int, alert_id: str, state: str) -> dict[str, Any]:
    return wire_event(
        NODE, seq, kind="trapped_passenger", severity="urgent", priority="alert", state=state, alert_id=alert_id,
        recipients=["property_management", "maintenance"],
    )  # fmt: skip


@pytest.mark.both_engines
def test_a_batch_with_copies_and_replays_is_stored_once_in_batch_order(store_target):
    store = _open(store_target)
    try:
        first = [wire_event(NODE, s) for s in range(1, 4)]
        assert store.events.ingest(NODE, first, 0.0, 10.0) == (3, [])
        size = 2 * ROWS_PER_INSERT + 7  # more rows than one SQLite statement takes
        fresh = [wire_event(NODE, s) for s in range(4, 4 + size)]
        batch = [first[1], *fresh[:60], fresh[10], *fresh[60:], first[2], fresh[0]]
        assert store.events.ingest(NODE, batch, 0.0, 11.0) == (size, [])
        stored = _stored(store, NODE)
        assert [e["seq"] for e in stored] == list(range(1, 4 + size))  # each once, in the order received
        assert len({e["row"] for e in stored}) == len(stored)
        node = store.nodes.get(NODE)
        assert (node["events_received"], node["replays"], node["seq_missing"]) == (3 + size, 4, 0)
    finally:
        store.close()


@pytest.mark.both_engines
def test_an_id_another_nodes_batch_took_meanwhile_is_refused_and_the_rest_stored(store_target, monkeypatch):
    """The race the multi-row INSERT's ON CONFLICT answers: the other node's batch commits the same id after this
    batch looked its ids up. Its copy is the one kept; this node is told (foreign), its other events are stored."""
    store = _open(store_target)
    try:
        taken = wire_event(OTHER, 1)
        assert store.events.ingest(OTHER, [taken], 0.0, 10.0) == (1, [])
        monkeypatch.setattr(EventLog, "_owners", lambda self, tx, ids: {})  # the look-up saw nothing yet
        mine = [wire_event(NODE, s) for s in range(1, 121)]
        batch = [*mine[:70], {**_alert(500, "a-x", "raised"), "id": taken["id"]}, *mine[70:]]
        assert store.events.ingest(NODE, batch, 0.0, 11.0) == (120, [taken["id"]])
        assert [e["seq"] for e in _stored(store, NODE)] == list(range(1, 121))
        assert [(e["id"], e["seq"]) for e in _stored(store, OTHER)] == [(taken["id"], 1)]
        assert store.nodes.get(NODE)["max_seq"] == 120  # the refused event's seq is not counted as received
        assert store.alerts.page(state="all", node_id=NODE) == []  # nor is an alert built from it
    finally:
        store.close()


@pytest.mark.both_engines
def test_alert_events_in_one_batch_build_the_alert_in_their_order(store_target):
    store = _open(store_target)
    try:
        batch = [
            _alert(1, "a-1", "raised"),
            wire_event(NODE, 2),
            _alert(3, "a-1", "cleared"),
            _alert(4, "a-2", "raised"),
        ]
        assert store.events.ingest(NODE, batch, 0.0, 10.0) == (4, [])
        by_alert = {a["alert_id"]: a for a in store.alerts.page(state="all", node_id=NODE)}
        assert sorted(by_alert) == ["a-1", "a-2"]
        assert by_alert["a-1"]["cleared_on_site"] and not by_alert["a-2"]["cleared_on_site"]
        assert store.events.ingest(NODE, batch, 0.0, 11.0) == (0, [])  # the whole batch again: nothing new
        assert len(store.alerts.page(state="all", node_id=NODE)) == 2
    finally:
        store.close()
