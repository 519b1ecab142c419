"""Waiting for a point in a clock's time, for simulated hardware that plays a script (ManualClock or FastClock)."""

from __future__ import annotations

import threading

from hal.clock import Clock


def wait_for_clock(clock: Clock, target: float, stop: threading.Event) -> bool:
    """Block until ``clock.monotonic()`` reaches ``target``; False when ``stop`` is set first.

    A ManualClock is waited on (it wakes us when a test advances time); any other clock is slept on in short
    naps of real time, so ``stop`` is honoured within about 50 ms.
    """
    wait_until = getattr(clock, "wait_until", None)
    while not stop.is_set():
        remaining = target - clock.monotonic()
        if remaining <= 0:
            return True
        if callable(wait_until):
            wait_until(target, 0.05)
        else:
            speed = getattr(clock, "speed", 1.0)
            clock.sleep(min(remaining, 0.05 * speed))
    return False
