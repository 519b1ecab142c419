"""A minimal PNG writer for 8-bit RGB images (no Pillow on the kiosk): the screen snapshots."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
