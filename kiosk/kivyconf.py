"""Kivy set-up that must happen before any other Kivy import: environment, kiosk hardening, window size.

Importing ``kivy.core.window`` (or modules that pull it in) opens a window, so everything here runs first, and
``kiosk.app`` is imported only afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol

_configured = False


class WindowSettings(Protocol):
    """What ``configure_kivy`` reads of the screen (``kiosk.config.ScreenSection`` has it; the bench's bare app
    passes its own, so it carries nothing of the kiosk's config)."""

    # read-only members: the kiosk's section is a frozen dataclass and its rotation a Literal of the four angles
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def fullscreen(self) -> bool: ...
    @property
    def touch_input(self) -> str: ...
    @property
    def rotation(self) -> int: ...


def prepare_environment(kivy_home: Path | None = None) -> None:
    """Environment Kivy reads when first imported: no argv parsing, SIGTERM left to us, a private KIVY_HOME,
    Python logging."""
    if "kivy" in sys.modules:
        return
    os.environ["KIVY_NO_ARGS"] = "1"  # our own argparse owns the command line
    # SDL would turn SIGTERM into a window-close request, which a kiosk ignores: systemd's stop is ours to handle
    os.environ["SDL_NO_SIGNAL_HANDLERS"] = "1"
    os.environ.setdefault("KIVY_LOG_MODE", "MIXED")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")  # journald has the log; no files growing on the SD card
    if kivy_home is not None and not os.environ.get("KIVY_HOME"):  # the systemd unit may set it
        kivy_home.mkdir(parents=True, exist_ok=True)
        os.environ["KIVY_HOME"] = str(kivy_home)


def configure_kivy(screen: WindowSettings, *, fullscreen: bool | None = None, kivy_home: Path | None = None) -> None:
    """Hardened kiosk settings: full screen, no cursor, Escape does not quit, no screensaver, no multitouch."""
    global _configured
    prepare_environment(kivy_home)
    from kivy.config import Config

    full = screen.fullscreen if fullscreen is None else fullscreen
    Config.set("graphics", "width", str(screen.width))
    Config.set("graphics", "height", str(screen.height))
    Config.set("graphics", "rotation", str(screen.rotation))
    Config.set("graphics", "fullscreen", "auto" if full else "0")
    Config.set("graphics", "borderless", "1" if full else "0")
    Config.set("graphics", "resizable", "0")
    Config.set("graphics", "show_cursor", "0")
    Config.set("graphics", "allow_screensaver", "0")
    Config.set("graphics", "multisamples", "0")  # llvmpipe and the Pi's V3D are faster without
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "pause_on_minimize", "0")
    Config.set("kivy", "keyboard_mode", "system")  # never pop up a virtual keyboard
    Config.set("kivy", "log_level", "warning")
    # a mouse click is one touch; no red multitouch-emulation dots left on screen by a right click
    Config.set("input", "mouse", "mouse,disable_multitouch")
    if screen.touch_input:
        # on KMS/DRM without X the touch panel may need Kivy's own evdev reader (the official 7" panel: hidinput)
        Config.set("input", "kiosk_touch", screen.touch_input)
    Config.remove_option("modules", "inspector") if Config.has_option("modules", "inspector") else None
    _configured = True


def is_configured() -> bool:
    return _configured
