"""The display's backlight through Linux sysfs (/sys/class/backlight/<device>/brightness): dim at night.

The official Raspberry Pi display and most DSI panels show up there; HDMI monitors usually do not, and then
nothing is dimmed (dimming by drawing a dark veil would cost the text its contrast).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
SYSFS_BACKLIGHT = Path("/sys/class/backlight")


class Backlight:
    """One backlight device folder (holding ``brightness`` and ``max_brightness``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.max = int((folder / "max_brightness").read_text().strip())
        self.percent: int | None = None
        self.failed = False

    def set_percent(self, percent: int) -> bool:
        """Set the brightness; False (logged once) when the device refuses (permissions, unplugged)."""
        if percent == self.percent or self.failed:
            return not self.failed
        value = max(1, round(self.max * percent / 100))
        try:
            (self.folder / "brightness").write_text(f"{value}\n")
        except OSError as exc:
            self.failed = True
            log.error("backlight %s: cannot set brightness: %s (the screen is not dimmed)", self.folder, exc)
            return False
        self.percent = percent
        return True


def open_backlight(folder: Path | None = None, root: Path = SYSFS_BACKLIGHT) -> Backlight | None:
    """The configured backlight, or the first one the kernel lists; None when there is none to control."""
    candidates = [folder] if folder is not None else sorted(root.iterdir()) if root.is_dir() else []
    for candidate in candidates:
        try:
            return Backlight(candidate)
        except (OSError, ValueError) as exc:
            log.warning("backlight %s unusable: %s", candidate, exc)
    if folder is None:
        log.info("no backlight to control in %s: the screen is not dimmed at night", root)
    return None
