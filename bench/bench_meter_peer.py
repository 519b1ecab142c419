"""The meter node on a peer gateway's load: 10 simulated meters polled every 1 s over a virtual serial pair.

Beside thingsboard-gateway 3.8.5's published figures on the same load (issue 5): resident memory, CPU share of
one core, bytes written to disk per minute (/proc/<pid>/io write_bytes of the node process), time from start
to the first reading delivered at the central, and readings lost on kill -9 that ``put`` had acknowledged.
The node runs as ``python -m meter_node run`` in its own process (a realistic RSS); the central (loopback,
temporary SQLite) and the simulated meters run in this process.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.figures import Figure
from bench.harness import OPERATOR_KEY, SITE, ProcStat, UploadWatch, proc_stat, register, start_central
from central.server import CentralServer

ROOT = Path(__file__).resolve().parent.parent
NODE_ID = "bench-meter-peer"
METERS = 10
PROFILE = "u32_le_litres"
PEER = "thingsboard-gateway 3.8.5"
BAUD = 9600
_STORED = re.compile(r"stored (\d+) reading\(s\), seq (\d+)-(\d+)")


def central_readings(server: CentralServer) -> list[dict[str, Any]]:
    import requests

    found: list[dict[str, Any]] = []
    after = 0
    headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    while True:
        params: dict[str, Any] = {"after": after, "limit": 10_000, "node_id": NODE_ID, "kind": "meter_reading"}
        page = requests.get(f"{server.url}/api/v1/events", params=params, headers=headers, timeout=30).json()
        found += page["events"]
        if not page["events"]:
            return found
        after = page["next_after"]


# ------------------------------------------------------------------------------------------------- meters
class Meters:
    """Ten simulated meters (a real pymodbus RTU server) on the meter end of the pair, each using water all
    the time (``flow_l_min`` up to twice that) so every total keeps changing."""

    def __init__(self, port_path: str, flow_l_min: float = 0.5) -> None:
        from hal.sim.meter import SimulatedMeter, SimulatedMeterBus
        from meter_node.profiles import load_profile

        encode = load_profile(PROFILE).register_writes
        self.bus = SimulatedMeterBus(port_path, baudrate=BAUD).start()
        self.meters = [SimulatedMeter(self.bus, i + 1, encode, 1000.0 * (i + 1)) for i in range(METERS)]
        self._flow_l_min = flow_l_min
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flow, name="bench-meters-flow", daemon=True)
        self._thread.start()

    def _flow(self) -> None:
        while not self._stop.wait(1.0):
            for i, meter in enumerate(self.meters):
                meter.draw(self._flow_l_min * (1.0 + 0.1 * i) / 60.0)

    def requests(self) -> int:
        return sum(self.bus.requests(i + 1) for i in range(METERS))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.bus.stop()


# --------------------------------------------------------------------------------------------- the node
def write_config(folder: Path, central_url: str, node_port: str, log_level: str, every_change: bool = False) -> Path:
    meters = "\n".join(
        f'[[meter.meters]]\nid = "m{i + 1:02d}"\naddress = {i + 1}\nprofile = "{PROFILE}"\n'
        f'poll_interval_s = 1.0\noffline_after_s = 60\nhousehold = {{ resident = "B1-{i + 1:02d}" }}\n'
        for i in range(METERS)
    )
    text = f"""[node]
id = "{NODE_ID}"
role = "meter"
site = "{SITE}"
data_dir = "{folder / "data"}"
log_level = "{log_level}"

[central]
url = "{central_url}"
token_file = "{folder / "token"}"

[audio]
backend = "none"

[meter]
reading_min_interval_s = {1.0 if every_change else 60.0}

[meter.serial]
port = "{node_port}"
baudrate = {BAUD}

{meters}"""
    path = folder / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


class NodeProcess:
    """``python -m meter_node run`` in a child process, its stderr read by a thread (no disk)."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meter_node", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acked_seqs: set[int] = set()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            match = _STORED.search(line)
            if match:
                first, last = int(match.group(2)), int(match.group(3))
                count = int(match.group(1))
                if last - first + 1 == count:
                    self.acked_seqs.update(range(first, last + 1))
            elif len(self.lines) < 200:
                self.lines.append(line.rstrip())

    def stat(self) -> ProcStat:
        return proc_stat(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


def wait_for(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


# ------------------------------------------------------------------------------------------------- phases
def measure_load(folder: Path, duration_s: float) -> dict[str, Any]:
    """Phase 1: start the node, time the first delivered reading, then sample RSS, CPU and disk writes."""
    from hal.sim.serial_pair import SerialPair

    watch = UploadWatch(b'"meter_reading"')
    server = start_central(folder, watch)
    pair = SerialPair()
    node_port, meter_port = pair.start()
    sim = Meters(meter_port)
    try:
        register(server, NODE_ID, "meter", folder / "token")
        config = write_config(folder, server.url, node_port, "INFO")
        node = NodeProcess(config)
        try:
            delivered = wait_for(lambda: watch.first is not None, 30.0)
            first_s = (watch.first - node.started) if delivered and watch.first else None
            time.sleep(max(0.0, 5.0 - (time.monotonic() - node.started)))  # warm-up: imports, first sync
            samples = []
            t0 = time.monotonic()
            s0 = node.stat()
            req0 = sim.requests()
            while time.monotonic() - t0 < duration_s and node.proc.poll() is None:
                time.sleep(1.0)
                samples.append(node.stat().rss)
            s1 = node.stat()
            elapsed = time.monotonic() - t0
            reads = sim.requests() - req0
            threads = len(os.listdir(f"/proc/{node.proc.pid}/task"))
        finally:
            node.stop()
        return {
            "first_reading_s": first_s,
            "rss_start": s0.rss,
            "rss_end": s1.rss,
            "rss_max": max(samples or [s1.rss]),
            "cpu_pct": 100.0 * (s1.cpu_s - s0.cpu_s) / elapsed,
            "write_per_min": (s1.write_bytes - s0.write_bytes) / elapsed * 60.0,
            "threads": threads,
            "elapsed": elapsed,
            "reads_served": reads,
            "node_log": node.lines[-5:],
        }
    finally:
        sim.stop()
        pair.stop()
        server.stop()


def kill_rounds(folder: Path, rounds: int, seed: int = 5) -> dict[str, Any]:
    """Phase 2: kill -9 the node at random moments, restart it, and check the central got every reading the
    node's ``put`` had acknowledged (the node logs each durable store at DEBUG)."""
    import random

    from hal.sim.serial_pair import SerialPair

    rng = random.Random(seed)
    watch = UploadWatch(b'"meter_reading"')
    server = start_central(folder, watch)
    pair = SerialPair()
    node_port, meter_port = pair.start()
    sim = Meters(meter_port, flow_l_min=20.0)  # totals change every few seconds: many readings to lose
    acked: set[int] = set()
    try:
        register(server, NODE_ID, "meter", folder / "token")
        # every changed total recorded (10 readings a second): many acknowledged readings to lose
        config = write_config(folder, server.url, node_port, "DEBUG", every_change=True)
        for _ in range(rounds):
            node = NodeProcess(config)
            wait_for(functools.partial(lambda n: bool(n.acked_seqs), node), 20.0)
            time.sleep(rng.uniform(0.5, 6.0))
            node.stop(signal.SIGKILL)
            acked |= node.acked_seqs
        # a last run drains everything to the central, then stops cleanly
        node = NodeProcess(config)
        at_central: set[int] = set()

        def all_arrived() -> bool:
            at_central.update(e["seq"] for e in central_readings(server) if e.get("seq") is not None)
            return acked <= at_central

        wait_for(all_arrived, 60.0, step_s=0.5)
        node.stop()
        return {"acked": len(acked), "lost": len(acked - at_central), "rounds": rounds}
    finally:
        sim.stop()
        pair.stop()
        server.stop()


def run(quick: bool) -> list[Figure]:
    # the full run covers a state save (every 5 min) and five rounds of readings (a changed total per minute)
    duration = 20.0 if quick else 300.0
    rounds = 3 if quick else 10
    with tempfile.TemporaryDirectory(prefix="bench-meter-", dir="/var/tmp") as tmp:
        (Path(tmp) / "load").mkdir()
        (Path(tmp) / "kill").mkdir()
        load = measure_load(Path(tmp) / "load", duration)
        kill = kill_rounds(Path(tmp) / "kill", rounds)
    mb = 1024 * 1024
    first = load["first_reading_s"]
    rss_note = f"start {load['rss_start'] / mb:.1f}, end {load['rss_end'] / mb:.1f} MB over {load['elapsed']:.0f} s"
    figures = [
        Figure("meter_peer: resident memory (max)", round(load["rss_max"] / mb, 1), "MB", f"<= 40; {PEER}: 65.8"),
        Figure("meter_peer: memory start -> end", rss_note, "", f"{PEER}: flat"),
        Figure("meter_peer: CPU", round(load["cpu_pct"], 2), "% of one core", f"<= 2; {PEER}: 8.6"),
        Figure("meter_peer: threads", load["threads"], "", f"{PEER}: 20"),
        Figure(
            "meter_peer: written to disk",
            round(load["write_per_min"] / 1024, 1),
            f"kB/min over {load['elapsed']:.0f} s",
            f"<= 230; {PEER}: 2,320",
        ),
        Figure(
            "meter_peer: start to first reading at central",
            "none" if first is None else round(first, 3),
            "s",
            f"<= 0.5; {PEER}: 1.43",
        ),
        Figure(
            "meter_peer: acknowledged readings lost on kill -9",
            f"{kill['lost']} of {kill['acked']}",
            f"({kill['rounds']} kills)",
            f"0; {PEER}: lost last 0-4",
        ),
    ]
    if load.get("reads_served"):
        per_read = load["write_per_min"] / max(1.0, load["reads_served"] / load["elapsed"] * 60.0)
        figures.append(Figure("meter_peer: written per meter read", round(per_read, 1), "bytes", f"{PEER}: 3,900"))
    print(json.dumps({"load": {k: v for k, v in load.items() if k != "node_log"}, "kill": kill}), file=sys.stderr)
    return figures
