"""Atomic file writes for configs, tokens and unit files: temp file, fsync, rename; nothing half-written."""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import tempfile
from pathlib import Path

from provisioning.errors import EXIT_BAD_INPUT, EXIT_PERMISSION, ProvisionError


def service_user_ids(user: str) -> tuple[int, int] | None:
    """(uid, gid) of the service user, or None when that user does not exist on this system."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    owner: tuple[int, int] | None = None,
    overwrite: bool = True,
) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The temp file gets ``mode`` (and ``owner``) before any byte is written, so a secret is never readable by
    others even for a moment. With ``overwrite=False`` an existing file is an error (exit 2).
    """
    path = Path(path)
    directory = path.parent
    if not overwrite and path.exists():
        raise ProvisionError(EXIT_BAD_INPUT, f"{path} already exists (use --force to replace it)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except PermissionError as exc:
        raise ProvisionError(EXIT_PERMISSION, f"cannot write in {directory}: {exc.strerror} (run as root?)") from None
    except OSError as exc:
        raise ProvisionError(EXIT_BAD_INPUT, f"cannot write in {directory}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except PermissionError as exc:
        tmp.unlink(missing_ok=True)
        raise ProvisionError(EXIT_PERMISSION, f"cannot write {path}: {exc.strerror} (run as root?)") from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise ProvisionError(EXIT_BAD_INPUT, f"cannot write {path}: disk full") from None
        raise ProvisionError(EXIT_BAD_INPUT, f"cannot write {path}: {exc.strerror}") from None
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    # the rename itself is durable only once the directory entry is on disk (power cut right after provision)
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
