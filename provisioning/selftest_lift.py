"""`provision selftest` on a lift: the empty car watched with its doors closed, so that a presence sensor that
sees someone in an empty car (a fan, a reflection off the metal walls, the landing) is found at installation,
not by a false "trapped person" alarm 90 s into every ride the car parks after."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from provisioning import prompt
from provisioning.checks import FAIL, PASS, SKIP, Check

NAME = "empty car stays empty"
POLL_S = 0.01
RESTARTS = 3  # doors opened during the watch: watched again this many times
ADVICE = {
    "presence": "if the car is empty, the sensor sees a fan, a reflection off the walls or the landing; narrow its "
    "range or raise its threshold, aim it away from the fan and the doors, then run again",
    "motion": "if the car is empty, the PIR holds its output too long (set its hold time to 2-3 s) or sees warm air "
    "or the landing; aim it away from the fan and the doors, then run again",
}
WHY = " (an empty car that reads occupied with its doors closed raises a false entrapment)"


def check_empty_car(
    door: Any,
    occupancy: Any,
    watch_s: float,
    timeout_s: float,
    kind: str = "presence",
) -> Check:
    """Watch the occupancy input for ``watch_s`` while the doors are closed and nobody is in the car. ``door`` and
    ``occupancy`` are the inputs the selftest made (``value`` true: doors closed, someone seen), or None when not
    fitted or not working. The technician has ``timeout_s`` to leave the car and let the doors close. Doors that
    open during the watch (a resident called the car) start it again, at most ``RESTARTS`` times. ``kind``: the
    sensor's ``occupancy_kind``, for the advice."""
    advice = ADVICE.get(kind, ADVICE["presence"]) + WHY
    if watch_s <= 0:
        return Check(NAME, SKIP, "--empty-car-s 0")
    if door is None or occupancy is None:
        return Check(NAME, SKIP, "needs a working door contact and presence sensor (see their checks)")
    prompt.say(
        f">>> empty car: step out of the car and let its doors close, light and fan on; nobody in it for {watch_s:g} s"
        f" (within {timeout_s:g} s)"
    )
    for attempt in range(1 + RESTARTS):
        if attempt:
            prompt.say(">>> empty car: the doors opened; the watch starts again once they close with the car empty")
        if not _wait(lambda: bool(door.value) and not occupancy.value, timeout_s):
            if door.value:  # doors shut, and the sensor never let go of someone
                return Check(NAME, FAIL, f"presence on for {timeout_s:g} s with the doors closed: {advice}")
            return Check(NAME, FAIL, f"the doors did not close within {timeout_s:g} s: run again")
        seen = _watch(door, occupancy, watch_s)
        if seen is not None:
            break
    else:
        return Check(
            NAME, FAIL, f"the doors opened during each of {1 + RESTARTS} watches: run again when the lift is quiet"
        )
    if not seen:
        return Check(NAME, PASS, f"no one seen for {watch_s:g} s with the doors closed")
    return Check(
        NAME,
        FAIL,
        f"someone seen in the empty car {len(seen)} time(s), {sum(seen):.1f} s in all (longest {max(seen):.1f} s): "
        + advice,
    )


def _watch(door: Any, occupancy: Any, watch_s: float) -> list[float] | None:
    """The spans (seconds) the sensor saw someone during ``watch_s`` with the doors closed; None if they opened."""
    seen: list[float] = []
    on_since: float | None = None
    end = time.monotonic() + watch_s
    while (now := time.monotonic()) < end:
        if not door.value:
            return None
        if occupancy.value and on_since is None:
            on_since = now
        elif not occupancy.value and on_since is not None:
            seen.append(now - on_since)
            on_since = None
        time.sleep(POLL_S)
    if on_since is not None:
        seen.append(time.monotonic() - on_since)
    return seen


def _wait(ready: Callable[[], bool], within_s: float) -> bool:
    """Poll ``ready()`` for up to ``within_s``: whether it held."""
    until = time.monotonic() + within_s
    while time.monotonic() < until:
        if ready():
            return True
        time.sleep(POLL_S)
    return False
