"""What every fault test shares: a lift node's runtime on a ManualClock, a mix of alerts, state events and
readings, driving the uploader through a fault, and the end check against the real central: every event whose
``put`` returned is stored there exactly once, nothing is left queued and nothing is a dead letter."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from common.clock import ManualClock
from common.events import Detection, Event
from common.service import NodeRuntime
from tests.sync_helpers import node_config, run_until

NODE = "cbxc-b7-u2-lift1"
# tight bounds so a fault shows within a test's time: 2 s per request, 64 KiB per reply
FAULT_CENTRAL = {
    "request_limit_s": 2.0,
    "connect_timeout_s": 1.0,
    "read_timeout_s": 1.0,
    "max_reply_kb": 64,
    "backoff_max_s": 30.0,
    "heartbeat_interval_s": 86400.0,
}


def fault_node(tmp: Path, url: str, token: str, clock: Any, **sections: Any) -> NodeRuntime:
    """A lift node's runtime (outbox, alert book, uploader) with the fault bounds; not started."""
    central = {**FAULT_CENTRAL, **sections.pop("central", {})}
    written = (tmp / "token").exists()  # a restart on a full disk: the token file is there already
    config = node_config(
        tmp, url, None if written else token, node_id=NODE, role="elevator", central=central, **sections
    )
    runtime = NodeRuntime(config, clock)
    runtime.uploader._rng = random.Random(7)  # noqa: SLF001 - reproducible jitter
    return runtime


def provision(tmp: Path, token: str) -> None:
    """The token file as ``provision register`` leaves it (before the disk fills)."""
    (tmp / "token").write_text(token + "\n")
    (tmp / "token").chmod(0o600)


def put_mix(runtime: NodeRuntime, alerts: int = 3, states: int = 5, readings: int = 20) -> list[Event]:
    """Alerts (each its own incident), state events and readings, as a lift node makes them."""
    made: list[Event] = []
    for i in range(alerts):
        detection = Detection("entrapment", "raised", 0.0, "urgent", {"seconds_trapped": 90.0 + i}, key=f"car-{i}")
        made.append(runtime.emit(detection, ("property_management", "maintenance")))
    made += [runtime.record_state("door_state", {"open": i % 2 == 0}) for i in range(states)]
    made += [runtime.record_reading("car_position", {"n": i}) for i in range(readings)]
    runtime.outbox.flush()
    return made


def step(runtime: NodeRuntime, clock: ManualClock) -> Any:
    """One uploader step, then the clock moved over whatever wait it asked for."""
    result = runtime.uploader.run_once()
    clock.advance(result.retry_in_s if result.retry_in_s else 0.5)
    return result


def drain(runtime: NodeRuntime, clock: ManualClock, limit: int = 500) -> int:
    return run_until(lambda: step(runtime, clock), lambda: sum(runtime.outbox.depth().values()) == 0, limit)


def assert_delivered_once(central: Any, runtime: NodeRuntime, made: list[Event], dead: int = 0) -> None:
    """Nothing acknowledged is lost, nothing is stored twice, nothing is left behind or (but ``dead`` events
    the test made invalid on purpose) dead-lettered."""
    stored = Counter(e["id"] for e in central.events(NODE))
    missing = [e.kind for e in made if stored[e.id] == 0]
    assert not missing, f"{len(missing)} events never reached the central: {missing[:5]}"
    assert max(stored.values()) == 1, "an event was stored twice"
    assert sum(runtime.outbox.depth().values()) == 0
    assert len(runtime.outbox.dead_letters()) == dead
    alerts = {a["alert_id"] for a in central.alerts()} if made else set()
    assert {e.alert_id for e in made if e.priority == "alert"} <= alerts
