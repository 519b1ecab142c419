"""`kiosk --snapshot DIR`: every screen state rendered to DIR/<state>.png, with DIR/snapshot.json saying where
each line of text and each button is (pixels, top-left origin) and the screen's millimetres per pixel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kivy.clock import Clock as KivyClock
from kivy.core.window import Window
from kivy.uix.widget import Widget

from kiosk.app import KioskApp
from kiosk.icons import StateIcon
from kiosk.png import write_png
from kiosk.view import STATES, Car, RideState, RideView
from kiosk.widgets import CallButton, KioskButton

# a green new-energy plate (8 characters) on its way, a blue one (7) at the gate
SAMPLE_CAR = Car("沪A·D12345", colour="white", model="Volkswagen Lavida", colour_zh="白色", model_zh="大众朗逸")
SAMPLE_CAR_BLUE = Car(
    "沪B·X7253", colour="golden yellow", model="Volkswagen Touran", colour_zh="金黄色", model_zh="大众途安"
)
SAMPLE_ETA_S = 245.0
SAMPLE_WAITED_S = 185.0


def sample_view(state: RideState, now: float) -> RideView:
    """A representative view of ``state``: a car for the screens that show one, 3 minutes waited searching."""
    car = {"assigned": SAMPLE_CAR, "car_late": SAMPLE_CAR, "confirm_cancel": SAMPLE_CAR, "arrived": SAMPLE_CAR_BLUE}
    ride = state not in ("idle", "no_car", "cancelled", "error", "offline", "help_requested", "help_taken_in")
    return RideView(
        state,
        car.get(state),
        now + SAMPLE_ETA_S if state in ("assigned", "confirm_cancel") else None,
        "ride-sample" if ride else None,
        now,
        cancellable=ride and state != "arrived",
        waiting_since=now - SAMPLE_WAITED_S if ride else None,
        ride_state="assigned" if state == "confirm_cancel" else None,
    )


def read_rgb(width: int, height: int) -> bytes:
    """The window's current pixels (RGB, bottom row first)."""
    from kivy.graphics.opengl import GL_RGB, GL_UNSIGNED_BYTE, glPixelStorei, glReadPixels

    # draw the whole canvas now: after a buffer swap the back buffer holds stale or partial frames
    Window.dispatch("on_draw")
    glPixelStorei(0x0D05, 1)  # GL_PACK_ALIGNMENT: rows not padded to 4 bytes
    return bytes(glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE))


def box(widget: Widget, height: int) -> list[int]:
    """A widget's rectangle in image pixels: [left, top, width, height], rows counted from the top."""
    x, y = widget.to_window(widget.x, widget.y)
    return [round(x), round(height - y - widget.height), round(widget.width), round(widget.height)]


class SnapshotRunner:
    """Renders every state at each size to ``out_dir`` and writes snapshot.json describing each image."""

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

    def _capture(self, size: tuple[int, int], state: str, waited: int = 0) -> None:
        if (
            self.app.fitting or self.app.fitting_call
        ) and waited < 50:  # the text is still being fitted: the picture would catch it midway
            KivyClock.schedule_once(lambda _dt: self._capture(size, state, waited + 1), self.settle_s / 2)
            return
        w, h = Window.size
        target = self._dir_for(size) / f"{state}.png"
        write_png(target, w, h, read_rgb(w, h), bottom_up=True)
        geometry = self.app.geometry()
        texts = [
            {"role": t.role, "text": t.text, "font_px": round(t.font_size, 1), "box": box(t, h)}
            for t in self.app.texts_on_screen()
        ]
        shown = [w for w in self.app.root_widget.walk() if w.opacity > 0 and w.get_root_window() is not None]
        buttons = [
            {"kind": getattr(b, "kind", "call"), "box": box(b, h)}
            for b in shown
            if isinstance(b, KioskButton | CallButton)
        ]
        icons = [{"kind": i.kind, "box": box(i, h)} for i in shown if isinstance(i, StateIcon) and i.width > 0]
        entry = {
            "state": state,
            "file": str(target),
            "width": w,
            "height": h,
            "mm_per_px": [geometry.mm_per_px_x, geometry.mm_per_px_y],
            "scale": geometry.scale,
            "texts": texts,
            "buttons": buttons,
            "icons": icons,
            **self.app.fits(),
        }
        self.manifest.append(entry)
        KivyClock.schedule_once(self._next, 0)
