"""The kiosk's Kivy touch screen: the panel for every ride state, sized in millimetres, hardening, watchdog pings.

Import only after ``kiosk.kivyconf.configure_kivy()``: importing Kivy's window opens one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import kivyconf

if not kivyconf.is_configured():  # pragma: no cover - a programming error, not a runtime condition
    raise RuntimeError("call kiosk.kivyconf.configure_kivy() before importing kiosk.app")

from kivy.app import App  # noqa: E402
from kivy.clock import Clock as KivyClock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.properties import DictProperty, StringProperty  # noqa: E402
from kivy.uix.label import Label  # noqa: E402
from kivy.uix.widget import Widget  # noqa: E402

from common.clock import Clock, SystemClock  # noqa: E402
from common.config import NodeConfig  # noqa: E402
from kiosk import faces, theme  # noqa: E402
from kiosk.config import ScreenSection  # noqa: E402
from kiosk.fonts import FontError, kiosk_fonts  # noqa: E402
from kiosk.icons import StateIcon  # noqa: E402
from kiosk.texts import Texts  # noqa: E402
from kiosk.view import RideView  # noqa: E402
from kiosk.widgets import IdlePanel, KioskButton, KioskRoot, ScreenPanel, Text, Word  # noqa: E402

if TYPE_CHECKING:  # the controller (and the network client under it) is attached after the first frame
    from kiosk.controller import KioskController
    from kiosk.node import KioskNode

log = logging.getLogger(__name__)
KV_FILE = Path(__file__).with_name("kiosk.kv")
# no button appears under a finger for this long after the touch that opened its screen
TOUCH_GUARD_S = 1.0
__all__ = ["KioskApp", "StateIcon"]


# ------------------------------------------------------------------------------------------------ app
class KioskApp(App):
    """The full-screen kiosk. The ride flow comes with ``controller`` or later with ``attach``; ``still``: a
    screen that never gets one (snapshots)."""

    kv_file = str(KV_FILE)  # App.load_kv() reads it once, before build()
    font = StringProperty("Roboto")
    font_bold = StringProperty("Roboto")
    sizes = DictProperty({})

    def __init__(
        self,
        texts: Texts,
        screen: ScreenSection,
        *,
        font_cache: Path,
        controller: KioskController | None = None,
        tick: Callable[[], None] | None = None,
        clock: Clock | None = None,
        watchdog: Callable[[str], Any] | None = None,
        watchdog_period_s: float = 0.0,
        on_ready: Callable[[KioskApp], None] | None = None,
        still: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.title = "Changbai kiosk"
        self.texts = texts
        self.screen_cfg = screen
        self.controller = controller
        self.tick = tick or (controller.tick if controller else None)
        self.clock = clock or (controller.clock if controller else SystemClock())
        self.watchdog = watchdog
        self.watchdog_period_s = watchdog_period_s
        self.on_ready = on_ready
        self.still = still  # a still screen (snapshots): touches do nothing
        self.font_problem = ""
        faces.install()  # one font per file for every text size (2.2 MB each for the CJK face)
        try:
            self.font, self.font_bold = kiosk_fonts(screen, font_cache)
        except FontError as exc:
            # a kiosk with Japanese glyph shapes still hails taxis; maintenance hears about it (kiosk_fault)
            self.font_problem = str(exc)
            log.error("font: %s; falling back to the file's first face", exc)
            self.font = str(screen.font) if screen.font.exists() else "Roboto"
            self.font_bold = str(screen.font_bold) if screen.font_bold.exists() else self.font
        self.view: RideView = RideView("idle")
        self.shown_at: dict[str, float] = {}  # state -> time.monotonic() it was put on screen (bench, tests)
        self.fitting = False  # a screen's text or the bar is still being fitted (a snapshot waits for it)
        self.fitting_call = False  # the same for the call button
        self.panel: Widget | None = None
        self.last_touch = -1e9  # time.monotonic() of the last touch-down anywhere on the screen
        self.shift_step = 0
        self._pending: list[str] = []  # touches before the ride controller is attached (the first moments)
        self._main_thread = threading.current_thread()
        self._resize()

    # ------------------------------------------------------------------------------------- set-up
    def build(self) -> Widget:
        self.root_widget = KioskRoot()
        self.idle = IdlePanel()
        self.call_button = self.idle.ids.call
        self.call_button.bind(on_press=lambda *_: self.press())
        self._call_fit_trigger = KivyClock.create_trigger(self._fit_call, 0.1)
        for widget in (self.call_button, *self.call_button.children):  # the button laid out, a line's text set
            widget.bind(height=self._call_changed)
        # the panel of the other screens and its two buttons are built at the first screen after idle: idle comes
        # up sooner
        self._screen: ScreenPanel | None = None
        self.idle.ids.help.bind(on_release=lambda *_: self._help())
        t, english = self.texts, self.screen_cfg.english
        self.root_widget.ids.bar_zh.text = f"{t.label('pickup_zh')}：{t.pickup_point}"
        if english:
            self.root_widget.ids.bar_en.text = f"{t.label('pickup_en')}: {t.pickup_point_en}"
        self._show(self.view)
        return self.root_widget

    @property
    def screen(self) -> ScreenPanel:
        """The panel of every screen but idle."""
        if self._screen is None:
            self.primary = KioskButton(on_release=lambda *_: self._primary())
            self.confirm = KioskButton(on_release=lambda *_: self._confirm())
            self._screen = ScreenPanel()
            self._screen.ids.help.bind(on_release=lambda *_: self._help())
        return self._screen

    def on_start(self) -> None:
        Window.show_cursor = False
        Window.bind(on_keyboard=self._on_keyboard, on_request_close=self._on_request_close, size=self._resize)
        self._resize()
        KivyClock.schedule_interval(self._every_second, 1.0)
        KivyClock.schedule_interval(self._shift, self.screen_cfg.shift_every_s)
        if self.controller is not None:
            self.attach(self.controller, self.tick, self.watchdog, self.watchdog_period_s)
        if self.on_ready is not None:
            KivyClock.schedule_once(lambda _dt: self.on_ready(self), 0)

    def after_first_frame(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the first screen is on the glass (the rest of the kiosk starts behind it)."""

        def flipped(*_: Any) -> None:
            Window.unbind(on_flip=flipped)
            KivyClock.schedule_once(lambda _dt: callback(), 0)

        Window.bind(on_flip=flipped)

    def attach(
        self,
        controller: KioskController,
        tick: Callable[[], None] | None = None,
        watchdog: Callable[[str], Any] | None = None,
        watchdog_period_s: float = 0.0,
    ) -> None:
        """Connect the ride flow: its views to the screen, the screen's touches (also those made already) to it."""
        self.controller, self.tick, self.clock = controller, tick or controller.tick, controller.clock
        self.watchdog, self.watchdog_period_s = watchdog, watchdog_period_s
        controller.add_listener(self.show)
        controller.start()
        self._show(controller.view())
        KivyClock.schedule_interval(lambda _dt: self.tick(), 0.25)
        if watchdog is not None:
            watchdog("READY=1")
            if watchdog_period_s > 0:
                # pinged from the UI thread: a frozen screen stops the pings and systemd restarts the kiosk
                KivyClock.schedule_interval(lambda _dt: watchdog("WATCHDOG=1"), watchdog_period_s)
        pending, self._pending = self._pending, []
        for action in pending:
            getattr(controller, action)("screen")

    def on_stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        if self.watchdog is not None:
            self.watchdog("STOPPING=1")

    def _on_keyboard(self, _window: Any, key: int, *_: Any) -> bool:
        return key == 27  # Escape (and Android back) must not close a kiosk

    def _on_request_close(self, *_: Any, **__: Any) -> bool:
        return True  # only SIGTERM (systemd) stops the kiosk

    def geometry(self) -> theme.ScreenGeometry:
        """This window's pixels and the configured panel's millimetres."""
        s = self.screen_cfg
        w, h = (int(v) for v in Window.size) if Window else (s.width, s.height)
        if (w, h) == (s.width, s.height):
            return theme.ScreenGeometry.of(s.diagonal_in, w, h, s.width_mm, s.height_mm)
        return theme.ScreenGeometry.of(7.0, w, h)  # a snapshot at the reference size (or a window being resized)

    def _resize(self, *_: Any) -> None:
        self.sizes = self.geometry().layout_px()
        if getattr(self, "root_widget", None) is not None:
            self.root_widget.bar_fit = 1.0
            self.root_widget.ids.bar_en.text_size = self.root_widget.ids.bar_zh.text_size = (None, None)
            self.call_button.fit, self.call_button.show_icon = 1.0, True
            self._apply_shift()
            KivyClock.schedule_once(self._fit_top, 0)
            screen = self._screen
            if screen is not None:
                screen.fit = screen.status_fit = 1.0
                screen.status_room = True
            if screen is not None and self.panel is screen:
                KivyClock.schedule_once(lambda _dt: self._autofit(), 0)

    def _shift(self, _dt: float) -> None:
        self.shift_step += 1
        self._apply_shift()

    def _apply_shift(self) -> None:
        # against burn-in on an idle screen left for hours; a ride's screens stay put
        step = self.shift_step if self.view.state == "idle" else 0
        root = self.root_widget
        root.shift_x, root.shift_y = theme.shift_offset(step, self.sizes["shift"])

    # ------------------------------------------------------------------------------------- inputs
    def press(self) -> None:
        """The call button."""
        self._act("press")

    def _primary(self) -> None:
        self._act("cancel" if self.primary.kind == "cancel" else "back")  # back, keep

    def _confirm(self) -> None:
        self._act("confirm_cancel")

    def _help(self) -> None:
        self._act("help")

    def _act(self, action: str) -> None:
        if self.controller is not None:
            getattr(self.controller, action)("screen")
        elif self.still is False:
            self._pending.append(action)  # handed over as soon as the ride flow is attached

    # ------------------------------------------------------------------------------------- screens
    def show(self, view: RideView) -> None:
        """Show ``view``; from the UI thread at once (a press), from other threads on the next frame."""
        if threading.current_thread() is self._main_thread:
            self._show(view)
        else:
            KivyClock.schedule_once(lambda _dt: self._show(view), 0)

    def _show(self, view: RideView) -> None:
        changed = view.state != self.view.state
        self.view = view
        if view.state == "idle":
            panel: Widget = self.idle
            self._fill_idle()
        else:
            panel = self.screen
            self._fill_screen(view)
        body = self.root_widget.ids.body
        if self.panel is not panel:
            body.clear_widgets()
            body.add_widget(panel)
            self.panel = panel
        self._apply_shift()
        if changed:
            self._guard_buttons()
        if panel is self._screen:
            self._screen.fit = self._screen.status_fit = 1.0
            self._screen.status_room = True
            self.fitting = True
            KivyClock.schedule_once(lambda _dt: self._autofit(), 0)
        else:
            self.fitting = True
            KivyClock.schedule_once(self._fit_top, 0)
        self.shown_at[view.state] = time.monotonic()

    def _fill_idle(self) -> None:
        t, english, b = self.texts, self.screen_cfg.english, self.call_button
        b.text_zh, b.hint_zh = t.label("call_zh"), t.label("call_hint_zh")
        b.text_en, b.hint_en = (t.label("call_en"), t.label("call_hint_en")) if english else ("", "")
        self.idle.ids.help.set_kind("help", t, english)

    def _fill_screen(self, view: RideView) -> None:
        t, english, p, state = self.texts, self.screen_cfg.english, self.screen, view.state
        params = _car_params(view.car)
        p.icon = theme.STATE_ICONS[state]
        p.heading_zh, p.detail_zh = t.line(state, "heading_zh", params), t.line(state, "detail_zh", params)
        p.heading_en = t.line(state, "heading_en", params) if english else ""
        p.detail_en = t.line(state, "detail_en", params) if english else ""
        show_plate = view.car is not None and state in ("assigned", "arrived")  # car_late: the hotline instead
        p.plate = view.car.plate if show_plate and view.car is not None else ""
        p.plate_bg, p.plate_fg = theme.plate_colours(p.plate)
        p.hotline = t.hotline if state in theme.HOTLINE_STATES else ""
        # beside the plate or the hotline the detail line goes next to the buttons (_update_status)
        if p.plate or p.hotline:
            p.detail_zh = p.detail_en = ""
        self._update_status()
        kind = theme.primary_button(view)
        slot = p.ids.primary_slot
        slot.clear_widgets()
        if kind != "none":
            self.primary.set_kind(kind, t, english)
            self.primary.width = self.sizes["button_width"]
            slot.add_widget(self.primary)
        confirm_slot = p.ids.confirm_slot
        confirm_slot.clear_widgets()
        if state == "confirm_cancel":
            self.confirm.set_kind("confirm", t, english)
            self.confirm.width = self.sizes["confirm_width"]
            confirm_slot.add_widget(self.confirm)
        p.ids.help.set_kind("help", t, english)

    def _guard_buttons(self) -> None:
        """A screen opened by a touch shows its buttons only a second after it: an anxious second tap on the
        same spot lands on nothing."""
        wait = self.last_touch + TOUCH_GUARD_S - time.monotonic()
        buttons = [self.idle.ids.help, self.call_button]
        if self._screen is not None:
            buttons += [self.primary, self.confirm, self._screen.ids.help]
        if wait <= 0:
            return
        for button in buttons:
            button.disabled, button.opacity = True, 0
        KivyClock.schedule_once(lambda _dt: self._unguard(buttons), wait)

    def _unguard(self, buttons: list[Widget]) -> None:
        if time.monotonic() < self.last_touch + TOUCH_GUARD_S - 0.01:
            KivyClock.schedule_once(
                lambda _dt: self._unguard(buttons), self.last_touch + TOUCH_GUARD_S - time.monotonic()
            )
            return
        for button in buttons:
            button.disabled, button.opacity = False, 1

    def buttons_shown(self) -> bool:
        """True when the screen's buttons can be touched (the guard after a touch is over)."""
        return (self._screen is None or not self.primary.disabled) and not self.call_button.disabled

    def _autofit(self) -> None:
        """Shrink the text when a long line from the texts file would run off the screen (logged); the English
        line beside the buttons first shrinks on its own (the Chinese one above it keeps its size)."""
        panel = self.screen
        content = panel.ids.content
        fixed = [c for c in content.children if c.size_hint_y is None]
        needed = sum(c.height for c in fixed) + content.spacing * max(0, len(fixed) - 1)
        ids = panel.ids
        widest = max(ids.plate_box.right, ids.hotline.right) - content.x
        ratio = min(content.height / max(needed, 1.0), content.width / max(widest, 1.0))
        self.fitting = False
        if ratio < 0.995 and panel.fit > 0.6:
            panel.fit = max(0.6, panel.fit * min(0.97, ratio))  # near the room at once, then by steps
            log.warning("%s text too long for the screen: shrunk to %.0f%%", self.view.state, panel.fit * 100)
            self.fitting = True
        beside = ids.status.height + ids.status_en.height
        if beside > ids.bottom.height + 1 and panel.status_fit > 0.6:
            panel.status_fit = max(0.6, panel.status_fit * min(0.97, ids.bottom.height / beside))
            self.fitting = True
        elif beside > ids.bottom.height + 1 and panel.status_room:
            panel.status_room = False  # the Chinese line keeps its size; the English one gives way
            log.warning("%s: no room for the English line beside the buttons: left out", self.view.state)
            self.fitting = True
        if self._fit_bar():
            self.fitting = True  # the bar's height is the room below it
        if self.fitting:
            KivyClock.schedule_once(lambda _dt: self._autofit(), 0)

    def _fit_top(self, *_: Any) -> None:
        """The pickup bar over the idle screen (a screen's own fit runs it there): again while it changes."""
        self.fitting = self._fit_bar()
        if self.fitting:
            KivyClock.schedule_once(self._fit_top, 0)

    def _call_changed(self, *_: Any) -> None:
        """A height in the call button changed (its layout, its words' type): fit it once things settle."""
        self.fitting_call = True
        self._call_fit_trigger()

    def _fit_call(self, *_: Any) -> None:
        """The call button's words before its taxi: where they and the taxi do not all fit (English on the 7-inch
        screen), the icon gives way rather than the words running over the pickup bar; where the words alone do
        not (a long pickup name's taller bar too), they shrink together, to 60% at most. One step at a time, a
        moment after the heights settle, and only ever smaller until the window changes size (no seesaw)."""
        b = self.call_button
        words = [c for c in b.children if isinstance(c, Text) and c.height > 0]
        room = b.height - b.padding[1] - b.padding[3] + 1
        needed = sum(c.height for c in words) + b.spacing * max(0, len(words) - 1)
        self.fitting_call = False
        if b.show_icon and needed + self.sizes["icon"] * 1.3 + b.spacing > room:
            b.show_icon, self.fitting_call = False, True
            log.info("the call button's taxi icon is left out: its words need the room")
        elif not b.show_icon and needed > room and b.fit > 0.6:
            b.fit = max(0.6, b.fit * min(0.97, room / needed))
            self.fitting_call = True
            log.warning("the call button's words too long for the screen: shrunk to %.0f%%", b.fit * 100)
        if self.fitting_call:
            self._call_fit_trigger()

    def _fit_bar(self) -> bool:
        """One step of fitting the pickup bar; True when it changed something (fit again next frame). A long
        pickup name (长白新村街道社区卫生服务中心南门) takes two lines, never smaller type, in the room the English
        leaves (about a third of the bar), and the bar grows to hold it; the English name beside it takes smaller
        type rather than being cut off, and at the smallest type (a long name on the 7-inch screen) two lines
        (beyond: cut, logged)."""
        ids = self.root_widget.ids
        inner = ids.bar.width - ids.bar.padding[0] * 2 - ids.bar.spacing * 2 - self.sizes["bar_height"]
        zh_room = inner * (0.65 if ids.bar_en.text else 1.0)
        if ids.bar_zh.text_size[0] is None and ids.bar_zh.texture_size[0] > zh_room + 1:
            ids.bar_zh.text_size = (max(1.0, zh_room), None)
            return True
        room = inner - ids.bar_zh.width
        if not ids.bar_en.text or ids.bar_en.texture_size[0] <= max(room, 0) + 1:
            return False  # no English (a narrow screen once crashed here dividing by its empty width), or it fits
        if self.root_widget.bar_fit > 0.6:
            self.root_widget.bar_fit = max(0.6, self.root_widget.bar_fit * room / ids.bar_en.texture_size[0])
            return True
        if ids.bar_en.text_size[0] is None:
            if ids.bar_en.texture_size[0] > 2 * max(room, 1.0):
                log.warning("kiosk.pickup_point_en is cut to two lines on this screen: give a shorter one")
            ids.bar_en.text_size = (max(1.0, room), None)
            ids.bar_en.max_lines, ids.bar_en.valign = 2, "top"  # the first two (Kivy keeps the last at "bottom")
            return True
        return False

    def _every_second(self, _dt: float) -> None:
        if self.view.state in ("assigned", "searching"):
            self._update_status()

    def _update_status(self) -> None:
        """The line beside the buttons: the car and minutes to go (assigned), minutes waited (searching)."""
        t, view, p, now = self.texts, self.view, self.screen, self.clock.monotonic()
        english = self.screen_cfg.english
        zh = en = ""
        if view.state not in ("idle", "assigned", "searching") and (p.plate or p.hotline):
            params = _car_params(view.car)
            zh, en = t.line(view.state, "detail_zh", params), t.line(view.state, "detail_en", params)
        elif view.state == "assigned" and view.car is not None:
            params = _car_params(view.car)
            zh, en = t.line("assigned", "detail_zh", params), t.line("assigned", "detail_en", params)
            if view.eta_due is not None:
                left = view.eta_due - now
                key = "eta_due" if left < 60 else "eta"
                minutes = max(1, round(left / 60))
                zh += "\n" + t.label(f"{key}_zh", minutes=minutes)
                en += " · " + t.label(f"{key}_en", minutes=minutes)
        elif view.state == "searching" and view.waiting_since is not None:
            minutes = max(1, int((now - view.waiting_since) // 60))
            zh, en = t.label("waited_zh", minutes=minutes), t.label("waited_en", minutes=minutes)
        p.status_zh, p.status_en = zh, (en if english else "")

    def fits(self) -> dict[str, float]:
        """Text shrink factors now on screen (1.0: the design sizes)."""
        panel_fit = getattr(self.panel, "fit", 1.0)
        return {"panel": float(panel_fit), "bar": float(self.root_widget.bar_fit)}

    # ------------------------------------------------------------------------------------- tools
    def texts_on_screen(self) -> list[Label]:
        """Every visible line of text now on screen."""
        return [w for w in self.root_widget.walk() if isinstance(w, Text | Word) and w.text and w.opacity > 0]


def open_screen(
    config: NodeConfig, texts: Texts, make_node: Callable[[], KioskNode]
) -> tuple[KioskApp, list[KioskNode]]:
    """The kiosk's screen, with the node (``make_node()``: a KioskNode) built and attached once the first screen
    is drawn; returns the app and the list the node is put in (to close it after the app stops)."""
    app = KioskApp(texts, config.role_config.screen, font_cache=config.node.data_dir / "fonts")
    nodes: list[KioskNode] = []

    def start_node() -> None:
        node = make_node()
        nodes.append(node)
        node.part_ok("screen")
        node.fault("font", app.font_problem) if app.font_problem else node.part_ok("font")
        node.open_backlight()
        node.start()
        app.attach(node.controller, node.safe_tick, node.notify, node.watchdog_period_s())

    app.after_first_frame(start_node)
    return app, nodes


def _car_params(car: Any) -> dict[str, Any]:
    if car is None:
        return {}
    return {
        "plate": car.plate,
        "colour": car.colour,
        "model": car.model,
        "colour_zh": car.colour_zh or car.colour,
        "model_zh": car.model_zh or car.model,
    }
