"""Fault suite, disk half: the node on a real small filesystem (tmpfs, or ext4 on a loop device) that is full or
read-only, at start and while it runs, with the real central. One test per case; each checks that the node
keeps running and keeps every event, and that once the fault ends every event reaches the central exactly
once and nothing is left behind."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.small_disk import CannotMount, SmallDisk
from common.clock import ManualClock
from common.config import parse_config
from common.events import Detection
from elevator_node.node import build_node
from elevator_node.sim import lift_sensors
from tests.fault_helpers import NODE, assert_delivered_once, drain, fault_node, provision, put_mix, step
from tests.test_elevator_node import config_text


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def mounted(tmp_path: Path, kind: str = "tmpfs", size_kib: int = 8192) -> Iterator[SmallDisk]:
    try:
        disk = SmallDisk(tmp_path / "card", size_kib, kind)
    except CannotMount as exc:
        pytest.skip(f"no small filesystem to fill: {exc}")
    try:
        yield disk
    finally:
        disk.unmount()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    yield from mounted(tmp_path)


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[SmallDisk]:
    yield from mounted(tmp_path, "ext4")


def restore(runtime: Any, clock: ManualClock) -> None:
    """Time passes (the store tries a refusing disk every 5 s) and the housekeeping runs."""
    clock.advance(6.0)
    runtime.outbox.flush_due()


def aside(disk: SmallDisk) -> list[str]:
    return [p.name for p in (disk.root / "data" / NODE).iterdir() if ".corrupt-" in p.name]


# ------------------------------------------------------------------------------------------ at start
def test_a_node_starts_on_a_full_disk_with_an_empty_data_dir(central: Any, disk: SmallDisk, clock: ManualClock) -> None:
    token = central.register(NODE, "elevator")
    provision(disk.root, token)  # registered, never started: the data dir is empty
    disk.fill()
    runtime = fault_node(disk.root, central.url, token, clock)  # it used to exit 1 here
    try:
        made = put_mix(runtime)
        stats = runtime.outbox.stats()
        assert stats["volatile"] and stats["storage"].startswith("in memory")
        assert sum(runtime.outbox.depth().values()) == len(made)
        drain(runtime, clock)  # the central takes them from memory while the disk is full
        disk.free()
        restore(runtime, clock)
        assert runtime.outbox.stats()["storage"] == "ok"
        extra = put_mix(runtime, alerts=1, states=1, readings=1)  # on disk again
        assert (disk.root / "data" / NODE / "outbox.sqlite").stat().st_mode & 0o077 == 0
        drain(runtime, clock)
        assert_delivered_once(central, runtime, made + extra)
    finally:
        runtime.stop()


def test_a_healthy_outbox_on_a_full_disk_is_kept_not_moved_aside(
    central: Any, ext4: SmallDisk, clock: ManualClock
) -> None:
    token = central.register(NODE, "elevator")
    first = fault_node(ext4.root, central.url, token, clock, outbox={"reserve_mb": 0.0})
    made = put_mix(first, alerts=3, states=5, readings=0)  # the audit's case: 3 alerts, 5 state events
    first.stop()  # never uploaded: all 8 are in the file
    ext4.fill()
    again = fault_node(ext4.root, central.url, token, clock, outbox={"reserve_mb": 0.0})
    try:
        assert again.outbox.stats()["storage"].startswith("in memory")  # the disk refused the start's write
        assert aside(ext4) == []
        assert again.outbox.depth()["alert"] == 3 and again.outbox.depth()["state"] == 5
        assert again.outbox.check() == "ok"
        drain(again, clock)  # sent from the full disk; the deletes wait in memory
        ext4.free()
        restore(again, clock)
        assert again.outbox.stats()["storage"] == "ok"
        assert_delivered_once(central, again, made)
    finally:
        again.stop()
    third = fault_node(ext4.root, central.url, token, clock)  # the deletes reached the file: nothing comes back
    try:
        assert sum(third.outbox.depth().values()) == 0 and aside(ext4) == []
    finally:
        third.stop()


def test_a_read_only_data_dir_at_start(central: Any, disk: SmallDisk, clock: ManualClock) -> None:
    token = central.register(NODE, "elevator")
    first = fault_node(disk.root, central.url, token, clock)
    made = put_mix(first, readings=5)
    first.stop()
    disk.read_only()
    runtime = fault_node(disk.root, central.url, token, clock)  # it used to exit 1 on the lock file
    try:
        assert runtime.outbox.stats()["volatile"] and runtime.outbox.depth()["alert"] == 3
        made += put_mix(runtime, alerts=2, states=1, readings=1)  # new ones wait in memory
        drain(runtime, clock)
        assert_delivered_once(central, runtime, made)
        disk.read_write()
        restore(runtime, clock)
        assert runtime.outbox.stats()["storage"] == "ok"
    finally:
        runtime.stop()
    again = fault_node(disk.root, central.url, token, clock)
    try:
        assert sum(again.outbox.depth().values()) == 0  # what the central acknowledged is not sent again
    finally:
        again.stop()


# ------------------------------------------------------------------------------------------ while running
def test_a_disk_filling_while_the_node_runs_keeps_every_alert(
    central: Any, disk: SmallDisk, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    token = central.register(NODE, "elevator")
    central.stop()  # nothing leaves the node while the disk fills: every alert must be stored
    runtime = fault_node(disk.root, central.url, token, clock)
    try:
        made = put_mix(runtime, alerts=0, states=5, readings=200)
        assert runtime.outbox.stats()["reserve_bytes"] >= 2 * 1024 * 1024
        disk.fill()
        caplog.set_level(logging.INFO, logger="common.outbox")
        for i in range(20):
            detection = Detection("entrapment", "raised", 0.0, "urgent", {"seconds_trapped": 90.0 + i}, key=f"car-{i}")
            made.append(runtime.emit(detection, ("maintenance",)))
        assert runtime.outbox.depth()["alert"] == 20
        assert runtime.outbox.stats()["reserve_bytes"] == 0  # released for them
        assert caplog.text.count("cannot make room") <= 1 and caplog.text.count("REFUSES WRITES") <= 1
        central.start()
        disk.free()
        restore(runtime, clock)
        drain(runtime, clock)
        assert_delivered_once(central, runtime, made)
        clock.advance(61.0)
        runtime.outbox.flush_due()
        assert runtime.outbox.stats()["reserve_bytes"] >= 2 * 1024 * 1024  # made again once there is room
    finally:
        runtime.stop()


def test_a_node_restarted_on_a_full_disk(central: Any, disk: SmallDisk, clock: ManualClock) -> None:
    token = central.register(NODE, "elevator")
    runtime = fault_node(disk.root, central.url, token, clock, outbox={"reserve_mb": 0.5})
    made = put_mix(runtime)
    step(runtime, clock)
    disk.fill()
    made += put_mix(runtime, alerts=2, states=2, readings=2)
    drain(runtime, clock)  # what waited in memory reached the central before the stop
    runtime.stop()
    again = fault_node(disk.root, central.url, token, clock, outbox={"reserve_mb": 0.5})
    try:
        made += put_mix(again, alerts=2, states=0, readings=0)
        assert again.outbox.depth()["alert"] >= 2
        drain(again, clock)
        disk.free()
        restore(again, clock)
        assert again.outbox.stats()["storage"] == "ok"
        assert_delivered_once(central, again, made)
        assert aside(disk) == []
    finally:
        again.stop()
    with sqlite3.connect(disk.root / "data" / NODE / "outbox.sqlite") as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"


# ------------------------------------------------------------------------------------------ the lift itself
@pytest.mark.skipif(not shutil.which("espeak-ng") or not shutil.which("aplay"), reason="espeak-ng and aplay needed")
@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_the_lift_detects_and_speaks_on_a_full_or_read_only_disk(
    central: Any, disk: SmallDisk, mock_factory: Any, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    token = central.register(NODE, "elevator")
    provision(disk.root, token)
    document = tomllib.loads(config_text(disk.root, central.url))  # the lift node tests' wiring, data on the card
    document["audio"] = {"backend": "espeak", "device": "null"}  # the real voice, played to ALSA's null device
    config = parse_config(document, disk.root / "node.toml")
    # the temporary folder on the same card, as /tmp is on a Pi without a tmpfs /tmp (chosen at start, before
    # the card filled up)
    monkeypatch.setattr(tempfile, "tempdir", str(disk.root))
    if fault == "full":
        disk.fill()
    else:
        disk.read_only()
    clock = ManualClock()
    node = build_node(config, clock)  # the real runtime and the real espeak-ng speaker, from the config
    try:
        car = lift_sensors(mock_factory, config.role_config)
        node.step()
        car.apply(in_door_zone=True, moving=False, door="open", occupied=True)
        car.apply(door="closed")
        for _ in range(184):  # 92 s in the node's 0.5 s ticks
            clock.advance(0.5)
            node.step()
        assert node.runtime.outbox.depth()["alert"] == 1  # raised, held in memory
        assert node.runtime.health()["selftest"]["state_saved"] is False  # the EN 81-28 self-test says so
        assert node.voice.speaker.wait_idle(30)
        health = node.voice.speaker.health()
        assert health["played"] >= 1 and health["failed"] == 0, health  # the car spoke to the passenger
        node.runtime.uploader.run_once()
        assert [a["kind"] for a in central.alerts()] == ["entrapment"]  # and the alert left the full disk
    finally:
        node.close()


@pytest.mark.parametrize("mix", [(2, 2, 3), (0, 0, 250)], ids=["alerts-state-readings", "readings-only"])
def test_a_stop_on_a_full_disk_sends_what_only_memory_holds(
    central: Any, disk: SmallDisk, clock: ManualClock, mix: tuple[int, int, int]
) -> None:
    token = central.register(NODE, "elevator")
    runtime = fault_node(disk.root, central.url, token, clock, outbox={"reserve_mb": 0.0})
    disk.fill()
    made = put_mix(runtime, *mix)  # the disk takes none of them (250 readings: more than one batch)
    assert sum(runtime.outbox.stats()["unstored"].values()) == len(made)
    runtime.stop()  # the service is stopped (an update, a reboot) before the uploader's next turn
    stored = {e["id"] for e in central.events(NODE)}
    assert {e.id for e in made} <= stored
