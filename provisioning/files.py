"""Atomic file writes for configs, tokens and unit files: temp file, fsync, rename; nothing half-written."""

from __future__ import annotations

import errno
import pwd
from pathlib import Path

from common.files import write_atomic
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
    if not overwrite and path.exists():
        raise ProvisionError(EXIT_BAD_INPUT, f"{path} already exists (use --force to replace it)")
    try:
        write_atomic(path, data, mode=mode, owner=owner)
    except PermissionError as exc:
        raise ProvisionError(EXIT_PERMISSION, f"cannot write {path}: {exc.strerror} (run as root?)") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ProvisionError(EXIT_BAD_INPUT, f"cannot write {path}: disk full") from None
        raise ProvisionError(EXIT_BAD_INPUT, f"cannot write {path}: {exc.strerror}") from None
