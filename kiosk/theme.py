"""The kiosk's colours, sizes and state icons as plain data, with the WCAG contrast check they must pass.

No Kivy import: tests compute every text/background contrast from these constants, and the app reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------------------------------------ colours
BACKGROUND = "#F7F7F2"  # warm off-white: less glare than pure white in sun at a gate
TEXT = "#111111"
TEXT_SECONDARY = "#333333"  # English lines under the Chinese
BAR_BG = "#1F3A5F"  # the pickup-point bar
BAR_TEXT = "#FFFFFF"
CALL_BG = "#0B6E3A"
CALL_BG_PRESSED = "#064A26"
CALL_TEXT = "#FFFFFF"
CANCEL_BG = "#A4161A"
CANCEL_BG_PRESSED = "#6E0E11"
CANCEL_TEXT = "#FFFFFF"
BACK_BG = "#3A3A3A"
BACK_BG_PRESSED = "#1E1E1E"
BACK_TEXT = "#FFFFFF"
PLATE_BG = "#0A3A8C"  # a Chinese plate: white characters on blue (new-energy plates are green; blue reads better)
PLATE_TEXT = "#FFFFFF"
NOTICE_BG = "#FFE08A"  # offline / error / no car panel
NOTICE_TEXT = "#111111"
ICON = "#111111"

# every (text, background, where) pair on screen; tests hold each to 4.5:1 (WCAG 2.2 AA, MIIT ageing rules)
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
    (PLATE_TEXT, PLATE_BG, "plate"),
    (NOTICE_TEXT, NOTICE_BG, "offline/error notice and hotline"),
    (ICON, BACKGROUND, "state icon"),
)
MIN_CONTRAST = 4.5

# ---------------------------------------------------------------------------------------------- sizes (dp)
# at 800x480 (the official 7" screen); larger screens scale every size up by min(w/800, h/480)
BASE_WIDTH, BASE_HEIGHT = 800, 480
MIN_TARGET_DP = 60  # MIIT 2021: main targets >= 60x60 dp
MIN_KEY_TEXT_DP = 30  # MIIT 2021: the largest text >= 30 dp
SIZES_DP: dict[str, float] = {
    "bar_height": 64,
    "bar_text": 30,
    "bar_text_en": 24,
    "call_text_zh": 64,
    "call_text_en": 36,
    "call_hint_zh": 30,
    "call_hint_en": 26,
    "heading_zh": 40,
    "heading_en": 30,
    "detail_zh": 28,
    "detail_en": 24,
    "plate_text": 72,
    "eta_text": 36,
    "eta_text_en": 30,
    "hotline_text": 44,
    "action_text_zh": 34,
    "action_text_en": 30,
    "action_width": 230,
    "icon": 56,
    "padding": 10,
}
# key text (MIIT: the largest text >= 30 dp): headings, the call and action buttons, the plate, the hotline
KEY_TEXT_SIZES = (
    "bar_text",
    "call_text_zh",
    "call_text_en",
    "call_hint_zh",
    "heading_zh",
    "heading_en",
    "plate_text",
    "eta_text",
    "eta_text_en",
    "hotline_text",
    "action_text_zh",
    "action_text_en",
)
# main text (MIIT elder mode: >= 18 dp): details and English helper lines
MIN_MAIN_TEXT_DP = 18
MAIN_TEXT_SIZES = ("bar_text_en", "call_hint_en", "detail_zh", "detail_en")
TARGET_SIZES = ("action_width",)  # the action column; its buttons are taller still

# state -> icon shape drawn beside the heading: the state is never told by colour alone
STATE_ICONS: dict[str, str] = {
    "idle": "taxi",
    "requesting": "hourglass",
    "searching": "magnifier",
    "assigned": "taxi",
    "arrived": "check",
    "no_car": "exclamation",
    "cancelled": "cross",
    "offline": "no_link",
    "error": "exclamation",
}


# the side button of each screen; its words are labels.<kind>_zh/_en in the texts file
SIDE_BUTTONS = ("cancel", "call", "retry", "back")
CANCELLABLE = frozenset({"requesting", "searching", "assigned"})


def action_kind(view: object) -> str:
    """The side button for a RideView: cancel a ride, call a taxi, try again, back to idle, or none (idle)."""
    state = getattr(view, "state", "idle")
    if state == "idle":
        return "none"
    if state in CANCELLABLE or (state == "offline" and getattr(view, "cancellable", False)):
        return "cancel"
    if state == "cancelled":
        return "call"
    if state in ("offline", "no_car", "error"):
        return "retry"
    return "back"  # arrived


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


def scale_for(width: int, height: int) -> float:
    """How much larger than the 800x480 design every size is drawn (never smaller)."""
    return max(1.0, min(width / BASE_WIDTH, height / BASE_HEIGHT))
