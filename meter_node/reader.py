"""Reads the water meters on one RS-485 bus: a poll schedule, register decoding, counter sanity, meter health.

``CounterSanity`` and ``MeterHealth`` are pure rules of (time, input); ``MeterReader`` is the shell that talks
to ``hal.modbus.ModbusBus`` (the one owner of the port) and timestamps each read with the node's clock.
A failed or unusable read becomes ``total_litres = None``: a gap, never activity nor inactivity.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from common.catalogue import Severity, State
from common.clock import Clock, SystemClock
from common.events import Detection
from hal.modbus import (
    CrcError,
    ModbusError,
    NoResponseError,
    ShortFrameError,
    SlaveExceptionError,
    WrongResponderError,
)
from meter_node.config import MeterEntry
from meter_node.profiles import (
    DecodeError,
    MeterProfile,
    ProfileError,
    load_profile,
    load_profile_file,
    profile_files,
)

__all__ = [
    "CounterSanity",
    "DecodeError",
    "MeterHealth",
    "MeterProfile",
    "MeterRead",
    "MeterReader",
    "ProfileError",
    "load_profile",
    "load_profile_file",
    "profile_files",
]

log = logging.getLogger(__name__)

HealthStatus = Literal["ok", "degraded", "offline"]
Verdict = Literal["first", "ok", "jitter", "rollover", "reset", "implausible", "gap"]

# ModbusBus error classes as health counter names; the most specific class is matched first
ERROR_CLASSES: tuple[tuple[type[BaseException], str], ...] = (
    (NoResponseError, "no_response"),
    (CrcError, "crc"),
    (SlaveExceptionError, "slave_exception"),
    (WrongResponderError, "wrong_responder"),
    (ShortFrameError, "short_frame"),
    (ModbusError, "modbus_error"),
)
COUNTERS: tuple[str, ...] = (
    "reads_ok",
    "reads_failed",
    *(name for _, name in ERROR_CLASSES),
    "port_error",
    "bad_value",
    "implausible",
    "resets",
    "rollovers",
)


def error_class(exc: BaseException) -> str:
    """The health counter name of a read failure."""
    for cls, name in ERROR_CLASSES:
        if isinstance(exc, cls):
            return name
    if isinstance(exc, DecodeError):
        return "bad_value"
    return "port_error"


# ------------------------------------------------------------------------------------------ counter sanity
@dataclass
class CounterSanity:
    """Turns a meter's raw totals into one continuous total, or None where a reading cannot be trusted.

    - rollover: the raw total wraps at ``rollover_litres``; the continuous total keeps counting;
    - reset or replacement (the total goes down): a ``meter_reset`` event, that read is a gap, and the
      continuous total carries on from the new value;
    - implausible jump (more than ``max_flow_l_min`` x elapsed time, plus one step of the meter's resolution):
      an ``implausible_reading`` event and a gap; a new level that stays consistent for ``confirm_reads``
      reads is a replaced meter (``meter_reset``), a lone spike (a phantom pulse) is dropped.
    Pure: fed ``(monotonic time, raw litres or None)``.
    """

    meter_id: str
    max_flow_l_min: float
    rollover_litres: float | None = None
    resolution_l: float = 0.0
    confirm_reads: int = 3
    slack_l: float = 1.0  # read timestamps jitter by a bus turn; one litre covers it at household flows
    jitter_l: float = 0.5  # a float total may dip by rounding; below this a drop is not a reset
    event_every_s: float = 600.0  # at most one implausible_reading event per meter this often
    last_raw: float | None = None
    last_at: float | None = None
    offset: float = 0.0
    _candidate: tuple[float, float, int] | None = None  # raw, at, consistent reads
    _last_event_at: float | None = None
    _suppressed: int = 0

    @property
    def total(self) -> float | None:
        """The continuous total after the last good read."""
        return None if self.last_raw is None else self.last_raw + self.offset

    def allowed_litres(self, elapsed_s: float) -> float:
        return self.max_flow_l_min / 60.0 * max(0.0, elapsed_s) + self.resolution_l + self.slack_l

    def update(self, at: float, raw: float | None) -> tuple[float | None, Verdict, list[Detection]]:
        """One read: the continuous total (or None), what happened, and any events."""
        if raw is None:
            return None, "gap", []
        if self.last_raw is None:
            self._accept(at, raw)
            return self.total, "first", []
        delta = raw - self.last_raw
        elapsed = None if self.last_at is None else at - self.last_at
        allowed = None if elapsed is None else self.allowed_litres(elapsed)
        if delta < 0:
            if self.rollover_litres is not None:
                wrapped = raw + self.rollover_litres - self.last_raw
                fits = wrapped <= allowed if allowed is not None else wrapped < 0.01 * self.rollover_litres
                if wrapped >= 0 and fits and self.last_raw > 0.5 * self.rollover_litres:
                    self.offset += self.rollover_litres
                    self._accept(at, raw)
                    return self.total, "rollover", []
            if -delta <= max(self.jitter_l, self.resolution_l * 0.5):
                return self.total, "jitter", []
            return None, "reset", [self._rebase(at, raw, reason="total_went_down")]
        if allowed is not None and delta > allowed:
            return self._implausible(at, raw, elapsed or 0.0, allowed)
        self._accept(at, raw)
        return self.total, "ok", []

    def _accept(self, at: float, raw: float) -> None:
        self.last_raw, self.last_at, self._candidate = raw, at, None

    def _rebase(self, at: float, raw: float, reason: str) -> Detection:
        previous = self.last_raw
        carried = self.total or 0.0
        self.offset = carried - raw  # the continuous total carries on from the new raw value
        self._accept(at, raw)
        return meter_detection(
            self.meter_id,
            "meter_reset",
            "observed",
            at,
            "warning",
            reason=reason,
            previous_litres=previous,
            new_litres=raw,
        )

    def _implausible(
        self, at: float, raw: float, elapsed: float, allowed: float
    ) -> tuple[float | None, Verdict, list[Detection]]:
        cand = self._candidate
        if cand is not None and 0 <= raw - cand[0] <= self.allowed_litres(at - cand[1]):
            self._candidate = (raw, at, cand[2] + 1)
        else:
            self._candidate = (raw, at, 1)
        if self._candidate[2] >= self.confirm_reads:
            return None, "reset", [self._rebase(at, raw, reason="jump_confirmed")]
        if self._last_event_at is not None and at - self._last_event_at < self.event_every_s:
            self._suppressed += 1
            return None, "implausible", []
        event = meter_detection(
            self.meter_id,
            "implausible_reading",
            "observed",
            at,
            "info",
            previous_litres=self.last_raw,
            reading_litres=raw,
            elapsed_s=round(elapsed, 3),
            allowed_litres=round(allowed, 3),
            suppressed_since_last=self._suppressed,
        )
        self._last_event_at, self._suppressed = at, 0
        return None, "implausible", [event]

    def to_state(self) -> dict[str, Any]:
        """What survives a restart (monotonic times do not: the first read after a restart has no elapsed)."""
        return {"last_raw": self.last_raw, "offset": self.offset}

    def restore(self, state: Mapping[str, Any]) -> None:
        last_raw = state.get("last_raw")
        self.last_raw = float(last_raw) if isinstance(last_raw, int | float) else None
        offset = state.get("offset", 0.0)
        self.offset = float(offset) if isinstance(offset, int | float) else 0.0
        self.last_at = None
        self._candidate = None


# ----------------------------------------------------------------------------------------------- health
@dataclass
class MeterHealth:
    """Per-meter health from read outcomes: ok, degraded (recent failures), offline (no good read for long).

    ``meter_offline`` is a technical alert: raised after ``offline_after_s`` without a good read, cleared by the
    next good read. Pure: fed ``(monotonic time, outcome)``.
    """

    meter_id: str
    offline_after_s: float
    started_at: float
    window: int = 20
    degraded_failures: int = 2
    status: HealthStatus = "ok"
    last_ok_at: float | None = None
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    _recent: deque[bool] = field(default_factory=deque)
    _offline_since: float | None = None

    def record(self, at: float, error: str | None) -> list[Detection]:
        """One poll: ``error`` is None for a good read, else a counter name from COUNTERS."""
        if error is None:
            self.counters["reads_ok"] += 1
            self.last_ok_at = at
        else:
            self.counters["reads_failed"] += 1
            self.counters[error] = self.counters.get(error, 0) + 1
        self._recent.append(error is None)
        while len(self._recent) > self.window:
            self._recent.popleft()
        return self.check(at)

    def count(self, counter: str) -> None:
        """Count something that is not a read outcome (implausible, resets, rollovers)."""
        self.counters[counter] = self.counters.get(counter, 0) + 1

    def check(self, at: float) -> list[Detection]:
        """Re-evaluate the status at ``at`` (also between polls); events for what changed."""
        since = self.last_ok_at if self.last_ok_at is not None else self.started_at
        if at - since >= self.offline_after_s:
            status: HealthStatus = "offline"
        else:
            # hysteresis: degraded at the second failure in the window, ok again once the window is clean, so
            # a noisy bus does not send a status event for every lost frame
            failures = self._recent.count(False)
            degraded = failures >= self.degraded_failures or (self.status != "ok" and failures > 0)
            status = "degraded" if degraded else "ok"
        if status == self.status:
            return []
        previous, self.status = self.status, status
        events = [
            meter_detection(
                self.meter_id, "meter_health", "observed", at, "info", status=status, previous=previous, **self.counters
            )
        ]
        if status == "offline":
            self._offline_since = since
            silent_s = round(at - since, 1)
            errors = self._error_counts()
            events.append(
                meter_detection(self.meter_id, "meter_offline", "raised", at, "warning", silent_s=silent_s, **errors)
            )
        elif previous == "offline":
            down = 0.0 if self._offline_since is None else at - self._offline_since
            self._offline_since = None
            events.append(
                meter_detection(self.meter_id, "meter_offline", "cleared", at, "info", silent_s=round(down, 1))
            )
        return events

    def _error_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.counters.items() if v and k not in ("reads_ok", "reads_failed")}

    def report(self, now: float) -> dict[str, Any]:
        """Health as shown in the heartbeat and the logs (ages, not this process's monotonic times)."""
        age = None if self.last_ok_at is None else round(now - self.last_ok_at, 1)
        return {"status": self.status, "last_ok_age_s": age, **self.counters}


# ------------------------------------------------------------------------------------------------ reader
class RegisterBus(Protocol):
    """What the reader needs from ``hal.modbus.ModbusBus``."""

    def read_registers(self, slave: int, address: int, count: int, function_code: int = 3) -> list[int]: ...


@dataclass(frozen=True)
class MeterRead:
    """The outcome of one poll of one meter."""

    meter_id: str
    at: float  # monotonic time of the read
    total_litres: float | None  # continuous total for the wellbeing monitor; None: a gap
    raw_litres: float | None  # as decoded from the meter's registers
    verdict: Verdict
    error: str | None  # health counter name of a failed read
    detections: tuple[Detection, ...] = ()


@dataclass
class _Meter:
    entry: MeterEntry
    profile: MeterProfile
    sanity: CounterSanity
    health: MeterHealth
    next_due: float


class MeterReader:
    """Many meters on one bus, each on its own poll interval: one schedule in the caller's thread, no threads.

    ``poll_due()`` reads every meter whose time has come, one after another (the bus lock in ModbusBus keeps
    frames from interleaving anyway). An offline meter is retried every ``offline_poll_s`` at most, so a dead
    meter's timeouts do not starve the others.
    """

    def __init__(
        self,
        bus: RegisterBus,
        meters: Sequence[MeterEntry],
        *,
        clock: Clock | None = None,
        profiles: Mapping[str, MeterProfile] | None = None,
        profile_dirs: Iterable[Path] = (),
        offline_poll_s: float = 30.0,
    ) -> None:
        self._bus = bus
        self._clock = clock or SystemClock()
        self._offline_poll_s = offline_poll_s
        dirs = list(profile_dirs)
        now = self._clock.monotonic()
        self._meters: dict[str, _Meter] = {}
        for entry in meters:
            profile = (profiles or {}).get(entry.profile) or load_profile(entry.profile, dirs)
            sanity = CounterSanity(
                meter_id=entry.id,
                max_flow_l_min=profile.max_flow_l_min,
                rollover_litres=profile.rollover_litres,
                resolution_l=profile.resolution_l,
            )
            health = MeterHealth(meter_id=entry.id, offline_after_s=entry.offline_after_s, started_at=now)
            self._meters[entry.id] = _Meter(entry, profile, sanity, health, next_due=now)

    @property
    def meter_ids(self) -> list[str]:
        return list(self._meters)

    def next_due(self) -> float:
        """Monotonic time of the next poll due (inf without meters)."""
        return min((m.next_due for m in self._meters.values()), default=float("inf"))

    def due(self) -> list[str]:
        """Ids of the meters due for a read now, earliest first."""
        now = self._clock.monotonic()
        due = sorted((m for m in self._meters.values() if m.next_due <= now), key=lambda m: m.next_due)
        return [m.entry.id for m in due]

    def poll_due(self) -> list[MeterRead]:
        """Read every meter that is due now, earliest first."""
        return [self.poll(meter_id) for meter_id in self.due()]

    def poll(self, meter_id: str) -> MeterRead:
        """Read one meter now and schedule its next read."""
        meter = self._meters[meter_id]
        at = self._clock.monotonic()
        raw, error = self._read(meter)
        detections = list(meter.health.record(at, error))
        total, verdict, events = meter.sanity.update(at, raw)
        detections += events
        if verdict in ("implausible", "rollover"):
            meter.health.count("implausible" if verdict == "implausible" else "rollovers")
        elif verdict == "reset":
            meter.health.count("resets")
        interval = meter.entry.poll_interval_s
        if meter.health.status == "offline":
            interval = max(interval, self._offline_poll_s)
        # no catch-up burst after a slow cycle: the next read is one interval after the due time, or now
        meter.next_due = max(meter.next_due + interval, self._clock.monotonic())
        return MeterRead(meter_id, at, total, raw, verdict, error, tuple(detections))

    def _read(self, meter: _Meter) -> tuple[float | None, str | None]:
        entry, profile = meter.entry, meter.profile
        try:
            words = self._bus.read_registers(entry.address, profile.address, profile.count, profile.function_code)
            return profile.decode(words), None
        except ModbusError as exc:
            kind = error_class(exc)
            log.debug("meter %s (slave %d): %s: %s", entry.id, entry.address, kind, exc)
            return None, kind
        except DecodeError as exc:
            log.warning("meter %s (slave %d): unusable value: %s", entry.id, entry.address, exc)
            return None, "bad_value"
        except OSError as exc:  # serial port gone (USB adapter unplugged): counted, retried next poll
            log.warning("meter %s (slave %d): serial port error: %s", entry.id, entry.address, exc)
            return None, "port_error"

    def check(self) -> list[Detection]:
        """Re-evaluate every meter's health now (offline after a silence), between polls."""
        now = self._clock.monotonic()
        return [d for m in self._meters.values() for d in m.health.check(now)]

    def health(self) -> dict[str, dict[str, Any]]:
        """Per-meter health: status and counters by error class."""
        now = self._clock.monotonic()
        return {mid: m.health.report(now) for mid, m in self._meters.items()}

    def status(self, meter_id: str) -> HealthStatus:
        return self._meters[meter_id].health.status

    def profile(self, meter_id: str) -> MeterProfile:
        return self._meters[meter_id].profile

    def entry(self, meter_id: str) -> MeterEntry:
        return self._meters[meter_id].entry

    def to_state(self) -> dict[str, Any]:
        """Counter state per meter, for the node's state file."""
        return {mid: m.sanity.to_state() for mid, m in self._meters.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        for mid, meter_state in state.items():
            if mid in self._meters and isinstance(meter_state, Mapping):
                self._meters[mid].sanity.restore(meter_state)


def meter_detection(meter_id: str, kind: str, state: State, at: float, severity: Severity, **payload: Any) -> Detection:
    """A detection about one meter (technical: health, offline, reset, a fault): keyed by the meter, whose id leads
    the payload."""
    return Detection(kind, state, at, severity, {"meter_id": meter_id, **payload}, key=meter_id)
