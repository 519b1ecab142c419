"""A Debian 12 guest under qemu for the checks that need a kernel of their own (a power cut, a clock set by NTP):
a debootstrapped root, an ext4 image of it, a boot with a shell script as PID 1, and its serial console read.

qemu runs under software emulation (TCG): on this host's nested KVM, qemu 7.2 fails to set an MSR with
``-cpu host`` and the default CPU hangs the guest kernel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

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
