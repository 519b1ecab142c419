"""The lift node on a real kernel's GPIO: a Debian 12 guest (its own kernel, bench/vm.py; systemd as PID 1) with the
kernel's GPIO simulator (gpio-sim: a GPIO chip whose input levels are set through sysfs, with real edge interrupts)
as ``/dev/gpiochip0``, given to the ``gpio`` group by Raspberry Pi OS's udev rule. ``provision install`` installs the
shipped example config (examples/elevator.toml: ``pin_factory = "lgpio"``, the Pi's own factory, and its pins) and
systemd runs the node under its real unit; it sends to the real central on the host, whose desk acknowledges the
entrapment as soon as it is stored: the node must hear it (EN 81-28's acknowledgement, ``common.acks``). The tests drive the same rules
through gpiozero's MockFactory, which has no kernel, no lgpio, no bias, no debounce and no other process.

In the guest, a script plays the lift on the chip's lines: a passenger steps in and the doors close with contact
bounce, the car stays still (an ``entrapment`` alert 90 s later), the doors open (cleared); the in-car alarm button
is held (``alarm_button``); the UPS reports mains lost and back (``power_loss`` raised and cleared). Then two faults
a technician meets, the node run by hand as the service user: another process holding the door's line when it
starts, and no GPIO chip at all. Each must stop the node with a message that names what is wrong (not a
traceback).

Debian's kernels do not build gpio-sim, so the check builds it as a module in the guest's root from Debian's own
kernel source (linux-source-6.1) against the guest kernel's headers; one line of irq_sim.c is changed to an exported
call (``generic_handle_irq``). gpiozero's lgpio factory reads the Pi's revision from /proc/cpuinfo, so the guest
bind-mounts a copy of its own with a Raspberry Pi 4's ``Revision`` line (into the unit too, by a drop-in): the only
thing here that is not real.

``scripts/gpio-vm`` runs it (root, debootstrap, qemu-system-x86; about 15 minutes; not in CI).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

from bench import vm
from bench.gpio_sim import (
    USER,
    Role,
    boot,
    guest_marks,
    hold_line,
    install,
    judge_service,
    node_config,
    pins_and_chip,
    records,
    say,
    service_report,
    unit_property,
)

LIFT = Role("elevator", "cbxc-b7-u2-lift1", Path("/etc/changbai/lift.toml"), "bench.gpio_vm", "sim,pi-gpio")
NODE_ID = LIFT.node_id
HOME = Path("/node")  # the logs of the node's runs outside systemd (the two faults)
NODE_PROGRAM = "/opt/cb-self/bin/elevator-node"
# the rest of the story, after the doors closed on the passenger: (input, level, mark, then wait s)
STORY = (
    ("door", True, "door-opened", 5),
    ("occupancy", False, None, 10),  # the passenger steps out
    ("door", False, None, 5),  # the doors close on the empty car
    ("alarm_button", False, "alarm-pressed", 6),  # someone the sensor cannot see holds it (wired to ground)
    ("alarm_button", True, None, 2),
    ("door", True, "door-opened-again", 5),
    ("power_fail", True, "mains-lost", 15),
    ("power_fail", False, "mains-back", 45),  # the clearing goes out, and a heartbeat
)
# each alert the guest's story causes: raised or cleared this setting's seconds (none: at once) after the mark
EXPECTED = (
    ("entrapment", "raised", "door-closed", "entrapment_s"),
    ("entrapment", "cleared", "door-opened", "door_open_confirm_s"),
    ("alarm_button", "raised", "alarm-pressed", "alarm_hold_s"),
    ("alarm_button", "cleared", "door-opened-again", "door_open_confirm_s"),
    ("power_loss", "raised", "mains-lost", "power_loss_s"),
    ("power_loss", "cleared", "mains-back", None),
)
LATE_S = 15.0  # an alert may come this much after its rule's time (ticks, debounce, a slow emulated CPU)


# --------------------------------------------------------------------------------------------- in the guest
def _as_user(command: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--", *command]


def _start(config: Path, log_name: str) -> subprocess.Popen[bytes]:
    out = open(HOME / log_name, "ab")  # noqa: SIM115 - the node's log for as long as it runs
    return subprocess.Popen(_as_user([NODE_PROGRAM, "run", "--config", str(config)]), stdout=out, stderr=out)


def _refused(config: Path, log_name: str, timeout_s: float = 180) -> dict[str, Any]:
    """Start the node where it cannot run: its exit code, the log's last lines, and whether a traceback shows."""
    node = _start(config, log_name)
    try:
        code = node.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        node.kill()
        code = None
    text = (HOME / log_name).read_text(errors="replace")
    return {"exit": code, "traceback": "Traceback" in text, "last": text.strip().splitlines()[-3:]}


def guest(port: int) -> int:
    """In the guest: the chip, the node, the lift's story on the lines, the two faults; ``GPIOVM`` lines."""
    pins, chip = pins_and_chip(LIFT)
    # the sensors without a pull of the node's at rest: nobody in the car, still, mains on
    for name in ("occupancy", "moving", "power_fail"):
        chip.set(pins[name], False)
    installed = install(LIFT, port)
    # the node is up (install returns once the unit sent READY, after the node claimed its lines): its pull-ups
    # hold the door open and the buttons up. The car is parked at a floor: the door-zone reed is closed, which
    # can only be played once the node's pull-up is on the line (as a magnet would hold it)
    chip.set(pins["level_zone"], False)
    time.sleep(5)
    say(
        f"node {unit_property(LIFT.unit, 'ActiveState')}; levels {json.dumps({k: chip.level(p) for k, p in pins.items()})}"
    )
    # a passenger steps in; the doors close, the contact bouncing for 20 ms
    chip.set(pins["occupancy"], True)
    time.sleep(2)
    for _ in range(5):
        chip.set(pins["door"], False)
        time.sleep(0.002)
        chip.set(pins["door"], True)
        time.sleep(0.002)
    chip.set(pins["door"], False)
    say(f"door-closed {time.time():.2f}")
    time.sleep(120)  # past the example's entrapment_s (90 s)
    for name, level, mark, then_s in STORY:
        chip.set(pins[name], level)
        if mark:
            say(f"{mark} {time.time():.2f}")
        time.sleep(then_s)
    service_report(LIFT.unit, installed)
    holder = hold_line(pins["door"])
    say(f"busy {json.dumps(_refused(LIFT.config, 'busy.log'))}")
    holder.kill()
    holder.wait()
    chip.remove()
    say(f"nochip {json.dumps(_refused(LIFT.config, 'nochip.log'))}")
    return 0


# ---------------------------------------------------------------------------------------------- the host
def expected_delays() -> dict[str, float]:
    """The settings EXPECTED names, as the guest's node has them (the shipped example and the defaults)."""
    from common.config import parse_config

    text = node_config(LIFT.example.read_text(encoding="utf-8"), 1)
    section = parse_config(tomllib.loads(text), LIFT.example).role_config
    return {name: float(getattr(section, name)) for *_, name in EXPECTED if name}


def first(events: list[dict[str, Any]], kind: str, state: str) -> dict[str, Any] | None:
    """The first stored event of that kind and state."""
    return next((e for e in events if e["kind"] == kind and e["state"] == state), None)


def judge(
    marks: dict[str, float],
    events: list[dict[str, Any]],
    faults: dict[str, dict[str, Any]],
    delays: dict[str, float],
    service: dict[str, Any],
) -> list[str]:
    """What failed (empty: passed), from the guest's marks (wall times), the events the central stored, the two
    faults' outcomes, the node's ``delays`` (its config's settings that EXPECTED names) and its ``service``
    under systemd (``provision install``'s exit, the unit's result and restarts, error lines in its journal, and
    ``acked``: when the host's desk acknowledged the entrapment, which the journal must say the node heard)."""
    failed = judge_service(service)

    def expect(kind: str, state: str, mark: str, after_s: float) -> None:
        event = first(events, kind, state)
        if event is None:
            failed.append(f"no {kind} {state} stored")
            return
        delay = event["wall_time"] - marks[mark]
        if not after_s - 1.0 <= delay <= after_s + LATE_S:
            failed.append(
                f"{kind} {state} {delay:.1f} s after {mark} (expected {after_s:.0f} s, up to {LATE_S:.0f} s more)"
            )

    for kind, state, mark, setting in EXPECTED:
        expect(kind, state, mark, delays[setting] if setting else 0.0)
    raised = [e for e in events if e["state"] == "raised"]
    extra = [e["kind"] for e in raised if e["kind"] not in ("entrapment", "alarm_button", "power_loss")]
    if extra:
        failed.append(f"alerts nobody caused: {extra}")
    if len([e for e in raised if e["kind"] == "entrapment"]) != 1:
        failed.append("the entrapment was raised more than once")
    heard = [line for line in service.get("taken_in") or [] if "entrapment" in line]
    if service.get("acked") is None or len(heard) != 1:
        failed.append(f"the node did not hear the desk's acknowledgement of the entrapment once: {heard}")
    for name, outcome in faults.items():
        if outcome.get("exit") in (0, None):
            failed.append(f"{name}: the node did not stop with an error (exit {outcome.get('exit')})")
        if outcome.get("traceback"):
            failed.append(f"{name}: a traceback instead of a message: {outcome.get('last')}")
    busy = " ".join(faults.get("busy", {}).get("last", []))
    if "BCM" not in busy:
        failed.append(f"busy: the message does not name the pin: {busy!r}")
    return failed


def acknowledge_when_stored(
    url: str, operator: str, stop: threading.Event, acked: list[float], kind: str = "entrapment", after_s: float = 0.0
) -> None:
    """The property desk on the host: acknowledges the first alert of ``kind`` ``after_s`` after it sees it at the
    central (its time in ``acked``), so the node in the guest must hear it (EN 81-28) while the passenger is still
    inside (or the resident still at the kiosk)."""
    import requests

    headers = {"Authorization": f"Bearer {operator}"}
    seen: float | None = None
    while not stop.wait(1.0) and not acked:
        try:
            found = requests.get(f"{url}/api/v1/alerts", params={"kind": kind}, headers=headers, timeout=10)
            alerts = found.json().get("alerts", [])
            if alerts and seen is None:
                seen = time.time()
            if seen is None or time.time() < seen + after_s:
                continue
            for alert in alerts:
                done = requests.post(f"{url}/api/v1/alerts/{alert['id']}/ack", json={"note": "gpio-vm"},
                                     headers=headers, timeout=10)  # fmt: skip
                if done.status_code == 200:
                    acked.append(time.time())
                    break
        except (requests.RequestException, ValueError) as exc:
            say(f"the desk could not look: {exc}")


def boot_with_desk(
    work: Path, token: str, server: Any, role: Role, kind: str, after_s: float = 0.0, **boot_options: Any
) -> tuple[list[str], bool, float | None]:
    """Boot the role's guest (``boot``, with ``boot_options``) while the desk on the host acknowledges its first
    alert of ``kind`` (``acknowledge_when_stored``): the guest's lines, whether it finished, and when the desk
    acknowledged (None: never)."""
    from bench.harness import OPERATOR_KEY  # the host's (the guest has no central)

    stop, acked = threading.Event(), list[float]()
    desk = threading.Thread(target=acknowledge_when_stored, args=(server.url, OPERATOR_KEY, stop, acked, kind, after_s))
    desk.start()
    try:
        lines, done = boot(work, token, server.port, role, **boot_options)
    finally:
        stop.set()
        desk.join()
    return lines, done, acked[0] if acked else None


def main(argv: list[str] | None = None) -> int:
    def check(work: Path, token: str, server: Any) -> int:
        from bench.harness import OPERATOR_KEY  # the host's (the guest has no central)

        lines, done, acked = boot_with_desk(work, token, server, LIFT, "entrapment")
        return report(server.url, OPERATOR_KEY, lines, done, acked)

    return vm.with_central("gpio-vm", __doc__.splitlines()[0], argv, (NODE_ID, "elevator"), guest, check)


def report(url: str, operator: str, lines: list[str], done: bool, acked: float | None = None) -> int:
    """Print the guest's ``GPIOVM`` lines and what the central stored; 0 when nothing failed. ``acked``: when the
    desk on the host acknowledged the entrapment."""
    print("\n".join(lines), flush=True)
    marks = guest_marks(lines)
    found = records(lines, "(service|busy|nochip)")
    service = found.pop("service", {})
    faults = found
    if not done or len(faults) != 2:
        print("FAIL: the guest did not finish its check (see above)", flush=True)
        return 1
    events = [e for e in vm.stored_events(url, operator, NODE_ID) if e["priority"] != "reading"]
    delays = expected_delays()
    for e in events:
        print(
            f"central: {e['kind']} {e['state']} at {e['wall_time']:.1f} {json.dumps(e['payload'], ensure_ascii=False)}"
        )
    for kind, state, mark, setting in EXPECTED:
        event = first(events, kind, state)
        if event is not None and mark in marks:
            due = f"{setting} = {delays[setting]:g} s" if setting else "at once"
            print(f"{kind} {state}: {event['wall_time'] - marks[mark]:.2f} s after {mark} ({due})", flush=True)
    service["acked"] = acked
    print(f"the desk acknowledged the entrapment at {acked}; the node's journal: {service.get('taken_in')}", flush=True)
    return vm.verdict(judge(marks, events, faults, delays, service))


if __name__ == "__main__":
    sys.exit(main())
