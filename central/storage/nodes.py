"""Nodes: registration and token hashes, health, and reads that cost a page (a filter, a cursor, a limit)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from central.jsonvalues import load_stored
from central.storage import queries as q
from central.storage.alerts import apply_silent, silent_alert_id
from central.storage.changes import append_change
from central.storage.database import Database, Tx, any_of
from central.storage.errors import Conflict, NotFound
from central.storage.rows import dumps, node_row, token_hash
from central.storage.seqs import gaps, load_ranges

NodeStatus = Literal["all", "stale", "lost_events", "attention"]


@dataclass(frozen=True)
class NodeFilter:
    """Which nodes a page holds: ``site`` (or ``sites``), ``role``, and ``status``: ``stale`` (not heard from since
    ``stale_before``), ``lost_events`` (seq numbers missing), ``attention`` (either)."""

    site: str | None = None
    role: str | None = None
    status: NodeStatus = "all"
    stale_before: float = 0.0
    sites: Collection[str] | None = None  # only these sites (an operator's); None: all

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.site:
            clauses.append("site = ?")
            args.append(self.site)
        if self.sites is not None:
            wanted = sorted(self.sites)
            clauses.append(f"site IN ({', '.join('?' * len(wanted))})" if wanted else "1 = 0")
            args += wanted
        if self.role:
            clauses.append("role = ?")
            args.append(self.role)
        stale = "(last_seen_at IS NULL OR last_seen_at < ?)"
        if self.status == "stale":
            clauses.append(stale)
            args.append(self.stale_before)
        elif self.status == "lost_events":
            clauses.append(q.LOSING)
        elif self.status == "attention":
            clauses.append(f"({stale} OR {q.LOSING})")
            args.append(self.stale_before)
        return " AND ".join(clauses) or "1 = 1", args


def mark_seen(tx: Tx, node_id: str, now: float, stale_after_s: float) -> None:
    """The node was heard from now; a node silent until now (or never heard) goes on the feed as ``back``, and
    the central's ``node_silent`` alert for that silence is cleared."""
    before = tx.scalar(q.NODE_LAST_SEEN, (node_id,))
    tx.execute(q.TOUCH_NODE, (now, node_id))
    if before is None or before < now - stale_after_s:
        append_change(tx, now, "node", node_id, "back", {"last_seen_at": now, "silent_since": before})
        if before is not None:
            apply_silent(tx, node_id, silent_alert_id(before), "cleared", {"heard_at": now}, now)


class NodeBook:
    """The registered nodes."""

    def __init__(self, db: Database, stale_after_s: float) -> None:
        self.db = db
        self.stale_after_s = stale_after_s

    def register(self, fields: Mapping[str, Any], token: str, now: float) -> bool:
        """Create the node or replace its token (and details); returns True when it was new.

        Raises Conflict when the node id is already registered at another site.
        """
        node_id = fields["node_id"]
        values = (
            fields["role"],
            fields["site"],
            fields.get("area", ""),
            fields.get("location", ""),
            fields.get("pickup_point", ""),
            dumps(fields.get("contacts", {})),
            token_hash(token),
        )
        with self.db.write() as tx:
            row = tx.one(q.NODE_SITE, (node_id,))
            if row is not None and row["site"] != fields["site"]:
                raise Conflict(f"node {node_id!r} is registered at site {row['site']!r}")
            if row is None:
                tx.execute(q.INSERT_NODE, (*values, node_id, now, now))
            else:
                tx.execute(q.REREGISTER_NODE, (*values, now, node_id))
            change = {"site": fields["site"], "role": fields["role"], "location": fields.get("location", "")}
            append_change(tx, now, "node", node_id, "registered" if row is None else "reregistered", change)
        return row is None

    def for_token(self, token: str) -> dict[str, Any] | None:
        """The node this token belongs to, or None (unknown node, rotated or wrong token)."""
        with self.db.read() as tx:
            row = tx.one(q.NODE_BY_TOKEN, (token_hash(token),))
        return node_row(row) if row else None

    def touch(self, node_id: str, now: float) -> None:
        with self.db.write() as tx:
            mark_seen(tx, node_id, now, self.stale_after_s)
        self.db.health.stored()

    def store_heartbeat(
        self, node_id: str, health: Mapping[str, Any], now: float, keep: Collection[str] | None = None
    ) -> dict[str, Any]:
        """Merge a heartbeat into the node's health: keys sent replace their last value, keys left out keep
        theirs (a partial heartbeat, e.g. a technician's self-test, does not blank the rest). Of the stored
        keys only those in ``keep`` survive (health stored before the keys were bounded shrinks). Returns it."""
        with self.db.write() as tx:
            row = tx.one(q.NODE_HEALTH, (node_id,))
            old = load_stored(row["health"] if row else None, {})
            old = {k: v for k, v in old.items() if keep is None or k in keep} if isinstance(old, dict) else {}
            merged = {**old, **health, "received_at": now}
            tx.execute(q.STORE_HEALTH, (dumps(merged), now, node_id))
            mark_seen(tx, node_id, now, self.stale_after_s)
        self.db.health.stored()
        return merged

    def page(self, which: NodeFilter, after: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Nodes in node id order after ``after`` (the last id of the previous page), at most ``limit``."""
        where, args = which.where()
        if after is not None:
            where += " AND node_id > ?"
            args.append(after)
        with self.db.read() as tx:
            rows = tx.all(q.NODES_PAGE.format(where=where), (*args, limit))
        return [node_row(r) for r in rows]

    def every(self, which: NodeFilter) -> Iterator[dict[str, Any]]:
        """All the nodes ``which`` selects, read a page at a time (for jobs that need each one)."""
        after: str | None = None
        while True:
            found = self.page(which, after, 1000)
            yield from found
            if len(found) < 1000:
                return
            after = found[-1]["node_id"]

    def summary(self, stale_before: float) -> list[dict[str, Any]]:
        """Per site and role: how many nodes, how many stale, how many with lost events, events lost."""
        with self.db.read() as tx:
            return tx.all(q.NODE_SUMMARY, (stale_before,))

    def by_id(self, node_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The nodes with these ids (those that exist), by id: what an alert view needs, and nothing more."""
        found: dict[str, dict[str, Any]] = {}
        with self.db.read() as tx:
            for match, args in any_of(tx.engine, set(node_ids)):
                for row in tx.all(q.NODES_BY_ID.format(match=match), args):
                    found[row["node_id"]] = node_row(row)
        return found

    def get(self, node_id: str, gap_limit: int = 100) -> dict[str, Any]:
        """One node with its seq gaps as ranges (at most ``gap_limit`` of them)."""
        with self.db.read() as tx:
            row = tx.one(q.NODE_BY_ID, (node_id,))
            if row is None:
                raise NotFound(f"no node {node_id!r}")
        node = node_row(row)
        unused = load_ranges(row["unused_ranges"])
        node["seq_gaps"] = gaps(load_ranges(row["seq_ranges"]), gap_limit, unused)
        node["seq_unused_ranges"] = unused[-gap_limit:]
        return node
