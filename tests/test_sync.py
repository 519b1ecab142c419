"""Uploader against the real central on a loopback port (temporary SQLite) and a scripted central for the
answers the real one never gives (a whole-batch 422, a contract mismatch)."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from common.catalogue import State
from common.clock import ManualClock, SystemClock
from common.config import OutboxSection
from common.events import Detection, Event
from common.outbox import Outbox
from common.service import NodeRuntime
from common.sync import ALERT_BACKOFF_MAX_S, Uploader
from tests.sync_helpers import FakeCentral, Reply, fake_central, node_config, run_until

NODE = "cbxc-b7-u2-lift1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake() -> Iterator[FakeCentral]:
    with fake_central(node_id=NODE) as central:
        yield central


def make_runtime(tmp: Path, url: str, token: str | None, clock: Any, **kwargs: Any) -> NodeRuntime:
    config = node_config(tmp, url, token, node_id=NODE, role="elevator", **kwargs)
    runtime = NodeRuntime(config, clock)
    runtime.uploader._rng = random.Random(1)  # noqa: SLF001 - reproducible jitter
    return runtime


@pytest.fixture
def runtimes() -> Iterator[list[NodeRuntime]]:
    made: list[NodeRuntime] = []
    yield made
    for runtime in made:
        runtime.stop()


def reading(runtime: NodeRuntime, n: int) -> Event:
    return runtime.record_reading("car_position", {"n": n})


def trapped(runtime: NodeRuntime, state: State = "raised", key: str = "") -> Event:
    return runtime.emit(Detection("trapped_passenger", state, 0.0, "urgent", {"floor": 3}, key), ("maintenance",))


def drain(runtime: NodeRuntime, clock: ManualClock, limit: int = 2000) -> int:
    """run_once until the outbox is empty, moving the clock over every wait."""

    def step() -> None:
        result = runtime.uploader.run_once()
        clock.advance(result.retry_in_s if result.retry_in_s else 0.5)

    return run_until(step, lambda: sum(runtime.outbox.depth().values()) == 0, limit)


# ----------------------------------------------------------------------------------------- real central
def test_round_trip_alerts_before_readings(central: Any, tmp_path: Path, clock: ManualClock, runtimes: list) -> None:
    token = central.register(NODE, "elevator")
    runtime = make_runtime(tmp_path, central.url, token, clock, central={"batch_size": 5})
    runtimes.append(runtime)
    readings = [reading(runtime, i) for i in range(12)]
    alert = trapped(runtime)
    state = runtime.record_state("door_state", {"open": False})
    drain(runtime, clock)
    stored = central.events(NODE)
    ids = [e["id"] for e in stored]
    assert len(ids) == len(set(ids))  # once each
    assert set(ids) >= {alert.id, state.id, *(r.id for r in readings)}
    assert ids.index(alert.id) < min(ids.index(r.id) for r in readings)
    assert ids.index(state.id) < min(ids.index(r.id) for r in readings)
    first = next(e for e in stored if e["id"] == alert.id)
    assert first["alert_id"] == alert.alert_id and first["seq"] == alert.seq
    assert central.alerts("open")[0]["kind"] == "trapped_passenger"
    node = central.node(NODE)
    assert node["seq_gaps"] == [] and node["seq_conflicts"] == 0
    clock.advance(runtime.config.central.heartbeat_interval_s)
    assert runtime.uploader.run_once().heartbeat_sent
    health = central.node(NODE)["health"]
    assert health["outbox_depth"] == {"alert": 0, "state": 0, "reading": 0}
    assert health["version"] == runtime.uploader.version and health["dead_letters"] == 0


def test_long_outage_then_recovery(central: Any, tmp_path: Path, clock: ManualClock, runtimes: list) -> None:
    token = central.register(NODE, "elevator")
    runtime = make_runtime(
        tmp_path,
        central.url,
        token,
        clock,
        central={"batch_size": 500, "backoff_max_s": 600.0, "heartbeat_interval_s": 600.0},
        outbox={"max_mb": 1.0, "reading_commit_window_s": 5.0},
    )
    runtimes.append(runtime)
    central.stop()
    alerts: list[Event] = []
    readings: list[Event] = []
    delays: list[float] = []
    next_try = 0.0
    # 12 hours without the central: a reading every 10 s, an incident every 2 hours
    for step in range(12 * 360):
        readings.append(runtime.record_reading("car_position", {"n": step, "pad": "p" * 300}))
        if step % 720 == 0:
            alerts.append(trapped(runtime, "raised", key=f"car-{step}"))
        if clock.monotonic() >= next_try:
            result = runtime.uploader.run_once()
            if result.retry_in_s:
                delays.append(result.retry_in_s)
                next_try = clock.monotonic() + result.retry_in_s
        assert runtime.outbox.stats()["db_bytes"] <= runtime.outbox.stats()["db_limit_bytes"]
        clock.advance(10)
    assert sum(runtime.outbox.depth().values()) > 0
    assert max(delays) <= 600.0
    assert runtime.uploader.status()["consecutive_failures"] > 5
    stats = runtime.outbox.stats()
    assert stats["dropped"]["reading"] > 0 and stats["dropped"]["alert"] == 0
    central.start()
    clock.advance(600)
    drain(runtime, clock)
    stored = central.events(NODE)
    ids = [e["id"] for e in stored]
    assert len(ids) == len(set(ids))
    # every alert arrived, before any reading
    alert_ids = [a.id for a in alerts]
    assert set(alert_ids) <= set(ids)
    first_reading = min(ids.index(r.id) for r in readings if r.id in ids)
    assert max(ids.index(a) for a in alert_ids) < first_reading
    # every reading that was not dropped arrived; the dropped ones are the oldest and are counted
    arrived = [r for r in readings if r.id in set(ids)]
    assert len(arrived) + stats["dropped"]["reading"] == len(readings)
    assert arrived == readings[-len(arrived) :]
    drops = [e for e in stored if e["kind"] == "outbox_dropped"]
    assert sum(e["payload"]["count"] for e in drops) == stats["dropped"]["reading"]
    # the heartbeat after recovery reports the dropped count
    clock.advance(601)
    runtime.uploader.run_once()
    assert central.node(NODE)["health"]["dropped"]["reading"] == stats["dropped"]["reading"]


def test_500_backs_off_with_full_jitter_then_delivers(
    central: Any, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    token = central.register(NODE, "elevator")
    runtime = make_runtime(tmp_path, central.url, token, clock, central={"backoff_max_s": 8.0})
    runtimes.append(runtime)
    runtime.uploader.run_once()  # self-test and heartbeat out of the way
    state = runtime.record_state("door_state", {"open": True})
    central.faults.fail_next(6, status=500)
    waits = []
    for attempt in range(1, 7):
        result = runtime.uploader.run_once()
        assert result.status == "backoff" and (result.error or "").startswith("HTTP 500")
        wait = result.retry_in_s
        assert wait is not None and 0 <= wait <= min(8.0, 2 ** (attempt - 1))
        waits.append(wait)
        assert runtime.outbox.depth()["state"] == 1
        before = len(central.faults.hits)
        clock.advance(wait / 2)
        if wait > 0.01:
            assert runtime.uploader.run_once().status == "backoff"  # no request while waiting
            assert len(central.faults.hits) == before
        clock.advance(wait / 2 + 0.001)
    assert len(set(waits)) > 1  # jittered
    assert runtime.uploader.status()["consecutive_failures"] == 6
    assert runtime.uploader.run_once().status == "sent"
    assert runtime.uploader.status()["consecutive_failures"] == 0
    assert [e["id"] for e in central.events(NODE, kind="door_state")] == [state.id]


def test_429_retry_after_is_honoured(central: Any, tmp_path: Path, clock: ManualClock, runtimes: list) -> None:
    token = central.register(NODE, "elevator")
    runtime = make_runtime(tmp_path, central.url, token, clock)
    runtimes.append(runtime)
    runtime.uploader.run_once()
    runtime.record_state("door_state", {"open": True})
    central.faults.fail_next(1, status=429, retry_after=7)
    result = runtime.uploader.run_once()
    assert result.status == "backoff" and (result.error or "").startswith("HTTP 429")
    assert result.retry_in_s == pytest.approx(7.0)
    clock.advance(6.9)
    assert runtime.uploader.run_once().requests == 0
    clock.advance(0.2)
    assert runtime.uploader.run_once().status == "sent"


def test_garbage_reply_keeps_everything(central: Any, tmp_path: Path, clock: ManualClock, runtimes: list) -> None:
    token = central.register(NODE, "elevator")
    runtime = make_runtime(tmp_path, central.url, token, clock)
    runtimes.append(runtime)
    runtime.uploader.run_once()
    event = runtime.record_state("door_state", {"open": True})
    central.faults.fail_next(1, status=200, body=b"<html>captive portal</html>")
    result = runtime.uploader.run_once()
    assert result.status == "backoff" and "InvalidReply" in (result.error or "")
    assert runtime.outbox.depth()["state"] == 1
    drain(runtime, clock)
    assert [e["id"] for e in central.events(NODE, kind="door_state")] == [event.id]


def test_slow_reply_past_the_timeout_is_replayed_once(
    central: Any, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    token = central.register(NODE, "elevator")
    runtime = make_runtime(tmp_path, central.url, token, clock, central={"read_timeout_s": 1.0})
    runtimes.append(runtime)
    runtime.uploader.run_once()
    event = trapped(runtime)
    central.faults.fail_next(1, status=None, delay_s=2.0)  # the central stores it, but answers too late
    result = runtime.uploader.run_once()
    assert result.status == "backoff" and result.error == "ReadTimeout"
    assert runtime.outbox.depth()["alert"] == 1
    run_until(lambda: time.sleep(0.02), lambda: central.faults.delayed_done == 1, 500)  # the late one ended (was sleep)
    drain(runtime, clock)
    stored = central.events(NODE, kind="trapped_passenger")
    assert [e["id"] for e in stored] == [event.id]  # replayed, stored once


def test_401_pauses_uploads_keeps_events_and_never_logs_the_token(
    central: Any, tmp_path: Path, clock: ManualClock, runtimes: list, caplog: pytest.LogCaptureFixture
) -> None:
    token = central.register(NODE, "elevator")
    runtime = make_runtime(tmp_path, central.url, token, clock, central={"auth_retry_s": 900.0})
    runtimes.append(runtime)
    caplog.set_level(logging.DEBUG)
    runtime.uploader.run_once()
    event = runtime.record_state("door_state", {"open": True})
    central.faults.fail_next(1, status=401)
    result = runtime.uploader.run_once()
    assert result.status == "auth_blocked" and result.retry_in_s == 900.0
    assert runtime.uploader.status()["auth_blocked"]
    clock.advance(899)
    assert runtime.uploader.run_once().requests == 0
    assert runtime.outbox.depth()["state"] == 1
    clock.advance(2)
    assert runtime.uploader.run_once().status == "sent"
    assert [e["id"] for e in central.events(NODE, kind="door_state")] == [event.id]
    assert "refused this node's token" in caplog.text
    assert token not in caplog.text


def test_an_alert_cuts_the_wait_short(central: Any, tmp_path: Path, clock: ManualClock, runtimes: list) -> None:
    token = central.register(NODE, "elevator")
    runtime = make_runtime(tmp_path, central.url, token, clock, central={"auth_retry_s": 900.0})
    runtimes.append(runtime)
    runtime.uploader.run_once()
    runtime.record_state("door_state", {"open": True})
    central.faults.fail_next(1, status=503)
    central.faults.fail_next(1, status=429, retry_after=3000)
    runtime.uploader.run_once()
    clock.advance(60)
    assert (runtime.uploader.run_once().retry_in_s or 0) > 100  # Retry-After, capped at backoff_max_s
    alert = trapped(runtime)
    assert runtime.uploader.run_once().status == "sent"  # EN 81-28: the alarm goes at once
    assert central.events(NODE, kind="trapped_passenger")[0]["id"] == alert.id


def test_backoff_is_capped_lower_while_an_alert_waits(tmp_path: Path, clock: ManualClock, runtimes: list) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    runtime = make_runtime(tmp_path, f"http://127.0.0.1:{port}", "t", clock, central={"backoff_max_s": 3600.0})
    runtimes.append(runtime)
    trapped(runtime)
    waits = []
    for _ in range(20):
        result = runtime.uploader.run_once()
        assert result.status == "backoff" and "ConnectionError" in (result.error or "")
        waits.append(result.retry_in_s or 0.0)
        clock.advance(result.retry_in_s or 0)
    assert max(waits) <= ALERT_BACKOFF_MAX_S
    assert runtime.outbox.depth()["alert"] == 1


def test_uploads_carry_the_node_wall_time(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    clock.set_wall(1_000_000.0, synced=False)  # a Pi that booted without NTP
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock)
    runtimes.append(runtime)
    event = runtime.record_state("door_state", {})
    runtime.uploader.run_once()
    assert fake.wall_times == [1_000_000.0]
    assert fake.events[event.id]["clock_synced"] is False


def test_thread_sends_an_alert_at_once(fake: FakeCentral, tmp_path: Path, runtimes: list) -> None:
    # batch_max_age 1 hour: only the early wake-up on an alert can send it within this test
    runtime = make_runtime(tmp_path, fake.url, fake.token, SystemClock(), central={"batch_max_age_s": 3600.0})
    runtimes.append(runtime)
    runtime.record_reading("car_position", {"n": 1})
    runtime.start()
    for _ in range(200):  # generous for a loaded CI machine; usually a few rounds
        if fake.heartbeats:
            break
        time.sleep(0.05)
    alert = trapped(runtime)
    for _ in range(200):  # generous for a loaded CI machine; usually a few rounds
        if alert.id in fake.events:
            break
        time.sleep(0.05)
    assert alert.id in fake.events
    runtime.stop()


# ----------------------------------------------------------------------------------------- auth, real central
def test_auth_no_token_wrong_token_other_node_and_replay(
    central: Any, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    from tests.fixtures.central import wire_event

    token = central.register(NODE, "elevator")
    other = central.register("cbxc-b9-u1-lift1", "elevator")
    url = f"{central.url}/api/v1/events"
    batch: dict[str, Any] = {"node_wall_time": time.time(), "events": [wire_event(NODE, 1)]}
    # no token
    assert requests.post(url, json=batch, timeout=10).status_code == 401
    # wrong token, through the node's own uploader: paused, nothing lost
    runtime = make_runtime(tmp_path / "wrong", central.url, "not-the-token", clock)
    runtimes.append(runtime)
    event = trapped(runtime)
    refused = runtime.uploader.run_once()
    assert refused.status == "auth_blocked" and "HTTP 401 unauthorized" in (refused.error or "")
    assert runtime.outbox.depth()["alert"] == 1
    assert central.events(NODE) == []
    # another node's events with this node's token
    answer = central.post_events(other, batch["events"])
    assert answer.status_code == 200 and answer.json()["accepted"] == []
    assert [r["code"] for r in answer.json()["rejected"]] == ["foreign_event"]  # one rejection, not a 403
    assert central.events(NODE) == []
    # replay of a batch: acknowledged again, stored once
    events = batch["events"]
    first = central.post_events(token, events)
    again = central.post_events(token, events)
    assert first.status_code == again.status_code == 200
    assert first.json()["accepted"] == again.json()["accepted"] == [events[0]["id"]]
    assert len(central.events(NODE)) == 1
    # the rotated token reaches the node: it resumes on its next auth retry
    runtime.config.central.token_file.write_text(token)
    clock.advance(runtime.config.central.auth_retry_s + 1)
    drain(runtime, clock)
    assert event.id in {e["id"] for e in central.events(NODE)}


def test_thread_wakes_for_a_state_event(fake: FakeCentral, tmp_path: Path, runtimes: list) -> None:
    # nothing else would wake the thread within this test: idle wake-up is 60 s, heartbeat 300 s
    runtime = make_runtime(tmp_path, fake.url, fake.token, SystemClock())
    runtimes.append(runtime)
    runtime.start()
    for _ in range(200):  # generous for a loaded CI machine; usually a few rounds
        if fake.heartbeats:
            break
        time.sleep(0.05)
    event = runtime.record_state("door_state", {"open": True})
    for _ in range(200):  # generous for a loaded CI machine; usually a few rounds
        if event.id in fake.events:
            break
        time.sleep(0.05)
    assert event.id in fake.events


def test_the_upload_thread_survives_an_unexpected_error(
    fake: FakeCentral, tmp_path: Path, runtimes: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(tmp_path, fake.url, fake.token, SystemClock())
    runtimes.append(runtime)
    real = runtime.uploader.run_once
    calls = []

    def flaky() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in a health callback")
        return real()

    monkeypatch.setattr(runtime.uploader, "run_once", flaky)
    monkeypatch.setattr("common.sync.wait_on_clock", lambda _clock, _s, wake: wake.wait(0.02))
    runtime.start()
    event = runtime.record_state("door_state", {})
    for _ in range(500):
        if event.id in fake.events:
            break
        time.sleep(0.02)
    assert event.id in fake.events
    assert runtime.uploader.status()["loop_errors"] == 1


def test_plain_http_to_another_host_is_warned_about(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxSection(), clock)
    with caplog.at_level(logging.WARNING, logger="common.sync"):
        Uploader(node_config(tmp_path, "http://127.0.0.1:8080", "t"), box, clock)
        assert "plain HTTP" not in caplog.text
        Uploader(node_config(tmp_path, "http://central.example.org", "t"), box, clock)
        assert "plain HTTP" in caplog.text
    box.close()


def test_wait_on_clock_follows_the_clock_not_the_wall(clock: ManualClock) -> None:
    from common.clock import wait_on_clock

    wake = threading.Event()
    done = threading.Event()
    result: list[bool] = []

    def waiter() -> None:
        result.append(wait_on_clock(clock, 30.0, wake))
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not done.wait(0.2)  # real time passes, simulated time does not
    clock.set_wall(clock.wall() + 3600)  # a wall-clock jump (NTP step) must not end the wait
    assert not done.wait(0.2)
    clock.advance(30.0)
    assert done.wait(5)
    assert result == [False]
    thread.join()
    result.clear()
    wake.set()
    assert wait_on_clock(clock, 1000.0, wake) is True  # woken early


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(200, {"accepted": [], "rejected": []}), "NoAck"),  # a reply that acknowledges nothing
        (Reply(302, b"", {"Location": "http://127.0.0.1:1/elsewhere"}), "302"),  # a redirect is not followed
    ],
    ids=["acknowledges-nothing", "redirect"],
)
def test_a_reply_that_is_no_acknowledgement_backs_off_and_keeps_the_event(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list, reply: Reply, error: str
) -> None:
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock)
    runtimes.append(runtime)
    runtime.uploader.run_once()
    event = runtime.record_state("door_state", {})
    fake.then(reply)
    result = runtime.uploader.run_once()
    assert result.status == "backoff" and error in (result.error or "")
    assert runtime.outbox.depth()["state"] == 1
    clock.advance(result.retry_in_s or 0)
    assert runtime.uploader.run_once().status == "sent"
    assert event.id in fake.events
