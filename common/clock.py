"""Clocks: monotonic time for timers, wall time for timestamps, and whether wall time can be trusted (not hardware).

A Raspberry Pi has no real-time clock: until NTP syncs, wall time may read 1970 or the last shutdown time.
Nothing in the project sleeps on wall time. ``ManualClock`` and ``FastClock`` let tests and the simulated
community run a day in seconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import shutil
import subprocess
import threading
import time
from datetime import datetime
from datetime import time as dtime
from typing import Protocol

# wall time before this (2024-01-01 UTC) cannot be right on a node built after it
PLAUSIBLE_WALL_EPOCH = 1_704_067_200.0
HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"  # a local time of day in a config ("07:30")


def day_minutes(hh_mm: str) -> int:
    """'07:30' -> 450: minutes after local midnight."""
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


def to_epoch(when: datetime | float) -> float:
    """Unix seconds from an aware datetime (a naive one is refused: its zone is unknown) or a number."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("a naive datetime has no time zone; give an aware one or Unix seconds")
        return when.timestamp()
    return float(when)


def within_hours(local: dtime, start: str, end: str) -> bool:
    """``local`` is in the daily hours from ``start`` to ``end`` (HH:MM, end not included); they may run over
    midnight (22:00-07:00); equal times: never."""
    now, first, last = local.hour * 60 + local.minute, day_minutes(start), day_minutes(end)
    return first <= now < last if first <= last else now >= first or now < last


class Clock(Protocol):
    """What nodes and detectors need from time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never jumps. Use for every timer."""
        ...

    def wall(self) -> float:
        """Unix time in seconds; may be wrong until synced. Use only for timestamps."""
        ...

    def wall_synced(self) -> bool:
        """True when wall time is known to be right (NTP synchronised)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's monotonic time."""
        ...

    def wait(self, until: float, wake: threading.Event) -> bool:
        """Block until ``monotonic()`` reaches ``until`` or ``wake`` is set; True when woken. Never wall time."""
        ...


class Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (adjtimex); only the fields before the padding matter here."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


# the kernel's NTP_PHASE_LIMIT: its maximum error after boot or a clock set by hand; past it, not synchronised
MAXERROR_LIMIT_US = 16_000_000


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # find_library runs `ldconfig -p`: once per process, not once per check
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def kernel_clock_synced() -> bool | None:
    """Ask the kernel (adjtimex) whether NTP has synchronised the clock; None when it cannot be asked.

    As systemd's ``ntp_synced()``: the kernel's maximum error is below 16 s. It is 16 s after boot and after a
    clock set by hand, an NTP daemon brings it down, and it grows by 500 ppm without one (16 s after about 9 h).
    The ``STA_UNSYNC`` flag is not asked: chronyd leaves it set unless ``rtcsync`` is on (it keeps the kernel off
    the RTC), so a node synchronised by chronyd looked unsynchronised for ever (seen in bench/clock_ntp_vm.py)."""
    libc = _libc()
    if libc is None:
        return None
    try:
        tx = Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return int(tx.maxerror) < MAXERROR_LIMIT_US


def timedatectl_synced() -> bool | None:
    """``timedatectl show -p NTPSynchronized``; None when systemd is not there to ask."""
    exe = shutil.which("timedatectl")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=2
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    return {"yes": True, "no": False}.get(value)


class SystemClock:
    """The real clock. Wall time counts as synced when the kernel or timedatectl says so and it is plausible."""

    def __init__(self, recheck_s: float = 60.0) -> None:
        self._recheck_s = recheck_s
        self._checked_at: float | None = None
        self._synced = False
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, until: float, wake: threading.Event) -> bool:
        # naps of 1 s: the monotonic clock does not jump, the cap only bounds one wait on a suspended system
        return _wait_in_naps(self, until, wake, 1.0)

    def wall_synced(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._checked_at is None or now - self._checked_at >= self._recheck_s:
                self._checked_at = now
                state = kernel_clock_synced()
                if state is None:
                    state = timedatectl_synced()
                # without any source to ask, trust a plausible wall time rather than flag every event
                self._synced = bool(state if state is not None else True) and time.time() > PLAUSIBLE_WALL_EPOCH
            return self._synced


def _wait_in_naps(clock: Clock, until: float, wake: threading.Event, nap_s: float) -> bool:
    """Wait in naps of at most ``nap_s`` real seconds, so a clock that a test moves is followed; the clock's
    seconds are real ones (SystemClock, ManualClock)."""
    while not wake.is_set():
        remaining = until - clock.monotonic()
        if remaining <= 0:
            break
        wake.wait(min(remaining, nap_s))
    return wake.is_set()


def wait_on_clock(clock: Clock, seconds: float, wake: threading.Event) -> bool:
    """Wait ``seconds`` of the clock's time, or until ``wake`` is set; True when woken."""
    return clock.wait(clock.monotonic() + seconds, wake) if seconds > 0 else wake.is_set()


class ManualClock:
    """A clock that moves only when told: ``advance()``, ``set_wall()``. ``sleep()`` advances it.

    Thread-safe; ``wait_until()`` lets another thread block until the test moves time past a point, and
    ``wait()`` (the Clock protocol's) returns once it does or the event is set.
    """

    def __init__(self, wall: float = 1_767_225_600.0, monotonic: float = 1000.0, synced: bool = True) -> None:
        self._mono = monotonic
        self._wall = wall
        self._synced = synced
        self._cond = threading.Condition()

    def monotonic(self) -> float:
        with self._cond:
            return self._mono

    def wall(self) -> float:
        with self._cond:
            return self._wall

    def wall_synced(self) -> bool:
        with self._cond:
            return self._synced

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("monotonic time cannot go back")
        with self._cond:
            self._mono += seconds
            self._wall += seconds
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def set_wall(self, wall: float, synced: bool | None = None) -> None:
        """Jump wall time (an NTP step, a wrong RTC); monotonic time is unaffected."""
        with self._cond:
            self._wall = wall
            if synced is not None:
                self._synced = synced

    def wait(self, until: float, wake: threading.Event) -> bool:
        return _wait_in_naps(self, until, wake, 0.05)

    def wait_until(self, monotonic: float, timeout: float | None = None) -> bool:
        """Block (in real time, at most ``timeout``) until monotonic time reaches ``monotonic``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._mono >= monotonic, timeout)


class FastClock:
    """Real time sped up ``speed`` times, for the simulated community: 1 real second = ``speed`` seconds.

    ``set_speed()`` changes the pace without a jump, so a scenario can slow down for a lift incident and
    speed up through a quiet night.
    """

    def __init__(self, speed: float, start_wall: float | None = None, synced: bool = True) -> None:
        self._lock = threading.Lock()
        self._check(speed)
        self.speed = speed
        self._origin_real = time.monotonic()
        self._origin_sim = 0.0
        self._origin_wall = time.time() if start_wall is None else start_wall
        self._synced = synced

    @staticmethod
    def _check(speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")

    def monotonic(self) -> float:
        with self._lock:
            return self._origin_sim + (time.monotonic() - self._origin_real) * self.speed

    def wall(self) -> float:
        return self._origin_wall + self.monotonic()

    def wall_synced(self) -> bool:
        return self._synced

    def set_speed(self, speed: float) -> None:
        """Change the pace from now on; simulated time stays continuous."""
        self._check(speed)
        now_sim = self.monotonic()
        with self._lock:
            self._origin_sim = now_sim
            self._origin_real = time.monotonic()
            self.speed = speed

    def wait(self, until: float, wake: threading.Event) -> bool:
        # naps of at most 50 ms real time, so a speed change made meanwhile is followed
        while not wake.is_set():
            remaining = until - self.monotonic()
            if remaining <= 0:
                break
            wake.wait(min(remaining / self.speed, 0.05))
        return wake.is_set()

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time, following speed changes made meanwhile."""
        deadline = self.monotonic() + seconds
        while (left := deadline - self.monotonic()) > 0:
            time.sleep(min(left / self.speed, 0.05))
