"""The elevator node end to end: gpiozero MockFactory pins, the real runtime and outbox, a real central.

Time is a ManualClock: the test moves it and calls ``step()`` (as the 0.5 s tick would), so a 90 s entrapment
takes milliseconds. Pins are driven like the car's sensors would (``Car`` below).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from common.clock import ManualClock
from common.config import NodeConfig, parse_config
from common.outbox import OutboxError, peek_state
from common.service import NodeRuntime
from elevator_node.config import DEFAULT_ALARM_ACK, DEFAULT_QUESTION, DEFAULT_REASSURANCE, DEFAULT_TAKEN_IN
from elevator_node.node import STATE_KEY, build_node
from elevator_node.sim import lift_sensors
from hal.audio import Wav
from hal.sim.lift import LiftSimulator
from tests.speech_helpers import RecordingSpeaker

ROOT = Path(__file__).resolve().parent.parent
NODE_ID = "cbxc-b7-u2-lift1"
START_WALL = 1_767_564_000.0


def config_text(tmp_path: Path, central_url: str, extra: str = "") -> str:
    return f"""
[node]
id = "{NODE_ID}"
role = "elevator"
site = "changbai-xincun"
location = "Building 7, Unit 2, lift 1"
data_dir = "{tmp_path / "data"}"

[central]
url = "{central_url}"
token_file = "{tmp_path / "token"}"
batch_max_age_s = 0

[gpio]
pin_factory = "mock"

[audio]
backend = "none"

[elevator]
building = "7"
unit = "2"
lift = "1"
door = {{ pin = 17, active_high = false, pull_up = true, bounce_s = 0 }}
occupancy = {{ pin = 27, bounce_s = 0 }}
moving = {{ pin = 22, bounce_s = 0 }}
level_zone = {{ pin = 23, bounce_s = 0 }}
alarm_button = {{ pin = 24, bounce_s = 0 }}
inspection = {{ pin = 25, bounce_s = 0 }}
power_fail = {{ pin = 5, bounce_s = 0 }}
{extra}
"""


def node_config(tmp_path: Path, central_url: str = "http://127.0.0.1:9", extra: str = "") -> NodeConfig:
    return parse_config(tomllib.loads(config_text(tmp_path, central_url, extra)), tmp_path / "node.toml")


class OrderedSpeaker(RecordingSpeaker):
    """A RecordingSpeaker that also notes whether an alert was already in the outbox when it spoke."""

    def __init__(self, runtime: NodeRuntime) -> None:
        super().__init__()
        self.runtime = runtime
        self.alert_stored_first: list[bool] = []

    def say(self, text: str | None = None, wav: Wav | None = None, volume: int | None = None) -> None:
        self.alert_stored_first.append(bool(self.runtime.alerts.open_alerts()))
        super().say(text, wav, volume)


class Harness:
    """A node on mock pins with its runtime, a ManualClock and a recording speaker; re-buildable (restart)."""

    def __init__(self, config: NodeConfig, clock: ManualClock) -> None:
        self.config = config
        self.clock = clock
        self.runtime = NodeRuntime(config, clock)
        self.speaker = OrderedSpeaker(self.runtime)
        self.node = build_node(config, clock, runtime=self.runtime, speaker=self.speaker)
        self.closed = False

    def run(self, seconds: float, step: float = 0.5) -> list[Any]:
        """Move time on in ``step``s, ticking the node as its loop would; returns the events stored."""
        events = []
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.monotonic()))
            events += self.node.step()
        return events

    def sync(self) -> None:
        for _ in range(20):
            self.runtime.uploader.run_once()
            if not sum(self.runtime.outbox.depth().values()):
                return
        raise AssertionError(f"outbox not drained: {self.runtime.outbox.depth()}")

    def alert_events(self) -> list[Any]:
        return [e for e in self.runtime.outbox.batch(1000) if e.priority == "alert"]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.node.close()
            self.runtime.stop()


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for h in made:
        h.close()


@pytest.fixture
def registered(central: Any, tmp_path: Path) -> Any:
    token = central.register(NODE_ID, "elevator", location="Building 7, Unit 2, lift 1")
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    return central


def lift(factory: Any, h: Harness) -> LiftSimulator:
    """The car's sensors on the MockFactory pins the node uses (hal.sim.lift follows the config's wiring)."""
    return lift_sensors(factory, h.config.role_config)


def board(car: LiftSimulator) -> None:
    """A passenger walks in and the doors close at a floor; the car never starts."""
    car.apply(in_door_zone=True, moving=False, door="open", occupied=True)
    car.apply(door="closed")


def boarded(
    factory: Any, config: NodeConfig, clock: ManualClock, harnesses: list[Harness]
) -> tuple[Harness, LiftSimulator]:
    """A node on the car's pins, and a passenger who boards and is shut in at a floor (the restart tests)."""
    h = Harness(config, clock)
    harnesses.append(h)
    car = lift(factory, h)
    h.node.step()
    board(car)
    return h, car


# ------------------------------------------------------------------------------------------ end to end
def test_trapped_passenger_alert_reaches_the_central_and_the_car_speaks(
    mock_factory: Any, registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    h = Harness(node_config(tmp_path, registered.url), ManualClock(wall=START_WALL))
    harnesses.append(h)
    car = lift(mock_factory, h)
    h.node.step()
    board(car)  # the gpiozero callbacks run the detector at once
    h.run(89.0)
    assert h.alert_events() == [] and h.speaker.texts == []
    h.run(1.5)
    alerts = h.alert_events()
    assert [(e.kind, e.state) for e in alerts] == [("entrapment", "raised")]
    raised = alerts[0]
    assert set(raised.recipients) == {"property_management", "maintenance"}
    assert raised.payload["building"] == "7" and raised.payload["unit"] == "2" and raised.payload["lift"] == "1"
    assert raised.payload["in_door_zone"] is True and raised.payload["label_zh"] == "平层关人"
    assert 90.0 <= raised.payload["seconds_trapped"] <= 91.0
    assert h.speaker.texts == [DEFAULT_QUESTION]
    assert h.speaker.alert_stored_first == [True]  # the outbox first, then the voice

    h.run(60.0)
    assert h.speaker.texts == [DEFAULT_QUESTION, DEFAULT_REASSURANCE]
    h.run(60.0)
    assert h.speaker.texts == [DEFAULT_QUESTION, DEFAULT_REASSURANCE, DEFAULT_REASSURANCE]

    h.sync()
    at_central = registered.alerts()
    assert [(a["kind"], a["alert_id"]) for a in at_central] == [("entrapment", raised.alert_id)]
    events = registered.events(NODE_ID, kind="entrapment")
    assert events[0]["payload"]["label_zh"] == "平层关人"
    assert set(events[0]["recipients"]) == {"property_management", "maintenance"}

    # the property desk acknowledges: the car hears it (EN 81-28's acknowledgement) and tells the passenger, once
    done = requests.post(f"{registered.url}/api/v1/alerts/{at_central[0]['id']}/ack", json={"note": "赵师傅十分钟到"},
                         headers=registered.operator_headers, timeout=10)  # fmt: skip
    assert done.status_code == 200, done.text
    h.run(10.5)
    h.runtime.uploader.run_once()
    h.run(10.5)
    h.runtime.uploader.run_once()
    h.run(0.5)
    assert h.speaker.texts[3:] == [DEFAULT_TAKEN_IN]
    car.apply(door="open")  # rescued
    h.run(2.5)
    car.apply(occupied=False)
    h.run(120.0)
    assert len(h.speaker.texts) == 4  # no reassurance after the clear
    h.sync()
    states = [(e["state"], e["alert_id"]) for e in registered.events(NODE_ID, kind="entrapment")]
    assert states[0] == ("raised", raised.alert_id) and states[-1] == ("cleared", raised.alert_id)
    assert all(alert_id == raised.alert_id for _, alert_id in states)


def test_pir_passenger_standing_still_is_found(mock_factory: Any, tmp_path: Path, harnesses: list[Harness]) -> None:
    h = Harness(node_config(tmp_path, extra='occupancy_kind = "motion"'), ManualClock(wall=START_WALL))
    harnesses.append(h)
    car = lift(mock_factory, h)
    h.node.step()
    board(car)
    h.run(2.0)
    car.apply(occupied=False)  # the PIR goes quiet: the passenger stands still
    h.run(90.0)
    assert [(e.kind, e.state) for e in h.alert_events()] == [("entrapment", "raised")]
    assert h.alert_events()[0].payload["occupancy_kind"] == "motion"


def test_callbacks_and_the_tick_thread_run_the_node(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """With ``start()`` the node needs nobody to call step(): pin callbacks and its own deadline-driven tick."""
    clock = ManualClock(wall=START_WALL)
    h = Harness(node_config(tmp_path), clock)
    harnesses.append(h)
    car = lift(mock_factory, h)
    h.node.start()
    try:
        car.apply(in_door_zone=True, door="closed", occupied=True, alarm_button=True)
        clock.advance(3.5)  # the tick thread wakes at the 3 s hold deadline
        deadline = time.monotonic() + 10
        while not h.runtime.alerts.is_open("alarm_button") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert h.runtime.alerts.is_open("alarm_button")
        while DEFAULT_ALARM_ACK not in h.speaker.texts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert h.speaker.texts == [DEFAULT_ALARM_ACK]
    finally:
        h.node.stop()
        h.closed = True
        h.runtime.stop()


def test_inspection_clears_and_silences(mock_factory: Any, tmp_path: Path, harnesses: list[Harness]) -> None:
    h = Harness(node_config(tmp_path), ManualClock(wall=START_WALL))
    harnesses.append(h)
    car = lift(mock_factory, h)
    h.node.step()
    board(car)
    h.run(91.0)
    car.apply(inspection=True)
    h.run(300.0)
    kinds = [(e.kind, e.state) for e in h.runtime.outbox.batch(1000) if e.kind in ("entrapment", "inspection_mode")]
    assert kinds == [("entrapment", "raised"), ("entrapment", "cleared"), ("inspection_mode", "observed")]
    assert h.speaker.texts == [DEFAULT_QUESTION]  # no reassurance once the technician has the car


# ------------------------------------------------------------------------------------------ resilience
def test_outbox_refusal_is_retried_and_the_passenger_still_hears(
    mock_factory: Any, tmp_path: Path, harnesses: list[Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(node_config(tmp_path), ManualClock(wall=START_WALL))
    harnesses.append(h)
    car = lift(mock_factory, h)
    h.node.step()
    board(car)
    h.run(89.0)
    real_emit = h.runtime.emit_many
    failures: list[BaseException] = []

    def failing_emit(detections: Any, *, state: Any) -> Any:
        if not failures:
            failures.append(detections)
            raise OutboxError("disk full")
        return real_emit(detections, state=state)

    monkeypatch.setattr(h.runtime, "emit_many", failing_emit)
    h.run(1.0)  # the threshold is reached at 90 s: that tick's write fails
    assert failures and h.alert_events() == []
    assert h.speaker.texts == [DEFAULT_QUESTION]
    h.run(0.5)
    assert [(e.kind, e.state) for e in h.alert_events()] == [("entrapment", "raised")]


def test_wav_prompts_are_played_instead_of_text(mock_factory: Any, tmp_path: Path, harnesses: list[Harness]) -> None:
    wav = tmp_path / "q.wav"
    h = Harness(node_config(tmp_path, extra=f'[elevator.voice]\nquestion_wav = "{wav}"\nrepeat_s = 30'), ManualClock())
    harnesses.append(h)
    car = lift(mock_factory, h)
    h.node.step()
    board(car)
    h.run(121.0)
    assert h.speaker.said == [(DEFAULT_QUESTION, wav), (DEFAULT_REASSURANCE, None)]


# ------------------------------------------------------------------------------------------- the command
def saved_text(outbox: Path) -> str | None:
    """The detector state in a running node's outbox; None until there is one (or while the file is made)."""
    try:
        return peek_state(outbox, STATE_KEY)
    except sqlite3.Error:
        return None


def run_until_state_then_sigterm(cfg: Path, outbox: Path) -> tuple[int, str, str]:
    """``elevator-node run``: wait for its detector state to be (re)saved, SIGTERM it; (exit code, stdout, stderr)."""
    before = saved_text(outbox)
    proc = subprocess.Popen(
        [sys.executable, "-m", "elevator_node", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if saved_text(outbox) not in (None, before):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_run_command_starts_on_mock_pins_stops_on_sigterm_and_restarts_on_the_same_clock(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(config_text(tmp_path, "http://127.0.0.1:9"))
    outbox = tmp_path / "data" / NODE_ID / "outbox.sqlite"
    code, out, err = run_until_state_then_sigterm(cfg, outbox)
    assert code == 0, err
    assert out == ""
    assert json.loads(peek_state(outbox, STATE_KEY) or "{}")["boot_id"]  # the real clock: the boot id is recorded
    code, out, err = run_until_state_then_sigterm(cfg, outbox)
    assert code == 0, err
    assert "elevator state restored (monotonic" in err  # same boot: the monotonic clock went on
    assert "cannot save" not in err  # the last save on SIGTERM went into the outbox before it closed


def test_run_command_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(config_text(tmp_path, "http://127.0.0.1:9").replace("pin = 27", "pin = 17"))
    result = subprocess.run(
        [sys.executable, "-m", "elevator_node", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "occupancy.pin = 17: already used by door" in result.stderr


def test_example_config_builds_a_node(mock_factory: Any, tmp_path: Path) -> None:
    from common.config import load_config

    config = load_config(ROOT / "examples" / "elevator.toml")
    config = NodeConfig(
        **{**config.__dict__, "node": type(config.node)(**{**config.node.__dict__, "data_dir": tmp_path})}
    )
    runtime = NodeRuntime(config, ManualClock())
    node = build_node(config, ManualClock(), runtime=runtime, speaker=OrderedSpeaker(runtime))
    try:
        snap = node.read_snapshot()
        assert snap.moving is False and snap.power_ok is True and snap.alarm_button is False
    finally:
        node.close()
        runtime.stop()


# ---------------------------------------------------------------------------------- simulated community
def test_simulated_lift_plays_the_trapped_passenger_on_a_fast_clock(mock_factory: Any, tmp_path: Path) -> None:
    """The community's lift: the real node on its own thread, hal.sim.lift playing the scenario, FastClock."""
    from common.clock import FastClock
    from elevator_node.sim import SimulatedLift, trapped_passenger_scenario

    clock = FastClock(50.0, start_wall=START_WALL)
    config = node_config(tmp_path)
    runtime = NodeRuntime(config, clock)
    lift_sim = SimulatedLift(config, clock, mock_factory, runtime=runtime, speaker=(speaker := RecordingSpeaker()))
    try:
        # 50x: a 25 s alarm hold is 0.5 s real (a load can stall the poll past 10 s = 0.2 s); [:-1]: doors stay open
        lift_sim.start(trapped_passenger_scenario(stuck_at=20.0, rescue_after_s=150.0, alarm_hold_s=25.0)[:-1])
        assert lift_sim.wait(timeout=60)
        deadline = time.monotonic() + 60
        while runtime.alerts.open_alerts() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        lift_sim.stop()
        runtime.stop()
    runtime = NodeRuntime(config, clock)  # read what the node stored, from its outbox on disk
    try:
        events = [e for e in runtime.outbox.batch(1000) if e.priority == "alert"]
    finally:
        runtime.stop()
    seen = {(e.kind, e.state) for e in events}
    for kind in ("entrapment", "stopped_outside_door_zone", "alarm_button"):
        assert (kind, "raised") in seen and (kind, "cleared") in seen, (kind, seen)
    trapped = next(e for e in events if e.kind == "entrapment")
    assert trapped.payload["label_zh"] == "非平层关人" and trapped.payload["seconds_trapped"] >= 90.0
    assert speaker.texts[0] == DEFAULT_QUESTION and DEFAULT_REASSURANCE in speaker.texts


@pytest.mark.skipif(Path("/dev/gpiomem").exists(), reason="on a Raspberry Pi the native pin factory works")
def test_run_command_without_usable_gpio_exits_1_naming_the_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        config_text(tmp_path, "http://127.0.0.1:9").replace('pin_factory = "mock"', 'pin_factory = "native"')
    )
    result = subprocess.run(
        [sys.executable, "-m", "elevator_node", "run", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot start the elevator node" in result.stderr
