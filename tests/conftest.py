"""Shared pytest set-up: fixtures live in tests/fixtures/ as plugins, one module per real part; every event a
test makes must match its kind in the event catalogue (a mismatch raises instead of being logged);
``eventually()`` is the one way a test waits for something another thread does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from common import catalogue

pytest_plugins = [
    "tests.fixtures.gpio",
    "tests.fixtures.serial",
    "tests.fixtures.central",
    "tests.fixtures.postgres",
    "tests.fixtures.releases",
    "tests.update_helpers",
]

catalogue.STRICT = True
T = TypeVar("T")


def eventually(check: Callable[[], T], timeout_s: float = 10.0, every_s: float = 0.02, what: str = "") -> T:
    """Wait until ``check()`` returns something true and return it; fail naming ``what`` after ``timeout_s``.
    Never sleep-then-assert: a slow machine makes that pass without testing anything, or fail for nothing."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"after {timeout_s} s: {what or getattr(check, '__name__', 'the condition')}")
        time.sleep(every_s)
