"""The lift node on a real kernel's GPIO: a Debian 12 guest (its own kernel, bench/vm.py; systemd as PID 1) with the
kernel's GPIO simulator (gpio-sim: a GPIO chip whose input levels are set through sysfs, with real edge interrupts)
as ``/dev/gpiochip0``, given to the ``gpio`` group by Raspberry Pi OS's udev rule. ``provision install`` installs the
shipped example config (examples/elevator.toml: ``pin_factory = "lgpio"``, the Pi's own factory, and its pins) and
systemd runs the node under its real unit; it sends to the real central on the host. The tests drive the same rules
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
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from bench import vm
from provisioning.wiring import SERVICE_USER as USER

NODE_ID = "cbxc-b7-u2-lift1"  # examples/elevator.toml's
HOME = Path("/node")  # the logs of the node's runs outside systemd (the two faults)
CONFIG = Path("/etc/changbai/lift.toml")
NODE_PROGRAM = "/opt/cb-self/bin/elevator-node"
PROVISION = "/opt/cb-self/bin/provision"
UNIT = "changbai-elevator"
CENTRAL_HOST = "10.0.2.2"
# as Raspberry Pi OS's own rule: the gpio group may use the GPIO chips
UDEV_RULE = 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"\n'
PI_REVISION = "c03114"  # a Raspberry Pi 4 Model B, 4 GB
PI_CPUINFO = Path("/var/lib/pi-cpuinfo")  # /proc/cpuinfo with that revision, bind-mounted over it
MODULE_DIR = "gpiosim"  # in the guest's root: the module's source and the built gpio-sim-oot.ko
KERNEL_FILES = ("drivers/gpio/gpio-sim.c", "drivers/gpio/gpiolib.h", "kernel/irq/irq_sim.c")
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
def say(text: str) -> None:
    print(f"GPIOVM {text}", flush=True)


class SimChip:
    """A gpio-sim chip of 54 lines (a Pi's BCM 0-53) made through configfs; ``set(pin, level)`` drives a line as
    the wiring outside would (sysfs ``pull``), ``level(pin)`` is what the kernel reads."""

    CONFIG = Path("/sys/kernel/config/gpio-sim/pi")

    def __init__(self) -> None:
        vm.sh("modprobe configfs; mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config")
        vm.sh(f"insmod /{MODULE_DIR}/gpio-sim-oot.ko")
        (self.CONFIG / "bank0").mkdir(parents=True)
        (self.CONFIG / "bank0" / "num_lines").write_text("54")
        (self.CONFIG / "bank0" / "label").write_text("pinctrl-bcm2711")
        (self.CONFIG / "live").write_text("1")
        chip = (self.CONFIG / "bank0" / "chip_name").read_text().strip()
        self.sysfs = Path("/sys/devices/platform") / (self.CONFIG / "dev_name").read_text().strip() / chip
        self.dev = Path("/dev") / chip
        vm.sh("udevadm settle")  # UDEV_RULE gives the chip to the gpio group, as on Raspberry Pi OS
        self.group = vm.sh(f"stat -c '%G %a' {self.dev}").strip()

    def set(self, pin: int, level: bool) -> None:
        (self.sysfs / f"sim_gpio{pin}" / "pull").write_text("pull-up" if level else "pull-down")

    def level(self, pin: int) -> int:
        return int((self.sysfs / f"sim_gpio{pin}" / "value").read_text())

    def remove(self) -> None:
        (self.CONFIG / "live").write_text("0")
        (self.CONFIG / "bank0").rmdir()
        self.CONFIG.rmdir()


def _pretend_pi() -> None:
    """gpiozero's lgpio factory asks /proc/cpuinfo which Pi this is: a copy with a Pi 4's revision over it (the
    unit, which mounts a /proc of its own, binds it in through a drop-in)."""
    PI_CPUINFO.write_text(Path("/proc/cpuinfo").read_text() + f"Revision\t: {PI_REVISION}\n")
    vm.sh(f"mount --bind {PI_CPUINFO} /proc/cpuinfo")


def node_config(example: str, port: int) -> str:
    """examples/elevator.toml as shipped (its data folder and token file included), but for the central and the
    speaker (none here)."""
    changes = (
        ('url = "http://127.0.0.1:8080"', f'url = "http://{CENTRAL_HOST}:{port}"\nheartbeat_interval_s = 30'),
        ('backend = "auto"', 'backend = "none"'),
    )
    for old, new in changes:
        if example.count(old) != 1:
            raise ValueError(f"examples/elevator.toml: expected the line {old!r} once, to change it for the guest")
        example = example.replace(old, new)
    return example


def _unit(prop: str) -> str:
    return vm.sh(f"systemctl show {UNIT} -p {prop} --value").strip()


def _as_user(command: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--", *command]


def _start(config: Path, log_name: str) -> subprocess.Popen[bytes]:
    out = open(HOME / log_name, "ab")  # noqa: SIM115 - the node's log for as long as it runs
    return subprocess.Popen(_as_user([NODE_PROGRAM, "run", "--config", str(config)]), stdout=out, stderr=out)


def _hold_line(pin: int) -> subprocess.Popen[str]:
    """Another process holding ``pin`` as an input (as a second program on the Pi would), until killed."""
    code = (
        "import lgpio, time\n"
        "h = lgpio.gpiochip_open(0)\n"
        f"lgpio.gpio_claim_input(h, {pin})\n"
        "print('held', flush=True)\n"
        "time.sleep(3600)\n"
    )
    env = {**os.environ, "LG_WD": "/tmp"}
    holder = subprocess.Popen(["/opt/cb-self/bin/python", "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None
    holder.stdout.readline()
    return holder


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
    example = (Path("/stage/example-elevator.toml")).read_text(encoding="utf-8")
    pins = {k: v["pin"] for k, v in tomllib.loads(example)["elevator"].items() if isinstance(v, dict) and "pin" in v}
    say(f"pins {json.dumps(pins)}")
    _pretend_pi()
    chip = SimChip()
    say(f"chip {chip.dev} ({chip.sysfs}; group and mode {chip.group})")
    CONFIG.write_text(node_config(example, port), encoding="utf-8")
    # the sensors without a pull of the node's at rest: nobody in the car, still, mains on
    for name in ("occupancy", "moving", "power_fail"):
        chip.set(pins[name], False)
    installed = subprocess.run([PROVISION, "install", "--config", str(CONFIG)], capture_output=True, text=True)
    say(f"install exit {installed.returncode}: {(installed.stdout + installed.stderr).strip().splitlines()[-1:]}")
    # the node is up (install returns once the unit sent READY, after the node claimed its lines): its pull-ups
    # hold the door open and the buttons up. The car is parked at a floor: the door-zone reed is closed, which
    # can only be played once the node's pull-up is on the line (as a magnet would hold it)
    chip.set(pins["level_zone"], False)
    time.sleep(5)
    say(f"node {_unit('ActiveState')}; levels {json.dumps({k: chip.level(p) for k, p in pins.items()})}")
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
    vm.sh(f"systemctl stop {UNIT}")
    journal = vm.sh(f"journalctl -u {UNIT} --no-pager -o cat").splitlines()
    service = {
        "install": installed.returncode,
        "result": _unit("Result"),
        "restarts": int(_unit("NRestarts")),
        "errors": [x for x in journal if any(w in x for w in ("Traceback", "ERROR", "CRITICAL"))][:5],
    }
    say(f"service {json.dumps(service)}")
    holder = _hold_line(pins["door"])
    say(f"busy {json.dumps(_refused(CONFIG, 'busy.log'))}")
    holder.kill()
    holder.wait()
    chip.remove()
    say(f"nochip {json.dumps(_refused(CONFIG, 'nochip.log'))}")
    return 0


# ---------------------------------------------------------------------------------------------- the host
def kernel_source(cache: Path) -> Path:
    """gpio-sim's and irq_sim's sources from Debian's linux-source-6.1 (downloaded once into ``cache``)."""
    folder = cache / "src"
    if all((folder / Path(f).name).exists() for f in KERNEL_FILES):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "linux-source-6.1"], cwd=cache, check=True, capture_output=True)
    deb = sorted(cache.glob("linux-source-6.1_*.deb"))[-1]
    folder.mkdir(exist_ok=True)
    inner = "./usr/src/linux-source-6.1.tar.xz"
    wanted = " ".join(f"linux-source-6.1/{f}" for f in KERNEL_FILES)
    subprocess.run(
        f"dpkg-deb --fsys-tarfile {deb} | tar -xO {inner} | tar -xJ -C {folder} --strip-components=3 {wanted}",
        shell=True,
        check=True,
    )
    deb.unlink()
    return folder


def build_module(root: Path, source: Path) -> None:
    """gpio-sim (with irq_sim, which Debian's kernel leaves out) as one module, built in the guest's root
    against its kernel's headers."""
    target = root / MODULE_DIR
    target.mkdir()
    for name in ("gpio-sim.c", "gpiolib.h", "irq_sim.c"):
        shutil.copy(source / name, target / name)
    irq = target / "irq_sim.c"
    patched = irq.read_text().replace("handle_simple_irq(irq_to_desc(irqnum));", "generic_handle_irq(irqnum);")
    if patched == irq.read_text():
        raise SystemExit("gpio-vm: irq_sim.c no longer has the line this check changes")
    irq.write_text(patched)
    (target / "Makefile").write_text("obj-m := gpio-sim-oot.o\ngpio-sim-oot-y := gpio-sim.o irq_sim.o\n")
    release = sorted(root.glob("boot/vmlinuz-*"))[-1].name.removeprefix("vmlinuz-")
    subprocess.run(
        ["chroot", str(root), "make", "-s", "-C", f"/usr/src/linux-headers-{release}", f"M=/{MODULE_DIR}", "modules"],
        check=True,
        env=vm.chroot_env(),
    )


def _stage(work: Path, token: str) -> Path:
    source = kernel_source(vm.PROJECT / ".cache" / "gpio-sim")

    def prepare(root: Path) -> None:
        vm.say("gpio-vm", "building gpio-sim in the guest's root")
        build_module(root, source)
        shutil.copy(vm.PROJECT / "examples" / "elevator.toml", root / "stage" / "example-elevator.toml")
        subprocess.run(["chroot", str(root), "groupadd", "--system", "gpio"], check=True)
        subprocess.run(["chroot", str(root), "useradd", "--system", "--user-group", "-G", "gpio", USER], check=True)
        (root / "node").mkdir()
        (root / "etc" / "changbai").mkdir()
        (root / "etc" / "changbai" / "token").write_text(token + "\n")  # the example's token_file
        (root / "etc" / "changbai" / "token").chmod(0o600)
        (root / "etc" / "udev" / "rules.d").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "udev" / "rules.d" / "99-gpio.rules").write_text(UDEV_RULE)
        # the unit mounts a /proc of its own (ProtectKernelTunables...): the Pi's identity goes in with it
        (root / "etc" / "systemd" / "system" / f"{UNIT}.service.d").mkdir(parents=True)
        (root / "etc" / "systemd" / "system" / f"{UNIT}.service.d" / "pi-identity.conf").write_text(
            f"[Service]\nBindReadOnlyPaths={PI_CPUINFO}:/proc/cpuinfo\n"
        )

    command = '/opt/cb-self/bin/python -m bench.gpio_vm --guest "$(arg cbport)"'
    packages = ("kmod", "linux-headers-amd64", "make", "iproute2", "systemd", "udev")
    guest_init = ("gpiovm.sh", "GPIOVM", command)
    sources = {"self": vm.PROJECT}
    return vm.stage(work, "gpio-vm", packages, sources, guest_init, "5G", "sim,pi-gpio", prepare, under_systemd=True)


def expected_delays() -> dict[str, float]:
    """The settings EXPECTED names, as the guest's node has them (the shipped example and the defaults)."""
    from common.config import parse_config

    example = vm.PROJECT / "examples" / "elevator.toml"
    text = node_config(example.read_text(encoding="utf-8"), 1)
    section = parse_config(tomllib.loads(text), example).role_config
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
    under systemd (``provision install``'s exit, the unit's result and restarts, error lines in its journal)."""
    failed = []
    if service.get("install") != 0:
        failed.append(f"provision install exited {service.get('install')}")
    if service.get("result") != "success" or service.get("restarts") != 0:
        failed.append(f"the unit: result {service.get('result')}, {service.get('restarts')} restart(s)")
    if service.get("errors"):
        failed.append(f"errors in the unit's journal: {service['errors']}")

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
    for name, outcome in faults.items():
        if outcome.get("exit") in (0, None):
            failed.append(f"{name}: the node did not stop with an error (exit {outcome.get('exit')})")
        if outcome.get("traceback"):
            failed.append(f"{name}: a traceback instead of a message: {outcome.get('last')}")
    busy = " ".join(faults.get("busy", {}).get("last", []))
    if "BCM" not in busy:
        failed.append(f"busy: the message does not name the pin: {busy!r}")
    return failed


def main(argv: list[str] | None = None) -> int:
    def check(work: Path, token: str, server: Any) -> int:
        from bench.harness import OPERATOR_KEY  # the host's (the guest has no central)

        image = _stage(work, token)
        log = work / "console.log"
        vm.say("gpio-vm", f"booting; the node sends to the central on the host's port {server.port}")
        proc = vm.boot(work / "root", image, log, f"{vm.SYSTEMD_INIT} cbport={server.port}", vm.NETWORK)
        done = vm.wait_for(log, "GPIOVM-DONE", proc, 2400)
        proc.kill()
        proc.wait()
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.startswith("GPIOVM")]
        return report(server.url, OPERATOR_KEY, lines, done)

    return vm.with_central("gpio-vm", __doc__.splitlines()[0], argv, (NODE_ID, "elevator"), guest, check)


def report(url: str, operator: str, lines: list[str], done: bool) -> int:
    """Print the guest's ``GPIOVM`` lines and what the central stored; 0 when nothing failed."""
    print("\n".join(lines), flush=True)
    marks = {m[1]: float(m[2]) for m in (re.match(r"GPIOVM (\S+) ([\d.]+)$", x) for x in lines) if m}
    found = {
        m[1]: json.loads(m[2]) for m in (re.match(r"GPIOVM (service|busy|nochip) (\{.*\})$", x) for x in lines) if m
    }
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
    return vm.verdict(judge(marks, events, faults, delays, service))


if __name__ == "__main__":
    sys.exit(main())
