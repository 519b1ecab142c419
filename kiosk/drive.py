"""Drive the real kiosk app in its own interpreter for tests and benchmarks: touch the call button, wait, report.

``python -m kiosk.drive --config node.toml --touch --until assigned --shot out.png`` starts the full app (the node
without GPIO, a silent speaker), sends a synthetic touch through Kivy's input path to the call button, and prints
one JSON object per line: ``idle_drawn`` (first frame), ``touched``, ``feedback_drawn`` (first frame after the
press), ``state`` (each change), ``shot`` (the state the picture shows) and ``done``. Exit 0 when ``--until`` was
reached in time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.clock import FastClock
from common.config import load_config_or_exit
from kiosk.__main__ import make_node
from kiosk.probe import emit, rss_mb
from kiosk.texts import load_texts

if TYPE_CHECKING:
    from kiosk.app import KioskApp  # imported after the first frame at run time
    from kiosk.node import KioskNode

START_WALL = time.time()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk.drive", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--touch", action="store_true", help="touch the call button once the idle screen is up")
    parser.add_argument(
        "--touch-after", type=float, default=0.3, help="seconds after the node is attached behind the first frame"
    )
    parser.add_argument(
        "--tap-cancel-after", type=float, default=0.0, help="then tap where the cancel button goes, this long after"
    )
    parser.add_argument("--until", default="", help="stop when this ride state is shown")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--shot", type=Path, help="PNG of the screen when --until is reached")
    parser.add_argument("--escape", action="store_true", help="press Escape and ask the window to close first")
    parser.add_argument("--soak-hours", type=float, default=0.0, help="simulated hours of use on a fast clock")
    parser.add_argument("--speed", type=float, default=600.0, help="fast clock speed for --soak-hours")
    parser.add_argument("--ride-every-min", type=float, default=10.0, help="simulated minutes between rides")
    parser.add_argument("--headless", action="store_true", help="no screen: the node alone (for --soak-hours)")
    args = parser.parse_args(argv)
    config = load_config_or_exit(args.config, "kiosk")
    xvfb = None
    if not os.environ.get("DISPLAY"):
        from kiosk.xvfb import Xvfb

        xvfb = Xvfb(max(1280, config.role_config.screen.width), max(800, config.role_config.screen.height))
        os.environ["DISPLAY"] = xvfb.start()
    if args.headless:
        return _soak_headless(args, config)
    try:
        return _run(args, config)
    finally:
        if xvfb is not None:
            xvfb.stop()


def _run(args: argparse.Namespace, config: Any) -> int:
    from kiosk.kivyconf import configure_kivy

    home = tempfile.mkdtemp(prefix="kiosk-drive-")
    configure_kivy(config.role_config.screen, fullscreen=False, kivy_home=Path(home))
    from kiosk.app import open_screen  # Kivy only once it is configured

    clock = FastClock(args.speed) if args.soak_hours else None
    kiosk = config.role_config
    texts = load_texts(kiosk.texts, kiosk.pickup_point, kiosk.hotline, kiosk.pickup_point_en)

    # as `kiosk run` does: the screen first, the node (imported only then) behind it; no audio device in CI: the
    # controller keeps the last prompts' texts (node.controller.spoken)
    def node() -> KioskNode:
        return make_node(config, texts, silent=True, use_gpio=False, clock=clock)

    app, nodes = open_screen(config, texts, node)
    driver = _Driver(args, app, nodes)
    app.on_ready = driver.ready
    try:
        app.run()
    finally:
        for built in nodes:
            built.close()
    _done(app, nodes[0], driver.soaks, driver.reached)
    return 0 if driver.reached or not args.until else 1


class _Driver:
    """What the driver does to the running app, on Kivy's clock: marks each frame, touches, taps, soaks, stops."""

    def __init__(self, args: argparse.Namespace, app: KioskApp, nodes: list[KioskNode]) -> None:
        self.args, self.app, self.nodes = args, app, nodes
        self.reached = False
        self.marks: dict[str, float] = {}
        self.last_state = ""
        self.drain_until = float("inf")
        self.soaks: list[Soak] = []

    def ready(self, _app: KioskApp) -> None:
        from kivy.clock import Clock as KivyClock
        from kivy.core.window import Window

        args = self.args
        Window.bind(on_flip=self.on_flip)
        if args.escape:
            self.escape()
        if args.touch:
            self.when_attached(lambda: KivyClock.schedule_once(self.touch, args.touch_after))
        if args.soak_hours:
            KivyClock.schedule_interval(self.soak_step, 0.05)
            # the countdown redraws once a real second; on the fast clock redraw it every frame instead, so a
            # soak also churns the label textures as much as hours of real countdowns would
            KivyClock.schedule_interval(lambda _dt: self.app._update_status(), 0)
        else:
            KivyClock.schedule_once(lambda _dt: self.app.stop(), args.timeout)

    def mark(self, name: str, now: float, **fields: Any) -> None:
        self.marks[name] = now
        emit(name, **fields)

    def on_flip(self, *_: Any) -> None:
        from kivy.clock import Clock as KivyClock

        now, app, marks = time.perf_counter(), self.app, self.marks
        state = app.view.state
        touched = marks.get("touched")
        if "idle_drawn" not in marks:
            self.mark("idle_drawn", now, since_start_s=time.time() - START_WALL, cpu_s=time.process_time())
        if touched is not None and "feedback_drawn" not in marks and state != "idle":
            self.mark("feedback_drawn", now, latency_s=now - touched, state=state)
        if touched is not None and "buttons_shown" not in marks and state != "idle" and app.buttons_shown():
            self.mark("buttons_shown", now, since_touch_s=now - touched, state=state)
        if state != self.last_state:
            self.last_state = state
            emit("state", state=state, view_ride=app.view.ride_id)
            if app.view.ride_id and "ride_stored" not in marks and touched is not None:
                self.mark("ride_stored", now, since_touch_s=now - touched)
        if self.args.until and state == self.args.until and not self.reached:
            self.reached = True
            self.drain_until = time.monotonic() + 5.0
            KivyClock.schedule_once(self.finish, 0.3)

    def touch(self, _dt: float) -> None:
        from kivy.clock import Clock as KivyClock

        self.marks["touched"] = time.perf_counter()
        if self.args.tap_cancel_after:
            # timed from this touch: timed from the start, a slow first frame put both taps before the press
            # reached the ride flow (the second one then landed on the idle screen)
            KivyClock.schedule_once(self.tap_cancel, self.args.tap_cancel_after)
        self.tap(self.app.call_button, "touched")

    def tap(self, widget: Any, event: str, **fields: Any) -> None:
        from kivy.base import EventLoop

        x, y = widget.to_window(*widget.center)
        emit(event, x=x, y=y, state=self.app.view.state, **fields)
        t = _touch(x, y)
        EventLoop.post_dispatch_input("begin", t)
        EventLoop.post_dispatch_input("end", t)

    def tap_cancel(self, _dt: float) -> None:
        # an anxious second tap where the cancel button will appear (it is not there yet)
        slot = self.app.screen.ids.primary_slot
        slot.do_layout()
        self.tap(slot, "second_tap", since_touch_s=time.perf_counter() - self.marks["touched"])

    def finish(self, _dt: float) -> None:
        from kivy.clock import Clock as KivyClock
        from kivy.core.window import Window

        from kiosk.png import write_png
        from kiosk.snapshot import read_rgb

        app, args = self.app, self.args
        waiting_buttons = "touched" in self.marks and "buttons_shown" not in self.marks  # the frame that shows them
        if (waiting_buttons or not app.buttons_shown()) and time.monotonic() < self.drain_until:
            KivyClock.schedule_once(self.finish, 0.1)  # the picture with the buttons the resident will see
            return
        if args.shot is not None and self.reached:
            w, h = Window.size
            write_png(args.shot, w, h, read_rgb(w, h), bottom_up=True)
            args.shot = None
            emit("shot", state=app.view.state)  # the ride may move on (the fleet's car arrives) while the node drains
        # let the uploader send the ride's events before the node stops (they would wait in the outbox anyway)
        waiting = self.nodes[0].runtime.outbox.depth() if self.nodes else {"state": 0, "alert": 0}
        if (waiting["state"] or waiting["alert"]) and time.monotonic() < self.drain_until:
            KivyClock.schedule_once(self.finish, 0.1)
            return
        app.stop()

    @staticmethod
    def escape() -> None:
        """What a passer-by with a keyboard, or a window manager, might do: neither may end the kiosk."""
        from kivy.core.window import Window

        Window.dispatch("on_key_down", 27, 9, None, [])
        Window.dispatch("on_keyboard", 27, 9, None, [])
        Window.dispatch("on_key_up", 27, 9)
        Window.dispatch("on_request_close")
        emit("escaped", cursor_visible=bool(Window.show_cursor))

    def soak_step(self, _dt: float) -> None:
        if not self.nodes:
            return
        if not self.soaks:
            self.soaks.append(Soak(self.nodes[0], self.args))
        soak = self.soaks[0]
        if self.app.view.state == "idle" and soak.due_ride():
            self.touch(0)
        if soak.step():
            self.app.stop()

    def when_attached(self, then: Any) -> None:
        """Run ``then`` once the node is built behind the first frame (a touch before it only waits in the app)."""
        from kivy.clock import Clock as KivyClock

        if self.app.controller is None:
            KivyClock.schedule_once(lambda _dt: self.when_attached(then), 0.05)
        else:
            then()


def _touch(x: float, y: float) -> Any:
    """A synthetic finger at window pixel (x, y), through Kivy's own input path."""
    from kivy.core.window import Window
    from kivy.input.motionevent import MotionEvent

    class Touch(MotionEvent):
        def __init__(self) -> None:
            w, h = Window.size
            super().__init__("kiosk-drive", 1, {"x": x / (w - 1.0), "y": y / (h - 1.0)}, is_touch=True, type_id="touch")
            self.profile = ["pos"]

        def depack(self, values: dict[str, float]) -> None:
            self.sx, self.sy = values["x"], values["y"]
            super().depack(values)

    return Touch()


def _done(app: KioskApp, node: KioskNode, soaks: list[Soak], reached: bool) -> None:
    """The driver's last line: where the screen ended and what the node said and counted."""
    emit(
        "done",
        rides=soaks[0].rides if soaks else None,
        reached=reached,
        state=app.view.state,
        spoken=node.controller.spoken[-20:],
        counts=node.controller.counts,
        plate=app.view.car.plate if app.view.car else None,
    )


class Soak:
    """A day of use on a fast clock: a ride every few simulated minutes, RSS every simulated hour."""

    def __init__(self, node: KioskNode, args: argparse.Namespace) -> None:
        self.node = node
        self.start = node.clock.monotonic()
        self.end = self.start + args.soak_hours * 3600
        self.every = args.ride_every_min * 60
        self.next_ride = self.start + 60
        self.next_sample = self.start
        self.rides = 0

    def due_ride(self) -> bool:
        now = self.node.clock.monotonic()
        if now >= self.next_ride:
            self.next_ride = now + self.every
            self.rides += 1
            return True
        return False

    def step(self) -> bool:
        """Sample RSS when an hour is due; True when the soak is over."""
        now = self.node.clock.monotonic()
        if now >= self.next_sample:
            hour = (now - self.start) / 3600
            emit("rss", sim_hours=round(hour, 2), rss_mb=round(rss_mb(), 2), rides=self.rides, state=self.node.state)
            self.next_sample += 3600
        return now >= self.end


def _soak_headless(args: argparse.Namespace, config: Any) -> int:
    kiosk = config.role_config
    texts = load_texts(kiosk.texts, kiosk.pickup_point, kiosk.hotline, kiosk.pickup_point_en)
    node = make_node(config, texts, silent=True, use_gpio=False, clock=FastClock(args.speed))
    soak = Soak(node, args)
    node.start_thread()
    try:
        while True:
            if node.state == "idle" and soak.due_ride():
                node.press("simulated")
            if soak.step():
                break
            time.sleep(0.05)
    finally:
        node.close()
    emit("done", rides=soak.rides, state=node.state, counts=node.controller.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
