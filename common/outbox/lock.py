"""One process per outbox: a second node process on the same file would hand out the same seq numbers.

Two locks, both dropped by the kernel when the process dies (a SIGKILL never leaves a stale lock): an abstract
unix socket named after the outbox path (needs no disk at all, so a full or read-only data dir still has
it), and an ``flock`` on ``outbox.sqlite.lock`` where the disk allows (it also holds across network
namespaces)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
from pathlib import Path

from common.outbox.errors import OutboxError

log = logging.getLogger("common.outbox")


def _socket_name(db_path: Path) -> str:
    """The socket lock's name: the outbox's path and the device and inode of its folder. An abstract socket is per
    network namespace, not per filesystem: two containers sharing the host's network, each with its own disk at
    the same path, locked each other out (seen running two nodes under systemd-nspawn on one host)."""
    resolved = db_path.resolve()
    with contextlib.suppress(OSError):
        resolved.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder = os.stat(resolved.parent)
        where = f"{resolved}:{folder.st_dev}:{folder.st_ino}"
    except OSError:
        where = str(resolved)
    return "\0changbai-outbox-" + hashlib.sha256(where.encode()).hexdigest()[:32]


class ProcessLock:
    """Held from construction until ``release()``; raises OutboxError when another process holds it."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        busy = f"outbox {db_path} is in use by another process (is the node already running?)"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.bind(_socket_name(db_path))
        except OSError:
            self._sock.close()
            raise OutboxError(busy) from None
        self._fd = self._file_lock()
        if self._fd == -2:
            self._sock.close()
            raise OutboxError(busy)

    def _file_lock(self) -> int:
        """The flock's descriptor; -1 when the disk allows no lock file (the socket lock then stands alone)."""
        fd = -1
        for flags in (os.O_CREAT | os.O_RDWR, os.O_RDONLY):  # read-only still takes an flock on an existing file
            try:
                with contextlib.suppress(OSError):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, flags | os.O_CLOEXEC, 0o600)
                break
            except OSError as exc:
                log.debug("outbox lock file %s: %s", self.path, exc)
        if fd < 0:
            log.warning(
                "outbox: no lock file possible at %s (full or read-only disk); the socket lock holds", self.path
            )
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return -2
        return fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # the kernel drops the flock with the descriptor
            self._fd = -1
        self._sock.close()
