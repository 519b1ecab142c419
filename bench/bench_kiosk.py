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
WIDTH, HEIGHT = 800, 480  # the kiosk's configured screen, and the bare app's window


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
screen = {{ width = {WIDTH}, height = {HEIGHT}, fullscreen = false }}
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


def _warm_fonts(face: Path, node_cache: Path) -> None:
    """The font face as an installed kiosk has it (written at its first start): linked into a fresh data dir."""
    node_cache.mkdir(parents=True, exist_ok=True)
    os.link(face, node_cache / face.name)


def _bare(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """The bare app in the kiosk's window size with the kiosk's font face (extracted here, not by the peer)."""
    return _spawn("bench.bare_kivy", env, "--font", env["BENCH_FACE"], "--size", f"{WIDTH}x{HEIGHT}", *args)


def _bare_startup(env: dict[str, str]) -> tuple[float, float]:
    """(seconds, CPU seconds) from process start to the first frame."""
    started = time.time()
    first = _first(_lines(_bare(env), 120), "idle_drawn")
    return first["wall"] - started, first["cpu_s"]


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
    bare = _bare(env, "--presses", str(rides), "--every", str(real_s / rides))
    kiosk_lines, bare_lines = _lines(kiosk, real_s * 4 + 120), _lines(bare, real_s * 4 + 120)
    headless_lines = _lines(headless, real_s * 4 + 120)
    return {
        "kiosk": [x for x in kiosk_lines if x["event"] == "rss"],
        "headless": [x for x in headless_lines if x["event"] == "rss"],
        "rides": kiosk_lines[-1]["rides"],
        "bare": [x for x in bare_lines if x["event"] in ("idle_drawn", "rss")],
    }


def _startups(base: Path, env: dict[str, str], url: str, token: str, runs: int) -> list[Figure]:
    """Start-ups alternating with the bare app's, so a busy moment on the shared machine hits both."""
    startup, bare, feedback, stored, cpu, bare_cpu = [], [], [], [], [], []
    # one start of each first, not counted: byte-code caches written, the font file and libraries in the page cache
    warm = base / "warm"
    warm.mkdir()
    _warm_fonts(Path(env["BENCH_FACE"]), warm / "data" / "fonts")
    _drive(_config(warm, url, token), env, "--touch", "--until", "searching", "--timeout", "60")
    _bare_startup(env)  # written once
    for i in range(runs):
        d = base / f"run{i}"
        d.mkdir()
        config = _config(d, url, token)
        _warm_fonts(Path(env["BENCH_FACE"]), d / "data" / "fonts")
        started, lines = _drive(config, env, "--touch", "--until", "searching", "--timeout", "60")
        startup.append(_first(lines, "idle_drawn")["wall"] - started)
        cpu.append(_first(lines, "idle_drawn")["cpu_s"])
        feedback.append(_first(lines, "feedback_drawn")["latency_s"])
        stored.append(_first(lines, "ride_stored")["since_touch_s"])
        wall_s, cpu_s = _bare_startup(env)
        bare.append(wall_s)
        bare_cpu.append(cpu_s)
    ratio = statistics.median(startup) / statistics.median(bare)
    cpu_ratio = statistics.median(cpu) / statistics.median(bare_cpu)
    return [
        Figure("kiosk start-up to idle screen (800x480, Xvfb, median)", statistics.median(startup), "s",
               f"n={runs}, max {max(startup):.2f} s; process start to first frame"),
        Figure("bare one-button Kivy app, start-up to first frame (median)", statistics.median(bare), "s",
               f"n={runs}, same run, alternating; same window, hardening and font face"),
        Figure("kiosk start-up / bare Kivy app", ratio, "x", "target <= 1.5x"),
        Figure("kiosk / bare app, CPU seconds to the first frame (medians)", cpu_ratio, "x",
               f"{statistics.median(cpu):.3f} s against {statistics.median(bare_cpu):.3f} s; what the start costs "
               "the processor, less swayed by other work on the machine than the wall time"),
        Figure("kiosk press to screen change (median)", statistics.median(feedback) * 1000, "ms",
               f"target <= 100 ms; n={runs}, max {max(feedback) * 1000:.1f} ms; touch to first frame drawn"),
        Figure("kiosk press to ride stored at central (median)", statistics.median(stored) * 1000, "ms",
               f"target <= 300 ms; n={runs}, max {max(stored) * 1000:.1f} ms; touch to the frame with the "
               "central's ride id"),
    ]  # fmt: skip


def _days(base: Path, env: dict[str, str], url: str, token: str, days: int, quick: bool) -> list[Figure]:
    """``days`` simulated days one after another, each with the bare app and the headless node beside it: the
    medians of the RSS at the end of the day, of the ratio, and of the growth over the second half of the day."""
    hours, speed, rides = (4.0, 600.0, 10) if quick else (24.0, 600.0, 50)
    runs = []
    for i in range(days):
        d, h = base / f"soak{i}", base / f"soak{i}-headless"
        d.mkdir()
        h.mkdir()
        _warm_fonts(Path(env["BENCH_FACE"]), d / "data" / "fonts")
        runs.append(_soak_side_by_side(_config(d, url, token, soak=True), _config(h, url, token, soak=True), env,
                                       hours, speed, rides))  # fmt: skip
    kiosk = [r["kiosk"][-1]["rss_mb"] for r in runs]
    bare = [r["bare"][-1]["rss_mb"] for r in runs]
    ratios = [k / b for k, b in zip(kiosk, bare, strict=True)]
    at_1h = [r["kiosk"][1]["rss_mb"] for r in runs]
    # screens, glyphs and caches have been through every state by the middle of the day
    growth = [r["kiosk"][-1]["rss_mb"] - next(x for x in r["kiosk"] if x["sim_hours"] >= hours / 2)["rss_mb"]
              for r in runs]  # fmt: skip
    median = statistics.median
    spread = f"n={days} days one after another; each {', '.join(f'{k:.1f}' for k in kiosk)} MB"
    return [
        Figure(f"kiosk RSS after {hours:.0f} simulated hours (median)", median(kiosk), "MB",
               f"{spread}; {runs[0]['rides']} rides a day on a x{speed:g} clock; at 1 h {median(at_1h):.1f} MB"),
        Figure("bare Kivy app RSS after as many presses (median)", median(bare), "MB",
               f"same real time, in parallel; each {', '.join(f'{b:.1f}' for b in bare)} MB; at its first frame "
               f"{median(r['bare'][0]['rss_mb'] for r in runs):.1f} MB"),
        Figure("kiosk RSS / bare Kivy app (median of the days)", median(ratios), "x",
               f"target <= 1.2x; each {', '.join(f'{r:.3f}' for r in ratios)}"),
        Figure("the same node without its screen, RSS (median)", median(r["headless"][-1]["rss_mb"] for r in runs),
               "MB", "headless kiosk, same days in parallel: network client, outbox, voice; python alone ~11 MB"),
        Figure(f"kiosk RSS growth {hours / 2:.0f} h -> {hours:.0f} h (median)", median(growth), "MB",
               f"flat: no growth after the first screens are drawn; each {', '.join(f'{g:+.1f}' for g in growth)}"),
    ]  # fmt: skip


def run(quick: bool) -> list[Figure]:
    from bench.harness import register, start_central
    from kiosk.config import ScreenSection
    from kiosk.fonts import kiosk_fonts
    from kiosk.xvfb import Xvfb

    with tempfile.TemporaryDirectory(prefix="bench-kiosk-") as tmp, Xvfb(1280, 800) as display:
        base = Path(tmp)
        env = {**os.environ, "DISPLAY": display, "KIVY_HOME": str(base / "kivy"), "PYTHONPATH": str(ROOT)}
        # the kiosk's Simplified Chinese face, extracted once here: the kiosk finds it in its data dir as after its
        # first start, the bare app is handed the file
        _, bold = kiosk_fonts(ScreenSection(), base / "fonts")
        env["BENCH_FACE"] = bold
        # as installed, with byte-compiled modules (pip compiles them): where this environment says
        # PYTHONDONTWRITEBYTECODE, every start would compile the kiosk's ~60 modules from source (about 30 ms of CPU
        # before the first frame, measured) and the bare app's few; the caches go to a folder of this run
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        # a fleet like the real one, seen through the soak's fast clock (600x): assigned in 30-120 s
        fleet = {"time_scale": 600.0, "assign_delay_min_s": 30.0, "assign_delay_max_s": 120.0}
        fleet.update(eta_min_s=120.0, eta_max_s=420.0, no_car_rate=0.05)
        central = start_central(base, fleet=fleet)
        try:
            token = register(central, NODE, "kiosk", base / "token", pickup_point="长白新村北门")
            figures = _startups(base, env, central.url, token, 3 if quick else 9)
            figures += _days(base, env, central.url, token, 1 if quick else 3, quick)
        finally:
            central.stop()
    return figures
