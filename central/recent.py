"""A value worked out again at most every so often, off the request path: the summary's counts over every node
(a scan of the whole nodes table) are served from the last count while a thread counts again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("central")
T = TypeVar("T")


class Recent(Generic[T]):
    """``get(now)`` returns ``(value, as_of)``: the last value when it is younger than ``max_age_s``; up to three
    times that old, the last value while a thread works it out again (the request does not wait); older, or
    never worked out, worked out by the caller. ``max_age_s`` 0: always worked out by the caller.
    ``work(now)`` must be safe to call from any thread."""

    def __init__(self, work: Callable[[float], T], max_age_s: float, what: str) -> None:
        self._work = work
        self.max_age_s = max_age_s
        self._what = what
        self._lock = threading.Lock()
        self._last: tuple[T, float] | None = None
        self._working = False

    def get(self, now: float) -> tuple[T, float]:
        with self._lock:
            last = self._last
            age = -1.0 if last is None else now - last[1]  # negative: none yet, or the clock went back
            if last is not None and 0 <= age < self.max_age_s:
                return last
            behind = last is not None and 0 <= age < 3 * self.max_age_s
            if behind and not self._working:
                self._working = True
                threading.Thread(target=self._again, args=(now,), name=f"recent-{self._what}", daemon=True).start()
        if behind and last is not None:
            return last
        value = (self._work(now), now)
        self._keep(value)
        return value

    def _keep(self, value: tuple[T, float]) -> None:
        with self._lock:
            if self._last is None or value[1] >= self._last[1]:
                self._last = value

    def _again(self, now: float) -> None:
        try:
            self._keep((self._work(now), now))
        except Exception:  # noqa: BLE001 - the last value stays; a request past 3 x max_age works it out itself
            log.exception("cannot work out the %s again; the last one is served for now", self._what)
        finally:
            with self._lock:
                self._working = False
