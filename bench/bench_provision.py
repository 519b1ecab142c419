"""provision: how long a technician waits. Scan time per silent address and per meter found (simulated RS-485
bus at 9600 baud, default timeout), the projected full scan, and the command's start-up time."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time

from bench.figures import Figure
from hal.sim.meter import SimulatedMeterBus
from hal.sim.serial_pair import SerialPair
from meter_node.profiles import load_profile
from provisioning import cmd_scan

FULL_SCAN_ADDRESSES = 247
FULL_SCAN_BAUDS = 3  # the default --bauds 9600,19200,2400


def _scan(port: str, addresses: str, timeout_s: float) -> float:
    argv = ["--port", port, "--addresses", addresses, "--bauds", "9600", "--timeout", str(timeout_s), "--json"]
    sink = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
        cmd_scan.main(argv)
    return time.perf_counter() - started


def run(quick: bool) -> list[Figure]:
    timeout_s = 0.2  # provision scan's default
    silent = 8 if quick else 24
    figures: list[Figure] = []
    with SerialPair() as (node_path, meter_path), SimulatedMeterBus(meter_path, baudrate=9600) as sim:
        profile = load_profile("ultrad_int_ml")
        sim.add_slave(1)
        sim.set_registers(1, 3, profile.address, profile.encode(123_456.789))
        empty = _scan(node_path, f"2-{1 + silent}", timeout_s)
        per_silent = empty / silent
        one = _scan(node_path, "1", timeout_s)
    figures.append(Figure("scan: one silent address (9600 baud, --timeout 0.2)", per_silent, "s", "~ the timeout"))
    figures.append(Figure("scan: one meter found and tried with every profile", one, "s"))
    full = per_silent * FULL_SCAN_ADDRESSES * FULL_SCAN_BAUDS
    figures.append(Figure("scan: projected full bus (247 addresses x 3 bauds)", full / 60, "min", "field guide: ~3"))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "provisioning.cli", "--help"], capture_output=True, check=True, timeout=60)
    figures.append(Figure("provision --help start-up", time.perf_counter() - started, "s"))
    return figures
