"""The kiosk's widgets, laid out by kiosk.kv: lines of text with the roles the size checks know, the buttons, the
idle and screen panels with their fit factors, and the root that notes every touch.

Import only after ``kiosk.kivyconf.configure_kivy()`` (as kiosk.app).
"""

from __future__ import annotations

import time
from typing import Any

from kivy.app import App
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from kiosk import theme
from kiosk.texts import Texts

BUTTON_ICONS = {"cancel": "cross", "confirm": "cross", "back": "back", "keep": "back", "help": "person"}


class Text(Label):
    """A line of text with a role the size checks know: heading, text, plate, hotline, button or english."""

    role = StringProperty("text")


class Word(Label):
    """A single line as wide as its text (the plate, the hotline, a button's word); a role as for Text."""

    role = StringProperty("text")


class KioskButton(ButtonBehavior, BoxLayout):
    """Cancel, back, keep, confirm or help: at least 20 mm each way, words and an icon."""

    kind = StringProperty("back")
    text_zh = StringProperty("")
    text_en = StringProperty("")
    icon = StringProperty("back")
    bg = StringProperty(theme.BACK_BG)
    bg_pressed = StringProperty(theme.BACK_BG_PRESSED)
    fg = StringProperty(theme.BACK_TEXT)

    def set_kind(self, kind: str, texts: Texts, english: bool) -> None:
        self.kind = kind
        self.bg, self.bg_pressed, self.fg = theme.BUTTON_COLOURS[kind]
        self.icon = BUTTON_ICONS[kind]
        self.text_zh = texts.label(f"{kind}_zh")
        self.text_en = texts.label(f"{kind}_en") if english else ""


class CallButton(ButtonBehavior, BoxLayout):
    """The huge call button; reacts on touch-down so a trembling finger sliding off still counts."""

    text_zh = StringProperty("")
    text_en = StringProperty("")
    hint_zh = StringProperty("")
    hint_en = StringProperty("")
    show_icon = BooleanProperty(True)  # the taxi above the words; gives way where the words need the room
    fit = NumericProperty(1.0)  # < 1 only where the words alone do not fit (logged)


class IdlePanel(BoxLayout):
    pass


class PlateBox(Widget):
    plate = StringProperty("")
    bg = StringProperty(theme.PLATE_BLUE_BG)
    fg = StringProperty(theme.PLATE_BLUE_TEXT)
    fit = NumericProperty(1.0)


class ScreenPanel(BoxLayout):
    """Every screen but idle: icon and heading, the plate, a detail line, the hotline; buttons at the bottom."""

    fit = NumericProperty(1.0)  # < 1 only when a long text from the texts file would not fit (logged)
    status_fit = NumericProperty(1.0)  # the English line beside the buttons: < 1 where the two lines do not fit
    status_room = BooleanProperty(True)  # False: even at its smallest it does not fit, and is left out (logged)
    icon = StringProperty("")
    heading_zh = StringProperty("")
    heading_en = StringProperty("")
    plate = StringProperty("")
    plate_bg = StringProperty(theme.PLATE_BLUE_BG)
    plate_fg = StringProperty(theme.PLATE_BLUE_TEXT)
    detail_zh = StringProperty("")
    detail_en = StringProperty("")
    hotline = StringProperty("")
    status_zh = StringProperty("")
    status_en = StringProperty("")


class KioskRoot(BoxLayout):
    bar_fit = NumericProperty(1.0)
    shift_x = NumericProperty(0.0)  # the idle screen's burn-in shift, pixels
    shift_y = NumericProperty(0.0)

    def on_touch_down(self, touch: Any) -> bool:
        app = App.get_running_app()
        if app is not None:
            app.last_touch = time.monotonic()  # before any button acts on it
        return super().on_touch_down(touch)
