"""The uploader's answers to what a central says (heartbeats, self-test reports, dead letters, 413, retry-after,
backoff), its token and TLS handling, against a scripted central (tests/sync_helpers.py) and the real one."""

from __future__ import annotations

import logging
import random
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.clock import ManualClock
from common.config import OutboxSection
from common.events import make_event
from common.outbox import Outbox
from common.reply import parse_retry_after
from common.sync import Uploader
from tests import test_sync
from tests.sync_helpers import FakeCentral, Reply, node_config, refusal
from tests.test_sync import drain, make_runtime, trapped

clock = test_sync.clock  # the fixture
fake = test_sync.fake  # the fixture
runtimes = test_sync.runtimes  # the fixture


def test_heartbeat_fields_and_interval(fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list) -> None:
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock, central={"heartbeat_interval_s": 60.0})
    runtimes.append(runtime)
    runtime.set_health(last_sensor_read=clock.wall() - 4, door_closed=True)
    runtime.uploader.run_once()
    [beat] = fake.heartbeats
    for key in ("uptime_s", "version", "outbox_depth", "dropped", "dead_letters", "clock_synced", "selftest"):
        assert key in beat, key
    assert beat["last_sensor_read"] == clock.wall() - 4
    assert beat["outbox_depth"] == {"alert": 0, "state": 0, "reading": 0}
    assert beat["health"]["door_closed"] is True
    assert beat["selftest"]["ok"] is True
    assert beat["sync"]["consecutive_failures"] == 0
    clock.advance(59)
    runtime.uploader.run_once()
    assert len(fake.heartbeats) == 1
    clock.advance(2)
    runtime.uploader.run_once()
    assert len(fake.heartbeats) == 2
    assert fake.heartbeats[1]["uptime_s"] == pytest.approx(61)


def test_selftest_report_at_least_every_interval(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock, central={"selftest_interval_h": 72.0})
    runtimes.append(runtime)
    runtime.uploader.run_once()
    for _ in range(7 * 24):  # a week, hour by hour
        clock.advance(3600)
        runtime.uploader.run_once()
    tests = sorted(e["wall_time"] for e in fake.events.values() if e["kind"] == "selftest")
    assert len(tests) == 3  # start, +72 h, +144 h
    assert all(b - a <= 72 * 3600 for a, b in zip(tests, tests[1:], strict=False))
    assert all(e["payload"]["ok"] for e in fake.events.values() if e["kind"] == "selftest")


def test_rejected_events_become_dead_letters(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    fake.reject_kinds.add("bogus")
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock)
    runtimes.append(runtime)
    bad = runtime.record_state("bogus", {})
    good = runtime.record_state("door_state", {})
    result = runtime.uploader.run_once()
    assert result.dead_lettered == 1
    assert good.id in fake.events and bad.id not in fake.events
    assert runtime.outbox.depth()["state"] == 0
    [letter] = runtime.outbox.dead_letters()
    assert letter["id"] == bad.id and "kind not allowed" in letter["reason"]
    clock.advance(400)
    runtime.uploader.run_once()
    assert fake.heartbeats[-1]["dead_letters"] == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(422, refusal("invalid_body", "events: invalid", ["events"])),  # ours, about the whole envelope
        Reply(400, {"error": "invalid", "message": "events[0]: bad event"}),  # not ours: names events, means nothing
    ],
    ids=["our-422", "foreign-400-naming-events"],
)
def test_a_whole_batch_refusal_dead_letters_nothing(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list, reply: Reply
) -> None:
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock)
    runtimes.append(runtime)
    runtime.uploader.run_once()
    events = [runtime.record_state("door_state", {"n": i}) for i in range(3)]
    fake.then(reply)
    result = runtime.uploader.run_once()
    assert result.status == "backoff" and str(reply.status) in (result.error or "")
    assert result.requests == 1  # not bisected: only 413 splits a batch
    assert runtime.outbox.dead_letters() == []
    assert runtime.outbox.depth()["state"] == len(events)
    drain(runtime, clock)
    assert {e.id for e in events} <= set(fake.events)


def test_a_rejection_that_is_not_final_is_kept_and_retried_later(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    fake.retry_kinds.add("door_state")
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock, central={"backoff_max_s": 60.0})
    runtimes.append(runtime)
    runtime.uploader.run_once()
    held = runtime.record_state("door_state", {})
    result = runtime.uploader.run_once()
    # nothing taken: a back-off (not a spin), the event kept and held out of the next batches
    assert result.status == "backoff" and result.held == 1 and result.dead_lettered == 0
    alert = trapped(runtime)  # an alert cuts the wait short, and the held event does not stall it
    result = runtime.uploader.run_once()
    assert result.status == "sent" and alert.id in fake.events
    assert runtime.outbox.depth()["state"] == 1 and runtime.outbox.dead_letters() == []
    fake.retry_kinds.clear()
    clock.advance(59)
    assert runtime.uploader.run_once().requests == 0  # still held: nothing to send
    clock.advance(2)
    drain(runtime, clock)
    assert held.id in fake.events


def test_413_splits_the_batch(fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list) -> None:
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock)
    runtimes.append(runtime)
    runtime.uploader.run_once()
    events = [runtime.record_state("door_state", {"n": i}) for i in range(8)]
    fake.then(Reply(413, {"error": "too_large"}))
    assert runtime.uploader.run_once().status == "sent"
    assert {e.id for e in events} <= set(fake.events)
    assert runtime.outbox.dead_letters() == []


def test_missing_token_file_keeps_events_and_retries(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    runtime = make_runtime(tmp_path, fake.url, None, clock)
    runtimes.append(runtime)
    event = trapped(runtime)
    result = runtime.uploader.run_once()
    assert result.status == "no_token" and "does not exist" in (result.error or "")
    assert fake.requests == []
    assert runtime.outbox.depth()["alert"] == 1
    token_file = runtime.config.central.token_file
    token_file.write_text(fake.token)
    token_file.chmod(0o600)
    clock.advance(61)
    assert runtime.uploader.run_once().status == "sent"
    assert event.id in fake.events


def test_a_token_file_readable_by_others_is_warned_about(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock)
    runtimes.append(runtime)
    runtime.config.central.token_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="common.sync"):
        runtime.uploader.run_once()
    assert "readable by others" in caplog.text and fake.token not in caplog.text


def test_events_of_another_node_id_are_dead_lettered_not_sent(
    fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    runtime = make_runtime(tmp_path, fake.url, fake.token, clock)
    runtimes.append(runtime)
    foreign = runtime.outbox.put(make_event("some-other-node", "door_state", wall_time=1.0, clock_synced=True))
    mine = runtime.record_state("door_state", {})
    runtime.uploader.run_once()
    assert mine.id in fake.events and foreign.id not in fake.events
    assert [d["id"] for d in runtime.outbox.dead_letters()] == [foreign.id]


def test_full_jitter_backoff_stays_under_the_cap(tmp_path: Path, clock: ManualClock) -> None:
    config = node_config(tmp_path, "http://127.0.0.1:9", "t", central={"backoff_max_s": 20.0})
    box = Outbox(tmp_path / "o.sqlite", OutboxSection(), clock)
    uploader = Uploader(config, box, clock, rng=random.Random(3))
    box.put(make_event(config.node.id, "door_state", wall_time=1.0, clock_synced=True))
    waits = []
    for _ in range(30):
        result = uploader.run_once()
        waits.append(result.retry_in_s or 0.0)
        clock.advance(result.retry_in_s or 0)
    assert all(0 <= w <= 20.0 for w in waits)
    assert max(waits[10:]) > 10  # the ceiling grew to the cap
    uploader.stop()
    box.close()


def test_parse_retry_after() -> None:
    assert parse_retry_after("7", 0.0) == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 30) == pytest.approx(30.0)
    assert parse_retry_after("soon", 0.0) is None
    assert parse_retry_after(None, 0.0) is None


def test_tls_verification_is_always_on(tmp_path: Path, clock: ManualClock) -> None:
    config = node_config(tmp_path, "https://127.0.0.1:1", "t")
    box = Outbox(tmp_path / "o.sqlite", OutboxSection(), clock)
    uploader = Uploader(config, box, clock)
    assert uploader._http._session.verify is True  # noqa: SLF001
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    config = node_config(tmp_path, "https://127.0.0.1:1", "t", central={"ca_bundle": str(bundle)})
    assert Uploader(config, box, clock)._http._session.verify == str(bundle)  # noqa: SLF001
    box.close()


@pytest.fixture
def tls_central(tmp_path: Path, fake: FakeCentral) -> Iterator[tuple[str, Path]]:
    """A TLS front (openssl s_server would do; here Python's ssl) for the scripted central, with its own CA."""
    import ssl
    from http.server import ThreadingHTTPServer

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server: ThreadingHTTPServer = fake._server  # noqa: SLF001 - wrap the scripted central's socket in TLS
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure = ThreadingHTTPServer(("127.0.0.1", 0), server.RequestHandlerClass)
    secure.daemon_threads = True
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    thread = threading.Thread(target=secure.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{secure.server_address[1]}", cert
    finally:
        secure.shutdown()
        secure.server_close()
        thread.join(5)


def test_tls_with_an_unknown_ca_fails_and_keeps_events_then_the_ca_bundle_works(
    tls_central: tuple[str, Path], fake: FakeCentral, tmp_path: Path, clock: ManualClock, runtimes: list
) -> None:
    url, cert = tls_central
    runtime = make_runtime(tmp_path, url, fake.token, clock)
    runtimes.append(runtime)
    event = trapped(runtime)
    result = runtime.uploader.run_once()
    assert result.status == "backoff" and "SSLError" in (result.error or "")
    assert runtime.outbox.depth()["alert"] == 1
    runtime.stop()
    runtime = make_runtime(tmp_path, url, fake.token, clock, central={"ca_bundle": str(cert)})
    runtimes.append(runtime)
    assert runtime.uploader.run_once().status == "sent"
    assert event.id in fake.events
