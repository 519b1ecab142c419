"""The kiosk on a real kernel's GPIO and a KMS screen: the guest of bench/gpio_sim.py (Debian 12 under systemd, the
kernel's gpio-sim as ``/dev/gpiochip0``) with qemu's standard VGA (the bochs DRM driver, Mesa's software renderer).
``provision install`` installs the shipped examples/kiosk.toml (the arcade button on BCM 26 to ground with the
internal pull-up, its LED on BCM 12, gpiozero's default pin factory: lgpio on a Pi) and systemd runs the kiosk under
its real unit, on the screen, sending to the real central on the host, whose simulated fleet assigns a car 8-10 s
after a request. The tests press the button through gpiozero's MockFactory: no kernel, no lgpio, no debounce, no
software PWM.

In the guest, a script plays a resident on the chip's lines and reads the LED's line from the chip: the idle pulse
(lgpio's software PWM), a press with contact bounce (one ride at the central; the LED blinks fast while a car is
sought, then stays on), a hold of 4 s (a ``help_requested`` alert, the LED's slow blink), which the property desk on the host acknowledges
15 s after the central has it (the LED steady: the help_taken_in screen; the journal says it was heard). Then the faults a
technician meets, each under the unit, which must keep running (the screen still hails taxis): another process
holding the button's line (a ``kiosk_fault`` naming BCM 26), the line free again (cleared), no GPIO chip (raised
again).

``scripts/gpio-vm --role kiosk`` runs it (root, debootstrap, qemu-system-x86; about 10 minutes; not in CI).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import vm
from bench.gpio_sim import (
    Role,
    SimChip,
    await_true,
    fault_phases,
    guest_marks,
    install,
    judge_fault_phases,
    judge_service,
    pins_and_chip,
    press,
    records,
    say,
    service_report,
)
from bench.gpio_vm import boot_with_desk
from bench.kiosk_kms_vm import PACKAGES

KIOSK = Role(
    "kiosk", "cbxc-north-gate-kiosk", Path("/etc/changbai/kiosk.toml"), "bench.gpio_vm_kiosk", "kiosk,pi-gpio", PACKAGES
)
# the central's simulated taxis: every request finds a car, 8-10 s after it, still on its way when the check ends
FLEET = {
    "assign_delay_min_s": 8.0,
    "assign_delay_max_s": 10.0,
    "eta_min_s": 900.0,
    "eta_max_s": 1200.0,
    "no_car_rate": 0.0,
}
PICKUP = "长白新村北门"  # the example's pickup point
HOLD_S = 3.0  # the example's kiosk.timing.arcade_hold_s (the default): held this long asks for help
LATE_S = 15.0  # a ride or an alert may reach the central this much after the press (debounce, a slow emulated CPU)
UP_S = 600.0  # at most this long for the kiosk's GPIO after READY (1 s in the runs of 2026-12-07)
# what the LED's line must show, from led()'s figures: (toggles per second, on share, longest steady run in s)
LED_SHOWS = {
    "idle": ((20.0, 10_000.0), (0.05, 0.95), (0.0, 1.0)),  # the pulse: software PWM, its duty rising and falling
    "working": ((3.0, 12.0), (0.25, 0.75), (0.0, 0.5)),  # blink 0.15 s / 0.15 s while a car is sought
    "car": ((0.0, 0.0), (1.0, 1.0), (2.0, 60.0)),  # steady on: a car is coming
    "help": ((1.0, 3.5), (0.25, 0.75), (0.25, 1.0)),  # blink 0.5 s / 0.5 s: help asked for
    "taken": ((0.0, 0.0), (1.0, 1.0), (2.0, 60.0)),  # steady on: a person at the desk has her call
}
ACK_AFTER_S = 15.0  # the desk acknowledges the help request this long after it sees it (after the help blink's read)
# the LED must turn steady within this of the desk's acknowledgement: the kiosk asks every central.ack_poll_s (10 s)
TAKEN_S = 10.0 + LATE_S
# the guest waits at most this long for it: well inside help_hold_s (90 s), after which the ride's steady LED is back
TAKEN_WAIT_S = 50.0


# --------------------------------------------------------------------------------------------- in the guest
def led(chip: SimChip, pin: int, seconds: float) -> dict[str, float]:
    """The LED's line read from the chip for ``seconds``: samples, toggles per second, the share of time on and
    the longest run without a change."""
    changes, samples = [], 0
    with open(chip.sysfs / f"sim_gpio{pin}" / "value") as line:
        start = last_t = time.monotonic()
        last = line.read(1) == "1"
        on_s = longest = 0.0
        while (now := time.monotonic()) < start + seconds:
            line.seek(0)
            value = line.read(1) == "1"
            samples += 1
            if value != last:
                changes.append(now)
                longest = max(longest, now - last_t)
                on_s += (now - last_t) if last else 0.0
                last, last_t = value, now
        longest = max(longest, now - last_t)
        on_s += (now - last_t) if last else 0.0
    took = now - start
    return {"samples": samples, "toggles_per_s": len(changes) / took, "on": on_s / took, "longest_s": longest}


def guest(port: int) -> int:
    """In the guest: the chip, the kiosk under systemd, the resident's presses, the three faults; ``GPIOVM``
    lines."""
    pins, chip = pins_and_chip(KIOSK)
    installed = install(KIOSK, port)
    moving = lambda: led(chip, pins["led"], 1.0)["toggles_per_s"] > 0  # noqa: E731 - the node has its GPIO
    await_true("gpio-up", moving, UP_S)
    say(f"led idle {json.dumps(led(chip, pins['led'], 6.0))}")
    say(f"pressed {press(chip, pins['button'], 0.3):.2f}")
    time.sleep(0.5)
    say(f"led working {json.dumps(led(chip, pins['led'], 3.0))}")
    time.sleep(20)  # the car is assigned 8-10 s after the request; the kiosk hears of it within a few seconds
    say(f"led car {json.dumps(led(chip, pins['led'], 3.0))}")
    say(f"held {time.time():.2f}")
    press(chip, pins["button"], HOLD_S + 1.0)
    time.sleep(0.5)
    say(f"led help {json.dumps(led(chip, pins['led'], 4.0))}")
    steady = lambda: led(chip, pins["led"], 1.0)["toggles_per_s"] == 0  # noqa: E731 - the desk has her call
    await_true("taken-in", steady, TAKEN_WAIT_S)
    say(f"taken {time.time():.2f}")
    say(f"led taken {json.dumps(led(chip, pins['led'], 3.0))}")
    service_report(KIOSK.unit, installed)
    fault_phases(KIOSK.unit, pins["button"], "kiosk_fault/gpio", chip)
    return 0


# ---------------------------------------------------------------------------------------------- the host
def judge(
    marks: dict[str, float],
    leds: dict[str, dict[str, float]],
    rides: list[dict[str, Any]],
    events: list[dict[str, Any]],
    service: dict[str, Any],
    faults: dict[str, dict[str, Any]],
) -> list[str]:
    """What failed (empty: passed), from the guest's marks (wall times), the LED's figures, the kiosk's rides and
    alert events at the central, the unit's record over the presses (with ``acked``: when the host's desk
    acknowledged the help request) and its state in each fault."""
    failed = judge_service(service)
    heard = [line for line in service.get("taken_in") or [] if "help_requested" in line]
    acked, taken = service.get("acked"), marks.get("taken")
    if acked is None or taken is None or len(heard) != 1:
        failed.append(f"the kiosk did not hear the desk's acknowledgement of the help request once: {heard}")
    elif not -1.0 <= taken - acked <= TAKEN_S:
        failed.append(f"the LED turned steady {taken - acked:.1f} s after the desk's acknowledgement")
    for name, bounds in LED_SHOWS.items():
        figures = leds.get(name)
        if figures is None:
            failed.append(f"the LED was not read ({name})")
            continue
        for (low, high), key in zip(bounds, ("toggles_per_s", "on", "longest_s"), strict=True):
            if not low <= figures[key] <= high:
                failed.append(f"the LED {name}: {key} {figures[key]:.2f}, expected {low:g} to {high:g}")
    if len(rides) != 1:
        failed.append(f"{len(rides)} rides at the central for one press")
    for ride in rides[:1]:
        after = ride["requested_at"] - marks["pressed"]
        if not -1.0 <= after <= LATE_S:
            failed.append(f"the ride was requested {after:.1f} s after the press")
        if ride["status"] == "cancelled":
            failed.append("the ride was cancelled (the hold for help cancelled it?)")
    raised = [e for e in events if e["state"] == "raised"]
    helps = [e for e in raised if e["kind"] == "help_requested"]
    if len(helps) != 1:
        failed.append(f"{len(helps)} help_requested alerts for one hold")
    elif not HOLD_S - 1.0 <= helps[0]["wall_time"] - marks["held"] <= HOLD_S + LATE_S:
        failed.append(f"help_requested {helps[0]['wall_time'] - marks['held']:.1f} s after the hold began")
    extra = [e["kind"] for e in raised if e["kind"] not in ("help_requested", "kiosk_fault")]
    early = [e["payload"] for e in raised if e["kind"] == "kiosk_fault" and e["wall_time"] < marks["busy"]]
    if extra or early:
        failed.append(f"alerts nobody caused: {extra} {early}")
    gpio = [e for e in events if e["kind"] == "kiosk_fault" and e["payload"].get("part") == "gpio"]
    failed += judge_fault_phases(marks, gpio, faults, "BCM 26")
    return failed


def main(argv: list[str] | None = None) -> int:
    def check(work: Path, token: str, server: Any) -> int:
        from bench.harness import OPERATOR_KEY  # the host's (the guest has no central)

        # a screen: bochs DRM
        found = boot_with_desk(
            work, token, server, KIOSK, "help_requested", ACK_AFTER_S, extra=["-vga", "std"], timeout_s=3600
        )
        return report(server.url, OPERATOR_KEY, *found)

    description = __doc__.splitlines()[0]
    node = (KIOSK.node_id, "kiosk")
    return vm.with_central("gpio-vm", description, argv, node, guest, check, fleet=FLEET, pickup_point=PICKUP)


def report(url: str, operator: str, lines: list[str], done: bool, acked: float | None = None) -> int:
    """Print the guest's ``GPIOVM`` lines, the kiosk's rides and alerts at the central; 0 when nothing failed.
    ``acked``: when the desk on the host acknowledged the help request."""
    import requests

    print("\n".join(lines), flush=True)
    marks = guest_marks(lines)
    leds = records(lines, r"led (\S+)")
    found = records(lines, "(service|faults)")
    if not done or set(found) != {"service", "faults"}:
        print("FAIL: the guest did not finish its check (see above)", flush=True)
        return 1
    events = [e for e in vm.stored_events(url, operator, KIOSK.node_id) if e["priority"] != "reading"]
    answer = requests.get(f"{url}/api/v1/rides", headers={"Authorization": f"Bearer {operator}"}, timeout=30)
    answer.raise_for_status()
    rides = [r for r in answer.json()["rides"] if r["node_id"] == KIOSK.node_id]
    for e in events:
        print(
            f"central: {e['kind']} {e['state']} at {e['wall_time']:.1f} {json.dumps(e['payload'], ensure_ascii=False)}"
        )
    for r in rides:
        print(f"central: ride {r['ride_id']} requested at {r['requested_at']:.1f}, now {r['status']}", flush=True)
    service = {**found["service"], "acked": acked}
    taken = marks.get("taken")
    after = f"{taken - acked:.1f} s after it" if taken is not None and acked is not None else "never"
    print(
        f"the desk acknowledged the help request at {acked}; the LED steady {after}; the journal: {service.get('taken_in')}"
    )
    return vm.verdict(judge(marks, leds, rides, events, service, found["faults"]))


if __name__ == "__main__":
    sys.exit(main())
