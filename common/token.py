"""The node's token file, read fresh before each upload (a rotated token is picked up without a restart):
missing, empty or unreadable is a clear problem, never an exception; a mode readable by others is warned about
once per mode. The token itself is never logged."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

log = logging.getLogger("common.sync")


class TokenFile:
    """``read()`` returns the token, or None with ``problem`` saying why (for logs and the heartbeat)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: str | None = None
        self._mode_warned: int | None = None

    def read(self) -> str | None:
        path = self.path
        try:
            mode = path.stat().st_mode
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            self.problem = f"token file {path} does not exist (provision the node)"
            return None
        except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
            self.problem = f"token file {path} unreadable: {type(exc).__name__}"
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO) and self._mode_warned != mode:
            self._mode_warned = mode
            log.warning("token file %s is readable by others (mode %o); it should be 0600", path, mode & 0o777)
        if not token:
            self.problem = f"token file {path} is empty"
            return None
        self.problem = None
        return token
