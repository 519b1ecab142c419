"""The peer for the kiosk figures: a bare Kivy app with one button, started and measured like the kiosk.

``python -m bench.bare_kivy --font FACE.otf [--size 800x480] [--presses N --every S]`` sets Kivy up the kiosk's
way (``kiosk.kivyconf``: the same window size and hardening), shows one button labelled 叫出租车 in the given font
face (the kiosk's Simplified Chinese face, extracted by the bench), prints ``idle_drawn`` (process start to first
frame) and, pressing the button every S seconds, ``rss`` lines read like kiosk.drive's (``kiosk.probe``).

It imports nothing else of the kiosk: no config loader, no font extraction, no node, so its figures are Kivy's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

START_WALL = time.time()


class BareScreen:
    """The window settings ``configure_kivy`` reads, without the kiosk's config machinery."""

    rotation = 0
    fullscreen = False
    touch_input = ""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_kivy", description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=0, help="press the button this many times, then stop")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between presses")
    parser.add_argument("--timeout", type=float, default=2.0, help="without presses: seconds after the first frame")
    parser.add_argument("--font", type=Path, required=True, help="the font face file for the button's text")
    parser.add_argument("--size", type=_size, default=(800, 480), help="window WIDTHxHEIGHT (the kiosk's screen)")
    args = parser.parse_args(argv)

    from kiosk.kivyconf import configure_kivy
    from kiosk.probe import emit, rss_mb

    configure_kivy(BareScreen(*args.size), fullscreen=False, kivy_home=Path(tempfile.mkdtemp(prefix="bare-kivy-")))
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.uix.button import Button

    pressed = [0]

    class Bare(App):
        def build(self) -> Button:
            self.button = Button(text="叫出租车", font_name=str(args.font), font_size=120)
            self.button.bind(on_press=lambda *_: pressed.__setitem__(0, pressed[0] + 1))
            return self.button

        def on_start(self) -> None:
            Window.bind(on_flip=self.first_frame)

        def first_frame(self, *_: object) -> None:
            Window.unbind(on_flip=self.first_frame)
            emit(
                "idle_drawn",
                since_start_s=time.time() - START_WALL,
                cpu_s=time.process_time(),
                rss_mb=round(rss_mb(), 2),
            )
            if args.presses:
                Clock.schedule_interval(self.press, args.every)
            else:
                Clock.schedule_once(lambda _dt: self.stop(), args.timeout)

        def press(self, _dt: float) -> None:
            self.button.trigger_action(0)
            if pressed[0] >= args.presses:
                emit("rss", presses=pressed[0], rss_mb=round(rss_mb(), 2))
                self.stop()
            elif pressed[0] % 10 == 0:
                emit("rss", presses=pressed[0], rss_mb=round(rss_mb(), 2))

    Bare().run()
    emit("done", presses=pressed[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
