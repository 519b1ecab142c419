"""A minimal PNG writer and reader for 8-bit RGB images (no Pillow on the kiosk): snapshots and their checks."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PngError(ValueError):
    """Not a PNG this module can read (it reads 8-bit RGB, unfiltered or Sub/Up filtered rows)."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rgb: bytes, bottom_up: bool = False) -> bytes:
    """PNG bytes of an RGB image; ``bottom_up`` for OpenGL's row order (first row at the bottom)."""
    stride = width * 3
    if len(rgb) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of RGB, got {len(rgb)}")
    rows = range(height - 1, -1, -1) if bottom_up else range(height)
    raw = b"".join(b"\x00" + rgb[r * stride : (r + 1) * stride] for r in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def write_png(path: Path, width: int, height: int, rgb: bytes, bottom_up: bool = False) -> None:
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(encode_png(width, height, rgb, bottom_up))
    tmp.replace(path)


def read_png(path: Path) -> tuple[int, int, bytes]:
    """(width, height, RGB rows top first) of a PNG written by ``write_png``."""
    data = path.read_bytes()
    if not data.startswith(SIGNATURE):
        raise PngError(f"{path}: not a PNG")
    pos, width, height, idat = len(SIGNATURE), 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour, interlace) != (8, 2, 0):
                raise PngError(f"{path}: only 8-bit RGB non-interlaced PNGs are read here")
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * 3
    out = bytearray()
    prev = bytearray(stride)
    for r in range(height):
        line = raw[r * (stride + 1) : (r + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        if kind == 2:
            row = bytearray((a + b) & 0xFF for a, b in zip(row, prev, strict=True))
        elif kind != 0:
            raise PngError(f"{path}: filter {kind} not supported")
        out += row
        prev = row
    return width, height, bytes(out)
