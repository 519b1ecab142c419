"""A pre-allocated file beside the outbox (``outbox.sqlite.reserve``), released when the disk fills, so that
the alert that found the disk full, and the deletes that make room, still have space for their WAL frames.
It is made again once the disk has twice its size free."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger("common.outbox")


class Reserve:
    """``ensure()`` makes the file when there is room; ``release()`` gives its space back to the disk."""

    def __init__(self, path: Path, size: int, name: str = "outbox") -> None:
        self.path = path
        self.size = size
        self.name = name  # whose reserve, for the log (the outbox's, the meter state's)
        self.releases = 0

    @property
    def present(self) -> bool:
        try:
            return self.size > 0 and self.path.stat().st_blocks * 512 >= self.size
        except OSError:
            return False

    def held_bytes(self) -> int:
        try:
            return self.path.stat().st_blocks * 512
        except OSError:
            return 0

    def ensure(self) -> bool:
        """Make the reserve if it is missing and the disk has twice its size free; True when it is there."""
        if self.size <= 0:
            return False
        if self.present:
            return True
        try:
            free = os.statvfs(self.path.parent)
        except OSError:
            return False
        if free.f_bavail * free.f_frsize < 2 * self.size:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                self._allocate(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("%s: cannot make the disk reserve %s: %s", self.name, self.path, exc)
            with contextlib.suppress(OSError):
                self.path.unlink()
            return False
        log.info("%s: disk reserve of %d bytes in place at %s", self.name, self.size, self.path)
        return True

    def _allocate(self, fd: int) -> None:
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            block = b"\0" * 65536  # a filesystem without fallocate: write the blocks
            for offset in range(0, self.size, len(block)):
                os.pwrite(fd, block[: self.size - offset], offset)

    def release(self) -> bool:
        """Give the reserve's space back to the disk; True when there was one to give."""
        if not self.path.exists():
            return False
        try:
            self.path.unlink()
        except OSError as exc:
            log.error("%s: cannot release the disk reserve %s: %s", self.name, self.path, exc)
            return False
        self.releases += 1
        log.critical("%s: THE DISK IS FULL; released the %d-byte reserve %s", self.name.upper(), self.size, self.path)
        return True
