"""A node's sequence numbers as ranges: which numbers arrived, kept on its ``nodes`` row as ``[[first, last], ...]``
and updated once per batch (issue 15), so neither an event nor ``GET /nodes/{id}`` reads the node's events.

A node numbers its events 1, 2, 3, ...; a number up to the highest seen that never arrived is a lost event (a
gap); a number that arrives again under another event id is a conflict (the node reused it, e.g. its outbox was
replaced): counted, never hidden, and not counted as received twice.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from central.storage.database import Tx

Ranges = list[list[int]]


def load_ranges(text: str | None) -> Ranges:
    """The stored ranges (``'[]'`` or NULL: none); anything unreadable counts as none (the next batch rebuilds
    from what it brings, and the gap report says so by showing everything below as missing)."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [[int(a), int(b)] for a, b in value if isinstance(a, int) and isinstance(b, int) and 1 <= a <= b]


def dump_ranges(ranges: Ranges) -> str:
    return json.dumps(ranges, separators=(",", ":"))


@dataclass
class SeqBook:
    """A node's ranges while a batch is applied: ``add`` each newly stored event's seq, then store ``ranges``."""

    ranges: Ranges = field(default_factory=list)
    conflicts: int = 0
    added: int = 0

    def add(self, seq: int | None) -> None:
        """A newly stored event's number: received, or a conflict when it already was."""
        if seq is None or seq < 1:
            return
        starts = [r[0] for r in self.ranges]
        i = bisect.bisect_right(starts, seq) - 1  # the range starting at or before seq
        if i >= 0 and self.ranges[i][1] >= seq:
            self.conflicts += 1
            return
        self.added += 1
        joins_left = i >= 0 and self.ranges[i][1] == seq - 1
        joins_right = i + 1 < len(self.ranges) and self.ranges[i + 1][0] == seq + 1
        if joins_left and joins_right:
            self.ranges[i][1] = self.ranges[i + 1][1]
            del self.ranges[i + 1]
        elif joins_left:
            self.ranges[i][1] = seq
        elif joins_right:
            self.ranges[i + 1][0] = seq
        else:
            self.ranges.insert(i + 1, [seq, seq])

    def add_all(self, seqs: Iterable[int | None]) -> None:
        for seq in seqs:
            self.add(seq)

    @property
    def max_seq(self) -> int:
        return self.ranges[-1][1] if self.ranges else 0

    @property
    def received(self) -> int:
        """How many distinct numbers arrived."""
        return sum(b - a + 1 for a, b in self.ranges)

    @property
    def missing(self) -> int:
        return self.max_seq - self.received


def gaps(ranges: Ranges, limit: int) -> Ranges:
    """The missing numbers as ``[first, last]`` ranges, lowest first, at most ``limit`` of them."""
    out: Ranges = []
    expected = 1
    for first, last in ranges:
        if len(out) >= limit:
            break
        if first > expected:
            out.append([expected, first - 1])
        expected = last + 1
    return out


# per node, the ranges of numbers among its stored events (for the migration that made the ranges)
ISLANDS = (
    "SELECT node_id, MIN(seq) AS first, MAX(seq) AS last FROM (SELECT node_id, seq, seq - ROW_NUMBER() OVER"
    " (PARTITION BY node_id ORDER BY seq) AS island FROM (SELECT DISTINCT node_id, seq FROM events WHERE seq >= 1)"
    " AS d) AS i GROUP BY node_id, island ORDER BY node_id, first"
)


def add_ranges_column(tx: Tx) -> None:
    """Core migration 3: the ``seq_ranges`` column, filled from the events already stored."""
    tx.execute("ALTER TABLE nodes ADD COLUMN seq_ranges TEXT NOT NULL DEFAULT '[]'")
    per_node: dict[str, Ranges] = {}
    for row in tx.all(ISLANDS):
        per_node.setdefault(row["node_id"], []).append([int(row["first"]), int(row["last"])])
    for node_id, ranges in per_node.items():
        book = SeqBook(ranges)
        tx.execute(
            "UPDATE nodes SET seq_ranges = ?, max_seq = ?, seqs_received = ? WHERE node_id = ?",
            (dump_ranges(ranges), book.max_seq, book.received, node_id),
        )
