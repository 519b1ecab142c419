"""Admission control (issue 15): a bounded number of requests in flight per class, past it a typed 503 with
Retry-After, decided from the request head; the console's class and /health are not starved by uploads; real
node uploaders honour the Retry-After and nothing is lost or stored twice."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from central.admission import ALERT, INGEST, INTERACTIVE, AdmissionGate, route_class
from central.config import parse_central_config
from central.server import CentralServer
from common.clock import SystemClock
from common.events import make_event
from common.outbox import Outbox
from common.sync import Uploader
from tests.conftest import eventually
from tests.fixtures.central import CLAIM_KEY, OPERATOR_KEY, SITE, config_document, wire_event
from tests.sync_helpers import node_config

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}


def test_routes_are_classed() -> None:
    assert route_class("POST", "/api/v1/events") == INGEST
    assert route_class("POST", "/api/v1/heartbeat") == INGEST
    assert route_class("GET", "/api/v1/updates/check") == INGEST
    assert route_class("GET", "/api/v1/alerts") == INTERACTIVE
    assert route_class("GET", "/api/v1/events") == INTERACTIVE  # the operator's read, not the upload
    assert route_class("POST", "/api/v1/rides") == INTERACTIVE  # a resident at a kiosk
    assert route_class("POST", "/api/v1/events", b"alert") == ALERT  # the node marks an upload carrying an alert
    assert route_class("POST", "/api/v1/events", b"reading") == INGEST
    assert route_class("POST", "/api/v1/heartbeat", b"alert") == INGEST  # the mark counts on uploads only
    assert route_class("GET", "/api/v1/health") is None
    assert route_class("GET", "/api/v1/changes/stream") is None
    assert route_class("GET", "/api/v1/releases/kiosk/pi/1.2.0/files/app.whl") is None


def test_a_slot_goes_to_the_next_in_line_and_a_cancelled_waiter_keeps_none() -> None:
    gate = AdmissionGate({INGEST: 2, INTERACTIVE: 2, ALERT: 1}, 2, 1)
    counts = gate.classes[INGEST]

    async def scenario() -> list[str]:
        order: list[str] = []
        assert await gate.acquire(counts) and await gate.acquire(counts)

        async def waiter(name: str) -> None:
            assert await gate.acquire(counts)
            order.append(name)
            gate.release(counts)

        first = asyncio.create_task(waiter("first"))
        second = asyncio.create_task(waiter("second"))
        await asyncio.sleep(0)
        assert counts.full() and not await gate.acquire(counts)  # two working, two waiting: the line is full
        first.cancel()  # a client gone while in line
        gate.release(counts)
        await asyncio.gather(second, first, return_exceptions=True)
        gate.release(counts)
        return order

    assert asyncio.run(scenario()) == ["second"]
    assert gate.snapshot()[INGEST] == {"limit": 2, "working": 0, "waiting": 0, "peak": 2, "admitted": 3, "refused": 0}


def test_uploads_of_readings_run_one_at_a_time_while_and_just_after_the_console_is_served() -> None:
    gate = AdmissionGate({INGEST: 3, INTERACTIVE: 2, ALERT: 1}, 4, 1, interactive_first_s=0.2)
    ingest, people, alert = gate.classes[INGEST], gate.classes[INTERACTIVE], gate.classes[ALERT]

    async def scenario() -> None:
        assert await gate.acquire(ingest) and await gate.acquire(ingest)  # two uploads working
        assert await gate.acquire(people)  # an operator's read comes in
        assert gate.limit(ingest) == 1 and gate.limit(alert) == 1 and gate.limit(people) == 2
        third = asyncio.create_task(gate.acquire(ingest))
        await asyncio.sleep(0.01)
        assert not third.done() and len(ingest.waiting) == 1  # a free slot, but the console goes first
        gate.release(ingest)  # one upload ends: its slot is not handed on (two were working, one may)
        await asyncio.sleep(0.01)
        assert not third.done() and ingest.working == 1
        gate.release(people)  # the read ends; uploads still yield for 0.2 s
        await asyncio.sleep(0.05)
        assert not third.done()
        assert await asyncio.wait_for(third, 1.0)  # after the window the waiting upload gets its slot
        assert ingest.working == 2 and gate.limit(ingest) == 3
        gate.release(ingest)
        gate.release(ingest)

    asyncio.run(scenario())
    assert gate.snapshot()[INGEST]["working"] == 0


def test_without_interactive_first_uploads_keep_every_slot() -> None:
    gate = AdmissionGate({INGEST: 3, INTERACTIVE: 2, ALERT: 1}, 4, 1)  # interactive_first_s 0: off

    async def scenario() -> None:
        assert await gate.acquire(gate.classes[INTERACTIVE])
        for _ in range(3):
            assert await asyncio.wait_for(gate.acquire(gate.classes[INGEST]), 0.5)
        gate.release(gate.classes[INTERACTIVE])

    asyncio.run(scenario())
    assert gate.classes[INGEST].working == 3


def _head(port: int, path: str, token: str, length: int) -> socket.socket:
    """A POST whose head is sent and whose body is not (yet)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_full_ingest_is_refused_from_the_head_and_reads_still_answer(make_central: Any, monkeypatch: Any) -> None:
    central = make_central(server={"max_ingest_in_flight": 2, "admission_line": 2, "overload_retry_after_s": 1})
    app = central._server.app  # noqa: SLF001 - the running app: its counters, and a store made slow
    gate, store = app.state.admission, app.state.store
    token = central.register("cbxc-adm-meter1", "meter")
    go_on, ingest = threading.Event(), store.events.ingest

    def slow_ingest(*args: Any) -> Any:  # a database that takes its time: each upload holds its slot
        assert go_on.wait(30)
        return ingest(*args)

    monkeypatch.setattr(store.events, "ingest", slow_ingest)
    eventually(lambda: gate.snapshot()[INGEST]["working"] == 0, what="the registration's slot given back")
    answers: list[int] = []
    uploads = [
        threading.Thread(target=lambda n=n: answers.append(central.post_events(token, [wire_event("cbxc-adm-meter1", n)]).status_code))
        for n in range(1, 5)
    ]  # fmt: skip
    for upload in uploads:
        upload.start()
    eventually(lambda: gate.snapshot()[INGEST]["waiting"] == 2, what="two uploads working, two in line")
    assert gate.snapshot()[INGEST]["working"] == 2

    # a fifth upload announcing 1 MB is refused before a byte of its body was sent
    fifth = _head(central.port, "/api/v1/events", token, 1_000_000)
    status, headers, answer = _answer(fifth)
    assert status == 503
    assert json.loads(answer)["schema"] == "changbai-error/1"
    assert json.loads(answer)["error"] == "overloaded"
    assert headers["retry-after"] in ("1", "2")
    assert headers.get("connection") != "close"
    # the connection stays usable: the body it still sends is dropped, the next request on it is answered
    fifth.sendall(b"x" * 1_000_000 + b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _answer(fifth)[0] == 200
    fifth.close()

    # the console's reads and the probe are another class: answered while the uploads are refused
    assert requests.get(f"{central.url}/api/v1/health", timeout=10).status_code == 200
    assert requests.get(f"{central.url}/api/v1/alerts", headers=OPERATOR, timeout=10).status_code == 200
    assert requests.get(f"{central.url}/api/v1/summary", headers=OPERATOR, timeout=10).status_code == 200
    assert gate.snapshot()[INGEST]["refused"] == 1 and gate.snapshot()[INTERACTIVE]["refused"] == 0

    # bodies still arriving hold no slot: three slow senders do not keep a node out once the store is quick
    slow = [_head(central.port, "/api/v1/events", token, 100) for _ in range(3)]
    go_on.set()
    for upload in uploads:
        upload.join(30)
    assert answers == [200] * 4
    assert central.post_events(token, [wire_event("cbxc-adm-meter1", 5)]).status_code == 200
    eventually(lambda: gate.snapshot()[INGEST]["working"] == 0, what="every slot given back")
    for sock in slow:
        sock.close()
    assert len(central.events("cbxc-adm-meter1")) == 5


class Recorder:
    """ASGI wrapper outside the whole app: when each node's upload arrived and what it was answered."""

    def __init__(self) -> None:
        self.uploads: dict[str, list[tuple[float, float, int]]] = {}  # token -> (arrived, answered, status)
        self._lock = threading.Lock()

    def wrap(self, app: Any) -> Any:
        async def recorded(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/api/v1/events" or scope["method"] != "POST":
                await app(scope, receive, send)
                return
            token = dict(scope["headers"]).get(b"authorization", b"").decode()
            arrived, status = time.monotonic(), 0

            async def watch(message: dict) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await app(scope, receive, watch)
            with self._lock:
                self.uploads.setdefault(token, []).append((arrived, time.monotonic(), status))

        return recorded


def _node(directory: Path, url: str, node_id: str, token: str, events: int) -> tuple[Uploader, Outbox, set[str]]:
    # the section's default timeouts (node_config sets short ones for the fake central), as this test had before
    central = {"batch_size": 20, "backoff_max_s": 4.0, "connect_timeout_s": 5.0, "read_timeout_s": 15.0}
    config = node_config(directory, url, token, node_id=node_id, site=SITE, central=central)
    clock = SystemClock()
    box = Outbox(config.state_dir / "outbox.sqlite", config.outbox, clock, node_id=node_id)
    put = [
        make_event(node_id, "flow", wall_time=time.time() - 600 + i, clock_synced=True, priority="reading",
                   payload={"meter": "b7-u2", "litres": 100.0 + i})
        for i in range(events)
    ]  # fmt: skip
    box.put_many(put)
    return Uploader(config, box, clock, rng=random.Random(node_id)), box, {e.id for e in put}


@pytest.fixture
def loaded_central(tmp_path: Path) -> Iterator[tuple[CentralServer, Recorder]]:
    document = config_document(server={"max_ingest_in_flight": 2, "admission_line": 2, "overload_retry_after_s": 1})
    config = parse_central_config(document, tmp_path / "central.toml")
    recorder = Recorder()
    server = CentralServer(config, tmp_path / "central.sqlite3", wrap=recorder.wrap)
    server.start()
    try:
        yield server, recorder
    finally:
        server.stop()


def test_real_uploaders_through_503s_lose_nothing_and_store_nothing_twice(
    tmp_path: Path, loaded_central: tuple[CentralServer, Recorder]
) -> None:
    server, recorder = loaded_central
    nodes, per_node = 8, 40  # two batches of 20 each, eight nodes at once against two upload slots
    sent: dict[str, set[str]] = {}
    uploaders: list[tuple[Uploader, Outbox]] = []
    for n in range(nodes):
        node_id = f"cbxc-adm-m{n:02d}"
        claim = {"claim_key": CLAIM_KEY, "node_id": node_id, "role": "meter", "site": SITE}
        token = requests.post(f"{server.url}/api/v1/nodes/register", json=claim, timeout=10).json()["token"]
        uploader, box, ids = _node(tmp_path / node_id, server.url, node_id, token, per_node)
        sent[node_id] = ids
        uploaders.append((uploader, box))
    for uploader, _ in uploaders:
        uploader.start()
    try:
        eventually(
            lambda: all(sum(box.depth().values()) == 0 for _, box in uploaders), timeout_s=60, what="outboxes drained"
        )
    finally:
        for uploader, _ in uploaders:
            uploader.stop()
    assert [box.dead_letters() for _, box in uploaders] == [[]] * nodes
    for _, box in uploaders:
        box.close()

    refused = server.app.state.admission.snapshot()[INGEST]["refused"]
    statuses = [status for uploads in recorder.uploads.values() for _, _, status in uploads]
    assert refused > 0 and statuses.count(503) > 0, f"no 503 with 16 nodes on 2 slots: {statuses}"
    assert set(statuses) <= {200, 503}
    for token, uploads in recorder.uploads.items():  # each node came back no sooner than Retry-After (>= 1 s)
        for (_, answered, status), (arrived, _, _) in zip(uploads, uploads[1:], strict=False):
            if status == 503:
                assert arrived - answered >= 0.99, f"{token[:16]}...: back {arrived - answered:.3f} s after a 503"
    stored: list[dict[str, Any]] = []
    after = 0
    while page := requests.get(
        f"{server.url}/api/v1/events", params={"after": after, "limit": 10_000}, headers=OPERATOR, timeout=10
    ).json():
        if not page["events"]:
            break
        stored += page["events"]
        after = page["next_after"]
    flows = [e for e in stored if e["kind"] == "flow"]
    for node_id, ids in sent.items():
        mine = [e["id"] for e in flows if e["node_id"] == node_id]
        assert sorted(mine) == sorted(ids), f"{node_id}: {len(mine)} stored of {len(ids)} sent"


def test_an_alert_is_admitted_while_readings_are_refused(tmp_path: Path, make_central: Any, monkeypatch: Any) -> None:
    """A trapped passenger's alert must not wait behind a district's meters draining readings: the lift's uploader
    marks the batch that carries it, the central admits it on the alert slots while the ingest slot is held and
    its line full, and the lift's readings after it get 503 like everyone's; all stored once when the load ends."""
    central = make_central(server={"max_ingest_in_flight": 1, "admission_line": 0, "overload_retry_after_s": 1})
    app = central._server.app  # noqa: SLF001 - the running app: its counters, and a store made slow
    gate, store = app.state.admission, app.state.store
    meter = central.register("cbxc-adm-meter1", "meter")
    lift = "cbxc-adm-lift1"
    token = central.register(lift, "elevator")
    go_on, inside, ingest = threading.Event(), threading.Event(), store.events.ingest

    def slow_for_meters(node_id: str, *args: Any) -> Any:  # a database busy with the meters' readings
        if node_id.startswith("cbxc-adm-meter"):
            inside.set()
            assert go_on.wait(30)
        return ingest(node_id, *args)

    monkeypatch.setattr(store.events, "ingest", slow_for_meters)
    eventually(lambda: gate.snapshot()[INGEST]["working"] == 0, what="the registrations' slots given back")
    held = threading.Thread(target=lambda: central.post_events(meter, [wire_event("cbxc-adm-meter1", 1)]))
    held.start()
    # A registration's answer reaches the client just before its slot is given back, so "one working" could be the
    # registration's (it was, once in ten full runs: this upload came too soon and got 503, and the next one was
    # admitted and stalled for 30 s). So: every slot back first, then wait for the upload to be in the store.
    assert inside.wait(30), "the meter's upload never reached the store"
    assert gate.snapshot()[INGEST]["working"] == 1  # and it holds the only ingest slot
    second = central.post_events(meter, [wire_event("cbxc-adm-meter1", 2)])
    assert second.status_code == 503, (second.status_code, second.text, gate.snapshot()[INGEST])

    uploader, box, readings = _node(tmp_path / lift, central.url, lift, token, 30)  # 30 readings, batches of 20
    alarm = make_event(lift, "entrapment", wall_time=time.time(), clock_synced=True, severity="urgent",
                       state="raised", priority="alert", payload={"seconds_trapped": 91}, alert_id="trap-1",
                       recipients=("property_management", "maintenance"))  # fmt: skip
    box.put(alarm)
    uploader.start()
    try:
        eventually(lambda: [a["alert_id"] for a in central.alerts()] == ["trap-1"], what="the alert stored")
        assert gate.snapshot()[ALERT]["admitted"] >= 1
        eventually(lambda: gate.snapshot()[INGEST]["refused"] >= 2, what="the lift's readings refused meanwhile")
        assert held.is_alive()  # the meters' upload still held the ingest slot all along
        go_on.set()
        held.join(30)
        eventually(lambda: sum(box.depth().values()) == 0, timeout_s=30, what="the lift's outbox drained")
    finally:
        uploader.stop()
        go_on.set()
    assert box.dead_letters() == []
    box.close()
    stored = [e["id"] for e in central.events(lift)]
    assert len(stored) == len(set(stored))  # each once
    assert {*readings, alarm.id} <= set(stored)  # every one (beside what the uploader itself reports)


def test_retry_after_is_the_measured_time_the_line_takes_capped_by_the_setting() -> None:
    """A refused node is told to come back when the requests ahead of it are likely served: with slots held
    10 ms a line of 34 is served in well under a second (1-2 s, the least Retry-After can say), with slots held
    a second it would take 17 s (capped: 5-10 s). Before any request has ended, the setting (5-10 s)."""
    gate = AdmissionGate({INGEST: 2, INTERACTIVE: 2, ALERT: 1}, 32, 5, rng=random.Random(7))
    counts = gate.classes[INGEST]
    loop = asyncio.new_event_loop()
    counts.working, counts.waiting = 2, deque(loop.create_future() for _ in range(32))
    loop.close()
    assert gate.retry_after(counts) == 5
    for _ in range(40):
        counts.held(0.010)
    assert gate.retry_after(counts) == 1
    refusals: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        refusals.append(message)

    for _ in range(20):
        asyncio.run(gate.refuse(INGEST, send))
    waits = {int(dict(m["headers"])[b"retry-after"]) for m in refusals if m["type"] == "http.response.start"}
    assert waits == {1, 2}
    for _ in range(40):
        counts.held(1.0)
    assert gate.retry_after(counts) == 5
    counts.waiting.clear()
    assert gate.retry_after(counts) == 1  # 2 working, a second each, two slots: 1 s
