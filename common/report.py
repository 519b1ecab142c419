"""What the node reports about itself in each heartbeat, from the facts the uploader and the outbox hold (the
self-test, which the heartbeat carries, is common/selftest.py)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any

from common.clock import Clock
from common.config import NodeConfig


def package_version() -> str:
    """The installed software's version (what the heartbeat and the dead-letter resend go by)."""
    try:
        return importlib.metadata.version("changbai-nodes")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


# the outbox figures the heartbeat carries beside depth, dropped and dead letters
OUTBOX_FIELDS = (
    "uncommitted_readings",
    "db_bytes",
    "db_limit_bytes",
    "corrupt_recoveries",
    "volatile",
    "next_seq",
    "storage",
    "unstored",
    "reserve_bytes",
)


def heartbeat_body(
    config: NodeConfig,
    clock: Clock,
    *,
    outbox_stats: Mapping[str, Any],
    health: Mapping[str, Any],
    uptime_s: float,
    version: str,
    selftest: Mapping[str, Any] | None,
    sync: Mapping[str, Any],
) -> dict[str, Any]:
    """The heartbeat: uptime, version, outbox depth per priority, dropped, dead letters, last sensor read,
    clock state, sync status, last self-test, and the node's own health fields."""
    return {
        "node_id": config.node.id,
        "role": config.node.role,
        "node_wall_time": clock.wall(),
        "clock_synced": clock.wall_synced(),
        "uptime_s": round(uptime_s, 1),
        "version": version,
        "outbox_depth": outbox_stats["depth"],
        "dropped": outbox_stats["dropped"],
        "dead_letters": outbox_stats["dead_letters"],
        "last_sensor_read": health.get("last_sensor_read"),
        "selftest": selftest,
        "outbox": {k: outbox_stats[k] for k in OUTBOX_FIELDS if k in outbox_stats},
        "sync": dict(sync),
        "health": dict(health),
    }
