"""The periodic self-test (EN 81-28's automatic test call, at least every 3 days): its checks, its report as a
durable ``selftest`` event, and when it is due. The uploader's loop runs it when due (``SelfTest.run_if_due``),
offline too; the last report goes into the heartbeat and the health file."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from common.clock import Clock
from common.config import NodeConfig
from common.events import Event, make_event
from common.outbox import Outbox, OutboxError

log = logging.getLogger("common.sync")  # the uploader's log, where the self-test was always reported


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
        clock=clock,
        severity="info" if report["ok"] else "warning",
        priority="state",
        payload=report,
    )


class SelfTest:
    """When the self-test is due (at start, then every ``[central] selftest_interval_h``) and its last report."""

    def __init__(self, config: NodeConfig, outbox: Outbox, clock: Clock) -> None:
        self._config = config
        self._outbox = outbox
        self._clock = clock
        self.next_at = clock.monotonic()
        self.last: dict[str, Any] | None = None  # with its ``at_wall``, for the heartbeat and the health file

    def run_if_due(self, now: float, last_upload_ok_wall: float | None, extra: Callable[[], Any]) -> bool:
        """Run it when due (``extra()``: the role's own checks, name -> result); True when it ran."""
        if now < self.next_at:
            return False
        self.next_at = now + self._config.central.selftest_interval_h * 3600.0
        self.last = self.run(last_upload_ok_wall, extra())
        return True

    def run(self, last_upload_ok_wall: float | None, extra: Any) -> dict[str, Any]:
        """Run the self-test, store it in the outbox as a durable event (a failure to store it fails the test)
        and log it; returns the report with its wall time."""
        central, clock, outbox = self._config.central, self._clock, self._outbox
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
            outbox.put(selftest_event(self._config.node.id, clock, report))
        except (OutboxError, sqlite3.Error) as exc:
            report["ok"] = False
            report["checks"]["outbox_writable"] = f"{type(exc).__name__}: {exc}"
            log.error("self-test: cannot store the report: %s", exc)
        report["at_wall"] = clock.wall()
        (log.info if ok else log.warning)("self-test %s: %s", "ok" if ok else "FAILED", report["checks"])
        return report
