"""The ``[kiosk]`` config section: pickup point, hotline, screen, ride timings, arcade button and LED."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.config import ButtonPin, LedPin, setting
from kiosk.theme import REFERENCE_MM, SMALLEST_SHARE, ScreenGeometry

# fonts-noto-cjk on Debian/Raspberry Pi OS: one .ttc holds the JP, KR, SC, TC and HK faces; the kiosk uses the SC face.
# Bold for every line by default: heavier strokes read better at 1.5 m, and one face is one font in memory.
DEFAULT_FONT_BOLD = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
DEFAULT_FONT = DEFAULT_FONT_BOLD
DEFAULT_FONT_FACE = "Noto Sans CJK SC"


@dataclass(frozen=True, kw_only=True)
class ScreenSection:
    """The touch screen; the default is the official Raspberry Pi 7-inch display (800x480, 154.21x85.92 mm)."""

    diagonal_in: float = setting(7.0, min=3.0, max=100.0, help="the panel's diagonal in inches")
    width: int = setting(800, min=320, max=7680, help="pixels, after rotation")
    height: int = setting(480, min=240, max=4320, help="pixels, after rotation")
    width_mm: float = setting(
        0.0, min=0.0, max=3000.0, help="active area width after rotation; 0: the known panel's, else from diagonal_in"
    )
    height_mm: float = setting(0.0, min=0.0, max=3000.0, help="active area height after rotation; 0: as width_mm")
    rotation: Literal[0, 90, 180, 270] = setting(0, help="degrees; 180 for a display mounted upside down")
    fullscreen: bool = setting(True, help="false only for development on a desktop")
    font: Path = setting(
        DEFAULT_FONT, help="a font (or collection) with CJK glyphs for the details (fonts-noto-cjk); default the bold"
    )
    font_bold: Path = setting(DEFAULT_FONT_BOLD, help="bold CJK font for the plate, headings and buttons")
    font_face: str = setting(
        DEFAULT_FONT_FACE, help="family taken from a font collection: the Simplified Chinese face for Shanghai"
    )
    english: bool = setting(False, help="an English line under each Chinese one (smaller; best on 10-inch and up)")
    night_brightness: int = setting(
        30, min=5, max=100, help="backlight percent at night ([audio] night_start..night_end); 100: no dimming"
    )
    day_brightness: int = setting(100, min=5, max=100, help="backlight percent by day")
    backlight: Path | None = setting(
        None, help="sysfs backlight folder (holds brightness, max_brightness); omit: the first in /sys/class/backlight"
    )
    shift_every_s: float = setting(180.0, min=10.0, max=3600.0, help="the idle screen moves slightly this often")
    touch_input: str = setting(
        "", help="extra Kivy input provider for the touch panel, e.g. probesysfs,provider=hidinput; empty: SDL2's"
    )

    def problems(self) -> list[str]:
        found = []
        if (self.width_mm > 0) != (self.height_mm > 0):
            found.append("screen.width_mm, screen.height_mm: give both, or neither")
        geometry = ScreenGeometry.of(self.diagonal_in, self.width, self.height, self.width_mm, self.height_mm)
        if geometry.too_small():
            upright = self.width < self.height
            found.append(
                f"screen: {self.width}x{self.height} at {self.diagonal_in:g} inches is {geometry.width_mm:.0f} mm"
                f" wide and {geometry.height_mm:.0f} mm tall: too small for text read at 1.5 m; the screens need at"
                f" least {REFERENCE_MM[0] * SMALLEST_SHARE:.0f} mm across and {REFERENCE_MM[1] * SMALLEST_SHARE:.0f}"
                " mm down (the official 7-inch display: 154 x 86 mm)"
                + (
                    "; upright, mount it landscape (with rotation for its connector's side) or use a larger one"
                    if upright
                    else "; check diagonal_in, or give the datasheet's width_mm and height_mm"
                )
            )
        return found


@dataclass(frozen=True, kw_only=True)
class RideTimingSection:
    """How patient the kiosk is with the central and with the resident."""

    poll_interval_s: float = setting(3.0, min=0.2, max=60.0, help="ride status poll while a ride is active")
    retry_interval_s: float = setting(5.0, min=0.2, max=300.0, help="retry while the central is unreachable")
    reply_timeout_s: float = setting(25.0, min=1.0, max=300.0, help="no reply at all: count as unreachable")
    request_give_up_s: float = setting(
        180.0, min=10.0, max=3600.0, help="an order not delivered by then is dropped (resident told to call)"
    )
    search_give_up_s: float = setting(600.0, min=30.0, max=3600.0, help="searching this long: no car")
    assigned_max_s: float = setting(
        2700.0, min=60.0, max=14400.0, help="assigned (or late) but never arrived: idle, and the ride is cancelled"
    )
    late_after_s: float = setting(300.0, min=60.0, max=3600.0, help="this long past the promised ETA: car_late")
    late_without_eta_s: float = setting(
        900.0, min=60.0, max=7200.0, help="a car assigned without an ETA counts as late this long after assignment"
    )
    reassure_every_s: float = setting(60.0, min=20.0, max=600.0, help="searching: the reassurance prompt repeats")
    # WCAG 2.2 "enough time": >= 20 s to read a result before the screen moves on
    result_hold_s: float = setting(30.0, min=20.0, max=600.0, help="no car/cancelled/error shown this long")
    arrived_hold_s: float = setting(180.0, min=20.0, max=1800.0, help="the plate stays on screen this long")
    confirm_hold_s: float = setting(30.0, min=20.0, max=300.0, help="the cancel question waits this long, then keeps")
    help_hold_s: float = setting(90.0, min=20.0, max=1800.0, help="each help screen (told, taken in) stays this long")
    help_clear_s: float = setting(
        1800.0, min=60.0, max=86400.0, help="a help request is re-sent every renotify interval until then"
    )
    arcade_hold_s: float = setting(
        3.0, min=1.0, max=10.0, help="holding the arcade button this long asks for help (button.hold_s is not used)"
    )


@dataclass(frozen=True, kw_only=True)
class KioskConfig:
    """The kiosk at one gate: where the taxi comes, who to call, the screen, the arcade button and its LED."""

    pickup_point: str = setting(help="name of the fixed pickup point, shown and spoken")
    pickup_point_en: str = setting("", help="its English name, shown under the Chinese one")
    hotline: str = setting(help="phone number shown when the central cannot be reached")
    texts: Path | None = setting(None, help="screen and voice texts (TOML); omit for the built-in kiosk/texts.toml")
    voice_language: Literal["zh", "en"] = setting("zh", help="language of the voice prompts")
    screen: ScreenSection = setting(default_factory=ScreenSection, help="the touch screen, [kiosk.screen]")
    timing: RideTimingSection = setting(default_factory=RideTimingSection, help="ride patience, [kiosk.timing]")
    button: ButtonPin | None = setting(None, help="arcade button; omit on a kiosk without one")
    led: LedPin | None = setting(None, help="the arcade button's LED")
    led_pwm: bool = setting(True, help="LED pin can dim (PWM): pulse at idle instead of a slow blink")
    watchdog_ping_s: float = setting(
        0.0, min=0.0, max=600.0, help="UI thread watchdog ping period; 0: half of systemd's WatchdogSec"
    )

    def problems(self) -> list[str]:
        found = []
        if not self.pickup_point.strip():
            found.append("pickup_point: must name the pickup point")
        if not any(ch.isdigit() for ch in self.hotline):
            found.append(f"hotline = {self.hotline!r}: must be a phone number")
        if self.led is not None and self.button is not None and self.led.pin == self.button.pin:
            found.append(f"led.pin = {self.led.pin}: same pin as button.pin")
        t = self.timing
        if t.poll_interval_s >= t.search_give_up_s:
            found.append("timing.poll_interval_s: must be shorter than timing.search_give_up_s")
        return found
