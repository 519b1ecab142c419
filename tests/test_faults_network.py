"""Fault suite, network half: the node's uploader behind a hostile network (tests/hostile.py) in front of the
real central. One test per fault; each drives the node through the fault, then heals the network and checks
that every event whose put returned reached the central exactly once and none became a dead letter."""

from __future__ import annotations

import email.utils
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.hostile import SPRING_BOOT_404_HTML, SPRING_BOOT_404_JSON, Fault, HostileProxy, hostile_proxy
from common.clock import ManualClock
from common.events import make_event
from tests.fault_helpers import NODE, assert_delivered_once, drain, fault_node, put_mix, step


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def proxy(central: Any) -> Iterator[HostileProxy]:
    with hostile_proxy(central.url) as hostile:
        yield hostile


@pytest.fixture
def node(central: Any, proxy: HostileProxy, tmp_path: Path, clock: ManualClock) -> Iterator[Any]:
    runtime = fault_node(tmp_path, proxy.url, central.register(NODE, "elevator"), clock)
    # the start-up self-test and heartbeat go through before the fault; then drained, since on a loaded machine
    # that step can time out (1 s read timeout) and leave the self-test as an extra event in every count below
    step(runtime, clock)
    drain(runtime, clock)
    yield runtime
    runtime.stop()


def through_fault(node: Any, clock: ManualClock, steps: int = 12) -> list[Any]:
    """Drive the uploader while the fault lasts; nothing may leave the outbox but into the central."""
    results = [step(node, clock) for _ in range(steps)]
    assert node.outbox.dead_letters() == []
    return results


# ------------------------------------------------------------------------------------ refusals that are not ours
PERSISTENT_REFUSALS = {
    "413-to-every-request": Fault(
        "reply", 413, b"<html>413 Request Entity Too Large</html>", {"Content-Type": "text/html"}
    ),
    "404-spring-boot-html": Fault("reply", 404, SPRING_BOOT_404_HTML, {"Content-Type": "text/html"}),
    "404-spring-boot-json": Fault("reply", 404, SPRING_BOOT_404_JSON, {"Content-Type": "application/json"}),
    "500": Fault("reply", 500, b"Internal Server Error", {"Content-Type": "text/plain"}),
    "401-from-a-proxy": Fault(
        "reply", 401, b'{"error":"unauthorized","message":"events"}', {"Content-Type": "application/json"}
    ),
    "403-from-a-firewall": Fault("reply", 403, b"<html>Access denied</html>", {"Content-Type": "text/html"}),
    "200-garbage": Fault("reply", 200, b"\x00\xff garbage {events", {"Content-Type": "application/json"}),
    "200-captive-portal": Fault(
        "reply", 200, b"<html><form>Log in to the Wi-Fi</form></html>", {"Content-Type": "text/html"}
    ),
    "200-json-without-ack": Fault("reply", 200, b'{"events":"ok"}', {"Content-Type": "application/json"}),
}


@pytest.mark.parametrize("fault", PERSISTENT_REFUSALS.values(), ids=PERSISTENT_REFUSALS.keys())
def test_a_refusal_that_is_not_our_centrals_keeps_everything(
    central: Any, proxy: HostileProxy, node: Any, clock: ManualClock, fault: Fault
) -> None:
    made = put_mix(node)
    proxy.always(fault)
    results = through_fault(node, clock)
    assert all(r.status == "backoff" for r in results if r.requests), [r.status for r in results]
    assert proxy.hits("reply") >= 3 and sum(node.outbox.depth().values()) == len(made)
    proxy.heal()
    drain(node, clock)
    assert_delivered_once(central, node, made)


# ------------------------------------------------------------------------------------ 429 and Retry-After
@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("17", 17.0), ("http-date +20 s", 20.0), ("soon, maybe", None), ("-5", 0.0), ("86400", 30.0)],
    ids=["seconds", "http-date", "garbage", "negative", "a-day-capped"],
)
def test_429_retry_after_is_honoured_within_the_cap(
    central: Any, proxy: HostileProxy, node: Any, clock: ManualClock, retry_after: str, expected: float | None
) -> None:
    if retry_after.startswith("http-date"):  # an HTTP date 20 s after the node's own clock
        retry_after = email.utils.formatdate(clock.wall() + 20, usegmt=True)
    made = put_mix(node, alerts=0)  # no alert waiting: backoff_max_s (30 s) is the cap
    proxy.script(Fault("reply", 429, b"slow down", {"Retry-After": retry_after}))
    result = node.uploader.run_once()
    assert result.status == "backoff" and "429" in (result.error or "")
    if expected is None:  # unreadable: our own full-jitter backoff (first failure: at most 1 s)
        assert 0.0 <= result.retry_in_s <= 1.0
    else:
        assert result.retry_in_s == pytest.approx(expected, abs=2.0)
    clock.advance(result.retry_in_s)
    drain(node, clock)
    assert_delivered_once(central, node, made)


# ------------------------------------------------------------------------------------ broken replies
def test_a_reply_dripped_one_byte_a_second_ends_at_the_request_limit(
    central: Any, proxy: HostileProxy, node: Any, clock: ManualClock
) -> None:
    made = put_mix(node)
    proxy.script(Fault("drip", interval_s=0.2))
    started = time.monotonic()
    result = node.uploader.run_once()
    took = time.monotonic() - started
    assert result.status == "backoff" and "Deadline" in (result.error or "")
    assert took < 2.0 + 1.5  # the 2 s request limit, not the drip's hour
    clock.advance(result.retry_in_s)
    drain(node, clock)
    assert_delivered_once(central, node, made)


def test_a_300_mb_reply_is_refused_without_taking_the_memory(
    central: Any, proxy: HostileProxy, node: Any, clock: ManualClock
) -> None:
    made = put_mix(node)
    proxy.script(Fault("huge", size=300 * 1024 * 1024))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the high-water mark so far
    result = node.uploader.run_once()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.status == "backoff" and "ReplyTooLarge" in (result.error or "")
    assert grown_kib < 50 * 1024
    clock.advance(result.retry_in_s)
    drain(node, clock)
    assert_delivered_once(central, node, made)


def test_a_connection_reset_mid_reply_after_the_central_stored_the_events(
    central: Any, proxy: HostileProxy, node: Any, clock: ManualClock
) -> None:
    made = put_mix(node)
    proxy.script(Fault("reset"))  # the central stores the batch; the node never sees the acknowledgement
    result = node.uploader.run_once()
    assert result.status == "backoff"
    assert sum(node.outbox.depth().values()) == len(made)
    assert {e.id for e in made if e.priority == "alert"} <= {e["id"] for e in central.events(NODE)}
    clock.advance(result.retry_in_s)
    drain(node, clock)  # sent again: the central keeps each event once, by id
    assert_delivered_once(central, node, made)


def test_a_redirect_is_not_followed(central: Any, proxy: HostileProxy, node: Any, clock: ManualClock) -> None:
    made = put_mix(node)
    with hostile_proxy() as elsewhere:
        proxy.script(Fault("redirect", location=f"{elsewhere.url}/api/v1/events"), count=3)
        results = through_fault(node, clock, steps=3)
        assert elsewhere.requests == []  # neither the token nor the events went to the redirect's target
    assert results[0].status == "backoff" and "307" in (results[0].error or "")
    drain(node, clock)
    assert_delivered_once(central, node, made)


@pytest.mark.parametrize("other", ["", "cbxc-b9-u1-lift1"], ids=["without-node-id", "another-nodes-id"])
def test_an_event_of_no_or_another_node_is_one_dead_letter_not_an_auth_block(
    central: Any, node: Any, clock: ManualClock, other: str
) -> None:
    made = put_mix(node, readings=0)
    stray = node.outbox.put(make_event(other, "door_state", wall_time=clock.wall(), clock_synced=True))
    result = node.uploader.run_once()
    assert result.status == "sent" and result.dead_lettered == 1, result
    assert not node.uploader.status()["auth_blocked"]
    [letter] = node.outbox.dead_letters()
    assert letter["id"] == stray.id and "foreign_event" in letter["reason"]
    node.outbox.requeue_dead_letters()  # kept, not lost: it can be sent again (and is refused again)
    drain_result = node.uploader.run_once()
    assert drain_result.dead_lettered == 1
    assert_delivered_once(central, node, made, dead=1)
