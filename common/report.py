"""What the node reports about itself: the periodic self-test (EN 81-28's automatic test call) and the
heartbeat body, from the facts the uploader and the outbox hold; ``run_selftest`` also stores the report."""

from __future__ import annotations

import importlib.metadata
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from common.clock import Clock
from common.config import NodeConfig
from common.events import Event, make_event
from common.outbox import Outbox, OutboxError

log = logging.getLogger("common.sync")  # the uploader's log, where the self-test was always reported


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


def selftest_report(
    *,
    integrity: str,
    storage: str,
    token_present: bool,
    clock: Clock,
    last_upload_ok_wall: float | None,
    extra: Any,
    interval_h: float,
) -> dict[str, Any]:
    """The self-test: the outbox's integrity check and whether the disk takes its writes, the token file, the clock, the last good upload and the
    role's own checks (``extra``, a mapping of name -> result, False meaning failed). An unsynced clock is
    reported, not a failure: events carry clock_synced and each upload carries the node's wall time."""
    checks: dict[str, Any] = {
        "outbox_integrity": integrity,
        "outbox_storage": storage,
        "token_present": token_present,
        "clock_synced": clock.wall_synced(),
        "last_upload_ok_wall": last_upload_ok_wall,
    }
    if isinstance(extra, Mapping):
        checks.update(extra)
    ok = integrity == "ok" and storage == "ok" and all(v is not False for k, v in checks.items() if k != "clock_synced")
    return {"ok": bool(ok), "checks": checks, "interval_h": interval_h}


def selftest_event(node_id: str, clock: Clock, report: Mapping[str, Any]) -> Event:
    """The self-test as a durable state event (so it arrives after an outage too)."""
    return make_event(
        node_id,
        "selftest",
        wall_time=clock.wall(),
        clock_synced=clock.wall_synced(),
        severity="info" if report["ok"] else "warning",
        priority="state",
        payload=report,
    )


def run_selftest(
    outbox: Outbox, config: NodeConfig, clock: Clock, last_upload_ok_wall: float | None, extra: Any
) -> dict[str, Any]:
    """Run the self-test, store it in the outbox as a durable event (a failure to store it fails the test) and
    log it; returns the report with its wall time, for the heartbeat."""
    central = config.central
    report = selftest_report(
        integrity=outbox.check(),
        storage=outbox.stats()["storage"],
        token_present=central.token_file.exists(),
        clock=clock,
        last_upload_ok_wall=last_upload_ok_wall,
        extra=extra,
        interval_h=central.selftest_interval_h,
    )
    ok = report["ok"]
    try:
        outbox.put(selftest_event(config.node.id, clock, report))
    except (OutboxError, sqlite3.Error) as exc:
        report["ok"] = False
        report["checks"]["outbox_writable"] = f"{type(exc).__name__}: {exc}"
        log.error("self-test: cannot store the report: %s", exc)
    report["at_wall"] = clock.wall()
    (log.info if ok else log.warning)("self-test %s: %s", "ok" if ok else "FAILED", report["checks"])
    return report


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
