"""The main job's timeline: one line per thing a party saw, stamped with simulated local time; and the nodes'
voices, which speak onto it."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from common.clock import Clock
from hal.audio import Wav


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: when (simulated wall time), who saw it, what."""

    wall: float
    party: str
    text: str


class Timeline:
    """Collects and prints entries as they happen; thread-safe (nodes, the central and the script all write)."""

    def __init__(self, clock: Clock, tz: str = "Asia/Shanghai", out: TextIO | None = None) -> None:
        self.clock = clock
        self.tz = ZoneInfo(tz)
        self.out = out if out is not None else sys.stdout
        self.entries: list[Entry] = []
        self._lock = threading.Lock()
        self._start = clock.wall()

    def stamp(self, wall: float) -> str:
        local = datetime.fromtimestamp(wall, self.tz)
        day = int((wall - self._start) // 86400) + 1
        return f"day {day} {local:%H:%M:%S}"

    def add(self, party: str, text: str, wall: float | None = None) -> Entry:
        entry = Entry(self.clock.wall() if wall is None else wall, party, text)
        with self._lock:
            self.entries.append(entry)
            print(f"{self.stamp(entry.wall)}  {party:<22} {text}", file=self.out, flush=True)
        return entry

    def by_party(self, party: str) -> list[Entry]:
        with self._lock:
            return [e for e in self.entries if e.party == party]


class TimelineSpeaker:
    """A node's voice: what would be spoken in the car, at the kiosk or in the home, printed on the timeline."""

    def __init__(self, timeline: Timeline, party: str) -> None:
        self.timeline = timeline
        self.party = party
        self.said: list[str] = []

    def say(self, text: str | None = None, wav: Wav | None = None, volume: int | None = None) -> None:
        self.said.append(text or str(wav))
        loudness = f" (volume {volume}%)" if volume is not None else ""
        self.timeline.add(self.party, (f'voice: "{text}"' if text else f"voice: {wav}") + loudness)

    def health(self) -> dict[str, object]:
        return {"backend": "timeline", "last_error": None}

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release."""
