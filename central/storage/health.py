"""Whether the central can store what nodes send now (a full disk, a database away): the storage failures since
the last upload stored, and the room left beside a SQLite file, for ``/health``, the console's banner and the
desk's channels. Real time, one record per process."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from central.storage.errors import StorageError, StorageIntegrityError

log = logging.getLogger("central.storage")
FAILING_AFTER_S = 10.0  # failures spanning this long with no upload stored between them: the central is failing
SAY_EVERY_S = 60.0  # while failing, the log says so once a minute, not once per refused request
FULL_BELOW_BYTES = 1024 * 1024  # less room than this beside a SQLite file: it cannot open (WAL index, journal)
LOW_BELOW_BYTES = 1024**3  # room is low below 1 GiB or 5% of the disk, whichever is more
LOW_BELOW_SHARE = 0.05


class StorageHealth:
    """Storage errors and node uploads, as they happen.

    Every engine error but a refused constraint is logged (``failed``): the first at once, then a line a minute
    with how many came meanwhile, not a line per refused request. Whether the central is *failing* is judged on
    node uploads alone (``refused``, ``stored``): refused uploads going on for FAILING_AFTER_S with none stored since the first.
    One transient error (a lock held too long) is not news, nor a background job's own trouble while uploads are
    stored; a full disk is, within seconds of the nodes' retries.
    ``folder`` (SQLite: the database's) is where the room left is watched; PostgreSQL's disk is the server's.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self.first_refused: float | None = None  # since the last upload stored
        self.last_refused: float | None = None
        self.last_error = ""
        self.last_stored: float | None = None
        self._refused = 0  # since the last upload stored
        self._errors = 0  # since the log last said
        self._said = -SAY_EVERY_S

    def failed(self, exc: StorageError) -> StorageError:
        """Log ``exc`` (unless it is a constraint's refusal, which is about the data; the caller logs those) at
        most once a minute, and return it."""
        if isinstance(exc, StorageIntegrityError):
            return exc
        now = time.monotonic()
        with self._lock:
            self._errors += 1
            say, count, since = now - self._said >= SAY_EVERY_S, self._errors, self._said
            if say:
                self._said, self._errors = now, 0
        if say and count == 1:
            log.error("storage error: %s: %s", type(exc).__name__, exc)
        elif say:
            log.error("storage errors: %d in the last %.0f s (nodes keep their events); the last: %s: %s",
                      count, now - since, type(exc).__name__, exc)  # fmt: skip
        return exc

    def refused(self, exc: StorageError) -> None:
        """A node's upload was answered 503 for ``exc`` (in storing it, or before: its token could not be read)."""
        if isinstance(exc, StorageIntegrityError):
            return
        with self._lock:
            now = time.time()
            self.first_refused = self.first_refused or now
            self.last_refused, self.last_error = now, str(exc)
            self._refused += 1

    def stored(self) -> None:
        """A node's upload (events, a heartbeat) was committed. (A refusal is counted where it is answered,
        ``refused``: the database away fails the token's read before the upload's.)"""
        now = time.time()
        with self._lock:
            since, count = self.first_refused, self._refused
            self.last_stored, self.first_refused, self._refused = now, None, 0
        if since is not None and count > 1:
            log.warning("storage works again: an upload was stored after %d refused in %.0f s", count, now - since)

    def failing(self) -> bool:
        with self._lock:
            first, last = self.first_refused, self.last_refused
        return first is not None and last is not None and last - first >= FAILING_AFTER_S

    def room(self) -> dict[str, Any] | None:
        """The disk under ``folder``: ``free_bytes``, ``size_bytes`` and whether that is ``low``; None unknown."""
        try:
            usage = shutil.disk_usage(self.folder) if self.folder is not None else None
        except OSError:
            return None
        if usage is None:
            return None
        low = usage.free < max(LOW_BELOW_BYTES, LOW_BELOW_SHARE * usage.total)
        return {"free_bytes": usage.free, "size_bytes": usage.total, "low": low}

    def to_json(self) -> dict[str, Any]:
        """``state`` (``ok`` or ``failing``), and while failing ``since``, the ``error`` and a ``reason`` code;
        ``disk`` (``room()``) where it is known."""
        with self._lock:
            first, error, stored = self.first_refused, self.last_error, self.last_stored
        disk = self.room()
        said: dict[str, Any] = {"state": "ok", "last_stored": stored}
        if self.failing():
            said = {"state": "failing", "since": first, "reason": reason(error), "error": error, "last_stored": stored}
        return {**said, "disk": disk} if disk is not None else said


def reason(error: str) -> str:
    """What an engine's message says went wrong, as a code the console has words for."""
    text = error.lower()
    for code, signs in REASON_SIGNS:
        if any(sign in text for sign in signs):
            return code
    return "other"


REASON_SIGNS = (
    ("disk_full", ("disk is full", "no space left", "could not extend file", "disk full")),
    ("read_only", ("readonly", "read-only", "read only")),
    ("damaged", ("malformed", "not a database", "corrupt")),
    ("unreachable", ("connection", "connect", "pooltimeout", "closed", "terminat", "shut down")),
)


def full_disk_hint(folder: Path) -> str:
    """For a start that failed: what to do when ``folder``'s filesystem has (almost) no room left; else ''.
    SQLite says only "disk I/O error" when it cannot make its WAL index on a full disk."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return ""
    if usage.free >= FULL_BELOW_BYTES:
        return ""
    return (
        f". The disk holding {folder} is full ({usage.free:,} bytes free of {usage.total:,}): free space there"
        " (never the database's own -wal or -shm files) and start again; the nodes keep their events meanwhile"
    )
