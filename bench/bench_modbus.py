"""ModbusBus over a socat pty pair against the pymodbus simulated meters, beside pymodbus's own serial client.

A pty has no wire time, so these figures are the software cost per read (request, reply, checks, lock); on a
real 9600-baud RS-485 line the frames themselves take longer (the computed wire-time figure).
"""

from __future__ import annotations

import statistics
import threading
import time

from bench.figures import Figure
from common.config import SerialPort
from hal.modbus import ModbusBus, ModbusError
from hal.sim.meter import SimulatedMeterBus
from hal.sim.serial_pair import SerialPair

SLAVES = (1, 2, 3, 4)
COUNT = 2  # a 32-bit litre total: the usual meter read


def _wire_ms(baudrate: int, count: int, gap_s: float) -> float:
    # 8N1 = 10 bits a byte; request 8 bytes, reply 5 + 2 * count bytes, plus the configured gap
    return ((8 + 5 + 2 * count) * 10 / baudrate + gap_s) * 1000


def _bus_reads(port: SerialPort, reads: int) -> tuple[float, list[float]]:
    latencies = []
    with ModbusBus(port) as bus:
        start = time.perf_counter()
        for i in range(reads):
            t = time.perf_counter()
            bus.read_registers(SLAVES[i % len(SLAVES)], 0, COUNT)
            latencies.append(time.perf_counter() - t)
        return reads / (time.perf_counter() - start), latencies


def _bus_threads(port: SerialPort, reads_per_thread: int) -> tuple[float, int]:
    errors = 0
    lock = threading.Lock()
    with ModbusBus(port) as bus:

        def poll(slave: int) -> None:
            nonlocal errors
            for _ in range(reads_per_thread):
                try:
                    bus.read_registers(slave, 0, COUNT)
                except ModbusError:
                    with lock:
                        errors += 1

        threads = [threading.Thread(target=poll, args=(s,)) for s in SLAVES]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return reads_per_thread * len(SLAVES) / (time.perf_counter() - start), errors


def _pymodbus_reads(node_path: str, reads: int) -> float:
    from pymodbus.client import ModbusSerialClient

    client = ModbusSerialClient(port=node_path, baudrate=9600, timeout=0.5, retries=0)
    client.connect()
    try:
        start = time.perf_counter()
        for i in range(reads):
            reply = client.read_holding_registers(0, count=COUNT, device_id=SLAVES[i % len(SLAVES)])
            if reply.isError():
                raise RuntimeError(f"pymodbus client read failed: {reply}")
        return reads / (time.perf_counter() - start)
    finally:
        client.close()


def _recovery_ms(sim: SimulatedMeterBus, port: SerialPort, fault: str, samples: int) -> float:
    times = []
    with ModbusBus(port) as bus:
        for _ in range(samples):
            sim.inject(1, fault)
            t = time.perf_counter()
            bus.read_registers(1, 0, COUNT)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def run(quick: bool) -> list[Figure]:
    reads = 200 if quick else 2000
    with SerialPair() as (node_path, meter_path), SimulatedMeterBus(meter_path) as sim:
        for slave in SLAVES:
            sim.add_slave(slave)
            sim.set_registers(slave, 3, 0, [slave, 1000 + slave])
        port = SerialPort(port=node_path, timeout_s=0.1, retries=1, gap_s=0.0)
        rate, latencies = _bus_reads(port, reads)
        threaded_rate, threaded_errors = _bus_threads(port, reads // len(SLAVES))
        peer_rate = _pymodbus_reads(node_path, reads)
        gap_port = SerialPort(port=node_path, timeout_s=0.1, retries=1, gap_s=0.03)
        gap_rate, _ = _bus_reads(gap_port, max(20, reads // 20))
        silence_ms = _recovery_ms(sim, port, "silence", 5 if quick else 20)
        crc_ms = _recovery_ms(sim, port, "bad_crc", 5 if quick else 20)
    p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
    return [
        Figure("modbus: ModbusBus reads/s, 1 poller, pty", rate, "reads/s", f"{reads} reads of {COUNT} registers"),
        Figure(
            "modbus peer: pymodbus ModbusSerialClient reads/s, pty", peer_rate, "reads/s", "same server, same reads"
        ),
        Figure("modbus: ModbusBus read latency median", statistics.median(latencies) * 1000, "ms", "pty, no wire"),
        Figure("modbus: ModbusBus read latency p99", p99, "ms", "pty, no wire"),
        Figure("modbus: ModbusBus reads/s, 4 pollers sharing the bus", threaded_rate, "reads/s", "lock serialises"),
        Figure("modbus: failed reads with 4 pollers", threaded_errors, "reads", "0 (no interleaved frames)"),
        Figure("modbus: ModbusBus reads/s with gap_s = 0.03", gap_rate, "reads/s", "<= 33 (the gap bounds it)"),
        Figure("modbus: read that retries after one silence (median)", silence_ms, "ms", "~ timeout_s 100 ms"),
        Figure("modbus: read that retries after one bad CRC (median)", crc_ms, "ms", "no timeout wait"),
        Figure("modbus: wire time of one read at 9600 8N1 + 30 ms gap", _wire_ms(9600, COUNT, 0.03), "ms", "computed"),
    ]
