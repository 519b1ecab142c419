"""Kiosk figures against a bare one-button Kivy app measured in the same run: start-up to the first screen,
press to screen change, press to ride stored at the central, and memory after a simulated day of 50 rides.

Every app runs in its own interpreter (``python -m kiosk.drive``, ``python -m bench.bare_kivy``) under a private
Xvfb with Mesa llvmpipe, against a real central on loopback with a temporary database; real seconds.
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


def _spawn(module: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(proc: subprocess.Popen[str], timeout: float) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    if not lines or lines[-1]["event"] != "done":
        raise RuntimeError(f"{proc.args!r}: failed: {err[-2000:]}")
    return lines


def _warm_fonts(cache: Path, node_cache: Path) -> None:
    """The font face as an installed kiosk has it (written at its first start): linked into a fresh data dir."""
    node_cache.mkdir(parents=True, exist_ok=True)
    for face in cache.glob("*.otf"):
        os.link(face, node_cache / face.name)


def _bare_startup(env: dict[str, str]) -> float:
    started = time.time()
    lines = _lines(_spawn("bench.bare_kivy", env, "--font-cache", env["BENCH_FONTS"]), 120)
    return _first(lines, "idle_drawn")["wall"] - started


def _soak_side_by_side(
    config: Path, headless_config: Path, env: dict[str, str], hours: float, speed: float, rides: int
) -> dict[str, Any]:
    """The kiosk app through ``hours`` simulated hours with ``rides`` rides, the same node without its screen, and
    the bare app pressed as often over the same real time, in parallel; RSS of all three."""
    real_s = hours * 3600 / speed
    every_min = hours * 60 / rides
    kiosk = _spawn(
        "kiosk.drive", env, "--config", str(config), "--soak-hours", str(hours), "--speed", str(speed),
        "--ride-every-min", str(every_min),
    )  # fmt: skip
    headless = _spawn(
        "kiosk.drive", env, "--config", str(headless_config), "--soak-hours", str(hours), "--speed", str(speed),
        "--ride-every-min", str(every_min), "--headless",
    )  # fmt: skip
    bare = _spawn(
        "bench.bare_kivy",
        env,
        "--presses",
        str(rides),
        "--every",
        str(real_s / rides),
        "--font-cache",
        env["BENCH_FONTS"],
    )
    kiosk_lines, bare_lines = _lines(kiosk, real_s * 4 + 120), _lines(bare, real_s * 4 + 120)
    headless_lines = _lines(headless, real_s * 4 + 120)
    return {
        "kiosk": [x for x in kiosk_lines if x["event"] == "rss"],
        "headless": [x for x in headless_lines if x["event"] == "rss"],
        "rides": kiosk_lines[-1]["rides"],
        "bare": [x for x in bare_lines if x["event"] in ("idle_drawn", "rss")],
    }


def run(quick: bool) -> list[Figure]:
    from bench.harness import register, start_central
    from kiosk.xvfb import Xvfb

    runs = 2 if quick else 5
    hours, speed, rides = (4.0, 600.0, 10) if quick else (24.0, 600.0, 50)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-kiosk-") as tmp, Xvfb(1280, 800) as display:
        base = Path(tmp)
        env = {**os.environ, "DISPLAY": display, "KIVY_HOME": str(base / "kivy"), "PYTHONPATH": str(ROOT)}
        env["BENCH_FONTS"] = str(base / "fonts")
        # a fleet like the real one, seen through the soak's fast clock (600x): assigned in 30-120 s
        fleet = {"time_scale": 600.0, "assign_delay_min_s": 30.0, "assign_delay_max_s": 120.0}
        fleet.update(eta_min_s=120.0, eta_max_s=420.0, no_car_rate=0.05)
        central = start_central(base, fleet=fleet)
        try:
            token = register(central, NODE, "kiosk", base / "token", pickup_point="长白新村北门")
            _bare_startup(env)  # the same font face for both, written once
            startup, bare, feedback, stored = [], [], [], []
            for i in range(runs):  # alternating, so a busy moment on the shared machine hits both
                d = base / f"run{i}"
                d.mkdir()
                config = _config(d, central.url, token)
                _warm_fonts(Path(env["BENCH_FONTS"]), d / "data" / "fonts")
                started, lines = _drive(config, env, "--touch", "--until", "searching", "--timeout", "60")
                startup.append(_first(lines, "idle_drawn")["wall"] - started)
                feedback.append(_first(lines, "feedback_drawn")["latency_s"])
                stored.append(_first(lines, "ride_stored")["since_touch_s"])
                bare.append(_bare_startup(env))
            ratio = statistics.median(startup) / statistics.median(bare)
            figures += [
                Figure("kiosk start-up to idle screen (800x480, Xvfb, median)", statistics.median(startup), "s",
                       f"n={runs}, max {max(startup):.2f} s; process start to first frame"),
                Figure("bare one-button Kivy app, start-up to first frame (median)", statistics.median(bare), "s",
                       f"n={runs}, same run, alternating; same window, hardening and font face"),
                Figure("kiosk start-up / bare Kivy app", ratio, "x", "target <= 1.5x"),
                Figure("kiosk press to screen change (median)", statistics.median(feedback) * 1000, "ms",
                       f"target <= 100 ms; n={runs}, max {max(feedback) * 1000:.1f} ms; touch to first frame drawn"),
                Figure("kiosk press to ride stored at central (median)", statistics.median(stored) * 1000, "ms",
                       f"target <= 300 ms; n={runs}, max {max(stored) * 1000:.1f} ms; touch to the frame with the "
                       "central's ride id"),
            ]  # fmt: skip
            d, h = base / "soak", base / "soak-headless"
            d.mkdir()
            h.mkdir()
            _warm_fonts(Path(env["BENCH_FONTS"]), d / "data" / "fonts")
            configs = _config(d, central.url, token, soak=True), _config(h, central.url, token, soak=True)
            soak = _soak_side_by_side(*configs, env, hours, speed, rides)
            kiosk_rss, bare_rss = soak["kiosk"], soak["bare"]
            warm = next((r for r in kiosk_rss if r["sim_hours"] >= hours / 2), kiosk_rss[0])  # screens, glyphs cached
            last = kiosk_rss[-1]
            growth = last["rss_mb"] - warm["rss_mb"]
            figures += [
                Figure(f"kiosk RSS after {last['sim_hours']:.0f} simulated hours", last["rss_mb"], "MB",
                       f"{soak['rides']} rides on a x{speed:g} clock; at 1 h {kiosk_rss[1]['rss_mb']:.1f} MB"),
                Figure("bare Kivy app RSS after as many presses", bare_rss[-1]["rss_mb"], "MB",
                       f"same real time, in parallel; at its first frame {bare_rss[0]['rss_mb']:.1f} MB"),
                Figure("kiosk RSS / bare Kivy app", last["rss_mb"] / bare_rss[-1]["rss_mb"], "x", "target <= 1.2x"),
                Figure("the same node without its screen, RSS", soak["headless"][-1]["rss_mb"], "MB",
                       "headless kiosk, same day in parallel: network client, outbox, GPIO, voice; python alone ~11 MB"),
                Figure(f"kiosk RSS growth {warm['sim_hours']:.0f} h -> {last['sim_hours']:.0f} h", growth, "MB",
                       "flat: no growth after the first screens are drawn"),
            ]  # fmt: skip
        finally:
            central.stop()
    return figures
