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

from central.jsonvalues import load_stored
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
    unused: Ranges = field(default_factory=list)  # numbers the node said it never stored
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

    def not_stored(self, first: object, last: object, own_seq: object) -> None:
        """The node's ``outbox_resumed`` (numbered ``own_seq``) says ``first..last`` were never stored: numbers
        reserved before an unclean stop. Only numbers below the report's own are taken (it is numbered after the
        gap it reports); a malformed report changes nothing, so its numbers stay missing."""
        if type(first) is not int or type(last) is not int or type(own_seq) is not int:  # JSON: no bools, floats
            return
        last = min(last, own_seq - 1)
        if 1 <= first <= last:
            self.unused = merged(self.unused, [[first, last]])

    @property
    def max_seq(self) -> int:
        return self.ranges[-1][1] if self.ranges else 0

    @property
    def received(self) -> int:
        """How many distinct numbers arrived."""
        return sum(b - a + 1 for a, b in self.ranges)

    @property
    def unused_count(self) -> int:
        """How many numbers up to the highest seen never arrived and were said never stored."""
        if not self.unused:
            return 0
        return sum(b - a + 1 for a, b in accounted(self.ranges, self.unused)) - self.received

    @property
    def missing(self) -> int:
        """Lost events: numbers up to the highest seen that never arrived and were not said never stored."""
        return self.max_seq - self.received - self.unused_count


def merged(*lists: Ranges) -> Ranges:
    """The union of range lists, as sorted ranges that neither overlap nor touch."""
    out: Ranges = []
    for first, last in sorted(r for ranges in lists for r in ranges):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return out


def accounted(ranges: Ranges, unused: Ranges) -> Ranges:
    """The numbers received, and those said never stored up to the highest received, as one list of ranges."""
    top = ranges[-1][1] if ranges else 0
    return merged(ranges, [[a, min(b, top)] for a, b in unused if a <= top])


def gaps(ranges: Ranges, limit: int, unused: Ranges | None = None) -> Ranges:
    """The missing numbers as ``[first, last]`` ranges, lowest first, at most ``limit`` of them: those below the
    highest received, neither received nor in ``unused``."""
    if unused:
        ranges = accounted(ranges, unused)
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


def add_unused_columns(tx: Tx) -> None:
    """Core migration 6: the numbers nodes said they never stored (``unused_ranges``, ``seqs_unused``), filled from
    the ``outbox_resumed`` events still stored, and the summary's index with the new count."""
    integer = "BIGINT" if tx.engine == "postgresql" else "INTEGER"
    tx.execute("ALTER TABLE nodes ADD COLUMN unused_ranges TEXT NOT NULL DEFAULT '[]'")
    tx.execute(f"ALTER TABLE nodes ADD COLUMN seqs_unused {integer} NOT NULL DEFAULT 0")
    books: dict[str, SeqBook] = {}
    for row in tx.all("SELECT node_id, seq, payload FROM events WHERE kind = 'outbox_resumed' ORDER BY row"):
        node_id = row["node_id"]
        if node_id not in books:
            books[node_id] = SeqBook(
                load_ranges(tx.scalar("SELECT seq_ranges FROM nodes WHERE node_id = ?", (node_id,)))
            )
        payload = load_stored(row["payload"], {})
        if isinstance(payload, dict):
            books[node_id].not_stored(payload.get("seq_not_stored_from"), payload.get("seq_not_stored_to"), row["seq"])
    for node_id, book in books.items():
        tx.execute(
            "UPDATE nodes SET unused_ranges = ?, seqs_unused = ? WHERE node_id = ?",
            (dump_ranges(book.unused), book.unused_count, node_id),
        )
    tx.execute("DROP INDEX nodes_summary")
    tx.execute("CREATE INDEX nodes_summary ON nodes (site, role, last_seen_at, max_seq, seqs_received, seqs_unused)")
