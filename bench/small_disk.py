"""A real small filesystem for the disk-fault tests and the fault bench: a tmpfs or an ext4 image on a loop
device, mounted by the test: as root, or as a user with passwordless sudo (the filesystem is then the user's);
the test is skipped with the reason when mounting is impossible. It can be filled to the last byte, freed, and
remounted read-only and back."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

CHUNKS = (1024 * 1024, 64 * 1024, 4096, 512, 64, 1)


class CannotMount(Exception):
    """Mounting is impossible here (not root and no passwordless sudo, no mount permission in this container, no
    loop device)."""


@functools.cache
def _as_root() -> tuple[str, ...]:
    """What runs a command as root here: nothing as root, ``sudo -n`` where it needs no password."""
    if os.geteuid() == 0:
        return ()
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True, timeout=30).returncode == 0:
        return (sudo, "-n")
    raise CannotMount("mounting a small filesystem needs root or passwordless sudo")


def _tool(name: str) -> str:
    """A system tool by its path (a user's PATH often lacks /usr/sbin)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or name


class SmallDisk:
    """A mounted filesystem of ``size_kib`` at ``root``: ``fill()``, ``free()``, ``read_only()``,
    ``read_write()``; ``unmount()`` at the end."""

    def __init__(self, root: Path, size_kib: int = 8192, kind: str = "tmpfs") -> None:
        self.root = root
        self.kind = kind
        self.filler = root / "filler"
        self._image: Path | None = None
        root.mkdir(parents=True, exist_ok=True)
        if kind == "tmpfs":
            owner = f"uid={os.getuid()},gid={os.getgid()}"
            self._mount(["-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755,{owner}", "tmpfs", str(root)])
        elif kind == "ext4":
            self._image = root.with_name(root.name + ".img")
            with open(self._image, "wb") as image:
                image.truncate(size_kib * 1024)
            self._run([_tool("mkfs.ext4"), "-q", "-F", "-m", "0", str(self._image)])
            self._mount(["-o", "loop", str(self._image), str(root)])
            if os.geteuid() != 0:
                self._run([*_as_root(), "chown", f"{os.getuid()}:{os.getgid()}", str(root)])
        else:
            raise ValueError(f"unknown filesystem kind {kind!r}")

    @staticmethod
    def _run(command: list[str]) -> None:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CannotMount(f"{command[0]}: {exc}") from exc
        if done.returncode != 0:
            raise CannotMount(f"{' '.join(command[:3])}: {done.stderr.strip() or done.returncode}")

    def _mount(self, args: list[str]) -> None:
        self._run([*_as_root(), _tool("mount"), *args])

    def fill(self) -> int:
        """Write a filler file until the filesystem has no byte left; returns the bytes written."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in CHUNKS:
                block = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError:
                        break
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """The technician deletes the file that filled the disk."""
        self.filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def read_only(self) -> None:
        self._mount(["-o", "remount,ro", str(self.root)])

    def read_write(self) -> None:
        self._mount(["-o", "remount,rw", str(self.root)])

    def unmount(self) -> None:
        subprocess.run([*_as_root(), _tool("umount"), "-l", str(self.root)], capture_output=True, timeout=60)
        if self._image is not None:
            self._image.unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(root: Path, size_kib: int = 8192, kind: str = "tmpfs") -> Iterator[SmallDisk]:
    disk = SmallDisk(root, size_kib, kind)
    try:
        yield disk
    finally:
        disk.unmount()
