"""The headless kiosk: the MockFactory arcade button hails a real ride; LED patterns; outbox events; the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from common.clock import FastClock
from common.config import NodeConfig, load_config
from common.spoken import phone_for_listening, plate_for_listening
from kiosk.node import LED_PATTERNS, KioskNode, LedPattern, build_node, led_pattern
from tests.conftest import eventually
from tests.kiosk_helpers import NODE, write_kiosk_config
from tests.speech_helpers import RecordingSpeaker

ROOT = Path(__file__).resolve().parent.parent
BUTTON, LED = 17, 18


def write_config(tmp_path: Path, url: str, token: str | None) -> Path:
    return write_kiosk_config(
        tmp_path,
        url,
        token,
        sections='[gpio]\npin_factory = "mock"\n',
        kiosk_extra=f"button = {{ pin = {BUTTON}, bounce_s = 0 }}\nled = {{ pin = {LED} }}",
    )


def wait_for(node: KioskNode, *states: str, timeout: float = 10.0) -> None:
    eventually(lambda: node.state in states, timeout, what=f"the kiosk in {states}")


def press(factory: MockFactory) -> None:
    pin = factory.pin(BUTTON)
    pin.drive_low()  # pull-up button: pressed pulls the pin low
    time.sleep(0.02)
    pin.drive_high()


def test_arcade_button_hails_a_ride_with_led_and_voice(central, mock_factory: MockFactory, tmp_path: Path) -> None:
    token = central.register(NODE, "kiosk", pickup_point="长白新村北门")
    voice = RecordingSpeaker()
    node = build_node(load_config(write_config(tmp_path, central.url, token)), speaker=voice)
    try:
        node.start_thread()
        led = mock_factory.pin(LED)
        assert node.led_state == LedPattern("blink", 1.5, 1.5)  # idle: no PWM on a plain mock pin
        press(mock_factory)
        wait_for(node, "requesting", "searching", "assigned")
        wait_for(node, "assigned")
        eventually(lambda: node.led_state == LedPattern("on"))
        assert led.state == 1  # steady while a car comes
        rides = central.rides()
        assert len(rides) == 1 and rides[0]["node_id"] == NODE
        plate = rides[0]["assigned"]["plate"]
        assert any(plate_for_listening(plate) in s for s in voice.texts)
        press(mock_factory)  # a second press repeats the news, orders nothing
        eventually(lambda: node.controller.counts["presses"] == 2, what="the second press handled")
        assert len(central.rides()) == 1 and node.controller.counts["requests"] == 1

        def both_presses_and_the_ride_at_the_central() -> list[dict]:
            kinds = [e["kind"] for e in central.events(NODE)]
            return central.events(NODE) if kinds.count("button_pressed") >= 2 and "ride_assigned" in kinds else []

        events = eventually(both_presses_and_the_ride_at_the_central)
        presses = [e for e in events if e["kind"] == "button_pressed"]
        assert len(presses) == 2 and all(e["payload"]["source"] == "button" for e in presses)
        assert "ride_assigned" in [e["kind"] for e in events]
    finally:
        node.close()


def test_led_goes_dark_when_out_of_service(mock_factory: MockFactory, tmp_path: Path) -> None:
    voice = RecordingSpeaker()
    node = build_node(load_config(write_config(tmp_path, "http://127.0.0.1:9", "token")), speaker=voice)
    try:
        node.start_thread()
        press(mock_factory)
        wait_for(node, "offline", timeout=5)
        eventually(lambda: node.led_state == LedPattern("off"))
        assert mock_factory.pin(LED).state == 0
        assert any(phone_for_listening("021-6543 2100") in s for s in voice.texts)
    finally:
        node.close()


def test_idle_pulses_on_a_pwm_pin(tmp_path: Path) -> None:
    previous = Device.pin_factory
    Device.pin_factory = factory = MockFactory(pin_class=MockPWMPin)
    node = None
    try:
        node = build_node(
            load_config(write_config(tmp_path, "http://127.0.0.1:9", "token")), speaker=RecordingSpeaker()
        )
        assert node.led_state == LedPattern("pulse", 1.5, 1.5)
        deadline = time.monotonic() + 3
        levels: set[float] = set()
        while time.monotonic() < deadline and len(levels) < 3:
            levels.add(round(factory.pin(LED).state, 1))
            time.sleep(0.05)
        assert len(levels) >= 3, levels  # dimming through levels, not just on and off
    finally:
        if node is not None:
            node.close()
        factory.reset()
        Device.pin_factory = previous


@pytest.mark.parametrize("state", list(LED_PATTERNS))
def test_every_state_has_an_led_pattern(state: str) -> None:
    pwm, plain = led_pattern(state, True), led_pattern(state, False)
    assert plain.kind != "pulse"
    assert (pwm.kind == "off") == (state in ("offline", "error"))
    assert pwm.kind in ("pulse", "blink", "on", "off")


def test_fast_clock_headless_node_for_the_simulated_community(
    central, mock_factory: MockFactory, tmp_path: Path
) -> None:
    token = central.register(NODE, "kiosk")
    node = build_node(
        load_config(write_config(tmp_path, central.url, token)),
        clock=FastClock(30.0),
        speaker=RecordingSpeaker(),
        use_gpio=False,
    )
    try:
        node.start_thread()
        node.press("simulated")
        assert node.state == "requesting"  # at once, before any answer
        assert node.wait_for_state("assigned", timeout_s=10)
        assert len(central.rides()) == 1
        assert not node.wait_for_state("no_car", timeout_s=0.1)
    finally:
        node.close()


def test_kiosk_run_headless_starts_and_stops_on_sigterm(central, tmp_path: Path) -> None:
    token = central.register(NODE, "kiosk")
    config = write_config(tmp_path, central.url, token)
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "run", "--headless", "--config", str(config)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def reached() -> bool:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            return bool(central.events(NODE))

        eventually(reached, 15, 0.1, "the headless kiosk reaches the central")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", None)
    config.write_text(config.read_text().replace('hotline = "021-6543 2100"', 'hotline = "call us"'))
    proc = subprocess.run(
        [sys.executable, "-m", "kiosk", "run", "--headless", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert proc.returncode == 2 and "hotline" in proc.stderr


def test_broken_arcade_button_raises_a_fault_and_the_kiosk_goes_on(mock_factory: MockFactory, tmp_path: Path) -> None:
    from gpiozero import Button

    squatter = Button(BUTTON)  # another process (or a config typo) holds the pin
    node = build_node(load_config(write_config(tmp_path, "http://127.0.0.1:9", "token")), speaker=RecordingSpeaker())
    try:
        assert node.button is None and node.runtime.alerts.is_open("kiosk_fault", "gpio")
        node.press("screen")  # the screen still orders
        assert node.state == "requesting"
    finally:
        node.close()
        squatter.close()


def test_kiosk_without_a_working_screen_runs_headless_and_says_so(central, tmp_path: Path) -> None:
    token = central.register(NODE, "kiosk")
    config = write_config(tmp_path, central.url, token)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISPLAY": ":0", "KIVY_WINDOW": "egl_rpi"}  # no usable window
    env["KIVY_HOME"] = str(tmp_path / "kivy")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "--config", str(config), "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def faults() -> list[dict]:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            return [e for e in central.events(NODE) if e["kind"] == "kiosk_fault"]

        found = eventually(faults, 20, 0.1, "a kiosk_fault at the central")
        assert found[0]["payload"]["part"] == "screen" and found[0]["state"] == "raised"
        assert "maintenance" in found[0]["recipients"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_outbox_failure_never_stops_a_ride(mock_factory: MockFactory, tmp_path: Path) -> None:
    node = build_node(load_config(write_config(tmp_path, "http://127.0.0.1:9", "token")), speaker=RecordingSpeaker())
    try:
        node.runtime.outbox.close()  # the SD card gave up
        node.press("button")
        assert node.state == "requesting" and node.record_failures >= 2  # button_pressed, ride_requested
    finally:
        node.close()


def _ride_then_stop(central, tmp_path: Path) -> NodeConfig:
    """A kiosk that asked for a ride and stopped while it was on its way (the watchdog, or the power); its config."""
    token = central.register(NODE, "kiosk")
    config = load_config(write_config(tmp_path, central.url, token))
    first = build_node(config, speaker=RecordingSpeaker(), use_gpio=False)
    first.start_thread()
    first.press("button")
    assert first.wait_for_state("searching", "assigned")
    first.close()
    return config


def test_a_restart_mid_ride_picks_the_ride_up_without_a_second_car(central, tmp_path: Path, fsynced) -> None:
    config = _ride_then_stop(central, tmp_path)
    assert fsynced.covers(config.state_dir / "ride.json")  # a power cut would have left it empty (LazyFS)
    voice = RecordingSpeaker()
    second = build_node(config, speaker=voice, use_gpio=False)
    try:
        assert second.state == "idle"
        second.start_thread()
        assert second.wait_for_state("assigned", timeout_s=10)
        car = second.controller.view().car
        assert car is not None
        plate = car.plate
        rides = central.rides()
        assert len(rides) == 1 and rides[0]["assigned"]["plate"] == plate
        assert any(plate_for_listening(plate) in s for s in voice.texts)
        second.press("button")  # still the same ride
        assert len(central.rides()) == 1
    finally:
        second.close()


def test_a_ride_that_ended_while_the_kiosk_was_down_is_not_announced(central, tmp_path: Path) -> None:
    config = _ride_then_stop(central, tmp_path)
    central.clock.advance(3600)  # an hour later the car has long come and gone
    voice = RecordingSpeaker()
    second = build_node(config, speaker=voice, use_gpio=False)
    try:
        second.start_thread()
        eventually(lambda: not (config.state_dir / "ride.json").exists(), what="the ended ride forgotten")
        assert second.state == "idle"
        assert not any("到了" in s for s in voice.texts)  # no "your taxi is here" to a stranger
    finally:
        second.close()


def test_unreadable_ride_file_is_ignored(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", "token"))
    config.state_dir.mkdir(parents=True)
    (config.state_dir / "ride.json").write_text("{not json")
    node = build_node(config, speaker=RecordingSpeaker(), use_gpio=False)
    try:
        node.start()
        assert node.state == "idle"
    finally:
        node.close()


def test_screen_dims_at_the_audio_night_hours_through_sysfs(tmp_path: Path) -> None:
    """A backlight folder as the kernel shows it (brightness, max_brightness); Shanghai time from the wall clock."""
    from common.clock import ManualClock

    light = tmp_path / "backlight"
    light.mkdir()
    (light / "max_brightness").write_text("255\n")
    (light / "brightness").write_text("255\n")
    config = write_kiosk_config(
        tmp_path,
        "http://127.0.0.1:9",
        None,
        sections='[gpio]\npin_factory = "mock"\n',
        kiosk_extra=f'screen = {{ backlight = "{light}", night_brightness = 30 }}',
    )
    clock = ManualClock()
    clock.set_wall(1_780_000_000 - 1_780_000_000 % 86400 + 15 * 3600)  # 15:00 UTC = 23:00 in Shanghai
    node = build_node(load_config(config), speaker=RecordingSpeaker(), use_gpio=False, clock=clock)
    try:
        node.open_backlight()
        node.tick()
        assert (light / "brightness").read_text().strip() == str(round(255 * 0.3))
        clock.set_wall(clock.wall() + 9 * 3600)  # 08:00 in Shanghai: day ([audio] night ends 07:00)
        node.tick()
        assert (light / "brightness").read_text().strip() == "255"
    finally:
        node.close()


def test_a_help_request_closes_on_the_node_after_help_clear_s_of_monotonic_time_too(tmp_path: Path) -> None:
    """help_clear_s after it was raised the kiosk stops re-sending a help request: not when NTP steps the wall
    clock forward (a Pi after a power cut starts on its saved time), which closed it at once."""
    from common.clock import ManualClock

    clock = ManualClock(synced=False)
    config = write_kiosk_config(tmp_path, "http://127.0.0.1:9", None, sections='[gpio]\npin_factory = "mock"\n')
    node = build_node(load_config(config), speaker=RecordingSpeaker(), use_gpio=False, clock=clock)

    def open_help() -> list[str]:
        return [a.alert_id for a in node.runtime.alerts.open_alerts() if a.kind == "help_requested"]

    try:
        node.controller.help("screen")
        raised = open_help()
        assert len(raised) == 1
        node.tick()
        clock.set_wall(clock.wall() + 9 * 3600, synced=True)  # NTP's step, 9 h forward
        node.tick()
        assert open_help() == raised
        clock.advance(1800 - 1)
        node.tick()
        assert open_help() == raised
        clock.advance(1)
        node.tick()
        assert open_help() == []
        cleared = [e for e in node.runtime.outbox.batch(1000) if e.kind == "help_requested" and e.state == "cleared"]
        assert len(cleared) == 1
    finally:
        node.close()


def test_holding_the_arcade_button_asks_for_help_and_the_desk_is_told(
    central, mock_factory: MockFactory, tmp_path: Path
) -> None:
    """Held for arcade_hold_s: a help_requested alert (warning, property desk) at the central, no taxi."""
    token = central.register(NODE, "kiosk", pickup_point="长白新村北门")
    config = write_kiosk_config(
        tmp_path,
        central.url,
        token,
        central_extra="batch_max_age_s = 0.1\nack_poll_s = 1.0",
        sections='[gpio]\npin_factory = "mock"\n',
        kiosk_extra=f"button = {{ pin = {BUTTON}, bounce_s = 0 }}",
        timing="arcade_hold_s = 1.0",
    )
    voice = RecordingSpeaker()
    node = build_node(load_config(config), speaker=voice)
    try:
        node.start_thread()
        pin = mock_factory.pin(BUTTON)
        pin.drive_low()
        wait_for(node, "help_requested", timeout=5)  # while still held
        pin.drive_high()
        helps = eventually(lambda: [e for e in central.events(NODE) if e["kind"] == "help_requested"], 10, 0.1)
        alert = helps[0]
        assert alert["severity"] == "warning" and alert["state"] == "raised"
        assert alert["recipients"] == ["property_management"] and alert["payload"]["source"] == "button"
        assert central.rides() == [] and node.state == "help_requested"  # letting go ordered nothing
        assert any("物业" in s for s in voice.texts)
        # the desk acknowledges: the resident waiting at the kiosk hears it once (the kiosk asks every ack_poll_s)
        (first,) = central.alerts()

        def desk(action: str) -> None:
            done = requests.post(f"{central.url}/api/v1/alerts/{first['id']}/{action}", json={"note": "保安已到"},
                                 headers=central.operator_headers, timeout=10)  # fmt: skip
            assert done.status_code == 200, done.text

        desk("ack")
        taken_in = node.texts.voice("help_taken_in", "zh")
        eventually(lambda: taken_in in voice.texts, 10, 0.1, "the kiosk saying the desk has her call")
        assert node.controller.state == "help_taken_in"  # and showing it, for a resident who cannot hear it
        desk("resolve")
        # the desk helped her and closed it; the kiosk keeps the request open for help_clear_s, so the next
        # resident's hold is an update of it: that must open it again, not be buried
        node.controller.back()
        pin.drive_low()
        wait_for(node, "help_requested", timeout=5)
        pin.drive_high()
        again = eventually(lambda: [a for a in central.alerts() if a["state"] == "open"], 10, 0.1)
        assert [(a["kind"], a["occurrence"]) for a in again] == [("help_requested", 2)]
        updates = [e["state"] for e in central.events(NODE) if e["kind"] == "help_requested"]
        assert updates[:2] == ["raised", "updated"]  # the second hold came as an update of the same incident
    finally:
        node.close()


GPIO_LOADED = """
import sys
from common.config import load_config
from hal.audio import NullSpeaker
from kiosk.node import build_node
node = build_node(load_config(sys.argv[1]), speaker=NullSpeaker())
print("gpiozero" in sys.modules, node.button is not None)
node.close()
"""


def test_gpiozero_is_loaded_only_by_a_kiosk_with_a_button_or_led(tmp_path: Path) -> None:
    # a screen-only kiosk does not carry gpiozero's 2.2 MB; one with an arcade button opens it (mock pins here)
    (tmp_path / "plain").mkdir()
    (tmp_path / "wired").mkdir()
    plain = write_kiosk_config(tmp_path / "plain", "http://127.0.0.1:9", None)
    wired = write_config(tmp_path / "wired", "http://127.0.0.1:9", None)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for config, expected in ((plain, "False False"), (wired, "True True")):
        proc = subprocess.run(
            [sys.executable, "-c", GPIO_LOADED, str(config)], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split("\n")[-2] == expected
