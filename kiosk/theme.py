"""The kiosk's colours, sizes and state icons as plain data, with the WCAG contrast check they must pass.

No Kivy import: tests compute every text/background contrast from these constants, and the app reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ------------------------------------------------------------------------------------------------ colours
# every text/background pair is at least 7:1 (WCAG 2.2 AAA), checked on the constants and on rendered pixels
BACKGROUND = "#F7F7F2"  # warm off-white: less glare than pure white in sun at a gate
TEXT = "#111111"
TEXT_SECONDARY = "#333333"  # English lines under the Chinese
BAR_BG = "#1F3A5F"  # the pickup-point bar
BAR_TEXT = "#FFFFFF"
CALL_BG = "#085C30"
CALL_BG_PRESSED = "#053D20"
CALL_TEXT = "#FFFFFF"
CANCEL_BG = "#8E1216"
CANCEL_BG_PRESSED = "#5E0B0E"
CANCEL_TEXT = "#FFFFFF"
BACK_BG = "#3A3A3A"
BACK_BG_PRESSED = "#1E1E1E"
BACK_TEXT = "#FFFFFF"
HELP_BG = "#FFC94D"  # amber: found at a glance on every screen, dark text
HELP_BG_PRESSED = "#E0A300"
HELP_TEXT = "#111111"
# Chinese plates: blue with white characters (7 characters), new-energy green with black characters (8)
PLATE_BLUE_BG = "#0A3A8C"
PLATE_BLUE_TEXT = "#FFFFFF"
PLATE_GREEN_BG = "#7ACC6E"
PLATE_GREEN_TEXT = "#111111"
NOTICE_BG = "#FFE08A"  # the hotline panel
NOTICE_TEXT = "#111111"
ICON = "#111111"

# every (text, background, where) pair on screen
TEXT_PAIRS: tuple[tuple[str, str, str], ...] = (
    (TEXT, BACKGROUND, "headings and details"),
    (TEXT_SECONDARY, BACKGROUND, "English lines"),
    (BAR_TEXT, BAR_BG, "pickup-point bar"),
    (CALL_TEXT, CALL_BG, "call button"),
    (CALL_TEXT, CALL_BG_PRESSED, "call button, pressed"),
    (CANCEL_TEXT, CANCEL_BG, "cancel button"),
    (CANCEL_TEXT, CANCEL_BG_PRESSED, "cancel button, pressed"),
    (BACK_TEXT, BACK_BG, "back button"),
    (BACK_TEXT, BACK_BG_PRESSED, "back button, pressed"),
    (HELP_TEXT, HELP_BG, "help button"),
    (HELP_TEXT, HELP_BG_PRESSED, "help button, pressed"),
    (PLATE_BLUE_TEXT, PLATE_BLUE_BG, "blue plate"),
    (PLATE_GREEN_TEXT, PLATE_GREEN_BG, "green new-energy plate"),
    (NOTICE_TEXT, NOTICE_BG, "hotline panel"),
    (ICON, BACKGROUND, "state icon"),
)
MIN_CONTRAST = 7.0  # WCAG 2.2 AAA

# the side buttons: kind -> (background, pressed, text); their words are labels.<kind>_zh/_en
BUTTON_COLOURS: dict[str, tuple[str, str, str]] = {
    "cancel": (CANCEL_BG, CANCEL_BG_PRESSED, CANCEL_TEXT),
    "confirm": (CANCEL_BG, CANCEL_BG_PRESSED, CANCEL_TEXT),
    "back": (BACK_BG, BACK_BG_PRESSED, BACK_TEXT),
    "keep": (BACK_BG, BACK_BG_PRESSED, BACK_TEXT),
    "help": (HELP_BG, HELP_BG_PRESSED, HELP_TEXT),
}


def plate_colours(plate: str) -> tuple[str, str]:
    """(background, text) of a Chinese plate: 8 characters is a green new-energy plate, else blue."""
    chars = sum(1 for ch in plate if ch.isalnum())
    return (PLATE_GREEN_BG, PLATE_GREEN_TEXT) if chars == 8 else (PLATE_BLUE_BG, PLATE_BLUE_TEXT)


# ------------------------------------------------------------------------------------------- sizes (mm)
# The layout in millimetres on the reference screen, the official 7-inch display; a larger screen scales it up
# by how much larger it is. Text sizes are font sizes (the em); the ink of a Chinese line is about 0.95 em, of
# digits about 0.77 em. The minimums below are ink heights, measured on rendered screens by the tests.
REFERENCE_MM = (154.21, 85.92)  # Raspberry Pi Touch Display, active area (landscape)
KNOWN_PANELS: dict[tuple[float, int, int], tuple[float, float]] = {
    (7.0, 800, 480): REFERENCE_MM,  # non-square pixels: 0.193 mm wide, 0.179 mm tall
}
# the smallest panel the layout fits, as a share of the 7-inch's active area each way (kiosk.screen refuses less):
# the sizes never shrink below the 7-inch's, and an 800x480 panel of 6.5" still holds every screen, 6.0" does not
SMALLEST_SHARE = 0.9
# Four text sizes only: Kivy opens the CJK font once per size, and each is about 2.4 MB in memory (measured)
TEXT_MM, HEADING_MM, HOTLINE_MM, LARGE_MM = 7.8, 13.2, 16.8, 20.6
LAYOUT_MM: dict[str, float] = {
    "padding": 1.6,
    "bar_height": 11.0,
    "bar_text": TEXT_MM,
    "heading": HEADING_MM,
    "text": TEXT_MM,
    "plate": LARGE_MM,
    "hotline": HOTLINE_MM,
    "call_text": LARGE_MM,
    "call_hint": TEXT_MM,
    "button_text": TEXT_MM,
    "button_height": 20.5,
    "button_width": 46.0,
    "help_width": 30.0,
    "confirm_width": 48.0,
    "icon": 11.0,
    "shift": 1.0,  # the idle screen's burn-in shift, at most this far each way
    "text_en": 6.2,  # English lines (kiosk.screen.english): two more sizes
    "heading_en": 8.0,
}
# ink heights the tests hold every screen to on the 7-inch screen (issue 11: readable at 1.5 m)
MIN_INK_MM = {"heading": 12.0, "text": 7.0, "plate": 15.0, "hotline": 12.0}
MIN_TARGET_MM = 20.0


@dataclass(frozen=True)
class ScreenGeometry:
    """A screen's pixels and millimetres: the pixel pitch each way, and the layout scale against the 7-inch."""

    width_px: int
    height_px: int
    width_mm: float
    height_mm: float

    @classmethod
    def of(cls, diagonal_in: float, width_px: int, height_px: int, width_mm: float = 0.0, height_mm: float = 0.0):
        """From the config: the given active area, a known panel's, or square pixels over the diagonal."""
        if width_mm <= 0 or height_mm <= 0:
            known = KNOWN_PANELS.get((round(diagonal_in, 1), width_px, height_px))
            if known is not None:
                width_mm, height_mm = known
            else:
                pitch = diagonal_in * 25.4 / math.hypot(width_px, height_px)
                width_mm, height_mm = width_px * pitch, height_px * pitch
        return cls(width_px, height_px, width_mm, height_mm)

    @property
    def mm_per_px_x(self) -> float:
        return self.width_mm / self.width_px

    @property
    def mm_per_px_y(self) -> float:
        return self.height_mm / self.height_px

    @property
    def share(self) -> float:
        """This panel against the 7-inch's active area, the smaller way. Upright too, the screens are the
        7-inch's landscape layout, so the width is measured against its width (before 2026-12-07 against its
        height: a 15.6-inch upright panel drew everything 2.24x, and the pickup bar ran off its side)."""
        return min(self.width_mm / REFERENCE_MM[0], self.height_mm / REFERENCE_MM[1])

    def too_small(self) -> bool:
        """Smaller than the layout fits (SMALLEST_SHARE of the 7-inch's active area either way)."""
        return self.share < SMALLEST_SHARE

    @property
    def scale(self) -> float:
        """How much larger than on the 7-inch every size is drawn (never smaller)."""
        return max(1.0, self.share)

    def layout_px(self) -> dict[str, float]:
        """Every LAYOUT_MM size in pixels on this screen: widths by the horizontal pitch, the rest vertical."""
        out = {}
        for key, mm in LAYOUT_MM.items():
            pitch = self.mm_per_px_x if key.endswith("_width") else self.mm_per_px_y
            out[key] = mm * self.scale / pitch
        return out


def shift_offset(step: int, amplitude: float) -> tuple[float, float]:
    """The idle screen's offset at shift ``step``: a slow walk around a small square, back to the middle."""
    pattern = ((0, 0), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
    dx, dy = pattern[step % len(pattern)]
    return dx * amplitude, dy * amplitude


# state -> icon shape drawn beside the heading: the state is never told by colour alone
STATE_ICONS: dict[str, str] = {
    "idle": "taxi",
    "requesting": "hourglass",
    "searching": "magnifier",
    "assigned": "taxi",
    "arrived": "check",
    "car_late": "clock",
    "no_car": "exclamation",
    "cancelled": "cross",
    "offline": "no_link",
    "error": "exclamation",
    "help_requested": "person",
    "help_taken_in": "check",
    "confirm_cancel": "question",
}
# screens that show the hotline in large digits
HOTLINE_STATES = frozenset({"car_late", "no_car", "offline", "error"})


def primary_button(view: object) -> str:
    """The bottom-left button of a screen: cancel a ride, back, keep the ride, or none."""
    state = getattr(view, "state", "idle")
    if state == "confirm_cancel":
        return "keep"
    if state in ("requesting", "searching", "assigned", "car_late"):
        return "cancel"
    if state == "offline" and getattr(view, "cancellable", False):
        return "cancel"
    if state in ("arrived", "no_car", "cancelled", "error", "help_requested", "help_taken_in"):
        return "back"
    return "none"  # idle, offline with nothing ordered


@dataclass(frozen=True)
class Rgb:
    r: float
    g: float
    b: float

    @classmethod
    def parse(cls, hex_colour: str) -> Rgb:
        h = hex_colour.lstrip("#")
        if len(h) != 6:
            raise ValueError(f"not a #RRGGBB colour: {hex_colour!r}")
        return cls(*(int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)))

    def rgba(self, alpha: float = 1.0) -> tuple[float, float, float, float]:
        return (self.r, self.g, self.b, alpha)


def rgba(hex_colour: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """A '#RRGGBB' colour as Kivy's 0..1 RGBA."""
    return Rgb.parse(hex_colour).rgba(alpha)


def relative_luminance(hex_colour: str) -> float:
    """WCAG 2.2 relative luminance of an sRGB colour."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    c = Rgb.parse(hex_colour)
    return 0.2126 * linear(c.r) + 0.7152 * linear(c.g) + 0.0722 * linear(c.b)


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG contrast ratio (1..21) of two colours."""
    a, b = relative_luminance(foreground), relative_luminance(background)
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)
