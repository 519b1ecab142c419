"""The Simplified Chinese face of a font collection, as a file Kivy can load.

Kivy's SDL2 text provider opens face 0 of a .ttc, and face 0 of Noto Sans CJK is the Japanese one (门, 沪, 叫, 达
drawn the Japanese way). The faces of a collection share their glyph outlines and differ in their tables (cmap,
GSUB, name), so the face wanted is written out as a plain OpenType file with its own tables, byte for byte,
once, into a cache folder. A single-face file (.otf/.ttf) is used as it is.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common.files import memory_folder, write_atomic
from kiosk.config import ScreenSection

log = logging.getLogger(__name__)
TTC_TAG = b"ttcf"
NAME_FAMILY, NAME_TYPO_FAMILY = 1, 16
CHECKSUM_MAGIC = 0xB1B0AFBA


class FontError(Exception):
    """A font file that cannot give the face asked for; the message names the file and the faces it has."""


@dataclass(frozen=True)
class Face:
    index: int
    family: str


def _u16(data: bytes | mmap.mmap, at: int) -> int:
    return struct.unpack_from(">H", data, at)[0]


def _u32(data: bytes | mmap.mmap, at: int) -> int:
    return struct.unpack_from(">I", data, at)[0]


def _face_offsets(data: bytes | mmap.mmap) -> list[int]:
    if data[:4] == TTC_TAG:
        count = _u32(data, 8)
        return [_u32(data, 12 + 4 * i) for i in range(count)]
    return [0]


def _tables(data: bytes | mmap.mmap, offset: int) -> dict[bytes, tuple[int, int, int]]:
    """tag -> (checksum, offset, length) of the face whose table directory is at ``offset``."""
    count = _u16(data, offset + 4)
    out = {}
    for i in range(count):
        tag, checksum, start, length = struct.unpack_from(">4sIII", data, offset + 12 + 16 * i)
        out[tag] = (checksum, start, length)
    return out


def _family(data: bytes | mmap.mmap, tables: dict[bytes, tuple[int, int, int]]) -> str:
    """The face's family name (typographic family when present), from its Windows Unicode name records."""
    if b"name" not in tables:
        return ""
    _, base, _ = tables[b"name"]
    count, strings = _u16(data, base + 2), base + _u16(data, base + 4)
    found: dict[int, str] = {}
    for i in range(count):
        platform, encoding, _lang, name_id, length, at = struct.unpack_from(">HHHHHH", data, base + 6 + 12 * i)
        if platform == 3 and encoding in (1, 10) and name_id in (NAME_FAMILY, NAME_TYPO_FAMILY):
            found.setdefault(name_id, data[strings + at : strings + at + length].decode("utf-16-be", "replace"))
    return found.get(NAME_TYPO_FAMILY) or found.get(NAME_FAMILY, "")


def faces(path: Path) -> list[Face]:
    """Every face in a font file with its family name, in file order (a .otf/.ttf has one)."""
    with _mapped(path) as data:
        return _faces(data)


def _faces(data: mmap.mmap) -> list[Face]:
    return [Face(i, _family(data, _tables(data, off))) for i, off in enumerate(_face_offsets(data))]


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap]:
    """The font file mapped, not read: finding a face touches a few pages of a 19 MB collection."""
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data
    except (OSError, ValueError) as exc:
        raise FontError(f"{path}: cannot read the font: {exc}") from None


def _checksum(block: bytes) -> int:
    block += b"\0" * (-len(block) % 4)
    return sum(struct.unpack(f">{len(block) // 4}I", block)) & 0xFFFFFFFF


def face_size(data: bytes | mmap.mmap, index: int) -> int:
    """The length of ``face_bytes(data, index)``, from the table directory alone."""
    tables = _tables(data, _face_offsets(data)[index])
    return 12 + 16 * len(tables) + sum(length + (-length % 4) for _, _, length in tables.values())


def face_bytes(data: bytes | mmap.mmap, index: int) -> bytes:
    """One face of a collection as a standalone OpenType file (tables copied as they are, head checksum fixed)."""
    offset = _face_offsets(data)[index]
    tables = _tables(data, offset)
    version = data[offset : offset + 4]
    count = len(tables)
    entry_selector = max(0, count.bit_length() - 1)
    search_range = (1 << entry_selector) * 16
    header = version + struct.pack(">HHHH", count, search_range, entry_selector, count * 16 - search_range)
    at = len(header) + 16 * count
    directory, body = b"", b""
    for tag in sorted(tables):
        checksum, start, length = tables[tag]
        chunk = data[start : start + length]
        if tag == b"head":
            chunk = chunk[:8] + b"\0\0\0\0" + chunk[12:]  # checkSumAdjustment, set below
        directory += struct.pack(">4sIII", tag, checksum, at + len(body), length)
        body += chunk + b"\0" * (-length % 4)
    font = bytearray(header + directory + body)
    if b"head" in tables:
        head_at = at + sum(tables[t][2] + (-tables[t][2] % 4) for t in sorted(tables) if t < b"head")
        struct.pack_into(">I", font, head_at + 8, (CHECKSUM_MAGIC - _checksum(bytes(font))) & 0xFFFFFFFF)
    return bytes(font)


def face_file(path: Path, family: str, cache_dir: Path) -> Path:
    """A file holding the face ``family`` of ``path``: the file itself when it is that face alone, else the face
    written once into ``cache_dir`` (named after the source's size and time, so an updated font is re-read)."""
    with _mapped(path) as data:
        found = _faces(data)
        match = next((f for f in found if f.family == family), None)
        if match is None:
            names = ", ".join(f"{f.index}: {f.family}" for f in found) or "none"
            raise FontError(f"{path}: no face {family!r} (faces: {names})")
        if len(found) == 1:
            return path
        stat = path.stat()
        key = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{match.index}".encode()).hexdigest()[:12]
        name = f"{family.replace(' ', '')}-{path.stem}-{key}.otf"
        what = f"face {match.index} ({family}) of {path}"
        size = face_size(data, match.index)
        try:
            return _cached(cache_dir / name, size, lambda: face_bytes(data, match.index), what)
        except OSError as exc:  # a full or read-only card: the face is made again in memory at each start
            log.warning("font: %s cannot be written (%s); the face goes to memory", cache_dir, exc.strerror or exc)
            return _cached(memory_folder("fonts") / name, size, lambda: face_bytes(data, match.index), what)


def _cached(target: Path, size: int, make: Callable[[], bytes], what: str) -> Path:
    """``target`` holding ``make()`` (``size`` bytes), written when it is missing or of another size: a face left
    empty by a power cut (written before this was fsynced) is made again rather than crash every start."""
    if not (target.is_file() and target.stat().st_size == size):
        write_atomic(target, make(), mode=0o644)
        log.info("font: %s written to %s", what, target)
    return target


def kiosk_fonts(screen: ScreenSection, cache_dir: Path) -> tuple[str, str]:
    """The Simplified Chinese faces of the configured fonts as files Kivy loads; raises FontError."""
    regular = face_file(screen.font, screen.font_face, cache_dir)
    same = screen.font_bold == screen.font or not screen.font_bold.exists()
    bold = regular if same else face_file(screen.font_bold, screen.font_face, cache_dir)
    return str(regular), str(bold)
