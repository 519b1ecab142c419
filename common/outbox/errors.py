"""The outbox's exceptions, and the one place that tells a damaged database from a disk that refuses writes:
corruption is recovered by moving the file aside; an I/O fault (full, read-only, failing card) never is, the
events then wait in memory until the disk takes them again."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from typing import Literal

Fault = Literal["corrupt", "io"]

_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# a disk that is full, read-only, failing or busy (another process writes): the file itself is fine
_IO_CODES = {
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
}
_IO_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOENT}


class OutboxError(Exception):
    """The outbox cannot do what was asked (closed, in use by another process, an error it cannot handle)."""


class CheckFailed(sqlite3.DatabaseError):
    """SQLite's quick_check found the database damaged."""


def sqlite_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of an error (extended codes folded), or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def fault_of(exc: BaseException) -> Fault | None:
    """``corrupt`` for a damaged file, ``io`` for a disk that refuses (SQLITE_FULL, IOERR, READONLY, CANTOPEN,
    BUSY; ENOSPC, EROFS, EIO), None for anything else (a bug to report, not a disk to work around)."""
    if isinstance(exc, CheckFailed):
        return "corrupt"
    if isinstance(exc, sqlite3.Error):
        code = sqlite_code(exc)
        if code in _CORRUPT_CODES:
            return "corrupt"
        if code in _IO_CODES:
            return "io"
        if code is None:  # an error raised without a code (older Python): its text is all there is
            text = str(exc)
            if "malformed" in text or "not a database" in text:
                return "corrupt"
            if "disk" in text or "readonly" in text or "unable to open" in text or "locked" in text:
                return "io"
        return None
    if isinstance(exc, OSError) and exc.errno in _IO_ERRNOS:
        return "io"
    return None


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the rollback's own error is not the story)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
