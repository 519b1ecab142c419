"""A real power cut: a Debian 12 guest (its own Linux kernel, ext4 on a virtio disk with ``cache=none``) installs a
signed bundle with ``changbai-update now --bundle``; 2 s after the updater says it committed, qemu is killed, so
whatever the guest kernel had not written is lost with its RAM. The guest is booted again and its ``current``
version is checked against pip's own RECORD hashes, and its node program must import.

``scripts/power-cut-vm`` runs it (root, debootstrap, qemu-system-x86, e2fsprogs; about 10 minutes; not in CI).
``--compare REV`` also runs the updater of another revision (``18a462b`` shows the defect it fixed). The guest
is bench/vm.py's.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from bench import vm
from bench.update_rig import ManagedNode, ReleaseKit

GUEST_INIT = """#!/bin/sh
# PID 1 of the guest: pcmode=install (install, then wait for the host to pull the plug) or pcmode=check
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mount -o remount,rw /
arg() { tr ' ' '\\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
out() { echo "$*" > /dev/ttyS0; }
out "POWERCUT boot mode=$(arg pcmode) tech=$(arg pctech) kernel=$(uname -r)"
case "$(arg pcmode)" in
install)
    /opt/tech-$(arg pctech)/bin/changbai-update --config /node/etc/node.toml now --bundle /stage/release.bundle \
        > /dev/ttyS0 2>&1
    out "POWERCUT-INSTALLED rc=$?"
    sleep 3600 ;;
check)
    /opt/tech-self/bin/python -m bench.power_cut_vm --check /node/opt > /dev/ttyS0 2>&1
    out "POWERCUT-CHECKED"
    sync
    echo o > /proc/sysrq-trigger ;;
esac
sleep 3600
"""
VERSION = "0.1.0+vm1"


def guest_check(root: Path) -> bool:
    """In the guest after the cut: one ``POWERCUT`` line per finding; True when ``current`` is whole and runs."""
    from bench.bench_power_cut import _against_records
    from updates.layout import Layout

    layout = Layout(root)
    version = layout.current()
    if version is None:
        print("POWERCUT result: no current version (the install did not finish): nothing to run")
        return False
    checked, bad = _against_records(layout.venv(version))
    probe = [str(layout.venv(version) / "bin" / "python"), "-I", "-c", "from elevator_node.__main__ import main"]
    runs = subprocess.run(probe, capture_output=True, text=True, check=False)
    program = layout.venv(version) / "bin" / "elevator-node"
    size = program.stat().st_size if program.exists() else -1
    print(f"POWERCUT result: {bad} of {checked} files unlike RECORD; elevator-node {size} bytes;", end=" ")
    print("imports" if runs.returncode == 0 else f"does not import: {runs.stderr.strip().splitlines()[-1:]}")
    return bad == 0 and runs.returncode == 0


def _stage(work: Path, techs: dict[str, Path]) -> Path:
    """A guest root: Debian 12 with a kernel, the bundle, one technician's venv per updater, the node's config."""
    root = work / "root"
    say("debootstrap bookworm (a few minutes)")
    vm.debootstrap(root, (), work / "debootstrap.log")
    kit = ReleaseKit.new(work)
    bundle = kit.bundle(VERSION)
    stage = root / "stage"
    (stage / "wheels").mkdir(parents=True)
    shutil.copy(bundle, stage / "release.bundle")
    with tarfile.open(bundle) as tar:  # the dependencies' wheels, for the technicians' venvs
        for member in tar.getmembers():
            if member.name.endswith(".whl") and "changbai_nodes" not in member.name:
                member.name = Path(member.name).name
                tar.extract(member, stage / "wheels")
    for tag, source in techs.items():
        say(f"technician's venv {tag} from {source}")
        out = stage / f"tech-{tag}"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)], check=True
        )
        subprocess.run(["chroot", str(root), "python3", "-m", "venv", f"/opt/tech-{tag}"], check=True)
        wheel = f"/stage/tech-{tag}/{next(out.glob('*.whl')).name}"
        pip = [f"/opt/tech-{tag}/bin/pip", "install", "-q", "--no-index", "--find-links", "/stage/wheels", wheel]
        subprocess.run(["chroot", str(root), *pip], check=True, env=vm.chroot_env())
    node = ManagedNode(root / "node", "http://127.0.0.1:9", "token", kit.public_key, "vm-lift", 20)
    shutil.copy(kit.public_key, root / "node" / "release.pub")
    text = node.config.read_text().replace(str(kit.public_key), "/node/release.pub")
    node.config.write_text(text.replace(str(root), ""))
    (root / "powercut.sh").write_text(GUEST_INIT)
    (root / "powercut.sh").chmod(0o755)
    image = work / "base.img"
    vm.make_image(root, image)
    return image


def _boot(root: Path, image: Path, mode: str, tech: str, log: Path) -> subprocess.Popen[bytes]:
    return vm.boot(root, image, log, f"init=/powercut.sh pcmode={mode} pctech={tech}")


def trial(work: Path, image: Path, tech: str, n: int, delay_s: float) -> bool:
    """Install, cut ``delay_s`` after the updater finished, boot again, check; True when the node would run."""
    disk = work / f"trial-{tech}-{n}.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    log = work / f"install-{tech}-{n}.log"
    proc = _boot(work / "root", disk, "install", tech, log)
    installed = vm.wait_for(log, "POWERCUT-INSTALLED rc=0", proc, 1800)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)  # the power cut
    proc.wait()
    check_log = work / f"check-{tech}-{n}.log"
    proc = _boot(work / "root", disk, "check", tech, check_log)
    vm.wait_for(check_log, "POWERCUT-CHECKED", proc, 600)
    proc.kill()
    proc.wait()
    disk.unlink()
    result = [line for line in check_log.read_text(errors="replace").splitlines() if "POWERCUT result" in line]
    whole = installed and bool(result) and "0 of" in result[0] and result[0].endswith("imports")
    print(f"{'PASS' if whole else 'FAIL'}  updater {tech}, cut {delay_s:g} s after it finished:", end=" ")
    print(result[0].removeprefix("POWERCUT result: ") if result else "no check result", flush=True)
    return whole


def say(text: str) -> None:
    vm.say("power-cut-vm", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="power-cut-vm", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="power cuts per updater (default 3)")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds from 'committed' to the cut (default 2)")
    parser.add_argument("--compare", metavar="REV", help="also cut after the updater of this git revision")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (root, image, serial logs)")
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)  # the guest's own check, after the cut
    args = parser.parse_args(argv)
    if args.check:
        return 0 if guest_check(args.check) else 1
    with vm.workspace("power-cut-vm", args.compare, args.keep) as (work, techs):
        image = _stage(work, techs)
        failed = 0
        for tech in techs:
            for n in range(args.trials):
                failed += not trial(work, image, tech, n, args.delay) and tech == "self"
        return failed


if __name__ == "__main__":
    sys.exit(main())
