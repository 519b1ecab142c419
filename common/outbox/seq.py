"""Sequence numbers that only grow, never handed out twice, even across crashes or a replaced database.

Numbers are handed out from memory and reserved ahead in blocks: the reservation is written to a small side
file (``outbox.sqlite.seq``) first, then to the database. The side file is overwritten in place (no new disk
block needed), so a reservation is kept even on a full disk, and it outlives a database that had to be
replaced. A crash leaves at most one block of unused numbers, reported by the next start (outbox_resumed)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from common.files import fsync_path

log = logging.getLogger("common.outbox")

SEQ_BLOCK_MIN = 64
_MARK_WIDTH = 20


class SeqCounter:
    """``take()`` the next number; ``reserve()`` when ``needs_reservation()``; ``reserved`` is on disk."""

    def __init__(self, mark_path: Path, block: int, margin: int) -> None:
        self.mark_path = mark_path
        self.block = max(SEQ_BLOCK_MIN, block)
        self.margin = margin  # numbers a reading window may take before its commit
        self.next = 1
        self.reserved = 1  # every number below this is reserved on disk
        self.floor = 0  # the highest number acknowledged and deleted (kept with each reservation)
        self._mark_warned = False

    def start_after(self, *tops: int) -> None:
        """Continue at the highest number any source gives (database, side file, salvage); never lower."""
        self.next = max(self.next, *tops, 1)
        self.reserved = self.next

    def take(self) -> int:
        seq = self.next
        self.next += 1
        return seq

    def needs_reservation(self) -> bool:
        return self.next + self.margin >= self.reserved

    def reserve(self) -> int:
        """Reserve the next block: the side file first (an upper bound even if the database write fails)."""
        self.reserved = self.next + self.block
        self.write_mark(self.reserved)
        return self.reserved

    def read_mark(self) -> int:
        try:
            return int(self.mark_path.read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            return 0

    def write_mark(self, value: int) -> None:
        """Overwrite the side file in place: one fixed-width record inside one block, fsynced."""
        text = f"{value:0{_MARK_WIDTH}d}\n".encode("ascii")
        created = not self.mark_path.exists()
        try:
            fd = os.open(self.mark_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.pwrite(fd, text, 0)
                os.ftruncate(fd, len(text))
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    fsync_path(self.mark_path.parent)
            self._mark_warned = False
        except OSError as exc:
            if not self._mark_warned:
                self._mark_warned = True
                log.warning("outbox: cannot write %s: %s", self.mark_path, exc)
