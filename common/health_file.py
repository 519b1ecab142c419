"""The node's health on its own disk (STATE_DIR/health.json), for the updater on the same node: the version
running, when its last heartbeat reached the central, its last self-test, and the role's state (a kiosk's
screen). Written atomically, only when one of those changed, so an update is judged by the node alone."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from common.files import write_atomic

FILE_NAME = "health.json"
BEAT_REFRESH_S = 60.0


def health_path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE_NAME


class HealthFile:
    """Writes the node's health snapshot when it changed; a change of the heartbeat time alone at most once a
    minute (the updater needs the first heartbeat after a start, and the SD card wears)."""

    def __init__(self, state_dir: Path, version: str) -> None:
        self.path = health_path(state_dir)
        self.version = version
        self.started_wall = time.time()
        self._last: dict[str, Any] | None = None
        self._written_at = float("-inf")  # time.monotonic() of the last write

    def publish(self, heartbeat_wall: float | None, selftest: dict[str, Any] | None, role: dict[str, Any]) -> bool:
        """Write the snapshot if it changed; True when written. Never raises for a disk problem."""
        snapshot = {
            "version": self.version,
            "pid": os.getpid(),
            "started_wall": self.started_wall,
            "heartbeat_ok_wall": heartbeat_wall,
            "selftest_ok": None if selftest is None else bool(selftest.get("ok")),
            "selftest_failed": sorted(k for k, v in ((selftest or {}).get("checks") or {}).items() if v is False),
            "role": role,
        }
        if snapshot == self._last:
            return False
        # only a newer heartbeat: refreshed at most once a minute of real time (a fast clock, the SD card)
        last = self._last
        only_beat = last is not None and last["heartbeat_ok_wall"] is not None
        only_beat = only_beat and {**snapshot, "heartbeat_ok_wall": None} == {**(last or {}), "heartbeat_ok_wall": None}
        if only_beat and time.monotonic() - self._written_at < BEAT_REFRESH_S:
            return False
        try:
            write_atomic(self.path, json.dumps({**snapshot, "written_wall": time.time()}, default=str), mode=0o644)
        except OSError:
            return False  # the updater then sees no fresh health, which is the truth
        self._last, self._written_at = snapshot, time.monotonic()
        return True


def read_health(state_dir: Path) -> dict[str, Any] | None:
    """The last snapshot the node wrote, or None."""
    try:
        data = json.loads(health_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
