"""The kiosk's Kivy touch screen: the panels for every ride state, hardening, watchdog pings, and snapshots.

Import only after ``kiosk.kivyconf.configure_kivy()``: importing Kivy's window opens one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk import kivyconf

if not kivyconf.is_configured():  # pragma: no cover - a programming error, not a runtime condition
    raise RuntimeError("call kiosk.kivyconf.configure_kivy() before importing kiosk.app")

from kivy.app import App  # noqa: E402
from kivy.clock import Clock as KivyClock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle, Triangle  # noqa: E402
from kivy.metrics import dp  # noqa: E402
from kivy.properties import DictProperty, NumericProperty, StringProperty  # noqa: E402
from kivy.uix.behaviors import ButtonBehavior  # noqa: E402
from kivy.uix.boxlayout import BoxLayout  # noqa: E402
from kivy.uix.label import Label  # noqa: E402
from kivy.uix.widget import Widget  # noqa: E402

from common.clock import Clock, SystemClock  # noqa: E402
from kiosk import theme  # noqa: E402
from kiosk.config import ScreenSection  # noqa: E402
from kiosk.controller import KioskController  # noqa: E402
from kiosk.png import write_png  # noqa: E402
from kiosk.ride_events import STATES, Car, RideView  # noqa: E402
from kiosk.texts import Texts  # noqa: E402
from kiosk.theme import CANCELLABLE, action_kind, rgba  # noqa: E402

log = logging.getLogger(__name__)
KV_FILE = Path(__file__).with_name("kiosk.kv")
SAMPLE_CAR = Car("沪A·D12345", colour="white", model="Volkswagen Lavida", colour_zh="白色", model_zh="大众朗逸")
SAMPLE_ETA_S = 245.0


# -------------------------------------------------------------------------------------------- widgets
class StateIcon(Widget):
    """A simple drawn pictogram, so a state never depends on colour alone (and needs no icon font)."""

    kind = StringProperty("")
    colour = StringProperty(theme.ICON)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self._redraw, size=self._redraw, kind=self._redraw, colour=self._redraw)

    def _redraw(self, *_: Any) -> None:
        self.canvas.clear()
        s = min(self.width, self.height)
        if s <= 0 or not self.kind:
            return
        x0, y0 = self.center_x - s / 2, self.center_y - s / 2
        w = max(2.0, s / 14)

        def p(fx: float, fy: float) -> tuple[float, float]:
            return x0 + fx * s, y0 + fy * s

        with self.canvas:
            Color(*rgba(self.colour))
            kind = self.kind
            if kind == "taxi":
                cx, cy, cw, ch = self.x, self.y, self.width, self.height
                RoundedRectangle(pos=(cx, cy + ch * 0.18), size=(cw, ch * 0.42), radius=[ch * 0.1])
                RoundedRectangle(pos=(cx + cw * 0.2, cy + ch * 0.5), size=(cw * 0.6, ch * 0.3), radius=[ch * 0.1])
                Rectangle(pos=(cx + cw * 0.4, cy + ch * 0.8), size=(cw * 0.2, ch * 0.14))
                for fx in (0.22, 0.78):
                    Ellipse(pos=(cx + cw * fx - ch * 0.14, cy), size=(ch * 0.28, ch * 0.28))
            elif kind == "hourglass":
                Triangle(points=[*p(0.2, 0.95), *p(0.8, 0.95), *p(0.5, 0.5)])
                Triangle(points=[*p(0.2, 0.05), *p(0.8, 0.05), *p(0.5, 0.5)])
                Line(points=[*p(0.12, 0.97), *p(0.88, 0.97)], width=w)
                Line(points=[*p(0.12, 0.03), *p(0.88, 0.03)], width=w)
            elif kind == "magnifier":
                Line(circle=(*p(0.42, 0.58), s * 0.3), width=w * 1.3)
                Line(points=[*p(0.63, 0.36), *p(0.92, 0.07)], width=w * 2)
            elif kind == "check":
                Line(circle=(*p(0.5, 0.5), s * 0.46), width=w)
                Line(points=[*p(0.25, 0.52), *p(0.43, 0.32), *p(0.76, 0.7)], width=w * 1.6, joint="round")
            elif kind == "cross":
                Line(circle=(*p(0.5, 0.5), s * 0.46), width=w)
                Line(points=[*p(0.3, 0.3), *p(0.7, 0.7)], width=w * 1.5)
                Line(points=[*p(0.3, 0.7), *p(0.7, 0.3)], width=w * 1.5)
            elif kind == "exclamation":
                Line(points=[*p(0.5, 0.96), *p(0.04, 0.08), *p(0.96, 0.08)], width=w, close=True, joint="round")
                Rectangle(pos=p(0.45, 0.36), size=(s * 0.1, s * 0.38))
                Ellipse(pos=p(0.44, 0.16), size=(s * 0.12, s * 0.12))
            elif kind == "phone":
                Line(rounded_rectangle=(*p(0.25, 0.02), s * 0.5, s * 0.96, s * 0.08), width=w)
                Rectangle(pos=p(0.32, 0.22), size=(s * 0.36, s * 0.62))
                Ellipse(pos=p(0.45, 0.06), size=(s * 0.1, s * 0.1))
            elif kind == "no_link":
                # the "not available" sign: a ring with a bar across
                Line(circle=(*p(0.5, 0.5), s * 0.44), width=w * 1.3)
                Line(points=[*p(0.2, 0.2), *p(0.8, 0.8)], width=w * 1.3)
            elif kind == "pin":
                Ellipse(pos=p(0.2, 0.35), size=(s * 0.6, s * 0.6))
                Triangle(points=[*p(0.24, 0.55), *p(0.76, 0.55), *p(0.5, 0.02)])
            elif kind == "back":
                Line(points=[*p(0.85, 0.5), *p(0.15, 0.5)], width=w * 1.5)
                Line(points=[*p(0.45, 0.82), *p(0.15, 0.5), *p(0.45, 0.18)], width=w * 1.5, joint="round")


class CallButton(ButtonBehavior, BoxLayout):
    """The huge call button; reacts on touch-down so a trembling finger sliding off still counts."""

    text_zh = StringProperty("")
    text_en = StringProperty("")
    hint_zh = StringProperty("")
    hint_en = StringProperty("")


class SideButton(ButtonBehavior, BoxLayout):
    """Cancel, back or retry: a large target on its own, away from everything else."""

    text_zh = StringProperty("")
    text_en = StringProperty("")
    icon = StringProperty("cross")
    bg = StringProperty(theme.CANCEL_BG)
    bg_pressed = StringProperty(theme.CANCEL_BG_PRESSED)


class EtaBox(BoxLayout):
    """The countdown beside the plate, above the cancel button."""

    title_zh = StringProperty("")
    title_en = StringProperty("")
    eta_zh = StringProperty("")
    eta_en = StringProperty("")


class MessagePanel(BoxLayout):
    fit = NumericProperty(1.0)  # < 1 only when a long text would not fit (see KioskApp._autofit)
    icon = StringProperty("")
    heading_zh = StringProperty("")
    heading_en = StringProperty("")
    detail_zh = StringProperty("")
    detail_en = StringProperty("")
    hotline = StringProperty("")
    hotline_label = StringProperty("")


class AssignedPanel(BoxLayout):
    fit = NumericProperty(1.0)
    icon = StringProperty("taxi")
    heading_zh = StringProperty("")
    heading_en = StringProperty("")
    plate = StringProperty("")
    plate_size = NumericProperty(10)
    car_zh = StringProperty("")
    car_en = StringProperty("")
    eta_zh = StringProperty("")
    eta_en = StringProperty("")


class KioskRoot(BoxLayout):
    bar_fit = NumericProperty(1.0)


# ------------------------------------------------------------------------------------------------ app
class KioskApp(App):
    """The full-screen kiosk. ``controller`` None: a still screen (snapshots)."""

    kv_file = str(KV_FILE)  # App.load_kv() reads it once, before build()
    font = StringProperty("Roboto")
    font_bold = StringProperty("Roboto")
    sizes = DictProperty({})

    def __init__(
        self,
        texts: Texts,
        screen: ScreenSection,
        *,
        controller: KioskController | None = None,
        tick: Callable[[], None] | None = None,
        clock: Clock | None = None,
        watchdog: Callable[[str], Any] | None = None,
        watchdog_period_s: float = 0.0,
        on_ready: Callable[[KioskApp], None] | None = None,
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
        self.font = str(screen.font) if screen.font.exists() else "Roboto"
        self.font_bold = str(screen.font_bold) if screen.font_bold.exists() else self.font
        if not screen.font.exists():
            log.error("CJK font %s missing: Chinese will not show (apt install fonts-noto-cjk)", screen.font)
        self.view: RideView = RideView("idle")
        self.shown_at: dict[str, float] = {}  # state -> time.monotonic() it was put on screen (bench, tests)
        self.panel: Widget | None = None
        self._main_thread = threading.current_thread()
        self._resize()

    # ------------------------------------------------------------------------------------- set-up
    def build(self) -> Widget:
        self.root_widget = KioskRoot()
        self.call_button = CallButton(on_press=lambda *_: self.press())
        self.action = SideButton(on_release=lambda *_: self._action())
        self.message = MessagePanel()
        self.assigned = AssignedPanel()
        self.eta_box = EtaBox()
        self.root_widget.ids.bar_zh.text = f"{self.texts.label('pickup_zh')}：{self.texts.pickup_point}"
        self.root_widget.ids.bar_en.text = f"{self.texts.label('pickup_en')}: {self.texts.pickup_point_en}"
        self._show(self.view)
        return self.root_widget

    def on_start(self) -> None:
        Window.show_cursor = False
        Window.bind(on_keyboard=self._on_keyboard, on_request_close=self._on_request_close, size=self._resize)
        self._resize()
        KivyClock.schedule_interval(self._every_second, 1.0)
        if self.controller is not None:
            self.controller.add_listener(self.show)
            self.controller.start()
            self._show(self.controller.view())
        if self.tick is not None:
            KivyClock.schedule_interval(lambda _dt: self.tick(), 0.25)
        if self.watchdog is not None:
            self.watchdog("READY=1")
            if self.watchdog_period_s > 0:
                # pinged from the UI thread: a frozen screen stops the pings and systemd restarts the kiosk
                KivyClock.schedule_interval(lambda _dt: self.watchdog("WATCHDOG=1"), self.watchdog_period_s)
        if self.on_ready is not None:
            KivyClock.schedule_once(lambda _dt: self.on_ready(self), 0)

    def on_stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        if self.watchdog is not None:
            self.watchdog("STOPPING=1")

    def _on_keyboard(self, _window: Any, key: int, *_: Any) -> bool:
        return key == 27  # Escape (and Android back) must not close a kiosk

    def _on_request_close(self, *_: Any, **__: Any) -> bool:
        return True  # only SIGTERM (systemd) stops the kiosk

    def _resize(self, *_: Any) -> None:
        w, h = Window.size if Window else (self.screen_cfg.width, self.screen_cfg.height)
        scale = theme.scale_for(int(w), int(h))
        self.sizes = {k: dp(v) * scale for k, v in theme.SIZES_DP.items()}
        if getattr(self, "root_widget", None) is not None:
            self.root_widget.bar_fit = 1.0
            KivyClock.schedule_once(lambda _dt: self._fit_bar(), 0)

    # ------------------------------------------------------------------------------------- inputs
    def press(self) -> None:
        """The call button (or the retry button when offline)."""
        if self.controller is not None:
            self.controller.press("screen")

    def _action(self) -> None:
        if self.controller is None:
            return
        if action_kind(self.view) in ("call", "retry"):
            self.controller.press("screen")
        else:
            self.controller.cancel("screen")

    # ------------------------------------------------------------------------------------- screens
    def show(self, view: RideView) -> None:
        """Show ``view``; from the UI thread at once (a press), from other threads on the next frame."""
        if threading.current_thread() is self._main_thread:
            self._show(view)
        else:
            KivyClock.schedule_once(lambda _dt: self._show(view), 0)

    def _show(self, view: RideView) -> None:
        self.view = view
        state = view.state
        t = self.texts
        params = _car_params(view.car)
        if state == "idle":
            panel: Widget = self.call_button
            b = self.call_button
            b.text_zh, b.text_en = t.label("call_zh"), t.label("call_en")
            b.hint_zh, b.hint_en = t.label("call_hint_zh"), t.label("call_hint_en")
        elif state in ("assigned", "arrived") and view.car is not None:
            panel = p = self.assigned
            p.icon = theme.STATE_ICONS[state]
            p.heading_zh, p.heading_en = t.line(state, "heading_zh", params), t.line(state, "heading_en", params)
            p.plate = view.car.plate
            p.car_zh, p.car_en = t.line(state, "detail_zh", params), t.line(state, "detail_en", params)
            self._update_eta()
            self._fit_plate()
        else:
            panel = m = self.message
            shown = state if state in theme.STATE_ICONS else "error"
            m.icon = theme.STATE_ICONS[shown]
            m.heading_zh, m.heading_en = t.line(shown, "heading_zh"), t.line(shown, "heading_en")
            m.detail_zh, m.detail_en = t.line(shown, "detail_zh"), t.line(shown, "detail_en")
            needs_hotline = shown in ("offline", "error", "no_car")
            m.hotline = t.hotline if needs_hotline else ""
            m.hotline_label = f"{t.label('hotline_zh')}  {t.label('hotline_en')}" if needs_hotline else ""
        self._place_action(panel, view)
        body = self.root_widget.ids.body
        if self.panel is not panel:
            body.clear_widgets()
            body.add_widget(panel)
            self.panel = panel
        if isinstance(panel, MessagePanel | AssignedPanel):
            panel.fit = 1.0
            KivyClock.schedule_once(lambda _dt: self._autofit(panel), 0)
        self.shown_at[state] = time.monotonic()

    def _place_action(self, panel: Widget, view: RideView) -> None:
        a, t = self.action, self.texts
        for w in (a, self.eta_box):
            if w.parent is not None:
                w.parent.remove_widget(w)
        state, kind = view.state, action_kind(view)
        if kind == "none":
            return
        if kind == "cancel":
            a.icon, a.bg, a.bg_pressed = "cross", theme.CANCEL_BG, theme.CANCEL_BG_PRESSED
        elif kind in ("call", "retry"):
            a.icon, a.bg, a.bg_pressed = "taxi", theme.CALL_BG, theme.CALL_BG_PRESSED
        else:
            a.icon, a.bg, a.bg_pressed = "back", theme.BACK_BG, theme.BACK_BG_PRESSED
        a.text_zh, a.text_en = t.label(f"{kind}_zh"), t.label(f"{kind}_en")
        if state == "assigned" and panel is self.assigned:
            panel.ids.action_slot.add_widget(self.eta_box)
        panel.ids.action_slot.add_widget(a)

    def _autofit(self, panel: MessagePanel | AssignedPanel) -> None:
        """Shrink a panel's text when a long line from the texts file would run off the screen."""
        content = panel.ids.content
        fixed = [c for c in content.children if c.size_hint_y is None]
        needed = sum(c.height for c in fixed) + content.spacing * max(0, len(fixed) - 1)
        needed += content.padding[1] + content.padding[3]
        if needed > content.height + 1 and panel.fit > 0.6:
            panel.fit = max(0.6, panel.fit * content.height / needed * 0.98)
            log.warning("%s text too long for the screen: shrunk to %.0f%%", self.view.state, panel.fit * 100)
            KivyClock.schedule_once(lambda _dt: self._autofit(panel), 0)
        self._fit_bar()

    def _fit_bar(self) -> None:
        # the English pickup name on one line beside the Chinese: smaller type rather than cut off
        ids = self.root_widget.ids
        room = ids.bar.width - ids.bar_zh.width - ids.bar.padding[0] * 2 - ids.bar.spacing * 2 - ids.bar.height
        if ids.bar_en.texture_size[0] > room + 1 and self.root_widget.bar_fit > 0.6:
            self.root_widget.bar_fit = max(0.6, self.root_widget.bar_fit * room / ids.bar_en.texture_size[0])
            KivyClock.schedule_once(lambda _dt: self._fit_bar(), 0)

    def _fit_plate(self) -> None:
        # the plate as large as the space allows, up to its design size
        p = self.assigned
        avail = max(1.0, Window.width - self.sizes["action_width"] - self.sizes["padding"] * 10)
        chars = max(1, len(p.plate))
        p.plate_size = max(self.sizes["heading_zh"], min(self.sizes["plate_text"], avail / (chars * 0.62)))

    def _every_second(self, _dt: float) -> None:
        if self.view.state == "assigned":
            self._update_eta()

    def _update_eta(self) -> None:
        box, t, view = self.eta_box, self.texts, self.view
        if view.eta_due is None or view.state != "assigned":
            box.eta_zh, box.eta_en = "", ""
            return
        box.title_zh, box.title_en = t.label("eta_title_zh"), t.label("eta_title_en")
        left = max(0, int(round(view.eta_due - self.clock.monotonic())))
        if left <= 0:
            box.eta_zh, box.eta_en = t.label("eta_due_zh"), t.label("eta_due_en")
        else:
            box.eta_zh = t.label("eta_zh", minutes=left // 60, seconds=left % 60)
            box.eta_en = t.label("eta_en", minutes=left // 60, seconds=left % 60)

    def fits(self) -> dict[str, float]:
        """Text shrink factors now on screen (1.0: the design sizes)."""
        panel_fit = getattr(self.panel, "fit", 1.0)
        return {"panel": float(panel_fit), "bar": float(self.root_widget.bar_fit)}

    # ------------------------------------------------------------------------------------- tools
    def labels(self) -> list[Label]:
        return [w for w in self.root_widget.walk() if isinstance(w, Label)]


def _car_params(car: Car | None) -> dict[str, Any]:
    if car is None:
        return {}
    return {
        "plate": car.plate,
        "colour": car.colour,
        "model": car.model,
        "colour_zh": car.colour_zh or car.colour,
        "model_zh": car.model_zh or car.model,
    }


# ------------------------------------------------------------------------------------------ snapshots
def sample_view(state: str, now: float) -> RideView:
    """A representative view of ``state`` for snapshots: a car on its way for assigned/arrived."""
    car = SAMPLE_CAR if state in ("assigned", "arrived") else None
    eta = now + SAMPLE_ETA_S if state == "assigned" else None
    return RideView(state, car, eta, "ride-sample", now, cancellable=state in CANCELLABLE)  # type: ignore[arg-type]


def read_rgb(width: int, height: int) -> bytes:
    """The window's current pixels (RGB, bottom row first)."""
    from kivy.graphics.opengl import GL_RGB, GL_UNSIGNED_BYTE, glPixelStorei, glReadPixels

    # draw the whole canvas now: after a buffer swap the back buffer holds stale or partial frames
    Window.dispatch("on_draw")
    glPixelStorei(0x0D05, 1)  # GL_PACK_ALIGNMENT: rows not padded to 4 bytes
    return bytes(glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE))


def pixel_stats(with_text: bytes, without_text: bytes, stride: int = 3) -> dict[str, int]:
    """Distinct colours (sampled) and how many sampled pixels the text changed."""
    step = 3 * stride
    colours = {with_text[i : i + 3] for i in range(0, len(with_text) - 2, step)}
    text_px = sum(1 for i in range(0, len(with_text) - 2, step) if with_text[i : i + 3] != without_text[i : i + 3])
    return {"colours": len(colours), "text_pixels": text_px * stride, "pixels": len(with_text) // 3}


class SnapshotRunner:
    """Renders every state at each size to ``out_dir``; writes snapshot.json with per-image pixel statistics."""

    def __init__(self, app: KioskApp, out_dir: Path, sizes: list[tuple[int, int]], settle_s: float = 0.12) -> None:
        self.app = app
        self.out_dir = out_dir
        self.sizes = sizes
        self.settle_s = settle_s
        self.manifest: list[dict[str, Any]] = []
        self.jobs = [(size, state) for size in sizes for state in STATES]

    def start(self, _app: KioskApp) -> None:
        KivyClock.schedule_once(self._next, self.settle_s)

    def _dir_for(self, size: tuple[int, int]) -> Path:
        first = self.sizes[0]
        path = self.out_dir if size == first else self.out_dir / f"{size[0]}x{size[1]}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _next(self, _dt: float) -> None:
        if not self.jobs:
            (self.out_dir / "snapshot.json").write_text(json.dumps(self.manifest, indent=1), encoding="utf-8")
            self.app.stop()
            return
        size, state = self.jobs[0]
        if tuple(Window.size) != size:
            Window.size = size
            KivyClock.schedule_once(self._next, self.settle_s * 2)
            return
        self.jobs.pop(0)
        self.app._show(sample_view(state, self.app.clock.monotonic()))
        KivyClock.schedule_once(lambda _dt: self._capture(size, state), self.settle_s)

    def _capture(self, size: tuple[int, int], state: str) -> None:
        w, h = Window.size
        target = self._dir_for(size) / f"{state}.png"
        with_text = read_rgb(w, h)
        write_png(target, w, h, with_text, bottom_up=True)
        labels = self.app.labels()
        saved = [lb.color for lb in labels]
        for lb in labels:
            lb.color = (*lb.color[:3], 0)
        KivyClock.schedule_once(
            lambda _dt: self._capture_blank(size, state, target, with_text, labels, saved), self.settle_s
        )

    def _capture_blank(
        self, size: tuple[int, int], state: str, target: Path, with_text: bytes, labels: list[Label], saved: list
    ) -> None:
        w, h = Window.size
        blank = read_rgb(w, h)
        for lb, colour in zip(labels, saved, strict=True):
            lb.color = colour
        stats = pixel_stats(with_text, blank)
        entry = {"state": state, "file": str(target), "width": w, "height": h, **stats, **self.app.fits()}
        self.manifest.append(entry)
        KivyClock.schedule_once(self._next, 0)
