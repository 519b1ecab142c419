"""The meter node's home devices on a real kernel's GPIO: the guest of bench/gpio_sim.py (Debian 12 under systemd,
the kernel's gpio-sim as ``/dev/gpiochip0``) with the node's RS-485 bus played by the project's Modbus RTU meters
(pymodbus on a socat pair, hal/sim) for the shipped examples/meter.toml's two meters. ``provision install`` installs
that example (B12-301's "I'm OK" button on BCM 5 to ground with the internal pull-up; no ``pin_factory``: gpiozero's
default order, lgpio first; only the central, the serial port and the speaker changed) and systemd runs the node
under its real unit, sending to the real central on the host. The tests press the button through MockFactory.

In the guest, the resident presses "I'm OK" with contact bounce (one ``im_ok_pressed`` at the central) while the
meters are read (a flush every 20 s on the first); then "going out" (one ``going_out_pressed``) and the door opens and
shuts behind her (the node's saved state: the door's last move, and still out since the button). The example has
only the "I'm OK" button: the check adds docs/meter.md's "going out" button (BCM 6) and reed contact (BCM 13).
Then, under the unit: another process holding the button's line (a ``home_device_fault`` naming BCM 5, and the node
reads on; the desk on the host acknowledges it at the central, and the node's journal must say once that it heard
so), the line free again (cleared), no GPIO chip (raised again, and it reads on). The guest marks its kernel clock synchronised as an NTP daemon would (there is no NTP
server here, and the node's rules wait up to ``clock_wait_min``, 30 min, for one): with the Pi's revision line, the
only things set by hand.

``scripts/gpio-vm --role meter`` runs it (root, debootstrap, qemu-system-x86; about 10 minutes; not in CI).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import json
import os
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

from bench import vm
from bench.gpio_sim import (
    Role,
    chip_on_pi,
    fault_phases,
    guest_marks,
    install,
    judge_fault_phases,
    judge_service,
    press,
    records,
    say,
    service_report,
)
from bench.gpio_vm import boot_with_desk
from common.clock import Timex

METER = Role(
    "meter", "cbxc-b12-meters", Path("/etc/changbai/meter.toml"), "bench.gpio_vm_meter", "sim,pi-gpio", ("socat",)
)
PORTS = Path("/run/meter-ports")  # the socat pair: node (the node's end, for the dialout group) and meter
PORT_LINE = 'port = "/dev/ttyUSB0"'
HOME, DEVICE = "b12-301", "ok_button"  # the example's home with a button
# the example's home given a "going out" button and a door contact too (docs/meter.md's wiring), and its state saved
# often enough to read the door's effect from it (the door sends no event of its own)
AWAY_PIN, DOOR_PIN = 6, 13
HOUSEHOLD = "ok_button = { pin = 5 } }"
MORE = f"ok_button = {{ pin = 5 }}, away_button = {{ pin = {AWAY_PIN} }},"
MORE += f" door = {{ pin = {DOOR_PIN}, pull_up = true, active_high = false }} }}"
STATE = Path("/var/lib/changbai") / "cbxc-b12-meters" / "meter-state.json"
SAVE_S = 5.0
FLUSH_S = 20.0  # the first meter counts 6 L this often
LATE_S = 15.0  # an event may reach the central this much after the press (debounce, a slow emulated CPU)
ADJ_MAXERROR = 0x0004


# --------------------------------------------------------------------------------------------- in the guest
def _synchronise_clock() -> None:
    """The kernel's maximum error brought down to 0.1 s, as an NTP daemon does (common.clock asks it)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    tx = Timex(modes=ADJ_MAXERROR, maxerror=100_000)
    if libc.adjtimex(ctypes.byref(tx)) < 0:
        raise OSError(ctypes.get_errno(), "adjtimex")


def _meters(example: dict[str, Any], ready: threading.Event) -> None:
    """The example's meters on a socat pair, served until the guest ends; a flush on the first every FLUSH_S."""
    from hal.sim.meter import SimulatedMeter, SimulatedMeterBus
    from hal.sim.serial_pair import SerialPair
    from meter_node.profiles import load_profile

    with SerialPair(PORTS) as (node_path, meter_path):
        os.chown(os.path.realpath(node_path), 0, grp.getgrnam("dialout").gr_gid)
        os.chmod(os.path.realpath(node_path), 0o660)
        PORTS.chmod(0o755)
        baud = example["meter"]["serial"]["baudrate"]
        with SimulatedMeterBus(meter_path, baudrate=baud, node_path=node_path) as bus:
            meters = [
                SimulatedMeter(bus, m["address"], load_profile(m["profile"]).register_writes, total_litres=48_210.0)
                for m in example["meter"]["meters"]
            ]
            ready.set()
            while True:
                time.sleep(FLUSH_S)
                meters[0].draw(6.0)


def _configured(text: str) -> str:
    """The shipped example with only the guest's serial port, and the home's other two devices and a short state
    save; an example whose lines moved fails here, not later."""
    for line in (PORT_LINE, HOUSEHOLD, "[meter.serial]"):
        if line not in text:
            raise SystemExit(f"examples/meter.toml has no line {line!r} to change")
    text = text.replace(PORT_LINE, f'port = "{PORTS / "node"}"').replace(HOUSEHOLD, MORE)
    return text.replace("[meter.serial]", f"[meter]\nstate_save_s = {SAVE_S}\n\n[meter.serial]", 1)


def _door_state() -> dict[str, Any]:
    """The home's last door event and when it went out, as the node saved them."""
    saved = json.loads(STATE.read_text(encoding="utf-8"))
    found: dict[str, Any] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            found.update({k: value[k] for k in ("door_t", "out_since") if k in value})
            for v in value.values():
                walk(v)

    walk(saved["wellbeing"][HOME])
    return found


def guest(port: int) -> int:
    """In the guest: the chip, the meters, the node under systemd, a press of "I'm OK", the three faults;
    ``GPIOVM`` lines."""
    example = tomllib.loads(METER.staged_example.read_text(encoding="utf-8"))
    (home,) = [m for m in example["meter"]["meters"] if m["id"] == HOME]
    pin = home["household"][DEVICE]["pin"]
    say(f"pins {json.dumps({f'{HOME}.{DEVICE}': pin})}")
    chip = chip_on_pi()
    _synchronise_clock()
    ready = threading.Event()
    threading.Thread(target=_meters, args=(example, ready), daemon=True).start()
    ready.wait(60)
    say(f"meters {'on the bus' if ready.is_set() else 'not ready'}")
    installed = install(METER, port, _configured)
    say(f"installed {time.time():.2f}")
    time.sleep(30)  # a few reads
    say(f"ok-pressed {press(chip, pin, 0.3):.2f}")
    time.sleep(20)
    say(f"away-pressed {press(chip, AWAY_PIN, 0.3):.2f}")
    time.sleep(20)
    say(f"door-moved {press(chip, DOOR_PIN, 2.0):.2f}")  # the contact closes for 2 s and opens: two moves
    time.sleep(3 * SAVE_S)
    say(f"door-state {json.dumps(_door_state())}")
    service_report(METER.unit, installed)
    fault_phases(METER.unit, pin, f"home_device_fault/{HOME}:{DEVICE}", chip, taken_in=True)
    time.sleep(30)  # reads after the last restart
    say(f"end {time.time():.2f}")
    return 0


# ---------------------------------------------------------------------------------------------- the host
def judge(
    marks: dict[str, float],
    events: list[dict[str, Any]],
    service: dict[str, Any],
    faults: dict[str, dict[str, Any]],
    door: dict[str, Any],
) -> list[str]:
    """What failed (empty: passed), from the guest's marks (wall times), the node's events at the central
    (readings included), the unit's record over the presses, its state in each fault and the door as the node
    saved it."""
    failed = judge_service(service)
    for kind, mark in (("im_ok_pressed", "ok-pressed"), ("going_out_pressed", "away-pressed")):
        said = [e for e in events if e["kind"] == kind]
        if len(said) != 1:
            failed.append(f"{len(said)} {kind} events for one press")
        elif not -1.0 <= said[0]["wall_time"] - marks[mark] <= LATE_S:
            failed.append(f"{kind} {said[0]['wall_time'] - marks[mark]:.1f} s after the press")
    door_t = door.get("door_t")
    # the last move is the contact opening again, at the mark (the release)
    if not isinstance(door_t, int | float) or not -1.0 <= door_t - marks["door-moved"] <= LATE_S:
        failed.append(f"the door's move is not in the node's state: {door} (moved at {marks['door-moved']:.1f})")
    out = door.get("out_since")  # the door opened and shut after "going out": she left, still out
    if not isinstance(out, int | float) or not -1.0 <= out - marks["away-pressed"] <= LATE_S:
        failed.append(f"not out since the away button after the door: {door} (pressed at {marks['away-pressed']:.1f})")
    reads = [e["wall_time"] for e in events if e["kind"] == "meter_reading" and e["payload"].get("meter_id") == HOME]
    # the button working, its line held, no chip (a changed total is recorded once a minute, and at each start)
    for start, end in (("installed", "busy"), ("busy", "free"), ("nochip", "end")):
        if not any(marks.get(start, 0.0) <= t < marks.get(end, float("inf")) for t in reads):
            failed.append(f"no reading of {HOME} stored between {start} and {end}")
    raised = [e for e in events if e["state"] == "raised"]
    extra = [e["kind"] for e in raised if e["kind"] != "home_device_fault"]
    early = [e["payload"] for e in raised if e["kind"] == "home_device_fault" and e["wall_time"] < marks["busy"]]
    if extra or early:
        failed.append(f"alerts nobody caused: {extra} {early}")
    mine = [e for e in events if e["kind"] == "home_device_fault" and e["payload"].get("device") == DEVICE]
    heard = [x for x in faults.get("busy", {}).get("taken_in", []) if "home_device_fault" in x]
    if service.get("acked") is None or len(heard) != 1:
        failed.append(f"the node did not hear the desk's acknowledgement of the fault once: {heard}")
    return failed + judge_fault_phases(marks, mine, faults, "BCM 5")


def main(argv: list[str] | None = None) -> int:
    def check(work: Path, token: str, server: Any) -> int:
        from bench.harness import OPERATOR_KEY  # the host's (the guest has no central)

        lines, done, acked = boot_with_desk(work, token, server, METER, "home_device_fault")
        return report(server.url, OPERATOR_KEY, lines, done, acked)

    return vm.with_central("gpio-vm", __doc__.splitlines()[0], argv, (METER.node_id, "meter"), guest, check)


def report(url: str, operator: str, lines: list[str], done: bool, acked: float | None = None) -> int:
    """Print the guest's ``GPIOVM`` lines and what the central stored; 0 when nothing failed. ``acked``: when the
    desk on the host acknowledged the button's fault."""
    print("\n".join(lines), flush=True)
    marks = guest_marks(lines)
    found = records(lines, "(service|faults|door-state)")
    if not done or set(found) != {"service", "faults", "door-state"}:
        print("FAIL: the guest did not finish its check (see above)", flush=True)
        return 1
    events = vm.stored_events(url, operator, METER.node_id)
    for e in events:
        if e["priority"] != "reading":
            payload = json.dumps(e["payload"], ensure_ascii=False)
            print(f"central: {e['kind']} {e['state']} at {e['wall_time']:.1f} {payload}", flush=True)
    found["service"]["acked"] = acked
    print(f"the desk acknowledged the fault at {acked}; the node's journal: {found['faults']['busy'].get('taken_in')}")
    reads = [e for e in events if e["kind"] == "meter_reading"]
    print(f"central: {len(reads)} readings, the last at {max((e['wall_time'] for e in reads), default=0):.1f}")
    return vm.verdict(judge(marks, events, found["service"], found["faults"], found["door-state"]))


if __name__ == "__main__":
    sys.exit(main())
