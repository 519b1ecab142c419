"""A kernel's GPIO for the VM checks (bench/gpio_vm.py, the lift; bench/gpio_vm_kiosk.py, the kiosk): a Debian 12
guest under systemd whose ``/dev/gpiochip0`` is the kernel's GPIO simulator (gpio-sim, built as a module from
Debian's kernel source), given to the ``gpio`` group by Raspberry Pi OS's udev rule; a role's shipped example config
installed by ``provision install`` and run by systemd under its real unit, sending to a central on the host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import vm
from provisioning.wiring import SERVICE_USER as USER


@dataclass(frozen=True)
class Role:
    """A role's node as the check runs it: its shipped example (examples/<role>.toml), its id there, where the guest
    installs its config, the guest's program (``python -m <module> --guest PORT``), the venv's extras and the Debian
    packages it needs beyond the chip's."""

    name: str
    node_id: str
    config: Path
    module: str
    extra: str
    packages: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        return f"changbai-{self.name}"

    @property
    def example(self) -> Path:
        return vm.PROJECT / "examples" / f"{self.name}.toml"

    @property
    def staged_example(self) -> Path:
        return Path("/stage") / f"example-{self.name}.toml"


PROVISION = "/opt/cb-self/bin/provision"
CENTRAL_HOST = "10.0.2.2"
PACKAGES = ("kmod", "linux-headers-amd64", "make", "iproute2", "systemd", "udev")
# as Raspberry Pi OS's own rule: the gpio group may use the GPIO chips
UDEV_RULE = 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"\n'
PI_REVISION = "c03114"  # a Raspberry Pi 4 Model B, 4 GB
PI_CPUINFO = Path("/var/lib/pi-cpuinfo")  # /proc/cpuinfo with that revision, bind-mounted over it
MODULE_DIR = "gpiosim"  # in the guest's root: the module's source and the built gpio-sim-oot.ko
KERNEL_FILES = ("drivers/gpio/gpio-sim.c", "drivers/gpio/gpiolib.h", "kernel/irq/irq_sim.c")


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
    """A shipped example config as it is (its data folder and token file included), but for the central and the
    speaker (none here: its [audio] ``backend = "auto"``, no backend line or no [audio] becomes ``"none"``)."""
    url = 'url = "http://127.0.0.1:8080"'
    if example.count(url) != 1:
        raise ValueError(f"the example config: expected the line {url!r} once, to change it for the guest")
    example = example.replace(url, f'url = "http://{CENTRAL_HOST}:{port}"\nheartbeat_interval_s = 30')
    if example.count('backend = "auto"') == 1:
        return example.replace('backend = "auto"', 'backend = "none"')
    if "backend =" not in example and example.count("[audio]\n") == 1:
        return example.replace("[audio]\n", '[audio]\nbackend = "none"\n')
    if "[audio]" not in example:
        return example + '\n[audio]\nbackend = "none"\n'
    raise ValueError('the example config: expected [audio] with backend = "auto" or no backend, to silence it')


def unit_property(unit: str, prop: str) -> str:
    return vm.sh(f"systemctl show {unit} -p {prop} --value").strip()


def install(role: Role, port: int, edit: Callable[[str], str] | None = None) -> int:
    """The role's example config, with the guest's central (and ``edit``'s change), installed by ``provision
    install`` (which returns once the unit sent READY); its exit code."""
    text = node_config(role.staged_example.read_text(encoding="utf-8"), port)
    role.config.write_text(edit(text) if edit else text, encoding="utf-8")
    installed = subprocess.run([PROVISION, "install", "--config", str(role.config)], capture_output=True, text=True)
    say(f"install exit {installed.returncode}: {(installed.stdout + installed.stderr).strip().splitlines()[-1:]}")
    return installed.returncode


def service_report(unit: str, install_exit: int) -> dict[str, Any]:
    """Stop ``unit``: provision install's exit, the unit's result and restarts, the error lines in its journal."""
    vm.sh(f"systemctl stop {unit}")
    journal = vm.sh(f"journalctl -u {unit} --no-pager -o cat").splitlines()
    service = {
        "install": install_exit,
        "result": unit_property(unit, "Result"),
        "restarts": int(unit_property(unit, "NRestarts")),
        "errors": [x for x in journal if any(w in x for w in ("Traceback", "ERROR", "CRITICAL"))][:5],
        "taken_in": [x for x in journal if "taken in at the central" in x][:5],  # EN 81-28's acknowledgement heard
    }
    say(f"service {json.dumps(service)}")
    return service


def judge_service(service: dict[str, Any]) -> list[str]:
    """What failed in ``service_report``'s record."""
    failed = []
    if service.get("install") != 0:
        failed.append(f"provision install exited {service.get('install')}")
    if service.get("result") != "success" or service.get("restarts") != 0:
        failed.append(f"the unit: result {service.get('result')}, {service.get('restarts')} restart(s)")
    if service.get("errors"):
        failed.append(f"errors in the unit's journal: {service['errors']}")
    return failed


def hold_line(pin: int) -> subprocess.Popen[str]:
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


def press(chip: SimChip, pin: int, hold_s: float) -> float:
    """A press of a button wired to ground: the contact bounces 5 times in 20 ms each way; the time of the
    release."""
    for level in (False, True):
        for _ in range(5):
            chip.set(pin, level)
            time.sleep(0.002)
            chip.set(pin, not level)
            time.sleep(0.002)
        chip.set(pin, level)
        if not level:
            time.sleep(hold_s)
    return time.time()


def await_true(what: str, test: Callable[[], bool], timeout_s: float) -> None:
    """Wait until ``test()`` is true (at most ``timeout_s``), then say how long it took."""
    start = time.monotonic()
    while not test() and time.monotonic() - start < timeout_s:
        time.sleep(2)
    say(f"{what} after {time.monotonic() - start:.0f} s")


def fault_phases(
    unit: str, pin: int, alert: str, chip: SimChip, timeout_s: float = 600, taken_in: bool = False
) -> dict[str, dict[str, Any]]:
    """The faults a technician meets, each with the unit restarted: another process holding ``pin`` ("busy"),
    the line free again ("free": until the journal says ``alert cleared <alert>``), no GPIO chip ("nochip"; the
    chip is removed). Marks are said; the unit's state in each: a node that must run on stays active, unrestarted.
    ``taken_in``: a desk on the host acknowledges the busy fault, and the line stays held until the journal says the
    node heard it (the busy state's ``taken_in``: those journal lines)."""

    def restart(mark: str) -> Callable[[str], bool]:
        since = vm.sh("date '+%Y-%m-%d %H:%M:%S'").strip()
        say(f"{mark} {time.time():.2f}")
        vm.sh(f"systemctl restart {unit}")
        return lambda text: text in vm.sh(f"journalctl -u {unit} --no-pager -o cat --since '{since}'")

    def state() -> dict[str, Any]:
        return {"active": unit_property(unit, "ActiveState"), "restarts": int(unit_property(unit, "NRestarts"))}

    faults = {}
    holder = hold_line(pin)
    logged = restart("busy")
    await_true("busy-told", lambda: logged("unusable"), timeout_s)
    time.sleep(10)  # the alert is sent
    faults["busy"] = state()
    if taken_in:
        heard = "taken in at the central"
        await_true("busy-taken", lambda: logged(heard), 120)
        journal = vm.sh(f"journalctl -u {unit} --no-pager -o cat").splitlines()
        faults["busy"]["taken_in"] = [x for x in journal if heard in x][:5]
    holder.kill()
    holder.wait()
    logged = restart("free")
    await_true("free-up", lambda: logged(f"alert cleared {alert}"), timeout_s)
    time.sleep(10)
    faults["free"] = state()
    chip.remove()
    logged = restart("nochip")
    await_true("nochip-told", lambda: logged("unusable"), timeout_s)
    time.sleep(10)
    faults["nochip"] = state()
    say(f"faults {json.dumps(faults)}")
    return faults


def judge_fault_phases(
    marks: dict[str, float], alerts: list[dict[str, Any]], faults: dict[str, dict[str, Any]], pin_text: str
) -> list[str]:
    """What failed in ``fault_phases``, from the fault's stored ``alerts`` (one kind, one device): raised after
    "busy" naming the pin (``pin_text``), cleared after "free", raised again after "nochip"; the node running on."""
    failed = []
    phases = (("busy", "raised", "free"), ("free", "cleared", "nochip"), ("nochip", "raised", None))
    for mark, state, until in phases:
        end = marks.get(until, float("inf")) if until else float("inf")
        found = [e for e in alerts if e["state"] == state and marks.get(mark, float("inf")) <= e["wall_time"] < end]
        kind = alerts[0]["kind"] if alerts else "fault"
        if not found:
            failed.append(f"{mark}: no {kind} {state}")
        elif mark == "busy" and pin_text not in found[0]["payload"].get("reason", ""):
            failed.append(f"busy: the fault does not name the pin: {found[0]['payload'].get('reason')!r}")
        state_then = faults.get(mark, {})
        if state_then.get("active") != "active" or state_then.get("restarts") != 0:
            failed.append(f"{mark}: the node did not run on under its unit: {state_then}")
    return failed


def pins_and_chip(role: Role) -> tuple[dict[str, int], SimChip]:
    """The pins of the role's example (its section's tables with a ``pin``), and the chip, on a pretended Pi."""
    section = tomllib.loads(role.staged_example.read_text(encoding="utf-8"))[role.name]
    pins = {k: v["pin"] for k, v in section.items() if isinstance(v, dict) and "pin" in v}
    say(f"pins {json.dumps(pins)}")
    return pins, chip_on_pi()


def chip_on_pi() -> SimChip:
    """The chip, on a pretended Pi."""
    _pretend_pi()
    chip = SimChip()
    say(f"chip {chip.dev} ({chip.sysfs}; group and mode {chip.group})")
    return chip


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


def stage(work: Path, token: str, role: Role) -> Path:
    """The guest's image: Debian 12 under systemd with the chip's module built, the role's example, the service
    user in the ``gpio`` group, the node's token and Raspberry Pi OS's udev rule."""
    source = kernel_source(vm.PROJECT / ".cache" / "gpio-sim")

    def prepare(root: Path) -> None:
        vm.say("gpio-vm", "building gpio-sim in the guest's root")
        build_module(root, source)
        shutil.copy(role.example, root / role.staged_example.relative_to("/"))
        subprocess.run(["chroot", str(root), "groupadd", "--system", "gpio"], check=True)
        subprocess.run(["chroot", str(root), "useradd", "--system", "--user-group", "-G", "gpio", USER], check=True)
        (root / "node").mkdir()
        (root / "etc" / "changbai").mkdir()
        (root / "etc" / "changbai" / "token").write_text(token + "\n")  # the example's token_file
        (root / "etc" / "changbai" / "token").chmod(0o600)
        (root / "etc" / "udev" / "rules.d").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "udev" / "rules.d" / "99-gpio.rules").write_text(UDEV_RULE)
        # the unit mounts a /proc of its own (ProtectKernelTunables...): the Pi's identity goes in with it
        drop_in = root / "etc" / "systemd" / "system" / f"{role.unit}.service.d"
        drop_in.mkdir(parents=True)
        (drop_in / "pi-identity.conf").write_text(f"[Service]\nBindReadOnlyPaths={PI_CPUINFO}:/proc/cpuinfo\n")

    command = f'/opt/cb-self/bin/python -m {role.module} --guest "$(arg cbport)"'
    guest_init = ("gpiovm.sh", "GPIOVM", command)
    packages = tuple(dict.fromkeys((*PACKAGES, *role.packages)))
    sources = {"self": vm.PROJECT}
    return vm.stage(work, "gpio-vm", packages, sources, guest_init, "5G", role.extra, prepare, under_systemd=True)


def boot(
    work: Path, token: str, port: int, role: Role, extra: Sequence[str] = (), timeout_s: float = 2400
) -> tuple[list[str], bool]:
    """Stage the role's guest, boot it (systemd; the central's ``port`` on its command line; ``extra``: qemu's
    options beyond the network) and wait for its end: its ``GPIOVM`` lines, and whether it finished."""
    image = stage(work, token, role)
    log = work / "console.log"
    vm.say("gpio-vm", f"booting; the {role.name} node sends to the central on the host's port {port}")
    proc = vm.boot(work / "root", image, log, f"{vm.SYSTEMD_INIT} cbport={port}", [*extra, *vm.NETWORK])
    done = vm.wait_for(log, "GPIOVM-DONE", proc, timeout_s)
    proc.kill()
    proc.wait()
    return [x for x in log.read_text(errors="replace").splitlines() if x.startswith("GPIOVM")], done


def guest_marks(lines: list[str]) -> dict[str, float]:
    """The guest's ``GPIOVM <mark> <wall time>`` lines, by mark."""
    return {m[1]: float(m[2]) for m in (re.match(r"GPIOVM (\S+) ([\d.]+)$", x) for x in lines) if m}


def records(lines: list[str], names: str) -> dict[str, Any]:
    """The guest's ``GPIOVM <name> {json}`` lines whose name matches ``names`` (a regular expression with one
    group: the key), by that key."""
    return {m[1]: json.loads(m[2]) for m in (re.match(rf"GPIOVM {names} (\{{.*\}})$", x) for x in lines) if m}
