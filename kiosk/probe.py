"""What a measured kiosk process prints about itself, for ``kiosk.drive`` and the bench's bare Kivy app alike:
one JSON object per line, and this process's resident set size, read the same way in both (stdlib only, so the
bare app carries nothing of the kiosk's)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def emit(event: str, **fields: Any) -> None:
    """One line of JSON on stdout: the event, the wall time, and ``fields``."""
    print(json.dumps({"event": event, "wall": time.time(), **fields}, ensure_ascii=False), flush=True)


def rss_mb() -> float:
    """This process's resident set size in MB (VmRSS from Linux /proc); NaN where there is none."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
