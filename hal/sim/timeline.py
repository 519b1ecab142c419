"""Playing a timed script on simulated hardware (lift sensors, a meter's consumption) in a clock's time."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol


class Clock(Protocol):
    """What a script needs of a clock (``common.clock``'s clocks have it): its time, and a wait on it."""

    def monotonic(self) -> float: ...

    def wait(self, until: float, wake: threading.Event) -> bool:
        """Block until ``monotonic()`` reaches ``until`` or ``wake`` is set; True when woken."""
        ...


class ScriptPlayer:
    """Plays ``(t_seconds, action)`` steps when the clock reaches ``start + t``: in the caller's thread with
    ``play()``, or on a background thread with ``start()``; ``stop()`` ends either. Subclasses say how a
    script becomes sorted steps (``_steps``, which refuses a bad script before the first step) and what one
    step does (``_apply``)."""

    _player_name = "sim-script"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _steps(self, script: Any) -> Sequence[tuple[float, Any]]:
        raise NotImplementedError

    def _apply(self, t: float, action: Any) -> None:
        raise NotImplementedError

    def play(self, script: Any, clock: Clock, start: float | None = None) -> None:
        """Apply each step when ``clock``'s monotonic time reaches ``start + t``; blocks until the last step
        or ``stop()``. A ManualClock waits for the test to advance time; a FastClock sleeps in its time."""
        self._stop.clear()
        self._play(script, clock, start)

    def _play(self, script: Any, clock: Clock, start: float | None) -> None:
        steps = self._steps(script)
        origin = clock.monotonic() if start is None else start
        for t, action in steps:
            if clock.wait(origin + t, self._stop):
                return  # stopped
            self._apply(t, action)

    def start(self, script: Any, clock: Clock) -> threading.Thread:
        """Play ``script`` on a background thread from now; ``stop()`` ends it."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self._player_name}: a script is already playing")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._play, args=(script, clock, clock.monotonic()), name=self._player_name, daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a started script to finish; True when it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
