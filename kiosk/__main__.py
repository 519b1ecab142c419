"""`kiosk` command line: run the kiosk (touch screen, or --headless by button and voice), or --snapshot DIR."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from common.cli import setup_logging
from common.clock import Clock
from common.config import ConfigError, NodeConfig, default_config_path, load_config, load_config_or_exit
from common.files import writable_folder
from kiosk.config import KioskConfig
from kiosk.texts import Texts, TextsError, load_texts

if TYPE_CHECKING:  # imported when the node is made, behind the first frame (make_node)
    from kiosk.node import KioskNode

log = logging.getLogger("kiosk")
SAMPLE = KioskConfig(pickup_point="长白新村北门", pickup_point_en="Changbai Xincun North Gate", hotline="021-6543 2100")
EXIT_TEXTS = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kiosk", description="One-press taxi kiosk (touch screen, arcade button, voice)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="node config (default $CHANGBAI_CONFIG or /etc/changbai/node.toml)"
    )
    parser.add_argument(
        "--snapshot", metavar="DIR", type=Path, help="render every screen state to DIR/<state>.png and exit"
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the kiosk (the default)")
    run.add_argument("--headless", action="store_true", help="no screen: arcade button, LED and voice only")
    run.add_argument("--windowed", action="store_true", help="a window instead of full screen (development)")
    run.add_argument("--config", type=Path, default=None, dest="run_config", help="node config (as above)")
    args = parser.parse_args(argv)
    config_path = getattr(args, "run_config", None) or args.config
    if args.snapshot is not None:
        return snapshot(args.snapshot, config_path)
    config = load_config_or_exit(config_path or default_config_path(), "kiosk")
    setup_logging(config.node.log_level)
    texts = _texts_or_exit(config.role_config)
    if getattr(args, "headless", False) or not _has_display():
        if not getattr(args, "headless", False):
            log.warning("no display found: running headless (arcade button and voice only)")
        return make_node(config, texts).run_headless()
    return run_screen(config, texts, windowed=getattr(args, "windowed", False))


def make_node(
    config: NodeConfig, texts: Texts, *, silent: bool = False, clock: Clock | None = None, use_gpio: bool = True
) -> KioskNode:
    """The kiosk without its screen, by ``kiosk.node.build_node`` (imported here: the screen shows before the
    node, its network and its voice are even imported); ``silent``: a speaker that plays nothing, whatever
    [audio] says; ``clock`` and ``use_gpio`` as kiosk.drive wants them (a fast clock, no GPIO)."""
    from hal.audio import NullSpeaker
    from kiosk.node import build_node

    speaker = NullSpeaker() if silent else None
    return build_node(config, clock, texts=texts, speaker=speaker, use_gpio=use_gpio)


def user_cache() -> Path:
    """Where a command run by hand (snapshots) keeps what it made once, e.g. the font face."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "changbai-kiosk"


def _has_display() -> bool:
    # X11/Wayland, or KMS/DRM through SDL2 (KIVY_WINDOW=sdl2 with SDL_VIDEODRIVER=kmsdrm on a Pi)
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("SDL_VIDEODRIVER"))


def _texts_or_exit(kiosk: KioskConfig) -> Texts:
    try:
        return load_texts(kiosk.texts, kiosk.pickup_point, kiosk.hotline, kiosk.pickup_point_en)
    except TextsError as exc:
        for line in exc.problems:
            print(f"texts error: {line}", file=sys.stderr)
        raise SystemExit(EXIT_TEXTS) from None


class StopRequest:
    """SIGTERM from the kiosk's first moment: remembered until there is something to stop, then that is stopped.

    systemd may stop the kiosk while it is still starting (a restart, an update, a shutdown). Before this, SDL
    turned a SIGTERM during the window's creation into a window-close request, which the kiosk ignores: the
    process ran on until systemd killed it 20 s later (found under real systemd, see docs/kiosk.md)."""

    def __init__(self) -> None:
        self.requested = False
        self._action: Callable[[], None] | None = None

    def __call__(self, *_: object) -> None:
        self.requested = True
        if self._action is not None:
            self._action()

    def then(self, action: Callable[[], None]) -> None:
        """What a SIGTERM does from now on; at once if one came already."""
        self._action = action
        if self.requested:
            action()


def run_screen(config: NodeConfig, texts: Texts, *, windowed: bool = False) -> int:
    """The touch screen in this process's main thread: the idle screen first, then the node (button, LED,
    outbox, network) starts behind it and the ride flow is attached; a touch in between is kept."""
    from kiosk.kivyconf import configure_kivy

    stop = StopRequest()
    signal.signal(signal.SIGTERM, stop)  # before the window: SDL installs no handler of its own (kivyconf)
    screen = config.role_config.screen
    kivy_home = writable_folder(config.state_dir / "kivy", "kivy")  # Kivy writes its config.ini there
    configure_kivy(screen, fullscreen=False if windowed else None, kivy_home=kivy_home)
    try:
        from kivy.core.window import Window
    except SystemExit:  # some Kivy window providers exit the process when they cannot open a display
        Window = None
    if Window is None:
        # a kiosk with a broken screen still hails taxis by button and voice
        log.error("no screen could be opened: running headless (arcade button and voice)")
        node = make_node(config, texts)
        node.fault("screen", "no window could be opened")
        stop.then(node.runtime.request_stop)
        return node.run_headless()
    from kivy.clock import Clock as KivyClock

    from kiosk.app import open_screen

    app, nodes = open_screen(config, texts, lambda: make_node(config, texts))
    # systemd stops the kiosk with SIGTERM; Escape and window-close are ignored
    stop.then(lambda: KivyClock.schedule_once(lambda _dt: app.stop(), 0))
    try:
        app.run()
    finally:
        for node in nodes:
            node.close()
    return 0


def snapshot(out_dir: Path, config_path: Path | None) -> int:
    """Every state to PNG at the configured resolution and at 800x480; an own Xvfb when there is no display."""
    setup_logging("WARNING")
    kiosk_cfg = SAMPLE
    path = config_path or default_config_path()
    if config_path is not None or path.exists():
        try:
            kiosk_cfg = load_config(path).role_config
        except ConfigError as exc:
            for line in exc.problems:
                print(f"config error: {line}", file=sys.stderr)
            return 2
        if not isinstance(kiosk_cfg, KioskConfig):
            print(f"config error: {path}: not a kiosk config", file=sys.stderr)
            return 2
    texts = _texts_or_exit(kiosk_cfg)
    screen = kiosk_cfg.screen
    out_dir.mkdir(parents=True, exist_ok=True)
    xvfb = None
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        from kiosk.xvfb import Xvfb

        xvfb = Xvfb(max(1280, screen.width), max(800, screen.height))
        os.environ["DISPLAY"] = xvfb.start()
    try:
        with tempfile.TemporaryDirectory(prefix="kiosk-kivy-") as home:
            from kiosk.kivyconf import configure_kivy

            configure_kivy(screen, fullscreen=False, kivy_home=Path(home))
            from kiosk.app import KioskApp
            from kiosk.snapshot import SnapshotRunner

            sizes = [(screen.width, screen.height)]
            if (800, 480) not in sizes:
                sizes.append((800, 480))
            app = KioskApp(texts, screen, font_cache=user_cache() / "fonts", still=True)
            runner = SnapshotRunner(app, out_dir, sizes)
            app.on_ready = runner.start
            app.run()
    finally:
        if xvfb is not None:
            xvfb.stop()
    missing = [job for job in runner.jobs]
    if missing:
        print(f"snapshot incomplete: {len(missing)} states not rendered", file=sys.stderr)
        return 1
    for entry in runner.manifest:
        print(f"{entry['file']}  {entry['width']}x{entry['height']}  {len(entry['texts'])} lines of text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
