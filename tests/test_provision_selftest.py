"""provision selftest on MockFactory pins with a simulated technician, meters on the simulated bus, and the
real central on loopback; run in-process through main(argv) so the test reaches the pins."""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device

from elevator_node.config import DEFAULT_QUESTION
from meter_node.profiles import load_profile
from provisioning import cmd_selftest
from provisioning.cli import main
from tests.speech_helpers import RecordingSpeaker

PROMPT = re.compile(r">>> trigger (\S+) on BCM (\d+)")
EMPTY_CAR = ">>> empty car: step out"


class SimulatedTechnician(io.StringIO):
    """Stands in for stderr: when the selftest asks for an input to be triggered, flips that pin (as a door
    opening or a hand on a button would), unless told to ignore that input. Asked to leave the car empty, steps
    out (the occupancy pin, active high, goes low); ``ghost`` = (after, for) seconds: the presence sensor then
    sees someone who is not there (a fan) that long after she stepped out."""

    def __init__(self, ignore: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.ignore = set(ignore)
        self.threads: list[threading.Thread] = []
        self.asked: list[str] = []
        self.pins: dict[str, int] = {}
        self.ghost: tuple[float, float] | None = None

    def write(self, text: str) -> int:
        for match in PROMPT.finditer(text):
            key, pin = match.group(1), int(match.group(2))
            self.asked.append(key)
            self.pins[key] = pin
            if key not in self.ignore:
                self._start(self._trigger, pin)
        if EMPTY_CAR in text:
            self.asked.append("empty car")
            if "empty car" not in self.ignore:
                self._start(self._step_out, self.pins["occupancy"])
        return super().write(text)

    def _start(self, target, pin: int) -> None:
        thread = threading.Thread(target=target, args=(pin,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _step_out(self, pin: int) -> None:
        time.sleep(0.05)
        Device.pin_factory.pin(pin).drive_low()
        if self.ghost:
            after, lasting = self.ghost
            time.sleep(after)
            Device.pin_factory.pin(pin).drive_high()
            time.sleep(lasting)
            Device.pin_factory.pin(pin).drive_low()

    @staticmethod
    def _trigger(pin: int) -> None:
        time.sleep(0.05)  # a human is slower than the prompt
        mock_pin = Device.pin_factory.pin(pin)
        if mock_pin.state:
            mock_pin.drive_low()
        else:
            mock_pin.drive_high()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def technician(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedTechnician]:
    tech = SimulatedTechnician()
    monkeypatch.setattr(cmd_selftest, "clock_synced", lambda: True)
    monkeypatch.setattr(cmd_selftest, "display_present", lambda: "/dev/dri/card1")
    yield tech
    tech.join()


def init(tmp_path: Path, role: str, central_url: str, *flags: str) -> Path:
    path = tmp_path / "etc" / "node.toml"
    argv = ["init", "--role", role, "--config", str(path), "--non-interactive", "--site", "changbai-xincun"]
    argv += ["--central-url", central_url, "--pin-factory", "mock", "--data-dir", str(tmp_path / "data")]
    argv += ["--set", "audio.backend=none", "--set", "outbox.max_mb=1", *flags]
    assert main(argv) == 0
    return path


def register(path: Path, central, tmp_path: Path) -> None:
    key = tmp_path / "claim.key"
    key.write_text(central.claim_key)
    assert main(["register", "--config", str(path), "--claim-key-file", str(key)]) == 0


ELEVATOR = ["--node-id", "cbxc-b7-lift1", "--building", "7", "--door-pin", "17", "--door-active-high", "no"]
ELEVATOR += ["--door-pull-up", "yes", "--occupancy-pin", "27", "--alarm-button-pin", "24"]


def selftest(path: Path, technician: SimulatedTechnician, *flags: str, terminal: bool = False) -> tuple[int, dict]:
    """Run the selftest with the technician as stderr (pytest re-installs its own streams between the
    set-up and call phases, so the swap happens here)."""
    out = io.StringIO()
    real = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, technician
    try:
        mode = [] if terminal else ["--non-interactive"]
        watch = [] if "--empty-car-s" in flags else ["--empty-car-s", "0.3"]  # the lift's empty car, briefly
        code = main(["selftest", "--config", str(path), "--json", *mode, *watch, *flags])
    finally:
        sys.stdout, sys.stderr = real
    return code, json.loads(out.getvalue())


def results(report: dict) -> dict[str, str]:
    return {c["name"]: c["result"] for c in report["checks"]}


def test_elevator_all_green(central, mock_factory, technician, tmp_path: Path) -> None:
    path = init(tmp_path, "elevator", central.url, *ELEVATOR)
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--timeout", "3")
    assert code == 0, json.dumps(report, indent=1)
    assert report["ok"] is True
    assert results(report) == {
        "clock synced": "pass",
        "disk space for outbox": "pass",
        "input door (BCM 17)": "pass",
        "input occupancy (BCM 27)": "pass",
        "input alarm_button (BCM 24)": "pass",
        "empty car stays empty": "pass",
        "voice prompt": "skip",
        "central reachable, token accepted": "pass",
    }
    assert technician.asked == ["door", "occupancy", "alarm_button", "empty car"]
    door = next(c for c in report["checks"] if c["name"] == "input door (BCM 17)")
    assert "active = doors closed" in door["detail"]
    # the central saw the selftest (EN 81-28 wants test results to reach the monitoring side)
    health = central.node("cbxc-b7-lift1")["health"]
    assert health["selftest"]["source"] == "provision selftest" and health["selftest"]["ok"] is True


def test_an_input_nobody_triggers_fails_with_exit_1(central, mock_factory, technician, tmp_path: Path) -> None:
    technician.ignore = {"occupancy"}
    path = init(tmp_path, "elevator", central.url, *ELEVATOR)
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--timeout", "0.5")
    assert code == 1
    assert report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["input occupancy (BCM 27)"]["result"] == "fail"
    assert "no change within 0.5 s" in checks["input occupancy (BCM 27)"]["detail"]
    assert checks["input door (BCM 17)"]["result"] == "pass"
    assert central.node("cbxc-b7-lift1")["health"]["selftest"]["ok"] is False


@pytest.mark.parametrize("ghost", [(0.2, 0.3), None])
def test_a_presence_sensor_that_sees_someone_in_the_empty_car_fails(
    central, mock_factory, technician, tmp_path: Path, ghost: tuple[float, float] | None
) -> None:
    """A fan or a reflection read as a passenger: for a while during the watch, or all along (she never left)."""
    technician.ghost = ghost
    if ghost is None:
        technician.ignore = {"empty car"}  # presence stays on with the doors closed
    path = init(tmp_path, "elevator", central.url, *ELEVATOR)
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--timeout", "1", "--empty-car-s", "1.5")
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 1 and checks["empty car stays empty"]["result"] == "fail"
    detail = checks["empty car stays empty"]["detail"]
    if ghost:
        assert "someone seen in the empty car 1 time(s)" in detail
        assert 0.2 <= float(re.findall(r"longest ([0-9.]+) s", detail)[0]) < 1.5  # 0.3 s, on a loaded machine more
    else:
        assert "presence on for 1 s with the doors closed" in detail
    assert "a fan, a reflection" in detail and "false entrapment" in detail
    assert checks["input occupancy (BCM 27)"]["result"] == "pass"


def test_kiosk_led_blinks_and_button(central, mock_factory, technician, tmp_path: Path) -> None:
    flags = ["--node-id", "cbxc-gate-kiosk", "--pickup-point", "北门", "--hotline", "021-6543 2100"]
    path = init(tmp_path, "kiosk", central.url, *flags, "--button-pin", "26", "--led-pin", "12")
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--timeout", "3")
    assert code == 0, report
    assert results(report)["LED led (BCM 12)"] == "pass"
    assert results(report)["input button (BCM 26)"] == "pass"
    assert results(report)["screen"] == "pass"
    levels = [state.state for state in mock_factory.pin(12).states]
    assert levels.count(True) >= 3, "the LED was driven on three times"


def test_unregistered_and_unreachable_central_fail(central, mock_factory, technician, tmp_path: Path) -> None:
    path = init(tmp_path, "elevator", central.url, *ELEVATOR)
    code, report = selftest(path, technician, "--timeout", "3", "--skip-inputs")
    assert code == 1
    checks = {c["name"]: c for c in report["checks"]}
    assert "register first" in checks["central reachable, token accepted"]["detail"]
    assert checks["input door (BCM 17)"]["result"] == "skip"
    assert (checks["empty car stays empty"]["result"], checks["empty car stays empty"]["detail"]) == (
        "skip",
        "--skip-inputs",
    )
    register(path, central, tmp_path)
    central.stop()
    code, report = selftest(path, technician, "--timeout", "2", "--skip-inputs")
    assert code == 1
    checks = {c["name"]: c for c in report["checks"]}
    assert "unreachable" in checks["central reachable, token accepted"]["detail"]


def test_clock_and_disk_failures(central, mock_factory, technician, tmp_path: Path, monkeypatch) -> None:
    path = init(tmp_path, "elevator", central.url, *ELEVATOR, "--force", "--set", "outbox.max_mb=4096")
    register(path, central, tmp_path)
    monkeypatch.setattr(cmd_selftest, "clock_synced", lambda: False)
    free = 2 * 1024**3  # 2 GB free, the outbox may use 4 GB
    monkeypatch.setattr(cmd_selftest.shutil, "disk_usage", lambda p: type("U", (), {"free": free})())
    code, report = selftest(path, technician, "--skip-inputs")
    assert code == 1
    assert results(report)["clock synced"] == "fail"
    assert results(report)["disk space for outbox"] == "fail"


def test_no_pin_factory_is_a_hardware_error(central, technician, tmp_path: Path, monkeypatch) -> None:
    path = init(tmp_path, "elevator", central.url, *ELEVATOR, "--pin-factory", "lgpio", "--force")
    register(path, central, tmp_path)
    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.setitem(sys.modules, "lgpio", None)  # as off a Pi: the lgpio module cannot be imported
    code, report = selftest(path, technician, "--timeout", "0.5")
    assert code == 4
    assert results(report)["input door (BCM 17)"] == "fail"


def test_meters_are_read_and_a_missing_one_fails(central, meter_bus, technician, tmp_path: Path) -> None:
    profile = load_profile("ultrad_int_ml")
    meter_bus.sim.add_slave(1)
    meter_bus.sim.set_registers(1, 3, profile.address, profile.encode(4_321.5))
    flags = ["--node-id", "cbxc-b12-meters", "--serial-port", meter_bus.node_path, "--serial-timeout-s", "0.1"]
    flags += ["--meter", "id=b12-301,address=1,profile=ultrad_int_ml,household.resident=B12-301"]
    flags += ["--meter", "id=b12-502,address=2,profile=pulse_u32_10l,household.resident=B12-502"]
    path = init(tmp_path, "meter", central.url, *flags)
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--timeout", "1")
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["meter b12-301 (slave 1)"]["result"] == "pass"
    assert "4321.5 L" in checks["meter b12-301 (slave 1)"]["detail"]
    assert checks["meter b12-502 (slave 2)"]["result"] == "fail"
    assert "NoResponseError" in checks["meter b12-502 (slave 2)"]["detail"]
    assert code == 1


def test_text_table(central, mock_factory, technician, tmp_path: Path, capsys) -> None:
    path = init(tmp_path, "elevator", central.url, *ELEVATOR)
    register(path, central, tmp_path)
    capsys.readouterr()
    real = sys.stderr
    sys.stderr = technician
    try:
        argv = ["selftest", "--config", str(path), "--non-interactive", "--timeout", "3", "--empty-car-s", "0.3"]
        assert main(argv) == 0
    finally:
        sys.stderr = real
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert "ALL PASSED" in out


class TerminalInput(io.StringIO):
    """Answers typed on a terminal: the selftest asks for confirmation only when stdin is one."""

    def isatty(self) -> bool:
        return True


def test_voice_is_played_and_confirmed_on_a_terminal(
    central, mock_factory, technician, tmp_path: Path, monkeypatch
) -> None:
    from hal import audio

    speaker = RecordingSpeaker()
    monkeypatch.setattr(audio, "make_speaker", lambda spec: speaker)
    path = init(tmp_path, "elevator", central.url, *ELEVATOR, "--set", "audio.backend=espeak", "--force")
    register(path, central, tmp_path)
    monkeypatch.setattr(sys, "stdin", TerminalInput("y\n"))
    code, report = selftest(path, technician, "--skip-inputs", terminal=True)
    assert code == 0, report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["voice prompt"]["detail"].endswith("heard, confirmed by the technician")
    assert speaker.texts == [DEFAULT_QUESTION]  # the lift plays its entrapment prompt
    assert "did you hear lift.entrapment clearly?" in technician.getvalue()
    # every prompt of the lift read by the real espeak-ng in Mandarin
    assert checks["speech check"]["result"] == "pass"
    assert "4 prompts (4 texts) read in cmn-latn-pinyin" in checks["speech check"]["detail"]


def test_voice_plays_through_the_real_aplay_and_old_cmn_is_replaced(
    central, mock_factory, technician, tmp_path: Path
) -> None:
    # audio.device = null: ALSA's null device, so the real espeak-ng and the real aplay run on a box without sound
    flags = ("--set", "audio.backend=espeak", "--set", "audio.device=null", "--set", "audio.voice=cmn", "--force")
    path = init(tmp_path, "elevator", central.url, *ELEVATOR, *flags)
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--skip-inputs")
    assert code == 0, report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["voice prompt"]["detail"].startswith("played lift.entrapment at ")
    assert "finished" in checks["voice prompt"]["detail"]
    speech = checks["speech check"]["detail"]
    assert "read in cmn-latn-pinyin" in speech and "'cmn' does not read 你好，沪 A in Chinese" in speech


def test_a_prompt_espeak_would_read_in_english_fails_the_speech_check(
    central, mock_factory, technician, tmp_path: Path
) -> None:
    path = init(tmp_path, "elevator", central.url, *ELEVATOR, "--set", "audio.backend=none", "--force")
    text = path.read_text(encoding="utf-8").replace('backend = "none"', 'backend = "espeak"\ndevice = "null"')
    path.write_text(text + '\n[elevator.voice]\nquestion = "请问电梯还在运行吗？Help is coming."\n', encoding="utf-8")
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--skip-inputs")
    assert code == 1
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["speech check"]["result"] == "fail"
    assert "lift.entrapment" in checks["speech check"]["detail"] and "Help" in checks["speech check"]["detail"]


def test_led_the_technician_did_not_see_fails(central, mock_factory, technician, tmp_path: Path, monkeypatch) -> None:
    flags = ["--node-id", "cbxc-gate-kiosk", "--pickup-point", "北门", "--hotline", "021-6543 2100"]
    path = init(tmp_path, "kiosk", central.url, *flags, "--led-pin", "12")
    register(path, central, tmp_path)
    monkeypatch.setattr(sys, "stdin", TerminalInput("n\n"))
    code, report = selftest(path, technician, terminal=True)
    assert code == 1
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["LED led (BCM 12)"]["result"] == "fail"
    assert "active_high" in checks["LED led (BCM 12)"]["detail"]


def test_a_voice_that_cannot_play_is_a_hardware_error(
    central, mock_factory, technician, tmp_path: Path, monkeypatch
) -> None:
    import shutil

    # a box without alsa-utils: espeak-ng is there, aplay is not
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "espeak-ng").symlink_to(shutil.which("espeak-ng") or "/usr/bin/espeak-ng")
    monkeypatch.setenv("PATH", str(bin_dir))
    path = init(tmp_path, "elevator", central.url, *ELEVATOR, "--set", "audio.backend=espeak", "--force")
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--skip-inputs")
    assert code == 4
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["voice prompt"]["result"] == "fail"
    assert "aplay not found" in checks["voice prompt"]["detail"]


def test_kiosk_without_a_screen_is_a_hardware_error(
    central, mock_factory, technician, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(cmd_selftest, "display_present", lambda: None)
    flags = ["--node-id", "cbxc-gate-kiosk", "--pickup-point", "北门", "--hotline", "021-6543 2100"]
    path = init(tmp_path, "kiosk", central.url, *flags)
    register(path, central, tmp_path)
    code, report = selftest(path, technician)
    assert code == 4
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["screen"]["result"] == "fail" and "DSI" in checks["screen"]["detail"]


def test_an_english_kiosk_with_a_mandarin_voice_is_told_which_voice(
    central, mock_factory, technician, tmp_path
) -> None:
    flags = ["--node-id", "cbxc-gate-kiosk", "--pickup-point", "北门", "--hotline", "021-6543 2100"]
    flags += ["--set", "kiosk.voice_language=en", "--set", "audio.backend=espeak", "--set", "audio.device=null"]
    path = init(tmp_path, "kiosk", central.url, *flags, "--force")
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--skip-inputs")
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 1 and checks["speech check"]["result"] == "fail"
    assert "kiosk.voice_language = 'en' needs audio.voice = 'en'" in checks["speech check"]["detail"]


def test_backend_wav_with_a_pack_lacking_the_entrapment_prompt(
    central, mock_factory, technician, tmp_path: Path, monkeypatch
) -> None:
    """backend wav, the pack has no lift.entrapment: espeak-ng says it through the real aplay (the self-test
    passes and names the fallback); on a box without espeak-ng the self-test fails and says why."""
    import shutil

    from elevator_node.config import DEFAULT_ALARM_ACK, DEFAULT_REASSURANCE
    from hal.espeak import render_to_wav

    pack = tmp_path / "pack"
    pack.mkdir()
    clips = {"lift.reassurance": DEFAULT_REASSURANCE, "lift.alarm_ack": DEFAULT_ALARM_ACK}
    manifest = "".join(f'"{clip_id}" = "{text}"\n' for clip_id, text in clips.items())
    (pack / "pack.toml").write_text(f'[pack]\nname = "no entrapment"\n[clips]\n{manifest}', encoding="utf-8")
    for clip_id, text in clips.items():
        render_to_wav(text, pack / f"{clip_id}.wav", volume=100)
    flags = ("--set", "audio.backend=wav", "--set", "audio.device=null", "--set", f"audio.pack={pack}", "--force")
    path = init(tmp_path, "elevator", central.url, *ELEVATOR, *flags)
    register(path, central, tmp_path)
    code, report = selftest(path, technician, "--skip-inputs")
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 0, report
    assert (
        "synthesised by espeak-ng: lift.entrapment (the pack has no lift.entrapment)" in checks["prompt pack"]["detail"]
    )
    assert checks["speech check"]["result"] == "pass"
    assert checks["voice prompt"]["detail"].startswith("played lift.entrapment at ")

    bin_dir = tmp_path / "bin"  # the same box without espeak-ng: aplay only
    bin_dir.mkdir()
    (bin_dir / "aplay").symlink_to(shutil.which("aplay") or "/usr/bin/aplay")
    monkeypatch.setenv("PATH", str(bin_dir))
    code, report = selftest(path, technician, "--skip-inputs")
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 1, report
    assert checks["prompt pack"]["result"] == "fail" and "SILENT" in checks["prompt pack"]["detail"]
    assert checks["voice prompt"]["result"] == "fail"
    assert "lift.entrapment not said" in checks["voice prompt"]["detail"]
    assert "espeak-ng is not installed" in checks["voice prompt"]["detail"]


class Scripted:
    """An input whose value follows a script of (from this many seconds after the start, value)."""

    def __init__(self, script: list[tuple[float, bool]]) -> None:
        self.script, self.start = script, time.monotonic()

    @property
    def value(self) -> bool:
        elapsed = time.monotonic() - self.start
        return [v for t, v in self.script if t <= elapsed][-1]


def test_doors_opened_during_the_empty_car_watch_start_it_again() -> None:
    """A resident calls the car: the doors open, someone may be in it now, so the watch starts again once they
    close with the car empty; a car that keeps being called fails with a word on it, not a verdict on the sensor."""
    from provisioning.selftest_lift import check_empty_car

    door = Scripted([(0.0, True), (0.3, False), (0.5, True)])  # opened 0.3-0.5 s into the first watch
    occupancy = Scripted([(0.0, False), (0.35, True), (0.45, False)])  # the resident, seen while the doors are open
    check = check_empty_car(door, occupancy, watch_s=0.5, timeout_s=1.0)
    assert (check.result, check.detail) == ("pass", "no one seen for 0.5 s with the doors closed")
    flapping = Scripted([(t / 10, t % 2 == 0) for t in range(100)])  # doors open and shut every 0.1 s
    check = check_empty_car(flapping, Scripted([(0.0, False)]), watch_s=0.5, timeout_s=1.0)
    assert check.result == "fail" and "the doors opened during each of 4 watches" in check.detail
    assert check_empty_car(None, occupancy, 1.0, 1.0).result == "skip"  # no working door contact
    pir = check_empty_car(Scripted([(0.0, True)]), Scripted([(0.0, True)]), 0.5, 0.3, kind="motion")
    assert pir.result == "fail" and "hold time" in pir.detail  # a PIR that holds its output on: its own advice
