"""Speech test helpers: a speaker that remembers instead of playing (a hal.audio.Speaker), and sox's measure of a WAV."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from hal.audio import Wav


def sox_stat(wav: Path) -> dict[str, float]:
    """sox's own measure of a WAV file (``sox FILE -n stat``): length in seconds, RMS amplitude, ..."""
    sox = shutil.which("sox")
    assert sox, "sox must be installed (apt-get install sox; scripts/test does it)"
    done = subprocess.run([sox, str(wav), "-n", "stat"], capture_output=True, text=True, timeout=30, check=True)
    found = {}
    for line in done.stderr.splitlines():
        name, _, value = line.partition(":")
        try:
            found[name.strip() if name.strip() != "RMS     amplitude" else name] = float(value)
        except ValueError:
            continue
    return found


class RecordingSpeaker:
    """Remembers every prompt in ``.said`` as (text, wav) and its volume in ``.volumes``; ``wait_for(n)`` blocks
    until n were said."""

    backend = "recording"

    def __init__(self) -> None:
        self.said: list[tuple[str | None, Wav | None]] = []
        self.volumes: list[int | None] = []
        self._cond = threading.Condition()

    def say(self, text: str | None = None, wav: Wav | None = None, volume: int | None = None) -> None:
        with self._cond:
            self.said.append((text, wav))
            self.volumes.append(volume)
            self._cond.notify_all()

    @property
    def texts(self) -> list[str]:
        """What was said, in order; "" for a WAV played without a text."""
        with self._cond:
            return [text or "" for text, _ in self.said]

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        """True once at least ``n`` prompts were said; False after ``timeout`` real seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.said) >= n, timeout)

    def health(self) -> dict[str, Any]:
        return {"backend": self.backend, "played": len(self.said), "last_error": None}

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass
