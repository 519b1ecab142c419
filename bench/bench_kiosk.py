"""Kiosk figures: start-up to the idle screen, press to on-screen feedback, press to ride stored at the central,
and memory over three simulated days of rides (screen app and headless node side by side).

Every app runs in its own interpreter (``python -m kiosk.drive``) under a private Xvfb with Mesa llvmpipe, against
a real central on loopback with a temporary database; timings are real seconds on this machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.figures import Figure

ROOT = Path(__file__).resolve().parent.parent
NODE = "cbxc-north-gate-kiosk"


def _config(directory: Path, url: str, token: str, soak: bool = False) -> Path:
    # on the soak's 600x clock a loopback round trip is ~20 simulated seconds: patience scaled to match
    timing = "poll_interval_s = 30, retry_interval_s = 30, reply_timeout_s = 300, request_give_up_s = 3600"
    if not soak:
        timing = "poll_interval_s = 0.5, retry_interval_s = 5"
    token_file = directory / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    path = directory / "kiosk.toml"
    path.write_text(
        f"""
[node]
id = "{NODE}"
role = "kiosk"
site = "changbai-xincun"
data_dir = "{directory / "data"}"
log_level = "WARNING"

[central]
url = "{url}"
token_file = "{token_file}"

[audio]
backend = "none"

[kiosk]
pickup_point = "长白新村北门"
pickup_point_en = "Changbai Xincun North Gate"
hotline = "021-6543 2100"
screen = {{ width = 800, height = 480, fullscreen = false }}
timing = {{ {timing} }}
""",
        encoding="utf-8",
    )
    return path


def _drive(config: Path, env: dict[str, str], *args: str, timeout: float = 600) -> tuple[float, list[dict[str, Any]]]:
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "kiosk.drive", "--config", str(config), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    if not lines or lines[-1]["event"] != "done":
        raise RuntimeError(f"kiosk.drive failed: {proc.stderr[-2000:]}")
    return started, lines


def _first(lines: list[dict[str, Any]], event: str) -> dict[str, Any]:
    return next(x for x in lines if x["event"] == event)


def _headless_press_to_stored(url: str, token: str, n: int) -> list[float]:
    """Press -> the central's answer with a ride id, on the controller alone (no screen), ``n`` times."""
    from common.clock import SystemClock
    from kiosk.client import RidesClient
    from kiosk.config import RideTimingSection
    from kiosk.controller import KioskController
    from kiosk.ride import RideMachine
    from kiosk.texts import load_texts

    client = RidesClient(url, token, "长白新村北门")
    controller = KioskController(
        RideMachine(RideTimingSection(poll_interval_s=0.2), now=time.monotonic()),
        client,
        SystemClock(),
        load_texts(None, "长白新村北门", "021-6543 2100"),
    )
    controller.start()
    samples = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            controller.press("bench")
            while controller.view().ride_id is None:
                time.sleep(0.0005)
            samples.append(time.perf_counter() - t0)
            controller.cancel("bench")
            controller.cancel("bench")  # back to idle
            while controller.machine.cancel_owed is not None:  # the cancel goes out before the next order
                controller.tick()
                time.sleep(0.001)
    finally:
        controller.stop()
        client.close()
    return samples


def _soak(config: Path, env: dict[str, str], hours: float, headless: bool, speed: float) -> dict[str, Any]:
    args = ["--soak-hours", str(hours), "--speed", str(speed), "--ride-every-min", "10"]
    if headless:
        args.append("--headless")
    _, lines = _drive(config, env, *args, timeout=hours * 3600 / speed * 4 + 120)
    rss = [x for x in lines if x["event"] == "rss"]
    return {"rss": rss, "rides": lines[-1]["rides"], "done": lines[-1]}


def run(quick: bool) -> list[Figure]:
    from bench.harness import register, start_central
    from kiosk.xvfb import Xvfb

    runs = 1 if quick else 5
    # three days: the first day warms caches up (every screen, fonts, GL textures); the next two must be flat
    soak_hours, speed = (4.0, 600.0) if quick else (72.0, 1200.0)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-kiosk-") as tmp, Xvfb(1280, 800) as display:
        base = Path(tmp)
        env = {**os.environ, "DISPLAY": display, "KIVY_HOME": str(base / "kivy"), "PYTHONPATH": str(ROOT)}
        # a fleet like the real one, seen through the fast clock of the soak (600x): assigned in 30-120 s
        fleet = {"time_scale": 600.0, "assign_delay_min_s": 30.0, "assign_delay_max_s": 120.0}
        fleet.update(eta_min_s=120.0, eta_max_s=420.0, no_car_rate=0.05)
        central = start_central(base, fleet=fleet)
        try:
            token = register(central, NODE, "kiosk", base / "token", pickup_point="长白新村北门")
            startup, feedback, stored = [], [], []
            for i in range(runs):
                d = base / f"run{i}"
                d.mkdir()
                config = _config(d, central.url, token)
                started, lines = _drive(config, env, "--touch", "--until", "searching", "--timeout", "60")
                startup.append(_first(lines, "idle_drawn")["wall"] - started)
                feedback.append(_first(lines, "feedback_drawn")["latency_s"])
                stored.append(_first(lines, "ride_stored")["since_touch_s"])
            figures += [
                Figure(
                    "kiosk start-up to idle screen (800x480, Xvfb, median)",
                    statistics.median(startup),
                    "s",
                    f"n={runs}, max {max(startup):.2f} s; process start to first frame",
                ),
                Figure(
                    "kiosk press to on-screen feedback (median)",
                    statistics.median(feedback) * 1000,
                    "ms",
                    f"target < 100 ms; n={runs}, max {max(feedback) * 1000:.1f} ms; touch to first frame drawn",
                ),
                Figure(
                    "kiosk press to ride stored at central, screen (median)",
                    statistics.median(stored) * 1000,
                    "ms",
                    f"n={runs}; touch to the frame showing the central's ride id",
                ),
            ]
            headless = _headless_press_to_stored(central.url, token, 10 if quick else 50)
            headless.sort()
            figures += [
                Figure(
                    "kiosk press to ride stored at central, no screen (median)",
                    statistics.median(headless) * 1000,
                    "ms",
                    f"n={len(headless)}, p95 {headless[int(len(headless) * 0.95) - 1] * 1000:.1f} ms",
                ),
            ]
            for name, is_headless in (("screen app", False), ("headless node", True)):
                d = base / f"soak-{'headless' if is_headless else 'screen'}"
                d.mkdir()
                config = _config(d, central.url, token, soak=True)
                result = _soak(config, env, soak_hours, is_headless, speed)
                rss = result["rss"]
                day = next((r for r in rss if r["sim_hours"] >= min(24.0, soak_hours / 2)), rss[0])
                last = rss[-1]
                growth = last["rss_mb"] - day["rss_mb"]
                per_day = growth / max(1e-9, last["sim_hours"] - day["sim_hours"]) * 24
                figures += [
                    Figure(
                        f"kiosk RSS after {day['sim_hours']:.0f} h simulated use, {name}",
                        day["rss_mb"],
                        "MB",
                        f"at 1 h {next((r for r in rss if r['sim_hours'] >= 1), rss[0])['rss_mb']:.1f} MB",
                    ),
                    Figure(
                        f"kiosk RSS growth {day['sim_hours']:.0f} h -> {soak_hours:g} h, {name}",
                        growth,
                        "MB",
                        f"flat: {per_day:+.2f} MB/day; {result['rides']} rides, clock x{speed:g}",
                    ),
                ]
        finally:
            central.stop()
    return figures
