"""bench/vm.py's reading of a node's outbox, used by the qemu checks (which cannot run in CI) to judge a node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.vm import outbox_rows
from common.clock import ManualClock
from common.config import load_config
from common.events import make_event
from common.outbox import Outbox
from common.service import outbox_path
from provisioning.cli import main

FLAGS = [
    "--node-id",
    "cbxc-b12-meters",
    "--serial-port",
    "/dev/ttyUSB0",
    "--meter",
    "id=b12-301,address=1,profile=ultrad_int_ml,household.resident=B12-301",
]


def test_the_outbox_is_read_where_the_config_puts_it_while_the_node_holds_it_open(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "node.toml"
    argv = ["init", "--role", "meter", "--config", str(config), "--data-dir", str(tmp_path / "var")]
    assert (
        main([*argv, "--non-interactive", "--site", "changbai-xincun", "--central-url", "http://127.0.0.1:9", *FLAGS])
        == 0
    )
    assert outbox_rows(config) == {}  # no outbox yet: nothing made
    assert not outbox_path(load_config(config)).exists()
    node = load_config(config)
    outbox = Outbox(outbox_path(node), node.outbox, ManualClock(1.7e9), node_id=node.node.id)
    try:
        made = [
            make_event(
                node.node.id, "inactivity", wall_time=1.7e9, clock_synced=True, priority="alert", state="raised"
            ),
            make_event(node.node.id, "meter_reading", wall_time=1.7e9, clock_synced=True, priority="reading"),
        ]
        for event in made:
            outbox.put(event)
        outbox.flush()
        rows = outbox_rows(config)  # read-only, beside the open writer
        assert {prio: [e["kind"] for e in events] for prio, events in rows.items()} == {
            "alert": ["inactivity"],
            "state": [],
            "reading": ["meter_reading"],
        }
    finally:
        outbox.close()
    assert outbox_path(node).parent.is_relative_to(tmp_path / "var")


# ------------------------------------------------------------------ bench/gpio_vm.py: the lift on a kernel's GPIO
def test_the_gpio_check_runs_the_shipped_example_config_with_only_its_host_lines_changed(tmp_path: Path) -> None:
    from bench import gpio_vm
    from bench.gpio_sim import node_config

    example = gpio_vm.LIFT.example.read_text(encoding="utf-8")
    config = tmp_path / "lift.toml"
    config.write_text(node_config(example, 8123), encoding="utf-8")
    node = load_config(config)
    assert node.node.id == gpio_vm.NODE_ID
    assert node.gpio.pin_factory == "lgpio"
    assert node.central.url == "http://10.0.2.2:8123" and node.audio.backend == "none"
    assert str(node.central.token_file) == "/etc/changbai/token"  # where the guest puts it: the example's place
    with pytest.raises(ValueError, match="backend"):
        node_config(example.replace('backend = "auto"', 'backend = "alsa"'), 8123)


def _marks() -> dict[str, float]:
    names = ("door-closed", "door-opened", "alarm-pressed", "door-opened-again", "mains-lost", "mains-back")
    return dict(zip(names, (1000.0, 1120.0, 1140.0, 1148.0, 1155.0, 1170.0), strict=True))


DELAYS = {"entrapment_s": 90.0, "door_open_confirm_s": 2.0, "alarm_hold_s": 3.0, "power_loss_s": 2.0}


def _stored(**late: float) -> list[dict]:
    when = {
        ("entrapment", "raised"): 1090.5,
        ("entrapment", "cleared"): 1122.1,
        ("alarm_button", "raised"): 1143.2,
        ("alarm_button", "cleared"): 1150.1,
        ("power_loss", "raised"): 1157.1,
        ("power_loss", "cleared"): 1170.1,
    }
    return [
        {"kind": kind, "state": state, "wall_time": t + late.get(f"{kind}_{state}", 0.0)}
        for (kind, state), t in when.items()
    ]


SERVICE = {"install": 0, "result": "success", "restarts": 0, "errors": [], "acked": 1091.0,
           "taken_in": ["alert entrapment 5f0c taken in at the central: acknowledged"]}  # fmt: skip
GOOD_FAULTS: dict[str, dict[str, Any]] = {
    "busy": {"exit": 1, "traceback": False, "last": ["BCM 17 (input): already in use"]},
    "nochip": {"exit": 1, "traceback": False, "last": ["gpio.pin_factory = 'lgpio': cannot start it"]},
}


def test_the_gpio_check_passes_alerts_in_time_and_faults_told_in_words() -> None:
    from bench.gpio_vm import EXPECTED, expected_delays, judge

    assert judge(_marks(), _stored(), GOOD_FAULTS, DELAYS, SERVICE) == []
    assert expected_delays() == DELAYS  # the example config's (and the defaults'), which the guest's node runs
    assert {mark for _, _, mark, _ in EXPECTED} == set(_marks())


def test_the_gpio_check_fails_a_late_missing_or_extra_alert_and_a_traceback() -> None:
    from bench.gpio_vm import judge

    late = judge(_marks(), _stored(entrapment_raised=40.0), GOOD_FAULTS, DELAYS, SERVICE)
    assert any("entrapment raised 130.5 s after door-closed" in f for f in late)
    early = judge(_marks(), _stored(entrapment_raised=-30.0), GOOD_FAULTS, DELAYS, SERVICE)
    assert any("entrapment raised 60.5 s" in f for f in early)
    missing = [e for e in _stored() if e["kind"] != "power_loss" or e["state"] != "cleared"]
    assert judge(_marks(), missing, GOOD_FAULTS, DELAYS, SERVICE) == ["no power_loss cleared stored"]
    extra = [*_stored(), {"kind": "stopped_outside_door_zone", "state": "raised", "wall_time": 1060.0}]
    assert judge(_marks(), extra, GOOD_FAULTS, DELAYS, SERVICE) == [
        "alerts nobody caused: ['stopped_outside_door_zone']"
    ]
    crashed: dict[str, dict[str, Any]] = {
        **GOOD_FAULTS,
        "busy": {"exit": 1, "traceback": True, "last": ["lgpio.error: 'GPIO busy'"]},
    }
    found = judge(_marks(), _stored(), crashed, DELAYS, SERVICE)
    assert any("traceback instead of a message" in f for f in found)
    assert any("does not name the pin" in f for f in found)
    ran_on: dict[str, dict[str, Any]] = {**GOOD_FAULTS, "nochip": {"exit": None, "traceback": False, "last": []}}
    assert judge(_marks(), _stored(), ran_on, DELAYS, SERVICE) == [
        "nochip: the node did not stop with an error (exit None)"
    ]
    restarted = {**SERVICE, "restarts": 2, "errors": ["CRITICAL cannot start the elevator node"]}
    assert judge(_marks(), _stored(), GOOD_FAULTS, DELAYS, restarted) == [
        "the unit: result success, 2 restart(s)",
        "errors in the unit's journal: ['CRITICAL cannot start the elevator node']",
    ]
    assert judge(_marks(), _stored(), GOOD_FAULTS, DELAYS, {**SERVICE, "install": 4}) == ["provision install exited 4"]
    deaf = judge(_marks(), _stored(), GOOD_FAULTS, DELAYS, {**SERVICE, "taken_in": []})
    assert deaf == ["the node did not hear the desk's acknowledgement of the entrapment once: []"]


@pytest.mark.parametrize("name", ["gpio_vm", "gpio_vm_kiosk", "gpio_vm_meter", "netem_vm"])
def test_a_vm_checks_guest_side_runs_without_the_central(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    module = importlib.import_module(f"bench.{name}")
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # the guest's venv has no central
    for loaded in ("bench.harness", "central.server"):
        monkeypatch.delitem(sys.modules, loaded, raising=False)
    seen: list[int] = []

    def guest(port: int) -> int:
        seen.append(port)
        return 0

    monkeypatch.setattr(module, "guest", guest)
    assert module.main(["--guest", "8123"]) == 0 and seen == [8123]


# ------------------------------------------------------- bench/gpio_vm_kiosk.py: the kiosk's button and LED on the chip
def test_the_kiosk_check_runs_the_shipped_example_with_only_its_host_lines_changed(tmp_path: Path) -> None:
    from bench.gpio_sim import node_config
    from bench.gpio_vm_kiosk import HOLD_S, KIOSK, PICKUP

    config = tmp_path / "kiosk.toml"
    config.write_text(node_config(KIOSK.example.read_text(encoding="utf-8"), 8123), encoding="utf-8")
    node = load_config(config)
    kiosk = node.role_config
    assert node.node.id == KIOSK.node_id and node.central.url == "http://10.0.2.2:8123"
    assert node.audio.backend == "none" and node.gpio.pin_factory == ""  # gpiozero's default: lgpio on a Pi
    assert (kiosk.button.pin, kiosk.button.pull_up, kiosk.led.pin, kiosk.led_pwm) == (26, True, 12, True)
    assert (kiosk.pickup_point, kiosk.timing.arcade_hold_s) == (PICKUP, HOLD_S)


def test_the_led_is_read_from_its_line_as_it_changes(tmp_path: Path) -> None:
    import itertools
    import threading
    import time
    from types import SimpleNamespace

    from bench.gpio_vm_kiosk import led

    line = tmp_path / "sim_gpio12" / "value"
    line.parent.mkdir()
    line.write_text("1\n")
    chip: Any = SimpleNamespace(sysfs=tmp_path)
    steady = led(chip, 12, 0.3)
    assert (steady["toggles_per_s"], steady["on"]) == (0.0, pytest.approx(1.0)) and steady["samples"] > 10

    changed: list[float] = []

    def blink() -> None:
        # ten changes 0.15 s apart, from 0.3 s into the 2.5 s read: the sampler, a Python loop sharing the cores
        # (and the GIL) with this thread, must see each value before the next replaces it; at 20 ms apart it missed
        # two of the ten with two full test suites on the two cores. 0.15 s is the working blink's own step, the
        # pattern the guest's reads must resolve (the idle pulse is judged by its duty, not its count). Under load
        # the sleeps run long: the read leaves 0.85 s to spare, and the time on is reckoned from when each change
        # was really written
        time.sleep(0.15)
        for i in range(10):
            time.sleep(0.15)
            line.write_text("0\n" if i % 2 == 0 else "1\n")
            changed.append(time.monotonic())

    start = time.monotonic()
    blinker = threading.Thread(target=blink)
    blinker.start()
    blinking = led(chip, 12, 2.5)
    blinker.join()
    assert len(changed) == 10 and changed[-1] < start + 2.5
    assert blinking["toggles_per_s"] == pytest.approx(10 / 2.5, rel=0.05)
    edges = [start, *changed, start + 2.5]  # on from the start, off after the first change, on after the second...
    on_s = sum(b - a for n, (a, b) in enumerate(itertools.pairwise(edges)) if n % 2 == 0)
    assert blinking["on"] == pytest.approx(on_s / 2.5, abs=0.03)


def _kiosk_story() -> tuple[dict[str, float], dict[str, dict[str, float]], list[dict], list[dict]]:
    marks = {"pressed": 1000.0, "held": 1030.0, "taken": 1060.0, "busy": 1100.0, "free": 1300.0, "nochip": 1500.0}
    leds = {
        "idle": {"toggles_per_s": 150.0, "on": 0.5, "longest_s": 0.3},
        "working": {"toggles_per_s": 6.5, "on": 0.5, "longest_s": 0.16},
        "car": {"toggles_per_s": 0.0, "on": 1.0, "longest_s": 3.0},
        "help": {"toggles_per_s": 2.0, "on": 0.5, "longest_s": 0.5},
        "taken": {"toggles_per_s": 0.0, "on": 1.0, "longest_s": 3.0},
    }
    rides = [{"ride_id": "r1", "requested_at": 1000.4, "status": "assigned"}]
    fault = {"kind": "kiosk_fault", "state": "raised", "priority": "alert"}
    events = [
        {"kind": "help_requested", "state": "raised", "wall_time": 1033.2, "payload": {}},
        {**fault, "wall_time": 1250.0, "payload": {"part": "gpio", "reason": "GPIOPinInUse: BCM 26 (button): busy"}},
        {**fault, "state": "cleared", "wall_time": 1400.0, "payload": {"part": "gpio"}},
        {**fault, "wall_time": 1600.0, "payload": {"part": "gpio", "reason": "BadPinFactory: no chip"}},
    ]
    return marks, leds, rides, events


KIOSK_FAULTS = {name: {"active": "active", "restarts": 0} for name in ("busy", "free", "nochip")}
# the desk acknowledged the help request at 1052 (15 s after it saw it); the kiosk heard it and the LED went steady
KIOSK_SERVICE = {**SERVICE, "acked": 1052.0, "taken_in": ["alert help_requested 9a1b taken in at the central: ..."]}


def test_the_kiosk_check_passes_one_ride_one_help_alert_the_leds_patterns_and_faults_told() -> None:
    from bench.gpio_vm_kiosk import judge

    assert judge(*_kiosk_story(), KIOSK_SERVICE, KIOSK_FAULTS) == []


def test_the_kiosk_check_fails_a_steady_idle_led_a_second_ride_a_late_help_and_a_silent_fault() -> None:
    from bench.gpio_vm_kiosk import judge

    marks, leds, rides, events = _kiosk_story()
    no_pwm = {**leds, "idle": {"toggles_per_s": 0.7, "on": 0.5, "longest_s": 1.5}}  # a slow blink, not a pulse
    assert judge(marks, no_pwm, rides, events, KIOSK_SERVICE, KIOSK_FAULTS) == [
        "the LED idle: toggles_per_s 0.70, expected 20 to 10000",
        "the LED idle: longest_s 1.50, expected 0 to 1",
    ]
    twice = [*rides, {"ride_id": "r2", "requested_at": 1034.0, "status": "searching"}]
    assert judge(marks, leds, twice, events, KIOSK_SERVICE, KIOSK_FAULTS) == ["2 rides at the central for one press"]
    late = [{**events[0], "wall_time": 1050.0}, *events[1:]]
    assert judge(marks, leds, rides, late, KIOSK_SERVICE, KIOSK_FAULTS) == [
        "help_requested 20.0 s after the hold began"
    ]
    unnamed = [events[0], {**events[1], "payload": {"part": "gpio", "reason": "GPIO busy"}}, *events[2:]]
    assert judge(marks, leds, rides, unnamed, KIOSK_SERVICE, KIOSK_FAULTS) == [
        "busy: the fault does not name the pin: 'GPIO busy'"
    ]
    never_cleared = [e for e in events if e["state"] != "cleared"]
    assert judge(marks, leds, rides, never_cleared, KIOSK_SERVICE, KIOSK_FAULTS) == ["free: no kiosk_fault cleared"]
    crashed = {**KIOSK_FAULTS, "nochip": {"active": "activating", "restarts": 3}}
    assert judge(marks, leds, rides, events, KIOSK_SERVICE, crashed) == [
        "nochip: the node did not run on under its unit: {'active': 'activating', 'restarts': 3}"
    ]
    screen = [{**events[1], "wall_time": 990.0, "payload": {"part": "screen", "reason": "no window"}}, *events]
    assert judge(marks, leds, rides, screen, KIOSK_SERVICE, KIOSK_FAULTS) == [
        "alerts nobody caused: [] [{'part': 'screen', 'reason': 'no window'}]"
    ]


def test_the_kiosk_check_fails_a_help_request_taken_in_unheard_or_shown_late() -> None:
    from bench.gpio_vm_kiosk import judge

    marks, leds, rides, events = _kiosk_story()
    unheard = {**KIOSK_SERVICE, "taken_in": []}
    assert judge(marks, leds, rides, events, unheard, KIOSK_FAULTS) == [
        "the kiosk did not hear the desk's acknowledgement of the help request once: []"
    ]
    never_acked = {**KIOSK_SERVICE, "acked": None}
    assert judge(marks, leds, rides, events, never_acked, KIOSK_FAULTS)[0].startswith("the kiosk did not hear")
    late = {**marks, "taken": 1052.0 + 40.0}  # the help screen had timed out: the ride's steady LED, not the news
    assert judge(late, leds, rides, events, KIOSK_SERVICE, KIOSK_FAULTS) == [
        "the LED turned steady 40.0 s after the desk's acknowledgement"
    ]
    blinking = {**leds, "taken": leds["help"]}
    assert judge(marks, blinking, rides, events, KIOSK_SERVICE, KIOSK_FAULTS) == [
        "the LED taken: toggles_per_s 2.00, expected 0 to 0",
        "the LED taken: on 0.50, expected 1 to 1",
        "the LED taken: longest_s 0.50, expected 2 to 60",
    ]


# -------------------------------------------------- bench/gpio_vm_meter.py: a home's "I'm OK" button on the chip
def test_the_meter_check_runs_the_shipped_example_on_its_serial_pair_silenced(tmp_path: Path) -> None:
    from bench.gpio_sim import node_config
    from bench.gpio_vm_meter import AWAY_PIN, DEVICE, DOOR_PIN, HOME, METER, SAVE_S, STATE, _configured

    text = node_config(METER.example.read_text(encoding="utf-8"), 8123)  # the example has no [audio]: one is added
    config = tmp_path / "meter.toml"
    config.write_text(_configured(text), encoding="utf-8")
    node = load_config(config)
    assert node.node.id == METER.node_id and node.audio.backend == "none" and node.gpio.pin_factory == ""
    assert node.role_config.serial.port == "/run/meter-ports/node" and node.role_config.state_save_s == SAVE_S
    (home,) = [m for m in node.role_config.meters if m.id == HOME]
    assert getattr(home.household, DEVICE).pin == 5
    assert (home.household.away_button.pin, home.household.door.pin) == (AWAY_PIN, DOOR_PIN)
    assert home.household.door.pull_up and not home.household.door.active_high  # the reed contact of docs/meter.md
    assert node.state_dir / "meter-state.json" == STATE


DOOR = {"door_t": 1050.2, "out_since": 1030.4}
# the desk acknowledged the button's fault at 1110; the node heard it before the line was freed
METER_SERVICE = {**SERVICE, "acked": 1110.0}
HEARD = ["alert home_device_fault b12-301:ok_button taken in at the central: acknowledged"]
METER_FAULTS = {**KIOSK_FAULTS, "busy": {**KIOSK_FAULTS["busy"], "taken_in": HEARD}}


def _meter_story() -> tuple[dict[str, float], list[dict]]:
    marks = {"installed": 990.0, "ok-pressed": 1000.0, "away-pressed": 1030.0, "door-moved": 1050.0, "busy": 1100.0,
             "free": 1300.0, "nochip": 1500.0, "end": 1600.0}  # fmt: skip
    fault = {"kind": "home_device_fault", "priority": "alert"}
    payload = {"meter_id": "b12-301", "device": "ok_button"}
    reads = [{"kind": "meter_reading", "state": "observed", "wall_time": t, "payload": {"meter_id": "b12-301"}}
             for t in (995.0, 1101.0, 1520.0)]  # fmt: skip
    events = [
        *reads,
        {"kind": "im_ok_pressed", "state": "observed", "wall_time": 1000.3, "payload": {"meter_id": "b12-301"}},
        {"kind": "going_out_pressed", "state": "observed", "wall_time": 1030.4, "payload": {"meter_id": "b12-301"}},
        {**fault, "state": "raised", "wall_time": 1101.0, "payload": {**payload, "reason": "GPIOPinInUse: BCM 5 ..."}},
        {**fault, "state": "cleared", "wall_time": 1301.0, "payload": payload},
        {**fault, "state": "raised", "wall_time": 1501.0, "payload": {**payload, "reason": "BadPinFactory: ..."}},
    ]
    return marks, events


def test_the_meter_check_passes_one_press_reads_through_the_faults_and_faults_told() -> None:
    from bench.gpio_vm_meter import judge

    assert judge(*_meter_story(), METER_SERVICE, METER_FAULTS, DOOR) == []
    deaf = {**METER_FAULTS, "busy": KIOSK_FAULTS["busy"]}  # the desk acknowledged; the node never heard
    assert judge(*_meter_story(), METER_SERVICE, deaf, DOOR) == [
        "the node did not hear the desk's acknowledgement of the fault once: []"
    ]


def test_the_meter_check_fails_a_lost_or_doubled_press_a_node_that_stopped_reading_and_a_false_alarm() -> None:
    from bench.gpio_vm_meter import judge

    marks, events = _meter_story()
    lost = [e for e in events if e["kind"] != "im_ok_pressed"]
    assert judge(marks, lost, METER_SERVICE, METER_FAULTS, DOOR) == ["0 im_ok_pressed events for one press"]
    doubled = [*events, {**events[3], "wall_time": 1000.4}]
    assert judge(marks, doubled, METER_SERVICE, METER_FAULTS, DOOR) == ["2 im_ok_pressed events for one press"]
    stopped = [e for e in events if not (e["kind"] == "meter_reading" and e["wall_time"] > 1500)]
    assert judge(marks, stopped, METER_SERVICE, METER_FAULTS, DOOR) == [
        "no reading of b12-301 stored between nochip and end"
    ]
    alarm = [*events, {"kind": "inactivity", "state": "raised", "wall_time": 1200.0, "payload": {}}]
    assert judge(marks, alarm, METER_SERVICE, METER_FAULTS, DOOR) == ["alerts nobody caused: ['inactivity'] []"]
    away_lost = [e for e in events if e["kind"] != "going_out_pressed"]
    assert judge(marks, away_lost, METER_SERVICE, METER_FAULTS, DOOR) == ["0 going_out_pressed events for one press"]
    assert judge(marks, events, METER_SERVICE, METER_FAULTS, {"out_since": 1030.4}) == [
        "the door's move is not in the node's state: {'out_since': 1030.4} (moved at 1050.0)"
    ]
    back = {"door_t": None, "out_since": None}  # the door shut behind her said she was back (before 2026-12-07)
    assert judge(marks, events, METER_SERVICE, METER_FAULTS, back) == [
        f"the door's move is not in the node's state: {back} (moved at 1050.0)",
        f"not out since the away button after the door: {back} (pressed at 1030.0)",
    ]
    never = [e for e in events if e["kind"] != "home_device_fault"]
    assert judge(marks, never, METER_SERVICE, METER_FAULTS, DOOR) == [
        "busy: no fault raised",
        "free: no fault cleared",
        "nochip: no fault raised",
    ]


def test_the_guests_lines_are_read_as_marks_and_records() -> None:
    from bench.gpio_sim import guest_marks, records

    lines = [
        "GPIOVM pressed 1796636170.07",
        'GPIOVM led idle {"toggles_per_s": 187.3, "on": 0.49}',
        'GPIOVM service {"install": 0, "restarts": 0}',
        "GPIOVM busy-told after 0 s",
        'GPIOVM faults {"busy": {"active": "active"}}',
    ]
    assert guest_marks(lines) == {"pressed": 1796636170.07}
    assert records(lines, "(service|faults)") == {"service": {"install": 0, "restarts": 0},
                                                  "faults": {"busy": {"active": "active"}}}  # fmt: skip
    assert records(lines, r"led (\S+)") == {"idle": {"toggles_per_s": 187.3, "on": 0.49}}
