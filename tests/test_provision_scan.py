"""provision scan against simulated pymodbus meters at several addresses and baud rates.

A pty carries bytes whatever its baud rate, so ``BaudRouter`` stands in for the physics: the scanner opens one
pty, and each request goes to the simulated bus whose baud rate matches the speed the scanner set on it (read
from the pty's termios); at any other speed nothing answers, as on a real RS-485 line.
"""

from __future__ import annotations

import json
import os
import select
import termios
import threading
import tty
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from hal.sim.meter import SimulatedMeterBus
from hal.sim.serial_pair import SerialPair
from meter_node.profiles import load_profile
from provisioning.cli import main

SPEEDS = {getattr(termios, f"B{b}"): b for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)}


class BaudRouter:
    """One pty for the scanner; bytes reach only the simulated bus running at the pty's current speed."""

    def __init__(self, buses: dict[int, str]) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # held open so the pty survives the scanner closing and reopening it
        self.path = os.ttyname(self._slave)
        self.buses = {}
        for baud, node_path in buses.items():
            fd = os.open(node_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            tty.setraw(fd)
            self.buses[baud] = fd
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="baud-router", daemon=True)
        self._thread.start()

    def _speed(self) -> int | None:
        return SPEEDS.get(termios.tcgetattr(self.master)[5])

    def _relay(self) -> None:
        by_fd = {fd: baud for baud, fd in self.buses.items()}
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master, *by_fd], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except (BlockingIOError, OSError):
                    continue
                speed = self._speed()
                if fd == self.master:
                    if speed in self.buses:
                        os.write(self.buses[speed], data)
                elif by_fd[fd] == speed:
                    os.write(self.master, data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self.master, self._slave, *self.buses.values()):
            os.close(fd)


@pytest.fixture
def two_speed_bus() -> Iterator[tuple[str, dict[int, SimulatedMeterBus]]]:
    """Meters at 9600 (slaves 1 and 7) and at 19200 (slave 3) behind one scanner port."""
    with ExitStack() as stack:
        sims: dict[int, SimulatedMeterBus] = {}
        paths: dict[int, str] = {}
        for baud in (9600, 19200):
            node_path, meter_path = stack.enter_context(SerialPair())
            sims[baud] = stack.enter_context(SimulatedMeterBus(meter_path, baudrate=baud))
            paths[baud] = node_path
        put(sims[9600], 1, "ultrad_int_ml", 123_456.789)
        put(sims[9600], 7, "pulse_u32_10l", 52_300.0)
        put(sims[19200], 3, "u32_le_litres", 98_765.0)
        router = BaudRouter(paths)
        stack.callback(router.close)
        yield router.path, sims


def put(sim: SimulatedMeterBus, address: int, profile_name: str, litres: float) -> None:
    profile = load_profile(profile_name)
    sim.add_slave(address)
    sim.set_registers(address, profile.function_code, profile.address, profile.encode(litres))


# a scan that must hear a meter waits this long for each reply: on a loaded machine a reply through the pty,
# the router thread and the pymodbus thread took up to 0.48 s (400 reads, load 14: median 0.025 s, p99 0.25 s);
# at 0.05 s a responder's reply was often taken for silence. Each silent address costs this wait, so a scan that
# must hear nothing keeps the short one.
ANSWER_TIMEOUT = "0.5"
SILENCE_TIMEOUT = "0.05"


def test_scan_finds_each_meter_at_its_baud_with_its_profile(two_speed_bus, capsys: pytest.CaptureFixture) -> None:
    port, _ = two_speed_bus
    argv = ["scan", "--port", port, "--addresses", "1-8", "--bauds", "9600,19200", "--timeout", ANSWER_TIMEOUT]
    argv.append("--json")
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    found = {(r["address"], r["baudrate"]): r for r in report["responders"]}
    assert set(found) == {(1, 9600), (7, 9600), (3, 19200)}
    assert found[(1, 9600)]["matches"] == ["ultrad_int_ml"]
    assert found[(7, 9600)]["matches"] == ["pulse_u32_10l"]
    assert found[(3, 19200)]["matches"] == ["u32_le_litres"]
    litres = {t["profile"]: t["litres"] for t in found[(1, 9600)]["tries"]}
    assert litres["ultrad_int_ml"] == pytest.approx(123_456.789, abs=0.01)
    # progress on stderr: which baud, which address of how many
    assert "9600" in captured.err and "19200" in captured.err and "of 8" in captured.err


def test_scan_table_and_nothing_found(two_speed_bus, capsys: pytest.CaptureFixture) -> None:
    port, _ = two_speed_bus
    assert main(["scan", "--port", port, "--addresses", "1-3", "--bauds", "9600", "--timeout", ANSWER_TIMEOUT]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [(r[0], r[1], r[3]) for r in rows] == [("1", "9600", "ultrad_int_ml")]
    # slave 3 runs at 19200: at 2400 nobody answers, and the scan says so with exit 1
    assert main(["scan", "--port", port, "--addresses", "3", "--bauds", "2400", "--timeout", SILENCE_TIMEOUT]) == 1
    assert "no meter answered" in capsys.readouterr().out


def test_scan_says_when_no_profile_fits(two_speed_bus, capsys: pytest.CaptureFixture) -> None:
    port, sims = two_speed_bus
    sims[9600].add_slave(5)
    # every layout decodes a total far too large for a water meter, or a NaN fraction
    sims[9600].set_registers(5, 3, 0, [0x7FFF] * 16)
    sims[9600].set_registers(5, 4, 0, [0x7FFF] * 4)
    argv = ["scan", "--port", port, "--addresses", "5", "--bauds", "9600", "--timeout", ANSWER_TIMEOUT, "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    (responder,) = report["responders"]
    assert responder["matches"] == []
    assert all(not t["plausible"] for t in responder["tries"])


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--addresses", "0-3"], "--addresses"),
        (["--addresses", "5-2"], "--addresses"),
        (["--addresses", "x"], "--addresses"),
        (["--bauds", "9600,fast"], "--bauds"),
        (["--parity", "X"], "--parity"),
        (["--timeout", "0"], "--timeout"),
    ],
)
def test_scan_bad_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], named: str) -> None:
    port = tmp_path / "tty"
    port.touch()
    assert main(["scan", "--port", str(port), *argv]) == 2
    assert named in capsys.readouterr().err


def test_scan_missing_port_is_a_hardware_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["scan", "--port", str(tmp_path / "ttyUSB9"), "--addresses", "1"]) == 4
    assert "ttyUSB9" in capsys.readouterr().err
