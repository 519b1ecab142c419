"""central.recent.Recent: the summary's counts over every node served from the last count while a thread counts
again; never older than three times the max age; a failed count in the background keeps the last one."""

from __future__ import annotations

import threading

import pytest

from central.recent import Recent
from tests.conftest import eventually


class Counter:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, now: float) -> int:
        self.gate.wait(5)
        if self.fail:
            raise RuntimeError("database gone")
        self.calls.append(now)
        return len(self.calls)


def test_fresh_behind_and_too_old() -> None:
    work = Counter()
    recent = Recent(work, 5.0, "count")
    assert recent.get(100.0) == (1, 100.0)  # never worked out: the caller works it out
    assert recent.get(104.9) == (1, 100.0)  # fresh: served
    work.gate.clear()
    assert recent.get(106.0) == (1, 100.0)  # behind: served at once while a thread counts again
    assert recent.get(107.0) == (1, 100.0)  # one thread at a time
    work.gate.set()
    eventually(lambda: recent.get(107.5) == (2, 106.0), what="the count worked out in the background")
    assert work.calls == [100.0, 106.0]
    assert recent.get(121.1) == (3, 121.1)  # more than 3 x 5 s old: the caller waits for a new count


def test_a_failed_background_count_keeps_the_last_and_a_too_old_one_raises() -> None:
    work = Counter()
    recent = Recent(work, 5.0, "count")
    recent.get(0.0)
    work.fail = True
    assert recent.get(6.0) == (1, 0.0)
    eventually(lambda: not recent._working, what="the background count to end")
    assert recent.get(7.0) == (1, 0.0)
    with pytest.raises(RuntimeError, match="database gone"):
        recent.get(20.0)


def test_max_age_zero_always_counts_and_a_clock_set_back_counts_again() -> None:
    work = Counter()
    always = Recent(work, 0.0, "count")
    assert [always.get(1.0)[0], always.get(1.0)[0]] == [1, 2]
    again = Recent(Counter(), 5.0, "count")
    again.get(100.0)
    assert again.get(50.0) == (2, 50.0)  # the wall clock went back: not served from "the future"
