"""Crash-safe file writes: a reader, or a node after a power cut, sees the old file or the whole new one; and
folders in memory for what a node must write to start when its card is full or read-only."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder: a rename or a removal in a folder is durable only once the folder is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes, *, mode: int = 0o600, owner: tuple[int, int] | None = None) -> None:
    """Write ``data`` to ``path``: temp file in the same folder (given ``mode``/``owner`` before any byte is
    written, so a secret is never readable by others), fsync, rename, fsync of the folder. Raises OSError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def sync_tree(root: Path) -> None:
    """Make every file and folder under ``root``, and ``root``'s own entry in its parent, durable. For trees
    written by other code (pip, tarfile) that never fsyncs: after a power cut, ext4's delayed allocation leaves
    such files zero bytes long for up to half a minute after they were written. ``os.sync()`` first lets the
    kernel write everything in one pass (cheap on an SD card); the fsyncs after it then cost little and are what
    a file system that ignores sync(2), or a checker, sees per file."""
    os.sync()
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if not path.is_symlink():  # a link's target is in its folder's metadata, made durable with the folder
                fsync_path(path)
        fsync_path(Path(folder))
    fsync_path(Path(root).parent)


def memory_folder(purpose: str) -> Path:
    """A private folder in memory (/dev/shm, else the temporary folder) for ``purpose``: for files a node can make
    again at every start (a font face taken out of a collection, Kivy's settings), never for data to keep."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())
    folder = base / f"changbai-{purpose}-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def writable_folder(preferred: Path, purpose: str) -> Path:
    """``preferred`` (made when missing) when a file can be made in it, else ``memory_folder(purpose)`` with a
    warning: a read-only or broken card must not keep a node from starting."""
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        probe = preferred / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return preferred
    except OSError as exc:
        folder = memory_folder(purpose)
        log.warning(
            "%s cannot be written (%s): %s goes to %s in memory", preferred, exc.strerror or exc, purpose, folder
        )
        return folder
