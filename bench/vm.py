"""A Debian 12 guest under qemu for the checks that need a kernel of their own (a power cut, a clock set by NTP):
a debootstrapped root, an ext4 image of it, a boot with a shell script as PID 1, and its serial console read.

qemu runs under software emulation (TCG): on this host's nested KVM, qemu 7.2 fails to set an MSR with
``-cpu host`` and the default CPU hangs the guest kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.update_rig import PROJECT

BASE_PACKAGES = ("linux-image-amd64", "initramfs-tools", "python3", "python3-venv", "e2fsprogs", "ca-certificates")


def debootstrap(root: Path, packages: Sequence[str], log: Path) -> None:
    """Debian 12 (minbase) with a kernel and ``packages`` into ``root`` (a few minutes)."""
    include = ",".join([*BASE_PACKAGES, *packages])
    with open(log, "wb") as out:
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={include}", "bookworm", str(root)],
            stdout=out,
            stderr=out,
            check=True,
        )


NETWORKED_INIT = """#!/bin/sh
# PID 1 of the guest (or a service of systemd's): network to the host (qemu user networking: the host is
# 10.0.2.2), then the check
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
{mounts}
modprobe virtio_net; sleep 1
dev=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)  # ens3: the initramfs's udev names it
ip link set lo up; ip link set "$dev" up; ip addr add 10.0.2.15/24 dev "$dev"; ip route add default via 10.0.2.2
echo "{tag} boot $(date -u +%FT%TZ) kernel=$(uname -r)" > /dev/ttyS0
arg() {{ tr ' ' '\\n' < /proc/cmdline | sed -n "s/^$1=//p"; }}
{command} > /dev/ttyS0 2>&1
echo "{tag}-DONE" > /dev/ttyS0
sync
echo o > /proc/sysrq-trigger
sleep 3600
"""
MOUNTS = """mount -t proc proc /proc; mount -t sysfs sys /sys 2>/dev/null; mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
mount -o remount,rw /"""
NETWORK = ("-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")  # boot()'s extra: the host is 10.0.2.2
SYSTEMD_INIT = "init=/lib/systemd/systemd"  # boot()'s append for a guest staged with under_systemd
CHECK_UNIT = """[Unit]
Description=the check ({tag})
After=systemd-journald.service systemd-udevd.service

[Service]
Type=oneshot
ExecStart=/{name}
"""


def write_init(root: Path, name: str, tag: str, command: str, under_systemd: bool = False) -> None:
    """``root/name``: a PID 1 that brings up the network, runs ``command`` (its output and ``tag`` lines to the
    console; ``$(arg key)`` reads ``key=`` from the kernel command line), then powers off. ``under_systemd``:
    the same as a service systemd starts once booted (boot with ``SYSTEMD_INIT``), without the mounts."""
    (root / name).write_text(NETWORKED_INIT.format(tag=tag, command=command, mounts="" if under_systemd else MOUNTS))
    (root / name).chmod(0o755)
    if under_systemd:
        units = root / "etc" / "systemd" / "system"
        unit = units / f"{Path(name).stem}.service"
        unit.write_text(CHECK_UNIT.format(tag=tag, name=name))
        (units / "multi-user.target.wants").mkdir(parents=True, exist_ok=True)
        (units / "multi-user.target.wants" / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")
        # no login prompt on the console: agetty hangs up the serial port under the check's output
        (units / "serial-getty@ttyS0.service").symlink_to("/dev/null")


def install_venv(root: Path, tag: str, source: Path, extra: str = "sim") -> None:
    """``/opt/cb-TAG`` in the guest's root: a venv with the checkout ``source`` and its ``extra``, from wheels
    made on the host (the host's pip has the package index's settings, the guest's not)."""
    stage = root / "stage" / tag
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(stage), str(source)], check=True)
    wheel = next(stage.glob("*.whl")).name
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(stage), f"{stage / wheel}[{extra}]"], check=True
    )
    subprocess.run(["chroot", str(root), "python3", "-m", "venv", f"/opt/cb-{tag}"], check=True)
    pip = [f"/opt/cb-{tag}/bin/pip", "install", "-q", "--no-index", "--find-links", f"/stage/{tag}"]
    subprocess.run(["chroot", str(root), *pip, f"/stage/{tag}/{wheel}[{extra}]"], check=True, env=chroot_env())


def stage(
    work: Path,
    who: str,
    packages: Sequence[str],
    sources: Mapping[str, Path],
    guest: tuple[str, str, str],
    size: str,
    extra: str = "sim",
    prepare: Callable[[Path], None] | None = None,
    under_systemd: bool = False,
) -> Path:
    """A guest's image ``work/base.img`` of ``size``: Debian 12 with ``packages``, a venv ``/opt/cb-TAG`` per checkout
    in ``sources`` (with ``extra``), the PID 1 ``guest`` = (script name, console tag, command) of ``write_init``
    (``under_systemd``: a service of systemd's), and whatever ``prepare(root)`` adds to the root before it is made
    into the image."""
    root = work / "root"
    say(who, "debootstrap bookworm (a few minutes)")
    debootstrap(root, packages, work / "debootstrap.log")
    for tag, source in sources.items():
        say(who, f"venv /opt/cb-{tag} from {source} (extra {extra})")
        install_venv(root, tag, source, extra)
    write_init(root, *guest, under_systemd=under_systemd)
    if prepare is not None:
        prepare(root)
    image = work / "base.img"
    make_image(root, image, size)
    return image


def outbox_rows(config: Path) -> dict[str, list[dict[str, Any]]]:
    """The events still queued in the outbox of the node ``config`` describes, by priority (``alert``, ``state``,
    ``reading``), oldest first. Read-only, from the file ``common.service.outbox_path`` names: the node may be
    running. Empty when it has no outbox yet."""
    from common.config import load_config
    from common.outbox import peek_queued
    from common.service import outbox_path

    queued = peek_queued(outbox_path(load_config(config)))
    return {prio: [json.loads(body) for body in bodies] for prio, bodies in queued.items()}


def chroot_env() -> dict[str, str]:
    """The environment for pip in the guest's root: the host's pip settings (PIP_*) left out."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}


def make_image(root: Path, image: Path, size: str = "3G") -> None:
    """An ext4 disk image holding ``root``."""
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(image)], check=True)


def boot(root: Path, image: Path, log: Path, append: str, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Boot ``image`` with ``root``'s kernel; ``append``: the kernel command line after the root and console
    (``init=...`` and the script's own arguments); the serial console goes to ``log``."""
    kernel, initrd = sorted(root.glob("boot/vmlinuz-*"))[-1], sorted(root.glob("boot/initrd.img-*"))[-1]
    line = f"root=/dev/vda rw console=ttyS0 quiet {append}"
    cmd = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "2048", "-smp", "2"]
    cmd += ["-nographic", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd), "-append", line]
    cmd += ["-drive", f"file={image},format=raw,if=virtio,cache=none", "-serial", f"file:{log}", "-monitor", "none"]
    return subprocess.Popen([*cmd, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """True once ``text`` is on the guest's console (False if it stopped or ``timeout_s`` passed first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and text in log.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return log.exists() and text in log.read_text(errors="replace")


def stored_events(url: str, operator: str, node_id: str) -> list[dict[str, Any]]:
    """Every event of ``node_id`` the central at ``url`` stored (readings included), page by page."""
    import requests

    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = requests.get(
            f"{url}/api/v1/events",
            params={"node_id": node_id, "after": str(after), "limit": "10000"},
            headers={"Authorization": f"Bearer {operator}"},
            timeout=30,
        ).json()
        events += page["events"]
        if not page["events"]:
            return events
        after = page["next_after"]


def sh(command: str) -> str:
    """A shell command (in the guest); its output (a failure ends the check, naming the command)."""
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{command!r} failed: {done.stderr.strip()}")
    return done.stdout


def verdict(failed: list[str]) -> int:
    """Print each failure and PASS or FAIL; the exit code (0: passed)."""
    for problem in failed:
        print(f"FAIL: {problem}", flush=True)
    print("PASS" if not failed else "FAIL", flush=True)
    return 0 if not failed else 1


def say(who: str, text: str) -> None:
    print(f"[{who}] {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def workspace(who: str, compare: str | None, keep: bool) -> Iterator[tuple[Path, dict[str, Path]]]:
    """A work folder, and the checkouts to put in the guest: this one (``self``) and, with ``compare``, a git
    worktree of that revision (``compare``). Both are removed afterwards, unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=f"{who}."))
    sources = {"self": PROJECT}
    try:
        if compare:
            added = subprocess.run(
                ["git", "-C", str(PROJECT), "worktree", "add", "-q", "--detach", str(work / "compare"), compare],
                capture_output=True,
                text=True,
            )
            if added.returncode:
                raise SystemExit(f"{who}: --compare {compare}: git worktree add failed: {added.stderr.strip()}")
            sources["compare"] = work / "compare"
        yield work, sources
    finally:
        if (work / "compare").exists():
            subprocess.run(["git", "-C", str(PROJECT), "worktree", "remove", "--force", str(work / "compare")])
        if keep:
            say(who, f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def with_central(
    who: str,
    description: str,
    argv: list[str] | None,
    node: tuple[str, str],
    guest: Callable[[int], int],
    check: Callable[[Path, str, Any], int],
    fleet: dict[str, Any] | None = None,
    pickup_point: str = "",
) -> int:
    """The command line of a check whose guest's node sends to a central on the host. ``--guest PORT`` (in the
    guest): ``guest(PORT)``. On the host: a central in a work folder (``--keep`` keeps it; ``fleet``: its simulated
    taxis' settings), ``node`` = (id, role) registered there (a kiosk with its ``pickup_point``), then
    ``check(work, token, server)``; its exit code."""
    parser = argparse.ArgumentParser(prog=who, description=description)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (root, image, serial log)")
    parser.add_argument("--guest", type=int, help=argparse.SUPPRESS)  # in the guest: the central's port
    args = parser.parse_args(argv)
    if args.guest is not None:
        return guest(args.guest)
    from bench.harness import register, start_central

    with workspace(who, None, args.keep) as (work, _):
        (work / "central").mkdir()
        server = start_central(work / "central", fleet=fleet)
        try:
            return check(work, register(server, *node, work / "token", pickup_point), server)
        finally:
            server.stop()
