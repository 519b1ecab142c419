"""Simulated Modbus RTU water meters: a real pymodbus RTU slave on the meter end of a virtual serial pair.

The simulation serves raw 16-bit words and knows nothing about meter profiles; a caller that wants litres
encodes them (``SimulatedMeter`` does it through an encode function the caller gives). Counter resets and
rollovers are plain register changes: write the new words with ``set_registers`` (or ``set_total``).

Faults are injected per slave and consumed one reply at a time:

================  ==============================================================================
``silence``       no reply at all (a meter without power, a broken A/B wire)
``bad_crc``       the right reply with its CRC corrupted (noise on the line)
``exception``     a Modbus exception reply, code 4 (device failure) unless told otherwise
``garbage``       random bytes as long as the real reply, with a wrong CRC (a babbling device)
``short``         the reply cut short (a meter that stops mid-frame, a collision)
``wrong_slave``   the reply with another slave's address and a valid CRC (two meters on one address)
``wrong_function``  the reply with another function code and a valid CRC
================  ==============================================================================

A slave address nobody has added stays silent, as on a real bus (pymodbus alone would answer it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import termios
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from hal.modbus import crc16
from hal.sim.timeline import ScriptPlayer

log = logging.getLogger(__name__)

Fault = Literal["silence", "bad_crc", "exception", "garbage", "short", "wrong_slave", "wrong_function"]
FAULTS: tuple[str, ...] = ("silence", "bad_crc", "exception", "garbage", "short", "wrong_slave", "wrong_function")
REGISTER_SPACE = 65536  # every wire address 0..65535 is served; unset registers read 0
_ANY_SLAVE = 0  # pymodbus's catch-all device id: one device serves every slave from our own tables


@dataclass
class _Slave:
    address: int
    present: bool = True
    holding: dict[int, int] = field(default_factory=dict)  # FC 3
    input: dict[int, int] = field(default_factory=dict)  # FC 4
    faults: deque[tuple[str, int]] = field(default_factory=deque)  # (fault, exception code)

    def table(self, function_code: int) -> dict[int, int]:
        if function_code == 3:
            return self.holding
        if function_code == 4:
            return self.input
        raise ValueError(f"function code {function_code}: the simulated meters serve FC 3 and FC 4 only")


class SimulatedMeterBus:
    """Modbus RTU slaves (meters) on one serial port, served by pymodbus from a background thread.

    ``add_slave``, ``set_registers`` and ``inject`` may be called before ``start()`` or while serving.
    Use as a context manager: ``with SimulatedMeterBus(meter_path) as bus: ...``.
    """

    def __init__(
        self,
        port_path: str,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        seed: int = 0,
        node_path: str | None = None,
    ) -> None:
        self.port_path = port_path
        # a pty carries bytes at any speed; with the node's end known, a request sent at another baud rate or
        # stop bits than the bus's gets no reply, as on a real line where the meter sees only framing errors.
        # (Linux ptys drop the parity and byte-size settings, so those cannot be checked.)
        self.node_path = node_path
        self._node_fd: int | None = None
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self._random = random.Random(seed)  # garbage bytes are reproducible
        self._lock = threading.Lock()
        self._slaves: dict[int, _Slave] = {}
        self._requests: Counter[int] = Counter()
        self._replies: Counter[int] = Counter()
        self._faults_done: Counter[tuple[int, str]] = Counter()
        self._addressed: int | None = None  # slave of the request being served
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: ModbusSerialServer | None = None

    # ------------------------------------------------------------------------------------ slaves and data
    def add_slave(self, address: int) -> None:
        """Put a meter with Modbus address ``address`` (1..247) on the bus; all its registers read 0."""
        if not 1 <= address <= 247:
            raise ValueError(f"slave address {address}: allowed 1..247")
        with self._lock:
            if address in self._slaves:
                self._slaves[address].present = True
                return
            self._slaves[address] = _Slave(address)

    def set_present(self, address: int, present: bool) -> None:
        """Unplug (silent, registers kept) or plug back a meter that was added."""
        with self._lock:
            self._slave(address).present = present

    def set_registers(self, address: int, function_code: int, start: int, words: Sequence[int]) -> None:
        """Write raw words at 0-based wire address ``start`` of a slave's FC 3 or FC 4 table, atomically."""
        self.write_many(address, [(function_code, start, words)])

    def write_many(self, address: int, writes: Iterable[tuple[int, int, Sequence[int]]]) -> None:
        """Several (function_code, start, words) writes that a reader sees all or none of."""
        checked = []
        for function_code, start, words in writes:
            words = [int(w) for w in words]
            if start < 0 or start + len(words) > REGISTER_SPACE:
                raise ValueError(f"registers {start}..{start + len(words) - 1} outside 0..65535")
            bad = [w for w in words if not 0 <= w <= 0xFFFF]
            if bad:
                raise ValueError(f"register values must be 16-bit words 0..65535, got {bad}")
            checked.append((function_code, start, words))
        with self._lock:
            slave = self._slave(address)
            for function_code, start, words in checked:
                table = slave.table(function_code)
                for i, word in enumerate(words):
                    table[start + i] = word

    def registers(self, address: int, function_code: int, start: int, count: int) -> list[int]:
        """The words a read would return now (for tests)."""
        with self._lock:
            table = self._slave(address).table(function_code)
            return [table.get(start + i, 0) for i in range(count)]

    def inject(self, address: int, fault: Fault | str, count: int = 1, exception_code: int = 4) -> None:
        """Spoil the next ``count`` replies of slave ``address`` with ``fault`` (see the module docstring)."""
        if fault not in FAULTS:
            raise ValueError(f"fault {fault!r}: allowed {', '.join(FAULTS)}")
        if fault == "exception" and exception_code not in {int(c) for c in ExcCodes}:
            raise ValueError(f"exception code {exception_code}: allowed {sorted(int(c) for c in ExcCodes)}")
        with self._lock:
            slave = self._slave(address)
            slave.faults.extend([(fault, exception_code)] * count)

    def clear_faults(self, address: int | None = None) -> None:
        with self._lock:
            for slave in self._slaves.values():
                if address is None or slave.address == address:
                    slave.faults.clear()

    def pending_faults(self, address: int) -> int:
        with self._lock:
            return len(self._slave(address).faults)

    def requests(self, address: int) -> int:
        """Request frames seen on the wire for ``address`` (any address, even one nobody answers)."""
        with self._lock:
            return self._requests[address]

    def replies(self, address: int) -> int:
        """Frames sent back for ``address``, spoiled or not."""
        with self._lock:
            return self._replies[address]

    def faults_done(self, address: int, fault: str) -> int:
        """How many replies of ``address`` were spoiled with ``fault`` so far."""
        with self._lock:
            return self._faults_done[(address, fault)]

    def _slave(self, address: int) -> _Slave:
        try:
            return self._slaves[address]
        except KeyError:
            raise KeyError(f"slave {address} is not on the simulated bus; add_slave({address}) first") from None

    # ------------------------------------------------------------------------------ pymodbus plumbing
    async def _serve_registers(
        self,
        function_code: int,
        start_address: int,
        request_address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus device action: fill the requested window from the addressed slave's table, live."""
        with self._lock:
            address = self._addressed
            slave = self._slaves.get(address) if address is not None else None
            if address is None or slave is None or not slave.present:
                return None  # no reply will be sent: leave its faults for later
            if slave.faults and slave.faults[0][0] == "exception":
                _, code = slave.faults.popleft()
                self._faults_done[(address, "exception")] += 1
                return ExcCodes(code)
            if set_values is not None:
                return ExcCodes.ILLEGAL_FUNCTION  # a water meter here is read-only
            table = slave.table(function_code) if function_code in (3, 4) else {}
            offset = request_address - start_address
            for i in range(count):
                registers[offset + i] = table.get(request_address + i, 0)
        return None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            # pymodbus decodes one request and serves it before the next (RTU has one master, one frame at a
            # time), so the device action that follows serves this slave
            with self._lock:
                self._requests[pdu.dev_id] += 1
                self._addressed = pdu.dev_id
        return pdu

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        """Outgoing frames pass here: drop replies for absent slaves and apply frame-level faults."""
        if not sending or len(packet) < 4:
            return packet
        address = packet[0]
        with self._lock:
            slave = self._slaves.get(address)
            if slave is None or not slave.present or not self._line_matches():
                return b""
            self._replies[address] += 1
            if not slave.faults or slave.faults[0][0] == "exception":
                return packet
            fault, _ = slave.faults.popleft()
            self._faults_done[(address, fault)] += 1
            if fault == "silence":
                self._replies[address] -= 1
                return b""
            if fault == "bad_crc":
                return packet[:-1] + bytes([packet[-1] ^ 0xFF])
            if fault == "garbage":
                noise = bytes(self._random.randrange(256) for _ in range(len(packet)))
                if crc16(noise[:-2]) == noise[-2:]:  # 1 in 65536: make sure it is never a valid frame
                    noise = noise[:-1] + bytes([noise[-1] ^ 0xFF])
                return noise
            if fault == "short":
                return packet[: max(3, len(packet) // 2)]
            body = bytearray(packet[:-2])
            if fault == "wrong_slave":
                body[0] = address % 247 + 1
            else:  # wrong_function
                body[1] = 4 if body[1] == 3 else 3
            return bytes(body) + crc16(bytes(body))

    def _line_matches(self) -> bool:
        """Whether the node's end of the pty is set to this bus's baud rate and stop bits."""
        if self.node_path is None:
            return True
        try:
            if self._node_fd is None:
                self._node_fd = os.open(self.node_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            node_side = line_settings(self._node_fd)
        except (OSError, termios.error) as exc:
            log.debug("cannot read the line settings of %s: %s", self.node_path, exc)
            return True
        mine = (self.baudrate, self.parity, self.stopbits, self.bytesize)
        if (node_side[0], node_side[2]) != (self.baudrate, self.stopbits):
            log.debug("request at %s ignored by a bus at %s", node_side, mine)
            return False
        return True

    def _devices(self) -> list[SimDevice]:
        # one catch-all device (id 0) with every register address; its action answers from the addressed
        # slave's table, and _trace_packet drops replies for slaves nobody added. Slaves can be added while
        # serving, and the memory does not grow with the number of slaves.
        blocks = (
            [SimData(0, datatype=DataType.BITS)],
            [SimData(0, datatype=DataType.BITS)],
            [SimData(0, count=REGISTER_SPACE, datatype=DataType.REGISTERS)],
            [SimData(0, count=REGISTER_SPACE, datatype=DataType.REGISTERS)],
        )
        return [SimDevice(id=_ANY_SLAVE, simdata=blocks, action=self._serve_registers)]

    # --------------------------------------------------------------------------------- start and stop
    def start(self) -> SimulatedMeterBus:
        """Open the port and serve from a background thread with its own asyncio loop."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        async def open_server() -> None:
            self._server = ModbusSerialServer(
                context=self._devices(),
                framer=FramerType.RTU,
                port=self.port_path,
                baudrate=self.baudrate,
                parity=self.parity,
                stopbits=self.stopbits,
                bytesize=self.bytesize,
                trace_packet=self._trace_packet,
                trace_pdu=self._trace_pdu,
            )
            await self._server.serve_forever(background=True)

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(open_server())
            except (OSError, RuntimeError) as exc:  # the port cannot be opened
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"sim-meter-bus {self.port_path}", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure or not started.is_set():
            self._thread.join(5)
            self._thread = self._loop = self._server = None
            raise RuntimeError(
                f"simulated meter bus cannot serve {self.port_path}: {failure[0] if failure else 'timeout'}"
            )
        log.debug("simulated meter bus serving %s, slaves %s", self.port_path, sorted(self._slaves))
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        loop, thread, server = self._loop, self._thread, self._server
        self._loop = self._thread = self._server = None
        if loop is None or thread is None:
            return
        if server is not None and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(server.shutdown(), loop)
            future.result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        with self._lock:
            fd, self._node_fd = self._node_fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> SimulatedMeterBus:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def line_settings(fd: int) -> tuple[int, str, int, int]:
    """(baudrate, parity, stopbits, bytesize) a serial tty is set to."""
    _, _, cflag, _, _, ospeed, _ = termios.tcgetattr(fd)
    bauds = {getattr(termios, f"B{b}"): b for b in _BAUDS if hasattr(termios, f"B{b}")}
    parity = ("O" if cflag & termios.PARODD else "E") if cflag & termios.PARENB else "N"
    sizes = {termios.CS5: 5, termios.CS6: 6, termios.CS7: 7, termios.CS8: 8}
    return bauds.get(ospeed, 0), parity, 2 if cflag & termios.CSTOPB else 1, sizes[cflag & termios.CSIZE]


_BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


# Encoder: total litres -> the (function_code, start, words) writes that show it in a meter's registers
Encoder = Callable[[float], Iterable[tuple[int, int, Sequence[int]]]]


# a consumption script: (t_seconds, litres drawn) steps, or (t_seconds, {"set_total": litres}) for a reset
ConsumptionScript = Sequence[tuple[float, float | Mapping[str, float]]]


class SimulatedMeter(ScriptPlayer):
    """One water meter on a ``SimulatedMeterBus``: a litre counter written through the caller's encoder.

    ``draw(litres)`` adds consumption; ``set_total(litres)`` models a counter reset or a replaced meter;
    a rollover is ``set_total`` past the register range as the caller's encoder wraps it. ``play(script,
    clock)`` or ``start(script, clock)`` run a consumption script on a ManualClock or FastClock.
    """

    def __init__(self, bus: SimulatedMeterBus, address: int, encode: Encoder, total_litres: float = 0.0) -> None:
        self.bus = bus
        self.address = address
        self._encode = encode
        self._lock = threading.Lock()
        self._total = float(total_litres)
        super().__init__()
        self._player_name = f"sim-meter-{address}"
        bus.add_slave(address)
        self._publish()

    @property
    def total_litres(self) -> float:
        with self._lock:
            return self._total

    def draw(self, litres: float) -> float:
        """Water flows through the meter; returns the new total."""
        if litres < 0:
            raise ValueError("a meter counts forward; use set_total for a reset")
        with self._lock:
            self._total += litres
            self._publish()
            return self._total

    def set_total(self, litres: float) -> None:
        with self._lock:
            self._total = float(litres)
            self._publish()

    def _publish(self) -> None:
        self.bus.write_many(self.address, self._encode(self._total))

    def _steps(self, script: ConsumptionScript) -> list[tuple[float, float | Mapping[str, float]]]:
        steps = sorted(((float(t), action) for t, action in script), key=lambda step: step[0])
        for _, action in steps:  # refuse a bad script before the first step, not halfway through a day
            if not isinstance(action, int | float) and set(action) != {"set_total"}:
                raise ValueError(f"script step {action!r}: litres drawn, or {{'set_total': litres}}")
        return steps

    def _apply(self, t: float, action: float | Mapping[str, float]) -> None:
        if isinstance(action, int | float):
            self.draw(float(action))
        else:
            self.set_total(action["set_total"])
