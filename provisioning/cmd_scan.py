"""`provision scan`: search an RS-485 bus for Modbus water meters and say which profile reads each one.

For every baud rate and slave address the bus is probed through ``hal.modbus.ModbusBus`` (the same code the
node reads meters with); each responder is then read with every shipped profile, twice, and a profile counts
as a match when both totals decode and the second is plausible after the first (the meter node's own counter
sanity rules). Progress goes to stderr, the table (or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import SerialPort
from hal.modbus import ModbusBus, ModbusError, NoResponseError
from meter_node.profiles import DecodeError, ProfileError, load_profile_file, profile_files
from meter_node.reader import CounterSanity
from provisioning import prompt
from provisioning.cmd_selftest import service_active
from provisioning.configfile import command_parser
from provisioning.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_HARDWARE,
    EXIT_OK,
    ProvisionError,
)

# a residential meter (DN15..DN100) shows at most 999,999 m3; more is a misread layout, not water
MAX_PLAUSIBLE_LITRES = 1e9
MIN_NONZERO_LITRES = 1e-3  # below this a float is a misread integer (a denormal), not water


@dataclass
class ProfileTry:
    """One profile tried on one responder."""

    profile: str
    litres: float | None
    plausible: bool
    note: str

    def as_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "litres": self.litres, "plausible": self.plausible, "note": self.note}


@dataclass
class Responder:
    """A slave that answered at one baud/frame."""

    address: int
    baudrate: int
    frame: str  # e.g. 8N1
    first_reply: str  # "registers" or the exception that came back
    tries: list[ProfileTry] = field(default_factory=list)

    @property
    def matches(self) -> list[ProfileTry]:
        return [t for t in self.tries if t.plausible]

    @property
    def zero_reads(self) -> list[ProfileTry]:
        return [t for t in self.tries if t.litres == 0]

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "baudrate": self.baudrate,
            "frame": self.frame,
            "first_reply": self.first_reply,
            "matches": [t.profile for t in self.matches],
            "tries": [t.as_json() for t in self.tries],
        }


def parse_addresses(text: str) -> list[int]:
    """'1-247' or '1,2,10-12' -> sorted unique addresses, each 1..247."""
    found: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise ProvisionError(EXIT_BAD_INPUT, f"--addresses {text!r}: {part!r} is not N or N-M") from None
        if not 1 <= first <= last <= 247:
            raise ProvisionError(EXIT_BAD_INPUT, f"--addresses {text!r}: slave addresses are 1..247, low to high")
        found.update(range(first, last + 1))
    if not found:
        raise ProvisionError(EXIT_BAD_INPUT, f"--addresses {text!r}: no address")
    return sorted(found)


def parse_list(text: str, flag: str, allowed: set[Any] | None, cast: type) -> list[Any]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = cast(part.upper() if cast is str else part)
        except ValueError:
            raise ProvisionError(EXIT_BAD_INPUT, f"{flag} {text!r}: {part!r} is not valid") from None
        if allowed is not None and value not in allowed:
            shown = ", ".join(str(a) for a in sorted(allowed))
            raise ProvisionError(EXIT_BAD_INPUT, f"{flag} {text!r}: {part!r} not allowed; allowed: {shown}")
        out.append(value)
    if not out:
        raise ProvisionError(EXIT_BAD_INPUT, f"{flag}: give at least one value")
    return list(dict.fromkeys(out))


def try_profile(bus: Any, address: int, profile: Any) -> ProfileTry:
    """Read with one profile twice; plausible when both decode and the meter's counter rules accept the pair."""
    sanity = CounterSanity(
        meter_id=f"slave-{address}",
        max_flow_l_min=profile.max_flow_l_min,
        rollover_litres=profile.rollover_litres,
        resolution_l=profile.resolution_l,
    )
    totals: list[float] = []
    try:
        for _ in range(2):
            at = time.monotonic()
            words = bus.read_registers(address, profile.address, profile.count, profile.function_code)
            litres = profile.decode(words)
            totals.append(litres)
            _, verdict, _events = sanity.update(at, litres)
    except ModbusError as exc:
        return ProfileTry(profile.name, None, False, f"{type(exc).__name__}: {exc}")
    except DecodeError as exc:
        return ProfileTry(profile.name, None, False, f"not decodable: {exc}")
    except ValueError as exc:  # a layout this bus cannot read (too many registers); after DecodeError, its subclass
        return ProfileTry(profile.name, None, False, f"cannot read this layout: {exc}")
    first = totals[0]
    if first > MAX_PLAUSIBLE_LITRES:
        return ProfileTry(profile.name, first, False, "total far too large for a water meter")
    if 0 < first < MIN_NONZERO_LITRES:
        return ProfileTry(profile.name, first, False, "a tiny fraction of a litre: wrong data type")
    if verdict not in ("ok", "jitter"):
        return ProfileTry(profile.name, first, False, f"second read {verdict} ({totals[1]:.3f} L)")
    if first == 0:
        # unset registers read 0 under every layout: only a fallback when nothing reads a real total
        return ProfileTry(profile.name, first, False, "reads 0 L: a new meter, or registers this layout does not use")
    return ProfileTry(profile.name, first, True, "plausible")


def probe(bus: Any, address: int, profile: Any) -> str | None:
    """What a slave answers to a first read: None for silence, else 'registers' or the error class name."""
    try:
        bus.read_registers(address, profile.address, profile.count, profile.function_code)
    except NoResponseError:
        return None
    except ModbusError as exc:
        return type(exc).__name__
    return "registers"


class Progress:
    """Progress on stderr: one updating line on a terminal, a few plain lines in a log."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        if self.tty:
            sys.stderr.write("\r" + text.ljust(70))
            sys.stderr.flush()
        elif force or time.monotonic() - self.last >= 2.0:
            self.last = time.monotonic()
            prompt.say(text)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def scan(args: argparse.Namespace) -> tuple[list[Responder], list[str]]:
    """Every (baud, parity) and address; returns the responders and the addresses that gave garbled replies."""
    try:
        files = profile_files([args.profile_dir] if args.profile_dir else [])
        profiles = [load_profile_file(path) for path in files.values()]
    except ProfileError as exc:
        raise ProvisionError(EXIT_BAD_INPUT, "a meter profile is broken", exc.problems) from None
    except OSError as exc:
        raise ProvisionError(EXIT_BAD_INPUT, f"--profile-dir: {exc}") from None
    if args.profile:
        profiles = [p for p in profiles if p.name in args.profile]
        unknown = set(args.profile) - {p.name for p in profiles}
        if unknown:
            raise ProvisionError(EXIT_BAD_INPUT, f"--profile: unknown {', '.join(sorted(unknown))}")
    # probe with the profile that reads the fewest registers from the lowest address: most meters serve it
    probe_profile = min(profiles, key=lambda p: (p.function_code != 3, p.address, p.count))
    responders: list[Responder] = []
    garbled: list[str] = []
    progress = Progress()
    combos = [(b, p) for b in args.bauds for p in args.parity]
    for baud, parity in combos:
        frame = f"8{parity}{args.stopbits}"
        port = SerialPort(
            port=args.port, baudrate=baud, parity=parity, stopbits=args.stopbits, timeout_s=args.timeout, retries=0
        )
        try:
            bus = ModbusBus(port)
        except OSError as exc:
            progress.done()
            raise ProvisionError(
                EXIT_HARDWARE,
                f"cannot open {args.port}: {exc}",
                ["is the USB-RS485 adapter plugged in (ls /dev/ttyUSB*)? are you in group dialout or root?"],
            ) from None
        try:
            for n, address in enumerate(args.addresses, 1):
                found = len(responders)
                progress.show(
                    f"scanning {baud} {frame}: address {address} ({n} of {len(args.addresses)}), found {found}"
                )
                reply = probe(bus, address, probe_profile)
                if reply is None:
                    continue
                if reply in ("CrcError", "ShortFrameError", "WrongResponderError"):
                    garbled.append(f"address {address} at {baud} {frame}: {reply}")
                    continue
                responder = Responder(address, baud, frame, reply)
                responder.tries = [try_profile(bus, address, profile) for profile in profiles]
                responders.append(responder)
                names = ", ".join(t.profile for t in responder.matches) or "no profile"
                progress.show(f"found slave {address} at {baud} {frame}: {names}", force=True)
        except OSError as exc:  # hal.modbus.PortError: the adapter was pulled out mid-scan
            progress.done()
            raise ProvisionError(EXIT_HARDWARE, f"serial port {args.port} failed during the scan: {exc}") from None
        finally:
            bus.close()
    progress.done()
    return responders, garbled


def table(responders: list[Responder]) -> str:
    lines = [f"{'ADDR':>4}  {'BAUD':>6}  {'FRAME':<5}  {'PROFILE':<22}  {'TOTAL (L)':>14}  NOTE"]
    for r in responders:
        shown = r.matches or r.zero_reads
        if not shown:
            lines.append(
                f"{r.address:>4}  {r.baudrate:>6}  {r.frame:<5}  {'-':<22}  {'-':>14}  answers ({r.first_reply}), no profile decodes a plausible total"
            )
        for t in shown:
            total = f"{t.litres:.3f}" if t.litres is not None else "-"
            lines.append(f"{r.address:>4}  {r.baudrate:>6}  {r.frame:<5}  {t.profile:<22}  {total:>14}  {t.note}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "scan",
        "Search an RS-485 bus for Modbus meters. For each responder, say which shipped meter profile "
        "decodes a plausible total (compare it with the meter's display). Stop the meter node first: the port "
        "has one owner. Progress on stderr, results on stdout. A full scan (247 addresses x 3 bauds at 0.2 s) "
        "takes about 3 minutes.",
        exits="1 when no meter answered",
        config=False,
    )
    parser.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB0")
    parser.add_argument("--addresses", default="1-247", help="slave addresses, e.g. 1-247 or 1,2,10-20")
    parser.add_argument("--bauds", default="9600,19200,2400", help="baud rates to try, in this order")
    parser.add_argument("--parity", default="N", help="parity N, E or O (or a list: N,E)")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    parser.add_argument("--timeout", type=float, default=0.2, metavar="S", help="reply timeout per probe")
    parser.add_argument("--profile", action="append", help="try only this profile (repeatable)")
    parser.add_argument("--profile-dir", type=Path, help="extra meter profiles (*.toml)")
    parser.add_argument("--json", action="store_true", help="results (with every profile tried) as JSON")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.addresses = parse_addresses(args.addresses)
    args.bauds = parse_list(args.bauds, "--bauds", None, int)
    for baud in args.bauds:
        if not 300 <= baud <= 115200:
            raise ProvisionError(EXIT_BAD_INPUT, f"--bauds: {baud} out of range 300..115200")
    args.parity = parse_list(args.parity, "--parity", {"N", "E", "O"}, str)
    if not 0.02 <= args.timeout <= 10:
        raise ProvisionError(EXIT_BAD_INPUT, f"--timeout {args.timeout:g}: allowed 0.02..10 seconds")
    if not Path(args.port).exists():
        raise ProvisionError(
            EXIT_HARDWARE,
            f"{args.port}: no such device",
            ["plug in the USB-RS485 adapter; ls /dev/ttyUSB* /dev/serial*"],
        )
    if service_active("meter"):
        prompt.say(
            "warning: changbai-meter is running and reads this bus too; stop it first: systemctl stop changbai-meter"
        )
    responders, garbled = scan(args)
    if args.json:
        report = {"port": args.port, "responders": [r.as_json() for r in responders], "garbled": garbled}
        print(json.dumps(report, indent=2))
    else:
        print(table(responders) if responders else "no meter answered")
        for line in garbled:
            print(f"garbled reply: {line} (wrong baud or parity, A/B swapped, missing termination?)")
        if responders:
            print(
                "next: add each meter to the config: provision init --role meter --meter id=...,address=N,profile=NAME,..."
            )
    return EXIT_OK if responders else EXIT_CHECK_FAILED
