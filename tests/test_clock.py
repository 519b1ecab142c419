"""Clocks: unsynced wall time is flagged; timers run on monotonic time and survive wall-time jumps."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from common import clock as clock_mod
from common.clock import FastClock, ManualClock, SystemClock


def test_manual_clock_timer_ignores_wall_jump() -> None:
    c = ManualClock(wall=0.0, synced=False)  # a Pi booting at 1970
    assert not c.wall_synced()
    deadline = c.monotonic() + 90
    c.advance(30)
    c.set_wall(1_790_000_000.0, synced=True)  # NTP steps the clock by 56 years
    assert c.wall_synced()
    assert c.monotonic() < deadline
    c.advance(60)
    assert c.monotonic() >= deadline
    c.set_wall(1_700_000_000.0)  # and back again: monotonic still only grows
    assert c.monotonic() == pytest.approx(1000 + 90)


def test_manual_clock_refuses_to_go_back() -> None:
    with pytest.raises(ValueError):
        ManualClock().advance(-1)


def test_manual_clock_wait_until_wakes_on_advance() -> None:
    c = ManualClock()
    woke: list[bool] = []
    t = threading.Thread(target=lambda: woke.append(c.wait_until(c.monotonic() + 10, timeout=5)))
    t.start()
    c.advance(10)
    t.join(5)
    assert woke == [True]


def test_fast_clock_runs_faster() -> None:
    c = FastClock(speed=1000, start_wall=0.0)
    t0 = c.monotonic()
    time.sleep(0.05)
    assert c.monotonic() - t0 >= 40  # 0.05 s real = 50 s simulated
    # bracketed, not compared with a later call: 5 ms of preemption between two calls is 5 s at this speed
    before, wall, after = c.monotonic(), c.wall(), c.monotonic()
    assert before - 5 <= wall <= after + 5


def test_fast_clock_speed_change_is_continuous() -> None:
    c = FastClock(speed=1000, start_wall=0.0)
    time.sleep(0.02)
    before = c.monotonic()
    c.set_speed(1)
    after = c.monotonic()
    assert before <= after < before + 1  # no jump when the pace changes
    with pytest.raises(ValueError):
        c.set_speed(0)


def test_system_clock_flags_implausible_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_mod, "kernel_clock_synced", lambda: True)
    monkeypatch.setattr(clock_mod.time, "time", lambda: 86400.0)  # 1970-01-02: the Pi lost its time
    assert SystemClock().wall_synced() is False


def test_system_clock_flags_kernel_unsynced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_mod, "kernel_clock_synced", lambda: False)
    assert SystemClock().wall_synced() is False


def test_kernel_clock_answers_here() -> None:
    # adjtimex is always present on Linux; the answer depends on the machine, the type does not
    assert clock_mod.kernel_clock_synced() in (True, False)


def test_the_kernel_clock_is_synced_by_its_maximum_error_not_sta_unsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """chronyd without ``rtcsync`` leaves STA_UNSYNC set while the clock is synchronised (bench/clock_ntp_vm.py
    saw a node never synchronised): the kernel's maximum error is what says it, as for systemd's timedated."""
    answers: dict[str, int] = {}

    class FakeLibc:
        def adjtimex(self, pointer: Any) -> int:
            tx = pointer._obj
            tx.maxerror, tx.status = answers["maxerror"], 0x0040  # STA_UNSYNC, as chronyd leaves it
            return 5  # TIME_ERROR, which follows from the flag

    monkeypatch.setattr(clock_mod, "_libc", lambda: FakeLibc())
    answers["maxerror"] = 12_345  # chronyd's estimate: 12 ms
    assert clock_mod.kernel_clock_synced() is True
    answers["maxerror"] = clock_mod.MAXERROR_LIMIT_US  # after boot, or a clock set by hand
    assert clock_mod.kernel_clock_synced() is False
