"""Shared pytest set-up: fixtures live in tests/fixtures/ as plugins, one module per real part; every event a
test makes must match its kind in the event catalogue (a mismatch raises instead of being logged);
``eventually()`` is the one way a test waits for something another thread does."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from common import catalogue

pytest_plugins = [
    "tests.fixtures.gpio",
    "tests.fixtures.serial",
    "tests.fixtures.browser",
    "tests.fixtures.central",
    "tests.fixtures.postgres",
    "tests.fixtures.receivers",
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


class Fsynced(set[tuple[int, int, int, int]]):
    """Every file and folder fsynced in this process while the test ran, as it was then: what a power cut
    cannot take back. A file written to a temporary name, fsynced and renamed keeps its inode, size and mtime;
    the size and mtime tell a file from a later one that reuses a deleted file's inode number."""

    def covers(self, path: Path) -> bool:
        return _identity(os.stat(path)) in self


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> Fsynced:
    """Records fsync calls (a real power cut cannot run in CI; changbai-bench --only power_cut runs one under LazyFS)."""
    seen = Fsynced()
    real = os.fsync

    def record(fd: int) -> None:
        real(fd)
        seen.add(_identity(os.fstat(fd)))

    monkeypatch.setattr(os, "fsync", record)
    return seen
