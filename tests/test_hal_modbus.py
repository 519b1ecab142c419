"""ModbusBus against the pymodbus simulated meters over a socat pty pair: reads, each fault class, retries, threads."""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest

from common.clock import ManualClock
from common.config import SerialPort
from hal.modbus import (
    COUNTERS,
    CrcError,
    ModbusBus,
    ModbusError,
    NoResponseError,
    PortError,
    ShortFrameError,
    SlaveExceptionError,
    WrongResponderError,
    classify_reply,
    crc16,
)
from hal.sim.meter import FAULTS, SimulatedMeter, SimulatedMeterBus
from hal.sim.serial_pair import SerialPair, SerialPairError

FAULT_CLASSES: dict[str, type[ModbusError]] = {
    "silence": NoResponseError,
    "bad_crc": CrcError,
    "exception": SlaveExceptionError,
    "garbage": CrcError,
    "short": ShortFrameError,
    "wrong_slave": WrongResponderError,
    "wrong_function": WrongResponderError,
}


def no_retries(rig):
    return dataclasses.replace(rig.port, retries=0)


def test_good_reads_fc3_and_fc4(meter_bus) -> None:
    sim = meter_bus.sim
    sim.add_slave(1)
    sim.set_registers(1, 3, 0, [0x0001, 0x86A0, 0xFFFF])
    sim.set_registers(1, 4, 100, [42, 0])
    with ModbusBus(meter_bus.port) as bus:
        assert bus.read_registers(1, 0, 3) == [1, 0x86A0, 0xFFFF]
        assert bus.read_registers(1, 1, 1, function_code=3) == [0x86A0]
        assert bus.read_registers(1, 100, 2, function_code=4) == [42, 0]
        assert bus.read_registers(1, 500, 2) == [0, 0]  # unset registers read 0
        stats = bus.stats()
    assert stats == {1: {**dict.fromkeys(COUNTERS, 0), "ok": 4}}
    assert sim.requests(1) == 4


def test_counter_changes_while_serving_are_seen(meter_bus) -> None:
    sim = meter_bus.sim
    sim.add_slave(3)
    with ModbusBus(meter_bus.port) as bus:
        for total in (0, 10, 65535, 65536, 7):  # climbing, past one register, then reset
            sim.set_registers(3, 3, 8, [total >> 16, total & 0xFFFF])
            words = bus.read_registers(3, 8, 2)
            assert (words[0] << 16) | words[1] == total


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_raises_its_class_and_is_counted(meter_bus, fault: str) -> None:
    sim = meter_bus.sim
    sim.add_slave(5)
    sim.set_registers(5, 3, 0, [1, 2])
    expected = FAULT_CLASSES[fault]
    with ModbusBus(no_retries(meter_bus)) as bus:
        sim.inject(5, fault)
        with pytest.raises(expected) as caught:
            bus.read_registers(5, 0, 2)
        error = caught.value
        assert type(error) is expected and isinstance(error, ModbusError)
        assert error.slave == 5 and error.attempts == 1
        assert bus.read_registers(5, 0, 2) == [1, 2]  # the fault was one reply only
        stats = bus.stats()[5]
    assert stats[expected.counter] == 1
    assert stats["ok"] == 1
    assert sum(stats.values()) == 2, stats
    assert sim.faults_done(5, fault) == 1


def test_exception_code_is_carried_and_not_retried(meter_bus) -> None:
    sim = meter_bus.sim
    sim.add_slave(9)
    sim.inject(9, "exception", exception_code=2)
    with ModbusBus(dataclasses.replace(meter_bus.port, retries=3)) as bus:
        with pytest.raises(SlaveExceptionError) as caught:
            bus.read_registers(9, 0, 1)
        assert caught.value.exception_code == 2
        assert caught.value.frame[:2] == bytes([9, 0x83])
    assert sim.requests(9) == 1  # "illegal address" is an answer: asking again cannot help


@pytest.mark.parametrize("code", [5, 6])  # acknowledge (minimalmodbus does not raise for it), busy
def test_busy_slave_is_asked_again(meter_bus, code: int) -> None:
    sim = meter_bus.sim
    sim.add_slave(9)
    sim.inject(9, "exception", exception_code=code)
    with ModbusBus(dataclasses.replace(meter_bus.port, retries=1)) as bus:
        assert bus.read_registers(9, 0, 1) == [0]
        assert bus.stats()[9]["slave_exception"] == 1
    assert sim.requests(9) == 2
    sim.inject(9, "exception", exception_code=code)
    with ModbusBus(dataclasses.replace(meter_bus.port, retries=0)) as bus, pytest.raises(SlaveExceptionError) as caught:
        bus.read_registers(9, 0, 1)
    assert caught.value.exception_code == code


@pytest.mark.parametrize("fault", ["silence", "bad_crc", "garbage", "short", "wrong_slave"])
def test_one_retry_recovers_from_a_single_fault(meter_bus, fault: str) -> None:
    sim = meter_bus.sim
    sim.add_slave(2)
    sim.set_registers(2, 4, 0, [1234])
    sim.inject(2, fault)
    with ModbusBus(dataclasses.replace(meter_bus.port, retries=1)) as bus:
        assert bus.read_registers(2, 0, 1, function_code=4) == [1234]
        stats = bus.stats()[2]
    assert stats["ok"] == 1
    assert stats[FAULT_CLASSES[fault].counter] == 1
    assert sim.requests(2) == 2


def test_retries_exhausted_raise_the_last_error_with_every_attempt_counted(meter_bus) -> None:
    sim = meter_bus.sim
    sim.add_slave(4)
    sim.inject(4, "bad_crc", count=2)
    sim.inject(4, "short", count=1)
    with ModbusBus(dataclasses.replace(meter_bus.port, retries=2)) as bus:
        with pytest.raises(ShortFrameError) as caught:
            bus.read_registers(4, 0, 2)
        assert caught.value.attempts == 3
        stats = bus.stats()[4]
    assert (stats["crc"], stats["short_frame"], stats["ok"]) == (2, 1, 0)


def test_unknown_slave_is_silent(meter_bus) -> None:
    sim = meter_bus.sim
    sim.add_slave(1)
    with ModbusBus(meter_bus.port) as bus:
        with pytest.raises(NoResponseError):
            bus.read_registers(77, 0, 1)
        assert bus.stats()[77]["no_response"] == 1 + meter_bus.port.retries
    assert sim.requests(77) == 1 + meter_bus.port.retries
    assert sim.replies(77) == 0


def test_unplugged_meter_is_silent_and_comes_back(meter_bus) -> None:
    sim = meter_bus.sim
    sim.add_slave(6)
    sim.set_registers(6, 3, 0, [66])
    with ModbusBus(no_retries(meter_bus)) as bus:
        sim.set_present(6, False)
        with pytest.raises(NoResponseError):
            bus.read_registers(6, 0, 1)
        sim.set_present(6, True)
        assert bus.read_registers(6, 0, 1) == [66]


def test_two_pollers_never_interleave_frames(meter_bus) -> None:
    sim = meter_bus.sim
    slaves = [11, 12, 13, 14]
    for slave in slaves:
        sim.add_slave(slave)
        sim.set_registers(slave, 3, 0, [slave, slave * 100, slave * 1000])
    reads_per_thread = 30
    wrong: list[tuple[int, list[int]]] = []
    errors: list[BaseException] = []
    # no retries, and a reply timeout that a loaded machine cannot reach: a timed-out read is not what this checks
    with ModbusBus(dataclasses.replace(meter_bus.port, retries=0, timeout_s=5.0)) as bus:

        def poll(slave: int) -> None:
            for i in range(reads_per_thread):
                try:
                    words = bus.read_registers(slave, i % 3, 3 - i % 3)
                except ModbusError as exc:
                    errors.append(exc)
                    continue
                if words != [slave, slave * 100, slave * 1000][i % 3 :]:
                    wrong.append((slave, words))

        threads = [threading.Thread(target=poll, args=(s,)) for s in slaves]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stats = bus.stats()
    assert not errors and not wrong
    for slave in slaves:
        assert stats[slave]["ok"] == reads_per_thread
        assert sim.requests(slave) == reads_per_thread  # one request frame per read, none garbled or lost


def test_simulated_meter_counter_through_an_encoder(meter_bus) -> None:
    def encode(litres: float):
        raw = int(litres) % 0x1_0000_0000  # a 32-bit litre counter that rolls over
        return [(3, 0, [raw >> 16, raw & 0xFFFF])]

    meter = SimulatedMeter(meter_bus.sim, 8, encode, total_litres=65_530)
    with ModbusBus(meter_bus.port) as bus:

        def read() -> int:
            high, low = bus.read_registers(8, 0, 2)
            return (high << 16) | low

        assert read() == 65_530
        meter.draw(10)
        assert read() == 65_540
        meter.set_total(0x1_0000_0000 + 5)  # rollover
        assert read() == 5
        meter.set_total(0)  # a replaced meter
        assert read() == 0
    with pytest.raises(ValueError):
        meter.draw(-1)


def test_closed_bus_and_missing_port_raise_port_error(meter_bus, tmp_path) -> None:
    bus = ModbusBus(meter_bus.port)
    bus.close()
    bus.close()
    with pytest.raises(PortError):
        bus.read_registers(1, 0, 1)
    with pytest.raises(PortError) as caught:
        ModbusBus(dataclasses.replace(meter_bus.port, port=str(tmp_path / "ttyUSB9")))
    assert "ttyUSB9" in str(caught.value)
    assert isinstance(caught.value, OSError)


@pytest.mark.parametrize(
    ("slave", "address", "count", "fc"),
    [(0, 0, 1, 3), (248, 0, 1, 3), (1, 0, 1, 6), (1, 0, 0, 3), (1, 0, 126, 3), (1, 65535, 2, 3), (1, -1, 1, 3)],
)
def test_impossible_requests_are_refused_before_the_wire(meter_bus, slave, address, count, fc) -> None:
    with ModbusBus(meter_bus.port) as bus, pytest.raises(ValueError):
        bus.read_registers(slave, address, count, fc)
    assert bus.stats() == {}


def test_crc16_known_frame() -> None:
    assert crc16(bytes.fromhex("010300000002")) == bytes.fromhex("c40b")


def with_crc(body: str) -> bytes:
    data = bytes.fromhex(body)
    return data + crc16(data)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"\x01\x03", ShortFrameError),
        (with_crc("0103040001")[:6], ShortFrameError),  # cut short: bad CRC because bytes are missing
        (with_crc("01030400010002")[:-1] + b"\x00", CrcError),  # full length, CRC spoiled
        (with_crc("02030400010002"), WrongResponderError),
        (with_crc("01040400010002"), WrongResponderError),
        (with_crc("010302000100"), ShortFrameError),  # valid CRC, fewer data bytes than asked
        (bytes([1, 0x83, 4, 0, 0]), CrcError),  # an exception reply with a broken CRC is noise
    ],
)
def test_classify_reply_from_raw_bytes(frame: bytes, expected: type) -> None:
    cls, why = classify_reply(frame, slave=1, function_code=3, count=2)
    assert cls is expected, why


def test_serial_pair_without_socat_names_the_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SerialPairError, match="apt-get install socat"):
        SerialPair().start()


def test_serial_pair_stops_cleanly() -> None:
    pair = SerialPair()
    node, meter = pair.start()
    assert pair.running
    pair.stop()
    pair.stop()
    assert not pair.running
    assert not os.path.exists(node) and not os.path.exists(meter)


def test_inject_refuses_unknown_fault_and_slave(meter_bus) -> None:
    meter_bus.sim.add_slave(1)
    with pytest.raises(ValueError, match="allowed"):
        meter_bus.sim.inject(1, "lightning")
    with pytest.raises(KeyError, match="add_slave"):
        meter_bus.sim.inject(2, "silence")
    with pytest.raises(ValueError):
        meter_bus.sim.set_registers(1, 3, 0, [70000])


def test_port_lost_and_back_is_reopened(tmp_path) -> None:
    directory = tmp_path / "pair"
    first = SerialPair(directory=directory)
    node, meter = first.start()
    try:
        sim = SimulatedMeterBus(meter).start()
        sim.add_slave(1)
        sim.set_registers(1, 3, 0, [11])
        bus = ModbusBus(SerialPort(port=node, timeout_s=0.25, retries=0, gap_s=0.0))
        assert bus.read_registers(1, 0, 1) == [11]
        sim.stop()
        first.stop()  # the USB adapter is pulled: its tty disappears
        with pytest.raises(PortError):
            bus.read_registers(1, 0, 1)
        with pytest.raises(PortError, match="still unavailable"):
            bus.read_registers(1, 0, 1)
        second = SerialPair(directory=directory)  # plugged back in, same device name
        try:
            second.start()
            with SimulatedMeterBus(meter) as sim2:
                sim2.add_slave(1)
                sim2.set_registers(1, 3, 0, [12])
                assert bus.read_registers(1, 0, 1) == [12]
        finally:
            second.stop()
        assert bus.stats()[1]["port_error"] == 2
        bus.close()
    finally:
        first.stop()


def test_a_node_bus_waits_for_a_missing_port_and_opens_it_when_it_appears(tmp_path) -> None:
    """``retry_s`` (the meter node's bus): no adapter at start is no exception; the port is looked for again
    only every ``retry_s`` of the given clock, and read from once it is there."""
    directory = tmp_path / "pair"
    clock = ManualClock()
    spec = SerialPort(port=str(directory / "node"), timeout_s=0.25, retries=0, gap_s=0.0)
    bus = ModbusBus(spec, retry_s=10.0, monotonic=clock.monotonic)
    try:
        with pytest.raises(PortError, match="not open"):
            bus.read_registers(1, 0, 1)
        with SerialPair(directory=directory) as (_node, meter), SimulatedMeterBus(meter) as sim:
            sim.add_slave(1)
            sim.set_registers(1, 3, 0, [21])
            with pytest.raises(PortError, match="not open"):  # 10 s have not passed: not tried yet
                bus.read_registers(1, 0, 1)
            clock.advance(10.0)
            assert bus.read_registers(1, 0, 1) == [21]
    finally:
        bus.close()


@pytest.mark.parametrize(
    ("change", "answered"),
    # a Linux pty keeps baud rate and stop bits but drops parity, so a parity mismatch cannot be simulated
    [({}, True), ({"baudrate": 19200}, False), ({"baudrate": 4800}, False), ({"stopbits": 2}, False)],
)
def test_meters_answer_only_at_their_line_settings(meter_bus, change: dict, answered: bool) -> None:
    meter_bus.sim.add_slave(1)
    meter_bus.sim.set_registers(1, 3, 0, [5])
    with ModbusBus(dataclasses.replace(meter_bus.port, retries=0, **change)) as bus:
        if answered:
            assert bus.read_registers(1, 0, 1) == [5]
        else:
            with pytest.raises(NoResponseError):
                bus.read_registers(1, 0, 1)
    assert meter_bus.sim.requests(1) == 1


def test_consumption_script_on_a_manual_clock(meter_bus) -> None:
    def encode(litres: float):
        return [(4, 10, [int(litres) >> 16, int(litres) & 0xFFFF])]

    clock = ManualClock()
    meter = SimulatedMeter(meter_bus.sim, 3, encode, total_litres=100)
    script = [(60.0, 5.0), (120.0, 2.5), (180.0, {"set_total": 0}), (240.0, 1.0)]
    meter.start(script, clock)
    try:
        with ModbusBus(meter_bus.port) as bus:

            def total() -> int:
                high, low = bus.read_registers(3, 10, 2, function_code=4)
                return (high << 16) | low

            assert total() == 100
            expected = {60: 105, 120: 107, 180: 0, 240: 1}
            for t, litres in expected.items():
                clock.advance(60)
                for _ in range(200):  # the script thread wakes when the clock moves
                    if total() == litres:
                        break
                assert total() == litres, f"t={t}"
        assert meter.wait(5)
    finally:
        meter.stop()
    with pytest.raises(ValueError, match="set_total"):
        meter.play([(0.0, {"reset": 0})], clock)
