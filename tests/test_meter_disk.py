"""The meter node on a full disk (issue 12), on a real small tmpfs as the lift's cases in test_faults_disk.py: a
silent household's inactivity alert is raised, chimed and kept while the card is full, every reading and alert
reaches the central exactly once when the card has room again, the node never stops reading, and a restart on
the full card neither crashes nor raises the open incident a second time."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.small_disk import SmallDisk
from common.clock import ManualClock
from common.events import Event
from meter_node.node import STATE_FILE
from meter_node.voice import CHIME_TEXT
from tests.test_faults_disk import mounted, restore
from tests.test_meter_node import NODE_ID, ONE_METER, START_WALL, Harness, Speaker, TableBus, node_config


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    yield from mounted(tmp_path, size_kib=8192)


def recorded(h: Harness) -> list[Event]:
    """Every event the node's outbox returned from a put (acknowledged to the node's code)."""
    made: list[Event] = []
    outbox = h.runtime.outbox
    put, put_many = outbox.put, outbox.put_many

    def one(event: Event, **kw: Any) -> Event:
        made.append(put(event, **kw))
        return made[-1]

    def many(events: Any, **kw: Any) -> list[Event]:
        stored = put_many(events, **kw)
        made.extend(stored)
        return stored

    outbox.put, outbox.put_many = one, many  # type: ignore[method-assign]  # a recording wrapper, this test's only
    return made


def assert_at_central_once(central: Any, made: list[Event]) -> None:
    stored = Counter(e["id"] for e in central.events(NODE_ID))
    missing = [e.kind for e in made if stored[e.id] == 0]
    assert not missing, f"{len(missing)} of {len(made)} events never reached the central: {missing[:5]}"
    assert max(stored.values()) == 1, "an event was stored twice"


def reserve_of(disk: SmallDisk) -> Path:
    return disk.root / "data" / NODE_ID / (STATE_FILE + ".reserve")


def morning_use(bus: TableBus) -> Any:
    """06:00-06:20: washing, then silence (as in test_meter_node: no missed-morning alert, only inactivity)."""

    def use(now: float) -> None:
        if now < 1000 + 20 * 60:
            litres = bus.litres[1]
            assert not isinstance(litres, BaseException), "this household's meter answers"
            bus.litres[1] = litres + 3.0

    return use


def silent_household(disk: SmallDisk, central: Any, reserve_mb: float | None = None) -> tuple[TableBus, Any]:
    token = central.register(NODE_ID, "meter")
    (disk.root / "token").write_text(token)
    (disk.root / "token").chmod(0o600)
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    extra = "" if reserve_mb is None else f"[outbox]\nreserve_mb = {reserve_mb}\n"
    return bus, node_config(disk.root, central.url, ONE_METER, extra)


@pytest.mark.parametrize("reserve_mb", [None, 0.0], ids=["reserve", "memory-only"])
def test_a_silent_household_is_alerted_and_nothing_lost_while_the_card_is_full(
    central: Any, disk: SmallDisk, reserve_mb: float | None
) -> None:
    bus, config = silent_household(disk, central, reserve_mb)
    central.stop()  # nothing leaves the node while the card is full: everything must be kept by the node
    speaker = Speaker()
    h = Harness(config, bus, ManualClock(wall=START_WALL), speaker)
    made = recorded(h)
    speaker.outbox = h.runtime.outbox
    try:
        h.run(3600, morning_use(bus))  # an hour of readings on a healthy card
        assert reserve_of(disk).stat().st_size > 0
        disk.fill()
        reads_before = h.node.health()["meters"]["b12-301"]["reads_ok"]
        h.run(8 * 3600)  # the household stays silent: past 8 h, inactivity (warning)
        assert speaker.texts == [CHIME_TEXT]
        assert speaker.alerts_stored_when_said == [1]  # kept (reserve or memory) before the chime
        assert h.node.health()["meters"]["b12-301"]["reads_ok"] >= reads_before + 8 * 60 - 5  # still reading
        assert not reserve_of(disk).exists()  # the card was full: the state's reserve was given up for it
        assert sum(1 for e in made if e.kind == "inactivity") == 1
        central.start()
        disk.free()
        restore(h.runtime, h.clock)
        h.run(120)
        h.sync()
        assert_at_central_once(central, made)
        assert [a["kind"] for a in central.alerts()] == ["inactivity"]
        state = json.loads((disk.root / "data" / NODE_ID / STATE_FILE).read_text())  # saved once there was room
        assert state["counters"]["b12-301"]["last_raw"] == bus.litres[1]
    finally:
        h.close()


@pytest.mark.parametrize("reserve_mb", [None, 0.0], ids=["reserve", "memory-only"])
def test_a_restart_on_the_full_card_keeps_the_open_incident(
    central: Any, disk: SmallDisk, reserve_mb: float | None
) -> None:
    bus, config = silent_household(disk, central, reserve_mb)
    clock = ManualClock(wall=START_WALL)
    first = Harness(config, bus, clock)
    made = recorded(first)
    first.run(3600, morning_use(bus))
    disk.fill()
    first.run(8 * 3600)  # inactivity raised while the card is full; its state cannot be saved
    first.sync()
    assert not reserve_of(disk).exists(), "the card was not full"
    first.close()
    second = Harness(config, bus, clock)  # the process restarted (a watchdog, a power blip) on the full card
    made += recorded(second)
    try:
        second.run(4 * 3600)  # past 12 h: urgent, an update of the same alert, never a second one
        disk.free()
        restore(second.runtime, clock)
        second.run(120)
        second.sync()
        assert_at_central_once(central, made)
        alerts = [a for a in central.alerts() if a["kind"] == "inactivity"]
        assert len(alerts) == 1, alerts
        assert alerts[0]["severity"] == "urgent"
        events = central.events(NODE_ID, kind="inactivity")
        assert [e["state"] for e in events] == ["raised", "updated"] and len({e["alert_id"] for e in events}) == 1
    finally:
        second.close()
