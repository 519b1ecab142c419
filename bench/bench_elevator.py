"""Elevator node: latency from the entrapment threshold to the alert in the outbox and at a local central;
resident memory, CPU and disk writes of an idle node process.

Latency runs the real node (``ElevatorNode.run``, the service loop) in this process on MockFactory pins
(hal.sim.lift) with the real clock, the real runtime (outbox, uploader thread) and a central on loopback; ``entrapment_s`` is the minimum, 10 s, so each
sample takes about 13 s. Peer: the same node with a plain 0.5 s tick instead of waking at the deadline.
Idle runs ``python -m elevator_node run`` as its own process (doors closed, car empty) beside a bare Python
process that only imports the same libraries.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.figures import Figure
from bench.harness import SITE, UploadWatch, proc_stat, register, start_central
from common.outbox import peek_state
from elevator_node.node import STATE_KEY

ROOT = Path(__file__).resolve().parent.parent
NODE_ID = "bench-lift-b7-u2-1"
ENTRAPMENT_S = 10.0


def saved_state(outbox: Path) -> str | None:
    """The lift node's saved detector state, None until its outbox has one (or while it is being made)."""
    try:
        return peek_state(outbox, STATE_KEY)
    except sqlite3.Error:
        return None


def config_text(folder: Path, central_url: str, log_level: str = "WARNING") -> str:
    # door contact and door-zone magnet with a pull-down and active low: a mock pin at rest reads "closed" and
    # "at a floor", so the idle car is a shut, empty car parked at a floor
    return f"""[node]
id = "{NODE_ID}"
role = "elevator"
site = "{SITE}"
data_dir = "{folder / "data"}"
log_level = "{log_level}"

[central]
url = "{central_url}"
token_file = "{folder / "token"}"

[gpio]
pin_factory = "mock"

[audio]
backend = "none"

[elevator]
building = "7"
unit = "2"
lift = "1"
door = {{ pin = 17, active_high = false, pull_up = false, bounce_s = 0 }}
occupancy = {{ pin = 27, bounce_s = 0 }}
moving = {{ pin = 22, bounce_s = 0 }}
level_zone = {{ pin = 23, active_high = false, pull_up = false, bounce_s = 0 }}
alarm_button = {{ pin = 24, bounce_s = 0 }}
entrapment_s = {ENTRAPMENT_S}
"""


# ------------------------------------------------------------------------------------------------ latency
def measure_latency(folder: Path, samples: int, deadline_wakeup: bool) -> dict[str, list[float]]:
    """Threshold -> alert in the outbox, and -> stored at the central, over ``samples`` entrapments."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    from common.clock import SystemClock
    from common.config import parse_config
    from common.service import NodeRuntime
    from elevator_node.node import build_node
    from elevator_node.sim import lift_sensors
    from hal.audio import NullSpeaker

    folder.mkdir(parents=True)
    watch = UploadWatch(b"entrapment", b'"state":"raised"')
    server = start_central(folder, watch)
    previous = Device.pin_factory
    Device.pin_factory = factory = MockFactory()
    outbox_at: list[float] = []
    raised: list[float] = []
    stored: list[float] = []
    try:
        register(server, NODE_ID, "elevator", folder / "token")
        config = parse_config(tomllib.loads(config_text(folder, server.url)), folder / "node.toml")
        clock = SystemClock()
        runtime = NodeRuntime(config, clock)
        runtime.outbox.add_listener(
            lambda e: outbox_at.append(time.monotonic()) if e.kind == "entrapment" and e.state == "raised" else None
        )
        node = build_node(config, clock, runtime=runtime, speaker=NullSpeaker())
        if not deadline_wakeup:
            node.detector.next_deadline = lambda: None  # type: ignore[method-assign]  # the peer: tick only
        car = lift_sensors(factory, config.role_config)
        car.apply(in_door_zone=True, moving=False, door="open", occupied=False, alarm_button=False)
        service = threading.Thread(target=node.run, name="bench-elevator-run", daemon=True)
        service.start()  # the production loop: runtime.run (0.5 s tick) + the deadline thread
        time.sleep(2.5)  # the opening is confirmed (door_open_confirm_s): a shorter one would be a bounce
        try:
            for _ in range(samples):
                car.apply(occupied=True)
                time.sleep(0.3)
                closed_at = time.monotonic()
                car.apply(door="closed")  # the callback runs the detector: the spell starts here
                threshold = closed_at + ENTRAPMENT_S
                n = len(outbox_at)
                m = len(watch.stored_at)
                end = time.monotonic() + ENTRAPMENT_S + 10
                while (len(outbox_at) == n or len(watch.stored_at) == m) and time.monotonic() < end:
                    time.sleep(0.002)
                if len(outbox_at) > n:
                    raised.append(outbox_at[n] - threshold)
                if len(watch.stored_at) > m:
                    stored.append(watch.stored_at[m] - threshold)
                car.apply(door="open", occupied=False)  # rescued; the clear needs door_open_confirm_s
                time.sleep(2.5)
        finally:
            runtime.request_stop()
            service.join(timeout=30)
            runtime.stop()
    finally:
        factory.reset()
        Device.pin_factory = previous
        server.stop()
    return {"raised": raised, "stored": stored}


# --------------------------------------------------------------------------------------------------- idle
BASELINE = "import gpiozero, requests, sqlite3, json, threading, time; time.sleep(3600)"


def measure_idle(folder: Path, duration_s: float) -> dict[str, Any]:
    """The node process idle (doors closed, car empty, central reachable) beside a bare interpreter."""
    folder.mkdir(parents=True)
    server = start_central(folder)
    procs: list[subprocess.Popen] = []
    try:
        register(server, NODE_ID, "elevator", folder / "token")
        cfg = folder / "node.toml"
        cfg.write_text(config_text(folder, server.url), encoding="utf-8")
        node = subprocess.Popen(
            [sys.executable, "-m", "elevator_node", "run", "--config", str(cfg)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(node)
        base = subprocess.Popen([sys.executable, "-c", BASELINE], cwd=ROOT, stdin=subprocess.DEVNULL)
        procs.append(base)
        outbox = folder / "data" / NODE_ID / "outbox.sqlite"
        deadline = time.monotonic() + 30
        while saved_state(outbox) is None and node.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3.0)  # warm-up: the first heartbeat and upload are done
        if node.poll() is not None:
            raise RuntimeError(f"elevator node exited {node.returncode}: {node.communicate()[1][-2000:]}")
        n0, b0 = proc_stat(node.pid), proc_stat(base.pid)
        t0 = time.monotonic()
        time.sleep(duration_s)
        n1, b1 = proc_stat(node.pid), proc_stat(base.pid)
        elapsed = time.monotonic() - t0
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
        return {
            "cpu_pct": 100.0 * (n1.cpu_s - n0.cpu_s) / elapsed,
            "rss": n1.rss,
            "write_per_min": (n1.write_bytes - n0.write_bytes) / elapsed * 60.0,
            "threads": n1.threads,
            "base_cpu_pct": 100.0 * (b1.cpu_s - b0.cpu_s) / elapsed,
            "base_rss": b1.rss,
            "exit_code": node.returncode,
            "elapsed": elapsed,
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        server.stop()


def _ms(values: list[float], fn: Callable[[list[float]], float]) -> float | str:
    return round(fn(values) * 1000, 1) if values else "none"


def run(quick: bool) -> list[Figure]:
    samples = 2 if quick else 5
    idle_s = 5.0 if quick else 30.0
    with tempfile.TemporaryDirectory(prefix="bench-elevator-", dir="/var/tmp") as tmp:
        fast = measure_latency(Path(tmp) / "deadline", samples, deadline_wakeup=True)
        tick = measure_latency(Path(tmp) / "tick", samples, deadline_wakeup=False)
        idle = measure_idle(Path(tmp) / "idle", idle_s)
    mb = 1024 * 1024
    n = f"{samples} entrapments"
    figures = [
        Figure(
            "elevator: threshold -> alert in outbox (median)",
            _ms(fast["raised"], statistics.median),
            "ms",
            "<= 1000 (issue)",
        ),
        Figure("elevator: threshold -> alert in outbox (max)", _ms(fast["raised"], max), "ms", n),
        Figure(
            "elevator: threshold -> alert stored at central (median)",
            _ms(fast["stored"], statistics.median),
            "ms",
            "loopback central",
        ),
        Figure("elevator: threshold -> alert stored at central (max)", _ms(fast["stored"], max), "ms", n),
        Figure(
            "elevator peer (0.5 s tick only): threshold -> outbox (median)",
            _ms(tick["raised"], statistics.median),
            "ms",
            "same node without deadline wake-up",
        ),
        Figure("elevator peer (0.5 s tick only): threshold -> outbox (max)", _ms(tick["raised"], max), "ms", n),
        Figure(
            "elevator idle: resident memory",
            round(idle["rss"] / mb, 1),
            "MB",
            f"bare python + same imports: {idle['base_rss'] / mb:.1f}",
        ),
        Figure(
            "elevator idle: CPU", round(idle["cpu_pct"], 2), "% of one core", f"bare python: {idle['base_cpu_pct']:.2f}"
        ),
        Figure("elevator idle: threads", idle["threads"], "", ""),
        Figure(
            "elevator idle: written to disk",
            round(idle["write_per_min"] / 1024, 1),
            "kB/min",
            f"over {idle['elapsed']:.0f} s",
        ),
    ]
    print(json.dumps({"deadline": fast, "tick": tick, "idle": idle}), file=sys.stderr)
    return figures
