"""The node run loop shared by every role: outbox + alert book + uploader, signals, systemd notify and watchdog.

``NodeRuntime(config).run(tick, interval_s)`` calls ``tick(now)`` every ``interval_s`` of the clock, pings the
systemd watchdog only while that loop is alive, survives a tick that raises (logged, counted, and an exception
storm raises a ``node_fault`` alert), and stops gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from common.acks import Acknowledgements
from common.alerts import DEFAULT_RENOTIFY_S, AlertBook, adopt_legacy_copy
from common.catalogue import Priority, Severity
from common.clock import Clock, SystemClock, wait_on_clock
from common.config import NodeConfig
from common.events import Detection, Event, make_event
from common.health_file import HealthFile
from common.outbox import Outbox, OutboxError
from common.sync import Uploader

log = logging.getLogger(__name__)

# this many tick exceptions within the window is a storm: the node is not doing its job, say so loudly
STORM_COUNT = 10
STORM_WINDOW_S = 60.0
STORM_CLEAR_S = 300.0
FAULT_RECIPIENTS = ("maintenance",)
OUTBOX_FILE = "outbox.sqlite"

_notify_warned = False


def outbox_path(config: NodeConfig) -> Path:
    """Where a node keeps its outbox: ``state_dir/outbox.sqlite``."""
    return config.state_dir / OUTBOX_FILE


def systemd_notify(message: str) -> bool:
    """Send one sd_notify message (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=...``) to
    $NOTIFY_SOCKET over a unix datagram socket. False when not run by systemd or the send failed."""
    global _notify_warned
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket namespace
    elif not address.startswith("/"):
        if not _notify_warned:
            _notify_warned = True
            log.warning("systemd notify: unsupported NOTIFY_SOCKET address %r", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        if not _notify_warned:
            _notify_warned = True
            log.warning("systemd notify to %s failed: %s: %s", os.environ.get("NOTIFY_SOCKET"), type(exc).__name__, exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec (from $WATCHDOG_USEC), or None when no watchdog is set for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("systemd watchdog: WATCHDOG_USEC=%r is not a number", usec)
        return None
    return value / 2e6 if value > 0 else None


class NodeRuntime:
    """Everything a node role needs besides its hardware and its detector.

    ``outbox`` (state_dir/outbox.sqlite), ``alerts`` (AlertBook), ``uploader`` (Uploader). Roles call
    ``emit(detection)`` for detector output, ``record_reading`` for measurements and ``set_health`` for the
    heartbeat, and either ``run(tick, interval_s)`` or ``start()``/``stop()`` around their own loop.
    """

    def __init__(
        self, config: NodeConfig, clock: Clock | None = None, *, renotify_s: float = DEFAULT_RENOTIFY_S
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.node_id = config.node.id
        self.state_dir = config.state_dir
        try:
            self.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as exc:  # a full or read-only disk: the node runs on, its outbox keeps events in memory
            log.critical("cannot create the state folder %s: %s; running without disk", self.state_dir, exc)
        self.outbox = Outbox(outbox_path(config), config.outbox, self.clock, node_id=self.node_id)
        try:
            adopt_legacy_copy(self.state_dir, self.outbox)  # an older version's alerts.json, once
        except (OutboxError, sqlite3.Error) as exc:  # the copy stays; the next start tries again
            log.error("cannot take over the old alerts.json: %s: %s", type(exc).__name__, exc)
        self.alerts = AlertBook(self.node_id, self.clock, self.outbox, renotify_s=renotify_s)
        self.uploader = Uploader(config, self.outbox, self.clock, health=self.health)
        self.acks = Acknowledgements(self.alerts, config.central, self.uploader.api_url)
        self.uploader.acks = self.acks  # the node role sets acks.on_taken_in to tell the person waiting
        try:
            self.outbox.resend_after_upgrade(self.uploader.version)
        except (OutboxError, sqlite3.Error) as exc:  # the dead letters stay; the next start tries again
            log.error("cannot queue the dead letters again after the upgrade: %s: %s", type(exc).__name__, exc)
        self._health_lock = threading.Lock()
        self._health: dict[str, Any] = {}
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self.ticks = 0
        self.tick_errors = 0
        self._error_times: collections.deque[float] = collections.deque()
        self._last_error_at: float | None = None
        self._last_error_text: str | None = None
        self._last_logged: tuple[str, float] | None = None
        self._storm = False
        self._started_mono = self.clock.monotonic()
        self.health_file = HealthFile(self.state_dir, self.uploader.version)  # read by the updater

    # ------------------------------------------------------------------------------------------ recording
    def emit(self, detection: Detection, recipients: tuple[str, ...] = ()) -> Event:
        """A detector's output: stored in the outbox (durable for alerts) before this returns."""
        return self.alerts.record(detection, recipients)

    def emit_many(self, detections: Sequence[Detection], *, state: Mapping[str, str | None]) -> list[Event]:
        """Detections to the catalogue's recipients and the detector's saved ``state`` (key -> JSON text), in
        one outbox transaction: what a pure core remembers never disagrees with the alerts it raised."""
        return self.alerts.record_many([(d, ()) for d in detections], state=state)

    def record_reading(self, kind: str, payload: Mapping[str, Any]) -> Event:
        """A measurement (priority reading, state observed); group-committed, see docs/sync.md."""
        return self._observed(kind, payload, "info", "reading")

    def record_state(self, kind: str, payload: Mapping[str, Any], severity: Severity = "info") -> Event:
        """A one-off fact that is not an alert (priority state); durable when this returns."""
        return self._observed(kind, payload, severity, "state")

    def _observed(self, kind: str, payload: Mapping[str, Any], severity: Severity, priority: Priority) -> Event:
        event = make_event(
            self.node_id,
            kind,
            clock=self.clock,
            severity=severity,
            state="observed",
            priority=priority,
            payload=payload,
        )
        return self.outbox.put(event)

    def set_health(self, **fields: Any) -> None:
        """Fields for the heartbeat (e.g. ``last_sensor_read=wall time``, ``bus_errors=3``); merged."""
        with self._health_lock:
            self._health.update(fields)

    def health(self) -> dict[str, Any]:
        """The role's fields plus the run loop's own: ticks, tick errors, exception storm, open alerts."""
        with self._health_lock:
            out = dict(self._health)
        out.update(
            ticks=self.ticks,
            tick_errors=self.tick_errors,
            last_tick_error=self._last_error_text,
            exception_storm=self._storm,
            open_alerts=len(self.alerts.open_alerts()),
            uptime_s=round(self.clock.monotonic() - self._started_mono, 1),
        )
        return out

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the uploader thread."""
        if not self._started:
            self._started = True
            self.uploader.start()

    def request_stop(self) -> None:
        """Ask ``run`` to return after the current tick (what SIGTERM does)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def closed(self) -> bool:
        """True once ``stop`` closed the outbox: nothing more can be stored."""
        return self._closed

    def stop(self) -> None:
        """Stop the uploader, commit waiting readings, close the outbox. Idempotent."""
        self._stop.set()
        if self._closed:
            return
        self._closed = True
        self.uploader.stop(send_unstored=True)
        self.outbox.close()

    # ------------------------------------------------------------------------------------------ run loop
    def run(
        self, tick: Callable[[float], None], interval_s: float, before_stop: Callable[[], None] | None = None
    ) -> None:
        """The node's main loop: ``tick(monotonic now)`` every ``interval_s``, until SIGTERM/SIGINT or
        ``request_stop()``; then ``before_stop()`` (the node's last save into the outbox) and a graceful stop."""
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        previous = self._install_signals()
        watchdog_s = watchdog_interval_s()
        self.start()
        systemd_notify("READY=1")
        log.info("node %s running (tick every %.3g s, watchdog %s)", self.node_id, interval_s, watchdog_s or "off")
        last_ping = time.monotonic()
        next_tick = self.clock.monotonic()
        try:
            while not self._stop.is_set():
                now = self.clock.monotonic()
                self.run_tick(tick, now)
                try:
                    self.housekeeping(now)
                except Exception as exc:  # noqa: BLE001 - e.g. OutboxError: counted like a tick error, loop goes on
                    self._tick_failed(exc, now)
                if watchdog_s is not None:
                    systemd_notify("WATCHDOG=1")  # only here: a tick that hangs stops the pings
                    last_ping = time.monotonic()
                next_tick += interval_s
                now = self.clock.monotonic()
                if next_tick < now:  # a slow tick: skip the missed ones rather than run a burst
                    next_tick = now + interval_s
                while not self._stop.is_set():
                    remaining = next_tick - self.clock.monotonic()
                    if remaining <= 0:
                        break
                    chunk = remaining if watchdog_s is None else min(remaining, watchdog_s)
                    wait_on_clock(self.clock, chunk, self._stop)
                    if watchdog_s is not None and time.monotonic() - last_ping >= watchdog_s * 0.9:
                        systemd_notify("WATCHDOG=1")  # the loop is alive, only waiting for its next tick
                        last_ping = time.monotonic()
        finally:
            systemd_notify("STOPPING=1")
            log.info("node %s stopping", self.node_id)
            try:
                if before_stop is not None:
                    before_stop()
            finally:
                self.stop()
            self._restore_signals(previous)

    def run_tick(self, tick: Callable[[float], None], now: float) -> bool:
        """One tick, with its exception logged and counted; True when it ran cleanly."""
        self.ticks += 1
        try:
            tick(now)
        except Exception as exc:  # noqa: BLE001 - a node must keep running; logged with traceback and counted
            self._tick_failed(exc, now)
            return False
        return True

    def _tick_failed(self, exc: Exception, now: float) -> None:
        self.tick_errors += 1
        text = f"{type(exc).__name__}: {exc}"
        self._last_error_text = text[:500]
        self._last_error_at = now
        self._error_times.append(now)
        while self._error_times and now - self._error_times[0] > STORM_WINDOW_S:
            self._error_times.popleft()
        # a storm of the same traceback would wear the SD card through journald: log it fully once a minute
        if self._last_logged is None or self._last_logged[0] != text or now - self._last_logged[1] >= STORM_WINDOW_S:
            log.error("tick failed (%d so far):\n%s", self.tick_errors, "".join(traceback.format_exception(exc)))
            self._last_logged = (text, now)
        if not self._storm and len(self._error_times) >= STORM_COUNT:
            self._storm = True
            log.critical(
                "exception storm: %d tick errors in %.0f s; last: %s", len(self._error_times), STORM_WINDOW_S, text
            )
            detection = Detection(
                "node_fault",
                "raised",
                now,
                "warning",
                {"reason": "exception_storm", "errors_in_window": len(self._error_times), "last_error": text[:500]},
                key="tick",
            )
            try:
                self.alerts.record(detection, FAULT_RECIPIENTS)
            except OutboxError as store_exc:
                log.critical("exception storm: cannot store the node_fault alert: %s", store_exc)

    def housekeeping(self, now: float) -> None:
        """After each tick: commit due readings, re-send open alerts, end an exception storm that stopped."""
        self.outbox.flush_due()
        self.alerts.due_renotify(now)
        role_state = {k: v for k, v in self._health.items() if k == "kiosk_state"}
        self.health_file.publish(self.uploader.last_heartbeat_wall, self.uploader.selftest.last, role_state)
        if self._storm and (self._last_error_at is None or now - self._last_error_at >= STORM_CLEAR_S):
            self._storm = False
            self._error_times.clear()
            log.warning("exception storm over: no tick error for %.0f s", STORM_CLEAR_S)
            self.alerts.record(
                Detection("node_fault", "cleared", now, "info", {"reason": "exception_storm_over"}, key="tick"),
                FAULT_RECIPIENTS,
            )

    # ------------------------------------------------------------------------------------------ signals
    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}

        def _handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self._stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, _handler)
        return previous

    @staticmethod
    def _restore_signals(previous: Mapping[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
