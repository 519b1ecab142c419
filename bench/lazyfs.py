"""Power cuts under LazyFS (github.com/dsrhaslab/lazyfs): a FUSE file system that keeps every byte not fsynced in
a cache of its own and drops it on command, which is what a power cut does to the page cache. Not a dependency
of the project: bench/power_cut.py runs where a LazyFS binary is given (``$LAZYFS``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

CLEARED = "cache is cleared"


class LazyFSError(Exception):
    """LazyFS is missing, cannot mount, or did not answer a command; the message says which."""


class LazyFS:
    """One LazyFS mount: files written under ``mnt`` land in ``root`` only once fsynced (or evicted)."""

    def __init__(self, binary: Path, base: Path) -> None:
        if "-o" in str(base).lower():  # its argument parser takes a config path holding "-o" for an option
            raise LazyFSError(f"{base}: LazyFS cannot be given a path containing '-o'")
        if not os.access(binary, os.X_OK):
            raise LazyFSError(f"{binary}: no LazyFS program there (set LAZYFS to the built lazyfs binary)")
        self.binary, self.base = binary, base
        self.mnt, self.root = base / "mnt", base / "root"
        self.fifo, self.log = base / "faults.fifo", base / "lazyfs.log"
        self.config = base / "lazyfs.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        for folder in (self.mnt, self.root):
            folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f'[faults]\nfifo_path="{self.fifo}"\n[cache]\napply_eviction=false\n'
            '[cache.simple]\ncustom_size="256mb"\nblocks_per_page=1\n'
            f'[filesystem]\nlog_all_operations=false\nlogfile="{self.log}"\n'
        )

    def __enter__(self) -> LazyFS:
        self.mount()
        return self

    def __exit__(self, *exc: object) -> None:
        self.umount()

    def mount(self) -> None:
        args = [str(self.binary), str(self.mnt), "--config-path", str(self.config), "-o", "modules=subdir"]
        with open(self.base / "lazyfs.out", "ab") as out:
            self.proc = subprocess.Popen([*args, "-o", f"subdir={self.root}", "-f"], stdout=out, stderr=out)
        deadline = time.monotonic() + 60  # it allocates its cache first
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.base / "lazyfs.out").read_text(errors="replace")[-500:]
                raise LazyFSError(f"LazyFS did not mount {self.mnt}: {tail}")
            time.sleep(0.05)

    def reports_disk_size(self) -> bool:
        """False for a LazyFS without statfs (it then says 0 bytes free, and an updater refuses to install)."""
        return os.statvfs(self.mnt).f_blocks > 0

    def drop_unsynced(self) -> None:
        before = self.log.read_text(errors="replace").count(CLEARED) if self.log.exists() else 0
        with open(self.fifo, "w") as fifo:
            fifo.write("lazyfs::clear-cache\n")
        deadline = time.monotonic() + 30
        while self.log.read_text(errors="replace").count(CLEARED) == before:
            if time.monotonic() > deadline:
                raise LazyFSError("LazyFS did not clear its cache within 30 s")
            time.sleep(0.02)

    def cut(self, *procs: subprocess.Popen) -> None:
        """The power cut: the processes frozen, every unsynced byte dropped, the processes killed, and the file
        system mounted again (a reboot: nothing of the old cache is left)."""
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGSTOP)
        self.drop_unsynced()
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        self.umount()
        self.mount()

    def umount(self) -> None:
        if self.proc is None:
            return
        subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True, check=False)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.fifo.unlink(missing_ok=True)
