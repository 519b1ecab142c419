"""Meter profiles: one TOML data file per meter model, decoding raw Modbus register words to litres and back.

A profile says which registers hold the total, how the datasheet numbers them, the data type, byte and word
order, the scale and unit, the largest plausible flow and where the counter rolls over. Golden files beside
each profile (``<name>.golden.json``) hold raw register words and the litres they must decode to.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from common.config import ConfigError, parse_section, read_toml, setting
from common.problems import ProblemsError

PROFILE_DIR = Path(__file__).resolve().parent

DataType = Literal["u16", "u32", "u64", "i32", "f32", "f64"]
Swap = Literal["none", "byte", "word", "word_byte"]
Unit = Literal["L", "m3"]

# registers each type spans, and its big-endian struct code
_TYPES: dict[str, tuple[int, str]] = {
    "u16": (1, ">H"),
    "u32": (2, ">I"),
    "u64": (4, ">Q"),
    "i32": (2, ">i"),
    "f32": (2, ">f"),
    "f64": (4, ">d"),
}
# where an integer total wraps back to 0; a signed total is only meaningful from 0 up to its largest value
_ROLLOVER_BITS: dict[str, int] = {"u16": 16, "u32": 32, "u64": 64, "i32": 31}
_LITRES_PER_UNIT: dict[str, float] = {"L": 1.0, "m3": 1000.0}


class ProfileError(ProblemsError):
    """A profile file that cannot be used; ``problems`` holds one line per problem, naming the file and key."""


class DecodeError(ValueError):
    """Register words that do not decode to a usable total (NaN, negative, wrong count)."""


# ----------------------------------------------------------------------------------------- the data file
@dataclass(frozen=True, kw_only=True)
class FractionSpec:
    """The register holding the part of the total below the integer register's unit (e.g. 0.001 m3 steps)."""

    register: int = setting(min=0, max=65536, help="register number as the datasheet writes it")
    data_type: DataType = setting("u16")
    swap: Swap = setting("none", help="byte: AB->BA, word: ABCD->CDAB, word_byte: ABCD->DCBA")
    scale: float = setting(1.0, min=1e-9, max=1e9, help="fraction value x scale = the unit of the profile")


@dataclass(frozen=True, kw_only=True)
class ProfileSpec:
    """The keys of a profile file, validated with the same engine as node configs."""

    description: str = setting(help="meter model and what the registers hold")
    source: str = setting(help="where the register map comes from (manual, section)")
    function_code: Literal[3, 4] = setting(3, help="3: holding registers, 4: input registers")
    register: int = setting(min=0, max=65536, help="register number as the datasheet writes it")
    register_base: Literal[0, 1] = setting(help="1 when the datasheet's first register (REG0001) is wire address 0")
    data_type: DataType = setting()
    swap: Swap = setting("none", help="byte: AB->BA, word: ABCD->CDAB, word_byte: ABCD->DCBA")
    scale: float = setting(1.0, min=1e-9, max=1e9, help="raw value x scale = total in `unit`")
    unit: Unit = setting(help="unit of the scaled total")
    max_flow_l_min: float = setting(min=0.1, max=10000.0, help="largest plausible flow, litres per minute")
    rollover_bits: int | None = setting(None, min=8, max=64, help="counter width; default from data_type")
    resolution_l: float | None = setting(None, min=0.0, max=1000.0, help="smallest step; default from scale")
    max_read_registers: int = setting(22, min=1, max=125, help="most registers the meter serves in one read")
    fraction: FractionSpec | None = setting(None, help="a second register with the part below the unit")

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.register < self.register_base:
            out.append(f"register = {self.register}: below register_base = {self.register_base}")
        if self.fraction is not None:
            if self.data_type.startswith("f"):
                out.append("fraction: only an integer register can have a fraction register")
            if self.fraction.register < self.register_base:
                out.append(f"fraction.register = {self.fraction.register}: below register_base")
        for key, data_type, swap in self._parts():
            if _TYPES[data_type][0] == 1 and swap in ("word", "word_byte"):
                out.append(f"{key}swap = {swap!r}: a one-register {data_type} has no word order; use 'byte'")
        if not out:
            first, count = _span(self)
            if first - self.register_base + count > 65536:
                out.append(f"register = {self.register}: the registers run past wire address 65535")
        if self.fraction is not None and not out:
            first, count = _span(self)
            if count > self.max_read_registers:
                out.append(
                    f"fraction.register = {self.fraction.register}: total and fraction span {count} registers, "
                    f"more than max_read_registers = {self.max_read_registers} (one read keeps them consistent)"
                )
            main = range(self.register, self.register + _TYPES[self.data_type][0])
            frac = range(self.fraction.register, self.fraction.register + _TYPES[self.fraction.data_type][0])
            if set(main) & set(frac):
                out.append(f"fraction.register = {self.fraction.register}: overlaps the total's registers")
        return out

    def _parts(self) -> list[tuple[str, str, str]]:
        parts: list[tuple[str, str, str]] = [("", self.data_type, self.swap)]
        if self.fraction is not None:
            parts.append(("fraction.", self.fraction.data_type, self.fraction.swap))
        return parts


def _span(spec: ProfileSpec) -> tuple[int, int]:
    """First datasheet register and number of registers one read must cover."""
    ranges = [(spec.register, _TYPES[spec.data_type][0])]
    if spec.fraction is not None:
        ranges.append((spec.fraction.register, _TYPES[spec.fraction.data_type][0]))
    first = min(r for r, _ in ranges)
    last = max(r + n for r, n in ranges)
    return first, last - first


# ------------------------------------------------------------------------------------------ word order
def swap_words(words: Sequence[int], swap: str) -> list[int]:
    """Apply a Home Assistant style swap; each swap is its own inverse, so it serves decode and encode."""
    out = list(words)
    if swap in ("byte", "word_byte"):
        out = [((w & 0xFF) << 8) | (w >> 8) for w in out]
    if swap in ("word", "word_byte"):
        out.reverse()
    return out


def words_to_value(words: Sequence[int], data_type: str, swap: str) -> float:
    """Raw register words (as read from the wire) to the number they hold."""
    count, code = _TYPES[data_type]
    if len(words) != count:
        raise DecodeError(f"{data_type} needs {count} registers, got {len(words)}")
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise DecodeError(f"register words must be 0..65535, got {list(words)}")
    ordered = swap_words(words, swap)
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    return struct.unpack(code, raw)[0]


def value_to_words(value: float, data_type: str, swap: str) -> list[int]:
    """The number to register words as the meter would put them on the wire."""
    count, code = _TYPES[data_type]
    raw = struct.pack(code, float(value) if data_type.startswith("f") else int(value))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 2 * count, 2)]
    return swap_words(words, swap)


# ---------------------------------------------------------------------------------------------- profile
@dataclass(frozen=True)
class MeterProfile:
    """A loaded profile: where to read, and how register words become litres (``decode``) and back."""

    name: str
    path: Path
    spec: ProfileSpec

    @property
    def function_code(self) -> int:
        return self.spec.function_code

    @property
    def address(self) -> int:
        """0-based wire address of the first register one read covers."""
        return _span(self.spec)[0] - self.spec.register_base

    @property
    def count(self) -> int:
        """Registers one read covers (total and fraction together)."""
        return _span(self.spec)[1]

    @property
    def litres_per_unit(self) -> float:
        return _LITRES_PER_UNIT[self.spec.unit]

    @property
    def max_flow_l_min(self) -> float:
        return self.spec.max_flow_l_min

    @property
    def rollover_litres(self) -> float | None:
        """Litres at which the counter wraps back to 0; None for a float total (it never wraps)."""
        bits = self.spec.rollover_bits or _ROLLOVER_BITS.get(self.spec.data_type)
        if bits is None:
            return None
        return float(2**bits) * self.spec.scale * self.litres_per_unit

    @property
    def resolution_l(self) -> float:
        """Smallest step of the total in litres (a 10 L pulse meter moves 10 L at a time)."""
        if self.spec.resolution_l is not None:
            return self.spec.resolution_l
        if self.spec.fraction is not None:
            step = self.spec.fraction.scale if not self.spec.fraction.data_type.startswith("f") else 0.0
        elif self.spec.data_type.startswith("f"):
            step = 0.0
        else:
            step = self.spec.scale
        return step * self.litres_per_unit

    def _offset(self, register: int) -> int:
        return register - _span(self.spec)[0]

    def decode(self, words: Sequence[int]) -> float:
        """Register words of one read (``count`` of them, from ``address``) to the total in litres."""
        spec = self.spec
        if len(words) != self.count:
            raise DecodeError(f"profile {self.name} reads {self.count} registers, got {len(words)}")
        n = _TYPES[spec.data_type][0]
        at = self._offset(spec.register)
        total = words_to_value(words[at : at + n], spec.data_type, spec.swap) * spec.scale
        if spec.fraction is not None:
            frac = spec.fraction
            n = _TYPES[frac.data_type][0]
            at = self._offset(frac.register)
            part = words_to_value(words[at : at + n], frac.data_type, frac.swap) * frac.scale
            if not math.isfinite(part) or part < 0:
                raise DecodeError(f"profile {self.name}: fraction {part!r} is not a usable value")
            total += part
        litres = total * self.litres_per_unit
        if not math.isfinite(litres) or litres < 0:
            raise DecodeError(f"profile {self.name}: total {litres!r} L is not a usable meter total")
        return litres

    def encode(self, litres: float) -> list[int]:
        """Litres to the register words a meter of this model serves (for the simulated meter and tests).

        An integer counter is taken modulo its width, so a simulated meter past the width shows a rollover.
        """
        spec = self.spec
        if litres < 0 or not math.isfinite(litres):
            raise ValueError(f"a meter total cannot be {litres!r} L")
        units = litres / self.litres_per_unit
        words = [0] * self.count
        if spec.fraction is None:
            raw: float = units / spec.scale
            if not spec.data_type.startswith("f"):
                raw = self._wrap(round(raw))
            self._place(words, spec.register, value_to_words(raw, spec.data_type, spec.swap))
            return words
        whole = math.floor(units / spec.scale + 1e-9)
        rest_units = max(0.0, units - whole * spec.scale)
        frac = spec.fraction
        frac_raw: float = rest_units / frac.scale
        if not frac.data_type.startswith("f"):
            frac_raw = round(frac_raw)
        self._place(words, spec.register, value_to_words(self._wrap(whole), spec.data_type, spec.swap))
        self._place(words, frac.register, value_to_words(frac_raw, frac.data_type, frac.swap))
        return words

    def register_writes(self, litres: float) -> list[tuple[int, int, list[int]]]:
        """``encode`` as (function code, 0-based wire address, words) writes: the encoder
        ``hal.sim.meter.SimulatedMeter`` takes."""
        return [(self.function_code, self.address, self.encode(litres))]

    def _wrap(self, raw: int) -> int:
        bits = self.spec.rollover_bits or _ROLLOVER_BITS[self.spec.data_type]
        return raw % (2**bits)

    def _place(self, words: list[int], register: int, part: list[int]) -> None:
        at = self._offset(register)
        words[at : at + len(part)] = part


# ----------------------------------------------------------------------------------------------- loading
def load_profile_file(path: Path | str) -> MeterProfile:
    """Load and validate one profile file; raises ProfileError naming the file and each bad key."""
    try:
        data = read_toml(path)
    except ConfigError as exc:
        raise ProfileError(exc.problems) from None
    return parse_profile(data, Path(path))


def parse_profile(data: Mapping[str, Any], file: Path) -> MeterProfile:
    """Validate an already-parsed profile table (``file`` names it in errors)."""
    try:
        spec: ProfileSpec = parse_section(ProfileSpec, data, file)
    except ConfigError as exc:
        raise ProfileError(exc.problems) from None
    return MeterProfile(name=file.name.removesuffix(".toml"), path=file, spec=spec)


def profile_files(extra_dirs: Iterable[Path] = ()) -> dict[str, Path]:
    """Profile name -> file, shipped ones first; a file of the same name in an extra dir replaces it."""
    found: dict[str, Path] = {}
    for folder in (PROFILE_DIR, *extra_dirs):
        for file in sorted(Path(folder).glob("*.toml")):
            found[file.name.removesuffix(".toml")] = file
    return found


def load_profile(name: str, extra_dirs: Iterable[Path] = ()) -> MeterProfile:
    """A profile by name (file name without .toml) from the shipped ones or ``extra_dirs``."""
    files = profile_files(extra_dirs)
    if name not in files:
        raise ProfileError([f"profile {name!r} not found; known profiles: {', '.join(sorted(files))}"])
    return load_profile_file(files[name])


def shipped_profiles() -> dict[str, MeterProfile]:
    """Every profile shipped with the package, by name."""
    return {name: load_profile_file(path) for name, path in profile_files().items()}


def golden_file(profile: MeterProfile) -> Path:
    """The golden file beside a profile: raw register words and the litres they must decode to."""
    return profile.path.with_name(f"{profile.name}.golden.json")
