"""ModbusBus: the one owner of an RS-485 serial port, reading raw registers from Modbus RTU slaves.

Built on minimalmodbus + pyserial. One lock per port so two pollers never interleave frames, a minimum gap
between frames, retries, and per-slave counters for every outcome. Decoding words into litres belongs to the
meter node; this module returns raw 16-bit words.

Errors (each failed attempt is counted under its class in ``stats()``)::

    ModbusError                 a slave did not give a usable reply
      NoResponseError           nothing came back before the timeout       counter "no_response"
      CrcError                  a full-length reply with a bad CRC (noise) "crc"
      SlaveExceptionError       the slave answered with an exception code   "slave_exception"
      WrongResponderError       valid frame, wrong slave or function code   "wrong_responder"
      ShortFrameError           reply cut short or with a wrong byte count  "short_frame"
      (ModbusError itself)      anything else minimalmodbus reports         "modbus_error"
    PortError (an OSError)      the serial port itself failed or is closed  "port_error"
"""

from __future__ import annotations

import logging
import termios
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol

import minimalmodbus
import serial

log = logging.getLogger(__name__)


class SerialSpec(Protocol):
    """An RS-485 port and its line settings (a node's ``common.config.SerialPort`` fits as it is)."""

    @property
    def port(self) -> str: ...
    @property
    def baudrate(self) -> int: ...
    @property
    def parity(self) -> Literal["N", "E", "O"]: ...
    @property
    def stopbits(self) -> Literal[1, 2]: ...
    @property
    def bytesize(self) -> Literal[7, 8]: ...
    @property
    def timeout_s(self) -> float:
        """Reply timeout per request."""
        ...

    @property
    def retries(self) -> int:
        """Extra attempts after a failed request."""
        ...

    @property
    def gap_s(self) -> float:
        """Minimum silence between frames."""
        ...


COUNTERS: tuple[str, ...] = (
    "ok",
    "no_response",
    "crc",
    "slave_exception",
    "wrong_responder",
    "short_frame",
    "modbus_error",
    "port_error",
)
MAX_REGISTERS_PER_READ = 125  # Modbus limit for FC 3/4 (250 data bytes)
# 5 "acknowledge" (still working) and 6 "busy" are worth asking again; other exception codes are answers
_RETRIED_EXCEPTION_CODES = frozenset({5, 6})


def crc16(data: bytes) -> bytes:
    """Modbus RTU CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF), low byte first as on the wire."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


# ---------------------------------------------------------------------------------------------- errors
class ModbusError(Exception):
    """A read that got no usable reply. ``slave``, ``function_code``, ``address``, ``attempts``, ``frame``."""

    counter = "modbus_error"

    def __init__(
        self,
        message: str,
        *,
        slave: int | None = None,
        function_code: int | None = None,
        address: int | None = None,
        frame: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.slave = slave
        self.function_code = function_code
        self.address = address
        self.frame = frame  # the raw reply bytes, as received
        self.attempts = 1


class NoResponseError(ModbusError):
    """Nothing came back before the timeout (slave absent or unpowered, wrong address/baud, A/B swapped)."""

    counter = "no_response"


class CrcError(ModbusError):
    """A reply of full length whose CRC is wrong: noise on the line, or a device babbling."""

    counter = "crc"


class SlaveExceptionError(ModbusError):
    """The slave answered with a Modbus exception; ``exception_code`` (2: illegal address, 4: device failure)."""

    counter = "slave_exception"

    def __init__(self, message: str, *, exception_code: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.exception_code = exception_code


class WrongResponderError(ModbusError):
    """A valid frame from the wrong slave or with the wrong function code (address clash, a late reply)."""

    counter = "wrong_responder"


class ShortFrameError(ModbusError):
    """The reply ended early (bad CRC because bytes are missing) or its byte count does not match the request."""

    counter = "short_frame"


class PortError(OSError):
    """The serial port failed (USB adapter unplugged, no permission) or the bus was closed."""

    counter = "port_error"


# --------------------------------------------------------------------------------------- classification
def classify_reply(frame: bytes, slave: int, function_code: int, count: int) -> tuple[type[ModbusError], str]:
    """The error class of a reply minimalmodbus refused, judged from the raw bytes (never from its wording)."""
    expected = 5 + 2 * count
    if len(frame) < 4:
        return ShortFrameError, f"{len(frame)} bytes, shorter than any Modbus RTU frame"
    if crc16(frame[:-2]) != frame[-2:]:
        if len(frame) < expected and not _is_exception_length(frame, slave, function_code):
            return ShortFrameError, f"{len(frame)} of {expected} bytes, then silence"
        return CrcError, f"CRC {frame[-2:].hex()} instead of {crc16(frame[:-2]).hex()}"
    if frame[0] != slave:
        return WrongResponderError, f"reply from slave {frame[0]} to a request for slave {slave}"
    if frame[1] & 0x7F != function_code:
        return WrongResponderError, f"reply with function code {frame[1]} to function code {function_code}"
    if frame[1] & 0x80:  # an exception minimalmodbus does not treat as one (5, "acknowledge")
        return SlaveExceptionError, f"exception code {frame[2]}"
    return ShortFrameError, f"{len(frame)} bytes with byte count {frame[2]}, expected {2 * count} data bytes"


def _is_exception_length(frame: bytes, slave: int, function_code: int) -> bool:
    # a 5-byte frame that starts like an exception reply but fails its CRC is noise, not a cut-short reply
    return len(frame) == 5 and frame[0] == slave and frame[1] == function_code | 0x80


class _RecordingSerial(serial.Serial):
    """pyserial port that keeps the bytes of the last reply, so failures are classified from the frame."""

    last_reply: bytes = b""

    def read(self, size: int = 1) -> bytes:
        data = super().read(size)
        self.last_reply = data
        return data


# ------------------------------------------------------------------------------------------------- bus
class ModbusBus:
    """The one owner of a serial port: ``read_registers`` from any slave on it, safely from many threads."""

    def __init__(
        self, port: SerialSpec, *, retry_s: float | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        """Open ``port``. A port that fails (unplugged, or not there at start) is opened again before a later read.

        ``retry_s`` None (the technician's tools): a port that cannot be opened now raises PortError here, and a
        failed port is tried again at the next read. A number (a node, which must run without its adapter and
        report the meters offline): a port missing at start is logged, not raised, and a failed port is tried
        again at most every ``retry_s`` seconds of ``monotonic`` (the node's clock); reads meanwhile raise
        PortError.
        """
        self.port = port
        self._lock = threading.Lock()  # held for a whole request-reply exchange, retries included
        self._stats_lock = threading.Lock()  # so stats() never waits for a slow exchange
        self._counters: dict[int, dict[str, int]] = {}
        self._last_frame_end = 0.0
        self._retry_s = retry_s or 0.0
        self._monotonic = monotonic
        self._next_try = monotonic()
        self._closed = False
        self._broken = True  # the port is not open (yet, or failed); opened before the next request
        self._instrument: minimalmodbus.Instrument | None = None
        try:
            # made closed (port=None), opened by _reopen: a port that is not there yet can be tried again later
            self._serial = _RecordingSerial(
                port=None,
                baudrate=port.baudrate,
                parity=port.parity,
                stopbits=port.stopbits,
                bytesize=port.bytesize,
                timeout=port.timeout_s,
                write_timeout=max(1.0, port.timeout_s),
            )
            self._serial.port = port.port
        except ValueError as exc:  # pyserial refuses a setting the driver cannot do
            raise PortError(f"serial port {port.port}: unusable settings: {exc}") from exc
        try:
            self._reopen()
        except PortError as exc:
            if retry_s is None:
                raise
            log.error("%s; trying again every %.0f s", exc, retry_s)
        log.debug(
            "Modbus bus on %s: %d %d%s%d, timeout %.2f s, %d retries, gap %.3f s",
            port.port,
            port.baudrate,
            port.bytesize,
            port.parity,
            port.stopbits,
            port.timeout_s,
            port.retries,
            port.gap_s,
        )

    def read_registers(self, slave: int, address: int, count: int, function_code: int = 3) -> list[int]:
        """Read ``count`` raw 16-bit words from ``slave`` at 0-based wire ``address`` with FC 3 or FC 4.

        Retries ``port.retries`` times after a failed attempt (each attempt is counted); raises the last
        attempt's ModbusError subclass, or PortError when the port fails. ValueError for impossible requests.
        """
        if not 1 <= slave <= 247:
            raise ValueError(f"slave address {slave}: allowed 1..247")
        if function_code not in (3, 4):
            raise ValueError(f"function code {function_code}: ModbusBus reads registers with FC 3 or 4 only")
        if not 1 <= count <= MAX_REGISTERS_PER_READ:
            raise ValueError(f"register count {count}: allowed 1..{MAX_REGISTERS_PER_READ}")
        if address < 0 or address + count > 0x10000:
            raise ValueError(f"registers {address}..{address + count - 1}: outside wire addresses 0..65535")
        with self._lock:
            with self._stats_lock:
                counters = self._counters.setdefault(slave, dict.fromkeys(COUNTERS, 0))
            last: ModbusError | None = None
            for attempt in range(1, self.port.retries + 2):
                try:
                    words = self._transact(slave, address, count, function_code)
                except ModbusError as exc:
                    self._count(counters, exc.counter)
                    exc.attempts = attempt
                    last = exc
                    if isinstance(exc, SlaveExceptionError) and exc.exception_code not in _RETRIED_EXCEPTION_CODES:
                        break
                    continue
                except PortError:
                    self._count(counters, "port_error")
                    raise
                self._count(counters, "ok")
                if last is not None:
                    log.debug("slave %d: read ok on attempt %d after %s", slave, attempt, type(last).__name__)
                return words
            assert last is not None
            raise last

    def _transact(self, slave: int, address: int, count: int, function_code: int) -> list[int]:
        """One request and its reply; the caller holds the lock."""
        if self._closed:
            raise PortError(f"Modbus bus on {self.port.port} is closed")
        if self._broken:
            self._reopen()
        assert self._instrument is not None  # made by the first successful open
        wait = self._last_frame_end + self.port.gap_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # bus timing is real time, never a simulated clock
        self._serial.last_reply = b""
        self._instrument.address = slave
        where: dict[str, Any] = {"slave": slave, "function_code": function_code, "address": address}
        try:
            return self._instrument.read_registers(address, count, function_code)
        except minimalmodbus.NoResponseError:
            raise NoResponseError(
                f"slave {slave}: no reply within {self.port.timeout_s} s on {self.port.port}", **where
            ) from None
        except minimalmodbus.SlaveReportedException as exc:
            frame = self._serial.last_reply
            code = frame[2] if len(frame) >= 3 else 0
            raise SlaveExceptionError(
                f"slave {slave}: exception code {code} ({exc})", exception_code=code, frame=frame, **where
            ) from None
        except minimalmodbus.InvalidResponseError:
            frame = self._serial.last_reply
            cls, why = classify_reply(frame, slave, function_code, count)
            if cls is SlaveExceptionError:
                raise SlaveExceptionError(
                    f"slave {slave}: {why}", exception_code=frame[2], frame=frame, **where
                ) from None
            raise cls(f"slave {slave}: {why}", frame=frame, **where) from None
        except minimalmodbus.ModbusException as exc:  # anything else minimalmodbus reports (an OSError subclass)
            raise ModbusError(f"slave {slave}: {exc}", frame=self._serial.last_reply, **where) from None
        except (OSError, termios.error) as exc:  # the tty vanished under us (USB adapter pulled)
            self._broken = True
            self._next_try = self._monotonic() + self._retry_s
            raise PortError(f"serial port {self.port.port}: {exc}") from exc
        finally:
            self._last_frame_end = time.monotonic()

    def _reopen(self) -> None:
        """Open the port (again, after a failure); PortError while the device is gone or before its next try."""
        if self._monotonic() < self._next_try:
            raise PortError(f"serial port {self.port.port} is not open; trying again every {self._retry_s:g} s")
        first = self._instrument is None
        try:
            self._serial.close()
            self._serial.open()
        except (OSError, termios.error, ValueError) as exc:  # serial.SerialException is an OSError
            self._next_try = self._monotonic() + self._retry_s
            what = "cannot open serial port" if first else "serial port"
            raise PortError(f"{what} {self.port.port}{'' if first else ' is still unavailable'}: {exc}") from exc
        if first:
            self._instrument = minimalmodbus.Instrument(self._serial, 1, mode=minimalmodbus.MODE_RTU)
            self._instrument.clear_buffers_before_each_transaction = True  # drop a late reply to an earlier request
        else:
            log.info("serial port %s reopened", self.port.port)
        self._broken = False

    def stats(self) -> dict[int, dict[str, int]]:
        """Per slave: attempts by outcome (``ok`` and each error counter), a copy."""
        with self._stats_lock:
            return {slave: dict(c) for slave, c in self._counters.items()}

    def _count(self, counters: dict[str, int], name: str) -> None:
        with self._stats_lock:
            counters[name] += 1

    def close(self) -> None:
        """Close the port; later reads raise PortError. Safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._serial.close()

    def __enter__(self) -> ModbusBus:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
