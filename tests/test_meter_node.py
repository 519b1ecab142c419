"""The meter node end to end: simulated Modbus meters on a virtual serial pair, the real runtime, a real central.

Time is a ManualClock: each ``step()`` reads the meters that are due over the real serial pair, then the test
moves the clock on, so hours of a household's life take a fraction of a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.clock import ManualClock
from common.config import ConfigError, NodeConfig, load_config, parse_config
from common.service import NodeRuntime
from hal.audio import Wav
from meter_node.cadence import ReadingCadence
from meter_node.node import STATE_FILE, MeterBus, build_node
from meter_node.profiles import load_profile
from meter_node.voice import CHIME_TEXT
from tests.speech_helpers import RecordingSpeaker

ROOT = Path(__file__).resolve().parent.parent
NODE_ID = "cbxc-b12-meters"
# 2026-01-05 06:00 Asia/Shanghai (a Monday): the tests start early in the morning
START_WALL = 1_767_564_000.0


class TableBus:
    """Registers served from a table the test edits (slave -> litres, or an exception to raise).

    Used where a test is about the node's wiring over hours of a household's life (alerts, restart, buttons);
    the serial path and its faults are tested below against the pymodbus meter on a pty pair.
    """

    def __init__(self) -> None:
        self.profiles: dict[int, Any] = {}
        self.litres: dict[int, float | BaseException] = {}
        self.reads = 0

    def add(self, slave: int, profile: str, litres: float) -> None:
        self.profiles[slave] = load_profile(profile)
        self.litres[slave] = litres

    def read_registers(self, slave: int, address: int, count: int, function_code: int = 3) -> list[int]:
        self.reads += 1
        value = self.litres[slave]
        if isinstance(value, BaseException):
            raise value
        profile = self.profiles[slave]
        assert (address, count, function_code) == (profile.address, profile.count, profile.function_code)
        return profile.encode(value)

    def close(self) -> None:
        """Nothing to release (the node owns its bus and closes it)."""


def node_config(
    tmp_path: Path,
    central_url: str,
    meters: str,
    extra: str = "",
) -> NodeConfig:
    import tomllib

    text = f"""
[node]
id = "{NODE_ID}"
role = "meter"
site = "changbai-xincun"
timezone = "Asia/Shanghai"
data_dir = "{tmp_path / "data"}"

[central]
url = "{central_url}"
token_file = "{tmp_path / "token"}"
batch_max_age_s = 0

[audio]
backend = "none"

[meter]
reading_min_interval_s = 60
reading_sample_s = 900
{extra}

[meter.serial]
port = "/dev/null"
timeout_s = 0.1
retries = 0

{meters}
"""
    return parse_config(tomllib.loads(text), tmp_path / "node.toml")


ONE_METER = """
[[meter.meters]]
id = "b12-301"
address = 1
profile = "u32_le_litres"
poll_interval_s = 60
offline_after_s = 600
household = { resident = "B12-301", chime = true }
"""


@pytest.fixture
def registered(central: Any, tmp_path: Path) -> Any:
    token = central.register(NODE_ID, "meter", location="Building 12 meter cupboard")
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    return central


class Harness:
    """A node, its runtime and a ManualClock; ``run(seconds)`` steps the node through time."""

    def __init__(
        self, config: NodeConfig, bus: MeterBus | None, clock: ManualClock, speaker: Speaker | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.runtime = NodeRuntime(config, clock)
        self.speaker = speaker or Speaker()
        self.node = build_node(config, clock, runtime=self.runtime, bus=bus, speaker=self.speaker)

    def run(self, seconds: float, each: Callable[[float], None] | None = None) -> None:
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            next_due = self.node.step()
            if each is not None:
                each(self.clock.monotonic())
            self.clock.advance(max(0.001, min(next_due, end) - self.clock.monotonic()))

    def sync(self) -> None:
        """Upload everything now (the uploader's own thread is not started in these tests)."""
        for _ in range(20):
            result = self.runtime.uploader.run_once()
            if not sum(self.runtime.outbox.depth().values()):
                return
            assert result.status not in ("auth_blocked", "no_token"), result
        raise AssertionError(f"outbox not drained: {self.runtime.outbox.depth()}")

    def close(self) -> None:
        self.node.close()
        self.runtime.stop()


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for h in made:
        h.close()


class Speaker(RecordingSpeaker):
    """Records what is said, and what the outbox held at that moment (an alert is stored before the chime)."""

    def __init__(self) -> None:
        super().__init__()
        self.outbox: Any = None
        self.alerts_stored_when_said: list[int] = []

    def say(self, text: str | None = None, wav: Wav | None = None, volume: int | None = None) -> None:
        super().say(text, wav, volume)
        if self.outbox is not None:
            self.alerts_stored_when_said.append(self.outbox.depth()["alert"])


# ------------------------------------------------------------------------------------------ the cadence
def test_reading_cadence_records_changes_sparingly_and_samples_the_unchanged() -> None:
    cadence = ReadingCadence(min_interval_s=60.0, sample_s=900.0)
    assert cadence.due("m", 10.0, 100.0)  # the first read
    cadence.recorded("m", 10.0, 100.0)
    assert not cadence.due("m", 59.9, 101.0)  # changed, but still in the same minute window
    assert cadence.due("m", 60.0, 101.0)  # changed, next window
    cadence.recorded("m", 60.0, 101.0)
    assert not cadence.due("m", 899.9, 101.0)  # unchanged: only the periodic sample
    assert cadence.due("m", 900.0, 101.0)
    assert not cadence.due("m", 2000.0, None)  # a failed read is never recorded


def test_reading_cadence_puts_every_meter_in_the_same_cycle() -> None:
    """Meters first read at different moments still record in the same poll cycle: one disk transaction."""
    cadence = ReadingCadence(min_interval_s=60.0, sample_s=900.0)
    for i, meter in enumerate("abc"):
        cadence.recorded(meter, 3.0 + 17.0 * i, 100.0)
    assert [cadence.due(m, 59.0, 101.0) for m in "abc"] == [False, False, False]
    assert [cadence.due(m, 60.5, 101.0) for m in "abc"] == [True, True, True]


# ------------------------------------------------------------------------------- alerts at the central
def test_silent_resident_raises_inactivity_at_the_central_with_a_chime(
    registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    speaker = Speaker()
    h = Harness(node_config(tmp_path, registered.url, ONE_METER), bus, ManualClock(wall=START_WALL), speaker)
    harnesses.append(h)
    speaker.outbox = h.runtime.outbox

    def morning_use(now: float) -> None:  # 06:00-06:20: washing, then silence
        if now < 1000 + 20 * 60:
            litres = bus.litres[1]
            assert isinstance(litres, float)
            bus.litres[1] = litres + 3.0

    h.run(8.2 * 3600, morning_use)  # 7 h 50 min of silence since the last use
    h.sync()
    assert registered.alerts() == [] and speaker.texts == []
    h.run(0.3 * 3600)  # past 8 h of silence (the fixed warning rule)
    h.sync()
    alerts = registered.alerts()
    assert [(a["kind"], a["severity"]) for a in alerts] == [("inactivity", "warning")]
    assert speaker.texts == [CHIME_TEXT]
    assert speaker.alerts_stored_when_said == [1]  # the alert was durable before the chime played
    h.run(4.0 * 3600)  # past 12 h: urgent, the same alert updated
    h.sync()
    alerts = registered.alerts()
    assert [(a["kind"], a["severity"]) for a in alerts] == [("inactivity", "urgent")]
    events = registered.events(NODE_ID, kind="inactivity")
    assert [e["state"] for e in events] == ["raised", "updated"]
    assert len({e["alert_id"] for e in events}) == 1
    assert events[-1]["payload"]["resident"] == "B12-301" and events[-1]["payload"]["meter_id"] == "b12-301"
    assert set(events[-1]["recipients"]) == {"family", "social_worker"}
    # 12 h of 1-minute polls (720 reads) became a few dozen reading events, not 720
    readings = registered.events(NODE_ID, kind="meter_reading")
    assert 20 <= len(readings) <= 80
    assert readings[0]["priority"] == "state" and all(r["priority"] == "reading" for r in readings[1:])
    totals = [r["payload"]["total_litres"] for r in readings]
    assert totals == sorted(totals) and totals[-1] == bus.litres[1]


def test_a_gap_in_readings_is_neither_activity_nor_inactivity(
    registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    from hal.modbus import NoResponseError

    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    h = Harness(node_config(tmp_path, registered.url, ONE_METER), bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    h.run(30 * 60)
    bus.litres[1] = NoResponseError("meter unplugged")
    h.run(11 * 3600)  # eleven hours without a reading: the meter is offline, the resident unknown
    h.sync()
    assert any(a["kind"] == "meter_offline" for a in registered.alerts(state="open"))
    assert not any(a["kind"] == "inactivity" for a in registered.alerts())
    offline = registered.events(NODE_ID, kind="meter_offline")
    assert offline[0]["state"] == "raised" and set(offline[0]["recipients"]) == {"maintenance", "operator"}
    assert offline[0]["payload"]["no_response"] >= 1
    bus.litres[1] = 5000.0  # back, unchanged total: the meter's outage is cleared
    h.run(5 * 60)
    h.sync()
    assert registered.events(NODE_ID, kind="meter_offline")[-1]["state"] == "cleared"
    assert h.node.health()["meters"]["b12-301"]["status"] in ("ok", "degraded")


def test_ok_button_acknowledges_and_away_mode_suppresses(
    registered: Any, tmp_path: Path, harnesses: list[Harness], mock_factory: Any
) -> None:
    meters = ONE_METER.replace("chime = true", "ok_button = { pin = 5, bounce_s = 0.0 }") + (
        '\n[[meter.meters]]\nid = "b12-502"\naddress = 2\nprofile = "pulse_u32_10l"\npoll_interval_s = 60\n'
        'household = { resident = "B12-502", away_until = "2026-02-01" }\n'
    )
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    bus.add(2, "pulse_u32_10l", 8000.0)
    config = node_config(tmp_path, registered.url, meters)
    h = Harness(config, bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    h.run(8.5 * 3600)
    h.sync()
    assert {a["kind"] for a in registered.alerts(state="open")} == {"inactivity", "missed_morning"}
    assert all(a["payload"]["meter_id"] == "b12-301" for a in registered.alerts())  # b12-502 is away
    pin = mock_factory.pin(5)
    pin.drive_low()  # the resident presses "I'm OK"
    pin.drive_high()
    h.run(60)
    h.sync()
    for kind in ("inactivity", "missed_morning"):
        last = registered.events(NODE_ID, kind=kind)[-1]
        assert last["state"] == "cleared" and last["payload"]["reason"] == "acknowledged", kind
    assert registered.events(NODE_ID, kind="im_ok_pressed")[0]["payload"]["resident"] == "B12-301"


def test_door_contact_and_away_button_tell_the_monitor_the_resident_is_out(
    registered: Any, tmp_path: Path, harnesses: list[Harness], mock_factory: Any
) -> None:
    household = (
        'household = { resident = "B12-301", door = { pin = 17, pull_up = true, active_high = false, bounce_s = 0.0 }, '
        "away_button = { pin = 6, bounce_s = 0.0 } }"
    )
    meters = ONE_METER.replace('household = { resident = "B12-301", chime = true }', household)
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    h = Harness(node_config(tmp_path, registered.url, meters), bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    h.run(120)
    door = mock_factory.pin(17)
    door.drive_low()  # the door opens and closes; no water follows
    door.drive_high()
    h.run(15 * 60)
    monitor = h.node.monitors["b12-301"]
    assert monitor.data.out_since is not None  # out: the outer limits apply, not the learned ones
    door.drive_low()  # back
    h.run(60)
    assert monitor.data.out_since is None and monitor.data.door_t is None
    button = mock_factory.pin(6)
    button.drive_low()  # "going out"
    button.drive_high()
    h.run(60)
    h.sync()
    assert monitor.data.out_since is not None
    assert registered.events(NODE_ID, kind="going_out_pressed")[0]["payload"]["resident"] == "B12-301"


def test_a_homes_button_that_cannot_be_opened_is_told_and_every_homes_water_is_still_watched(
    registered: Any, tmp_path: Path, harnesses: list[Harness], mock_factory: Any
) -> None:
    from gpiozero import Button

    # the node used to stop at start (systemd restarting it every 5 s for ever): nobody in the building watched
    blocker = Button(5, pin_factory=mock_factory)  # another program holds the line of B12-301's "I'm OK" button
    meters = ONE_METER.replace("chime = true", "ok_button = { pin = 5, bounce_s = 0.0 }, door = { pin = 17 }")
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    config = node_config(tmp_path, registered.url, meters)
    h = Harness(config, bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    assert h.node.home.working == {("b12-301", "door")}
    h.run(8.5 * 3600)
    h.sync()
    assert {a["kind"] for a in registered.alerts(state="open")} == {"home_device_fault", "inactivity", "missed_morning"}
    (fault,) = registered.events(NODE_ID, kind="home_device_fault")
    assert set(fault["recipients"]) == {"maintenance", "operator"} and fault["payload"]["device"] == "ok_button"
    assert fault["payload"]["resident"] == "B12-301" and "BCM 5 (button): already in use" in fault["payload"]["reason"]
    h.close()
    harnesses.remove(h)
    blocker.close()
    again = Harness(config, bus, ManualClock(wall=h.clock.wall()))  # the line is free at the next start
    harnesses.append(again)
    again.run(60)
    again.sync()
    assert [e["state"] for e in registered.events(NODE_ID, kind="home_device_fault")] == ["raised", "cleared"]
    mock_factory.pin(5).drive_low()  # and the button works
    mock_factory.pin(5).drive_high()
    again.run(60)
    again.sync()
    assert registered.events(NODE_ID, kind="im_ok_pressed")


def test_a_node_that_cannot_start_releases_the_homes_lines(
    registered: Any, tmp_path: Path, mock_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpiozero import Button

    from meter_node.node import MeterNode

    def outbox_failed(self: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MeterNode, "_tell_home_devices", outbox_failed)
    meters = ONE_METER.replace("chime = true", "ok_button = { pin = 5 }, door = { pin = 17 }")
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    with pytest.raises(OSError, match="No space"):
        Harness(node_config(tmp_path, registered.url, meters), bus, ManualClock(wall=START_WALL))
    for pin in (5, 17):  # free for the next start (or another program)
        Button(pin, pin_factory=mock_factory).close()


def test_a_gpio_pin_used_twice_in_the_homes_is_a_config_error(tmp_path: Path) -> None:
    household = 'household = { resident = "B12-301", door = { pin = 5 }, ok_button = { pin = 5 } }'
    meters = ONE_METER.replace('household = { resident = "B12-301", chime = true }', household)
    with pytest.raises(ConfigError, match=r"GPIO pin 5 is used more than once \(b12-301.ok_button, b12-301.door\)"):
        node_config(tmp_path, "http://127.0.0.1:9", meters)


def test_profile_state_file_is_replaced_atomically_and_bad_state_starts_fresh(
    registered: Any, tmp_path: Path, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    config = node_config(tmp_path, registered.url, ONE_METER)
    state = tmp_path / "data" / NODE_ID / STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    h = Harness(config, bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    assert "unreadable" in caplog.text
    h.run(600)
    h.node.save_state()
    data = json.loads(state.read_text())
    assert data["counters"]["b12-301"]["last_raw"] == 5000.0
    assert not state.with_name(STATE_FILE + ".tmp").exists()


def test_a_fault_in_one_households_rules_is_an_alert_and_spares_the_others(
    registered: Any, tmp_path: Path, harnesses: list[Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    meters = ONE_METER + (
        '\n[[meter.meters]]\nid = "b12-502"\naddress = 2\nprofile = "u32_le_litres"\npoll_interval_s = 60\n'
        'household = { resident = "B12-502" }\n'
    )
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    bus.add(2, "u32_le_litres", 8000.0)
    h = Harness(node_config(tmp_path, registered.url, meters), bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    h.run(120)
    broken = h.node.monitors["b12-301"]

    def fail(now: float, total: float | None) -> list[Any]:
        raise ZeroDivisionError("a bug in the rules")

    monkeypatch.setattr(broken, "update", fail)
    bus.litres[2] = 8100.0
    h.run(300)
    monkeypatch.undo()
    h.run(120)
    h.sync()
    faults = registered.events(NODE_ID, kind="wellbeing_fault")
    assert [e["state"] for e in faults] == ["raised", "cleared"]
    assert faults[0]["payload"]["meter_id"] == "b12-301" and "ZeroDivisionError" in faults[0]["payload"]["error"]
    assert h.node.health()["wellbeing_errors"] == {"b12-301": 5}
    other = [e for e in registered.events(NODE_ID, kind="meter_reading") if e["payload"]["meter_id"] == "b12-502"]
    assert other[-1]["payload"]["total_litres"] == 8100.0  # the other household was read and recorded all along


def test_tick_interval_follows_the_fastest_meter(registered: Any, tmp_path: Path, harnesses: list[Harness]) -> None:
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    h = Harness(node_config(tmp_path, registered.url, ONE_METER), bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    assert h.node.tick_interval_s() == 5.0  # 60 s polls: a read is at most 5 s late
    fast = node_config(
        tmp_path / "fast", registered.url, ONE_METER.replace("poll_interval_s = 60", "poll_interval_s = 1")
    )
    h2 = Harness(fast, bus, ManualClock(wall=START_WALL))
    harnesses.append(h2)
    assert h2.node.tick_interval_s() == 0.25


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "poll_interval_s = 10\noffline_after_s = 600",
            "poll_interval_s = 600\noffline_after_s = 1800",
            "every interval is a gap",
        ),
        (
            "poll_interval_s = 10\noffline_after_s = 600",
            "poll_interval_s = 10\noffline_after_s = 15",
            "two poll intervals",
        ),
    ],
    ids=["poll slower than the gap limit", "offline sooner than two polls"],
)
def test_meter_timings_that_would_hide_a_household_are_refused(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = (ROOT / "examples" / "meter.toml").read_text()
    assert old in text
    config_file = tmp_path / "node.toml"
    config_file.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(config_file)
    assert "meters[0]." in str(info.value) and message in str(info.value)


def test_a_state_file_that_cannot_be_written_is_retried_each_minute_not_each_tick(
    registered: Any, tmp_path: Path, harnesses: list[Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    h = Harness(node_config(tmp_path, registered.url, ONE_METER), bus, ManualClock(wall=START_WALL))
    harnesses.append(h)
    real_replace = os.replace

    def disk_full(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    h.run(10 * 60)  # state_save_s is 300 s: the first save fails, then one try a minute
    assert 4 <= h.node.state_save_errors <= 7
    assert h.node.health()["meters"]["b12-301"]["reads_ok"] >= 10  # the node kept reading
    assert h.runtime.health()["state_save_errors"] >= 3  # in the heartbeat (as of the last poll)
    monkeypatch.setattr(os, "replace", real_replace)
    h.run(2 * 60)
    assert json.loads((tmp_path / "data" / NODE_ID / STATE_FILE).read_text())["counters"]["b12-301"]["last_raw"] == 5000
