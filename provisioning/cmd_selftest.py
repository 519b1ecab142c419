"""`provision selftest`: the role's hardware and links checked with the technician, as a pass/fail table.

Inputs must change while the technician triggers them (with a time limit), LEDs and voice are played (and
confirmed on a terminal), each configured meter is read and decoded, the central must accept the node's token
(a heartbeat carrying this self-test's results), the clock must be synced and the outbox must have room.
Hardware comes from ``hal`` with the pin factory from the config, exactly as the node gets it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.clock import SystemClock
from common.config import ButtonPin, LedPin, NodeConfig, SerialPort
from provisioning import central_client, prompt
from provisioning.checks import FAIL, PASS, SKIP, Check
from provisioning.cmd_install import systemd_running, unit_name
from provisioning.configfile import command_parser, load_node_config
from provisioning.errors import (
    EXIT_CHECK_FAILED,
    EXIT_HARDWARE,
    EXIT_OK,
    ProvisionError,
)
from provisioning.schema import PIN_TYPES
from provisioning.selftest_lift import NAME as EMPTY_CAR
from provisioning.selftest_lift import check_empty_car
from provisioning.selftest_tls import check_tls_strict
from provisioning.selftest_voice import check_voice, wants_voice

POLL_S = 0.01

# what the technician does to make each input change, by config key
TRIGGER_HINTS = {
    "door": "open and close the lift doors (or move the magnet away from the door contact)",
    "occupancy": "step into the car and move (or wave at the presence sensor)",
    "moving": "run the car one floor (or tap the vibration switch)",
    "level_zone": "move the car off floor level (or pass a magnet over the door-zone sensor)",
    "alarm_button": "press and hold the in-car alarm button",
    "inspection": "turn the inspection key switch",
    "power_fail": "unplug the UPS mains input for a moment",
    "ok_button": "press the resident's I'm-OK button",
    "button": "press the arcade button",
}


# ------------------------------------------------------------------------------------------ the pieces
def pins_of(section: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, pin config) for every pin in a role section, including those inside meter entries."""
    if section is None:
        return
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        key = f"{prefix}{f.name}"
        if isinstance(value, PIN_TYPES):
            yield key, value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from pins_of(value, f"{key}.")
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    label = getattr(item, "id", str(i))
                    yield from pins_of(item, f"{key}[{label}].")


def clock_synced() -> bool:
    """Whether NTP has synchronised the wall clock (a Pi has no RTC); patched in tests."""
    return SystemClock().wall_synced()


def check_clock() -> Check:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if clock_synced():
        return Check("clock synced", PASS, f"NTP synchronised, {now}")
    return Check(
        "clock synced",
        FAIL,
        f"not synchronised ({now}): check network time (timedatectl; NTP servers reachable?)",
    )


def check_disk(config: NodeConfig) -> Check:
    """Free space where the outbox will live must hold at least the outbox's bound (outbox.max_mb)."""
    where = Path(config.node.data_dir)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check("disk space for outbox", FAIL, f"{where}: {exc.strerror}")
    need = config.outbox.max_mb * 1024 * 1024
    text = f"{free / 2**20:.0f} MB free at {where}, outbox may use {config.outbox.max_mb:g} MB"
    return Check("disk space for outbox", PASS if free >= need else FAIL, text)


class Inputs:
    """GPIO devices built through hal.gpio, closed at the end."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.devices: list[Any] = []
        self.by_key: dict[str, Any] = {}  # the inputs whose check passed, by config key
        self.factory_error: str | None = None
        try:
            from hal import gpio

            gpio.use_pin_factory(config.gpio.pin_factory)
            self.gpio: Any = gpio
        except ImportError as exc:
            self.factory_error = f"hal.gpio not available: {exc}"
        except _gpio_errors() as exc:
            self.factory_error = _gpio_error(exc)

    def make(self, kind: str, pin: Any) -> Any:
        maker = {"input": "make_input", "button": "make_button", "led": "make_led"}[kind]
        device = getattr(self.gpio, maker)(pin)
        self.devices.append(device)
        return device

    def close(self) -> None:
        for device in self.devices:
            device.close()
        self.devices.clear()


def _gpio_error(exc: BaseException) -> str:
    from gpiozero.exc import GPIOPinInUse

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, GPIOPinInUse) or "busy" in str(exc).lower():
        text += " (is the node service running? stop it first: systemctl stop changbai-ROLE)"
    return text


def _gpio_errors() -> tuple[type[BaseException], ...]:
    from gpiozero.exc import GPIOZeroError

    return (GPIOZeroError, OSError, RuntimeError)


def _input_state(device: Any) -> bool:
    return bool(device.value)


def active_meaning(section: Any, key: str) -> str:
    """What 'active' means for an input, from its config help ("door contact: active = doors closed")."""
    name = key.rsplit(".", 1)[-1]
    for f in dataclasses.fields(section) if dataclasses.is_dataclass(section) else ():
        if f.name == name:
            help_text = f.metadata.get("help", "")
            if "active = " in help_text:
                return help_text.split("active = ", 1)[1].split(";")[0].strip()
    return ""


def check_input(inputs: Inputs, key: str, pin: Any, timeout_s: float, meaning: str = "") -> Check:
    """Ask the technician to trigger one input; pass when its level changes within ``timeout_s``."""
    name = f"input {key} (BCM {pin.pin})"
    if inputs.factory_error:
        return Check(name, FAIL, inputs.factory_error, hardware_error=True)
    try:
        device = inputs.make("button" if isinstance(pin, ButtonPin) else "input", pin)
        before = _input_state(device)
    except _gpio_errors() as exc:
        return Check(name, FAIL, _gpio_error(exc), hardware_error=True)
    hint = TRIGGER_HINTS.get(key.rsplit(".", 1)[-1], "make this input change")
    prompt.say(f">>> trigger {key} on BCM {pin.pin}: {hint} (within {timeout_s:g} s)")
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        now_state = _input_state(device)
        if now_state != before:
            took = time.monotonic() - started
            word = "active" if now_state else "inactive"
            means = f"; active = {meaning}" if meaning else ""
            inputs.by_key[key] = device
            return Check(name, PASS, f"changed to {word} after {took:.1f} s{means}")
        time.sleep(POLL_S)
    word = "active" if before else "inactive"
    return Check(name, FAIL, f"no change within {timeout_s:g} s (stayed {word}): check wiring, pin, pull-up")


def check_led(inputs: Inputs, key: str, pin: Any, confirm: bool) -> Check:
    name = f"LED {key} (BCM {pin.pin})"
    if inputs.factory_error:
        return Check(name, FAIL, inputs.factory_error, hardware_error=True)
    try:
        led = inputs.make("led", pin)
        prompt.say(f">>> watch the LED {key} on BCM {pin.pin}: it blinks three times")
        for _ in range(3):
            led.on()
            time.sleep(0.3)
            led.off()
            time.sleep(0.2)
    except _gpio_errors() as exc:
        return Check(name, FAIL, _gpio_error(exc), hardware_error=True)
    if not confirm:
        return Check(name, PASS, "blinked 3 times (not confirmed: no terminal)")
    if prompt.confirm(f"did the LED {key} blink?"):
        return Check(name, PASS, "blinked, confirmed by the technician")
    return Check(name, FAIL, "the technician saw no blink: check LED polarity (active_high) and wiring")


def display_present() -> str | None:
    """Where the kiosk can draw: a KMS/DRM card, or an X11/Wayland display; None without any. Patched in tests."""
    cards = sorted(Path("/dev/dri").glob("card*"))
    if cards:
        return str(cards[0])
    for variable in ("WAYLAND_DISPLAY", "DISPLAY"):
        if os.environ.get(variable):
            return f"${variable}={os.environ[variable]}"
    return None


def check_display() -> Check:
    where = display_present()
    if where:
        return Check("screen", PASS, f"display at {where}")
    return Check(
        "screen",
        FAIL,
        "no display (/dev/dri/card*): the kiosk would run on button and voice only; check the DSI ribbon and "
        "dtoverlay=vc4-kms-v3d in /boot/firmware/config.txt",
        hardware_error=True,
    )


def check_meters(config: NodeConfig, timeout_s: float) -> list[Check]:
    """Read each configured meter once through ModbusBus and decode it with its profile."""
    serial_port: SerialPort | None = getattr(config.role_config, "serial", None)
    meters = getattr(config.role_config, "meters", ())
    if serial_port is None:
        return []
    if not meters:
        return [Check("meters", FAIL, "no [[meter.meters]] configured: find them with provision scan")]
    try:
        from hal.modbus import ModbusBus, ModbusError
        from meter_node.profiles import DecodeError, ProfileError, load_profile
    except ImportError as exc:
        return [Check("meters", FAIL, f"meter support not available: {exc}")]
    port = dataclasses.replace(serial_port, timeout_s=min(serial_port.timeout_s, timeout_s))
    try:
        bus = ModbusBus(port)
    except OSError as exc:
        return [Check(f"serial port {serial_port.port}", FAIL, f"cannot open: {exc}", hardware_error=True)]
    checks = []
    extra = [config.role_config.profile_dir] if getattr(config.role_config, "profile_dir", None) else []
    try:
        for meter in meters:
            name = f"meter {meter.id} (slave {meter.address})"
            try:
                profile = load_profile(meter.profile, extra)
                words = bus.read_registers(meter.address, profile.address, profile.count, profile.function_code)
                litres = profile.decode(words)
            except ProfileError as exc:
                checks.append(Check(name, FAIL, f"profile {meter.profile}: {exc.problems[0]}"))
            except ModbusError as exc:
                checks.append(Check(name, FAIL, f"{type(exc).__name__}: {exc} (address, baud, parity, wiring A/B?)"))
            except DecodeError as exc:
                checks.append(Check(name, FAIL, f"read but not decodable with {meter.profile}: {exc}"))
            except OSError as exc:
                checks.append(Check(name, FAIL, f"serial port error: {exc}", hardware_error=True))
            else:
                checks.append(Check(name, PASS, f"{litres:.1f} L ({profile.name})"))
    finally:
        bus.close()
    return checks


def check_central(config: NodeConfig, results: list[Check], timeout_s: float) -> Check:
    """Heartbeat with this self-test's results: reachable and the token accepted."""
    name = "central reachable, token accepted"
    try:
        token = central_client.read_token(config)
    except ProvisionError as exc:
        return Check(name, FAIL, exc.message)
    body = {
        "node_wall_time": time.time(),
        "clock_synced": clock_synced(),
        "version": _version(),
        "selftest": {
            "source": "provision selftest",
            "ok": all(c.result != FAIL for c in results),
            "checks": {c.name: c.result for c in results},
            "at_wall": time.time(),
        },
    }
    try:
        response = central_client.call(config, "POST", "/heartbeat", token=token, body=body, timeout_s=timeout_s)
    except ProvisionError as exc:
        return Check(name, FAIL, exc.message)
    if response.status == 200:
        return Check(name, PASS, f"{config.central.url}: heartbeat accepted")
    if central_client.refused(response):
        return Check(name, FAIL, f"token refused ({central_client.error_text(response)}): provision register again")
    return Check(name, FAIL, f"unexpected answer: {central_client.error_text(response)}")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("changbai-nodes")
    except metadata.PackageNotFoundError:
        return "unknown"


# -------------------------------------------------------------------------------------------- the run
def run_checks(config: NodeConfig, args: argparse.Namespace, confirm: bool) -> list[Check]:
    checks: list[Check] = [check_clock(), check_disk(config)]
    pins = list(pins_of(config.role_config))
    if pins:
        inputs = Inputs(config)
        try:
            for key, pin in pins:
                if isinstance(pin, LedPin):
                    checks.append(check_led(inputs, key, pin, confirm))
                elif args.skip_inputs:
                    checks.append(Check(f"input {key} (BCM {pin.pin})", SKIP, "--skip-inputs"))
                else:
                    meaning = active_meaning(config.role_config, key)
                    checks.append(check_input(inputs, key, pin, args.timeout, meaning))
            if config.node.role == "elevator" and args.skip_inputs:
                checks.append(Check(EMPTY_CAR, SKIP, "--skip-inputs"))
            elif config.node.role == "elevator":
                door, occupancy = inputs.by_key.get("door"), inputs.by_key.get("occupancy")
                kind = config.role_config.occupancy_kind
                checks.append(check_empty_car(door, occupancy, args.empty_car_s, args.timeout, kind))
        finally:
            inputs.close()
    if config.node.role == "kiosk":
        checks.append(check_display())
    if wants_voice(config):
        checks += check_voice(config, confirm)
    checks += check_meters(config, args.timeout)
    tls = check_tls_strict(config, args.timeout)
    checks += [tls] if tls else []
    checks.append(check_central(config, checks, args.timeout))
    return checks


def service_active(role: str) -> bool:
    """True when the node's own service runs here (it owns the GPIO pins and the serial port)."""
    if not systemd_running():
        return False
    try:
        done = subprocess.run(["systemctl", "is-active", "--quiet", unit_name(role)], timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{c.name:<{width}}  {c.result.upper():<6}  {c.detail}" for c in checks]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "selftest",
        "Check the node's hardware and links with the technician: each input must change when "
        "triggered, LEDs blink and the voice plays (confirmed on a terminal), meters are read, the central "
        "accepts the token, the clock is synced, the outbox has disk space. Stop the node service first "
        "(it holds the pins and the serial port).",
        exits="1 when any check fails, 4 when a GPIO or serial device cannot be opened at all",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds per check (default 30)")
    parser.add_argument("--non-interactive", action="store_true", help="never ask for confirmation")
    parser.add_argument("--skip-inputs", action="store_true", help="do not wait for inputs (marked skip)")
    parser.add_argument(
        "--empty-car-s",
        type=float,
        default=60.0,
        metavar="S",
        help="lift: watch the empty car this long with its doors closed; nobody may be seen (default 60, 0: skip)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 0.1 <= args.timeout <= 600:
        raise ProvisionError(2, f"--timeout {args.timeout:g}: allowed 0.1..600 seconds")
    if not 0 <= args.empty_car_s <= 3600:
        raise ProvisionError(2, f"--empty-car-s {args.empty_car_s:g}: allowed 0..3600 seconds")
    config = load_node_config(args.config)
    interactive = not args.non_interactive and sys.stdin.isatty()
    prompt.say(f"selftest of {config.node.id} ({config.node.role}) ...")
    if service_active(config.node.role):
        prompt.say(
            f"warning: changbai-{config.node.role} is running and holds the pins and the serial port; "
            f"stop it first: systemctl stop changbai-{config.node.role}"
        )
    checks = run_checks(config, args, interactive)
    failed = [c for c in checks if c.result == FAIL]
    if args.json:
        report = {
            "node_id": config.node.id,
            "role": config.node.role,
            "ok": not failed,
            "checks": [c.as_json() for c in checks],
        }
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(table(checks))
        print("ALL PASSED" if not failed else f"{len(failed)} FAILED")
    if any(c.hardware_error for c in failed):
        return EXIT_HARDWARE
    return EXIT_CHECK_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
