"""The kiosk tests' node config builder, and measuring rendered screens (ink heights, colours) from PNG pixels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image

NODE = "cbxc-north-gate-kiosk"


def write_kiosk_config(
    tmp_path: Path,
    url: str,
    token: str | None,
    *,
    central_extra: str = "",
    sections: str = "",
    kiosk_extra: str = "",
    timing: str = "",
    pickup_point: str = "长白新村北门",
) -> Path:
    """kiosk.toml in ``tmp_path`` for a central at ``url``; the token file is written when ``token`` is given."""
    token_file = tmp_path / "token"
    if token is not None:
        token_file.write_text(token)
        token_file.chmod(0o600)
    path = tmp_path / "kiosk.toml"
    path.write_text(
        f"""
[node]
id = "{NODE}"
role = "kiosk"
site = "changbai-xincun"
data_dir = "{tmp_path / "data"}"

[central]
url = "{url}"
token_file = "{token_file}"
connect_timeout_s = 1
read_timeout_s = 3
{central_extra}
{sections}
[audio]
backend = "none"

[kiosk]
pickup_point = "{pickup_point}"
hotline = "021-6543 2100"
timing = {{ poll_interval_s = 0.2, retry_interval_s = 0.5{", " + timing if timing else ""} }}
{kiosk_extra}
""",
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------------------------- measuring rendered screens
Rgb = tuple[int, int, int]


def pixels_in(rgb: bytes, width: int, box: list[int], image_height: int) -> list[list[Rgb]]:
    """Rows (top first) of RGB pixels inside ``box`` = [left, top, width, height], clipped to the image."""
    left, top, w, h = box
    x0, x1 = max(0, left), min(width, left + w)
    y0, y1 = max(0, top), min(image_height, top + h)
    rows = []
    for y in range(y0, y1):
        start = (y * width + x0) * 3
        line = rgb[start : start + (x1 - x0) * 3]
        rows.append([(line[i], line[i + 1], line[i + 2]) for i in range(0, len(line), 3)])
    return rows


def _distance(a: Rgb, b: Rgb) -> int:
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(a[2] - b[2]))


def ink(rows: list[list[Rgb]]) -> dict[str, object]:
    """The text drawn in a box: its background (the commonest colour), its ink colour (the commonest colour
    among the pixels farthest from the background) and the ink's height and width in pixels, counting a pixel
    as ink when it is at least half-way from the background to the ink colour (half-covered by a glyph)."""
    counts: Counter[Rgb] = Counter(p for row in rows for p in row)
    background = counts.most_common(1)[0][0]
    far = max((_distance(p, background) for p in counts), default=0)
    solid = Counter({p: n for p, n in counts.items() if _distance(p, background) >= 0.9 * far})
    colour = solid.most_common(1)[0][0] if solid else background
    limit = max(1, 0.5 * _distance(colour, background))
    ink_rows = [y for y, row in enumerate(rows) if any(_distance(p, background) >= limit for p in row)]
    ink_cols = [
        x for x in range(len(rows[0]) if rows else 0) if any(_distance(r[x], background) >= limit for r in rows)
    ]
    height = (ink_rows[-1] - ink_rows[0] + 1) if ink_rows else 0
    width = (ink_cols[-1] - ink_cols[0] + 1) if ink_cols else 0
    return {"background": background, "colour": colour, "height_px": height, "width_px": width}


def hex_colour(rgb: Rgb) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def read_png(path: Path) -> tuple[int, int, bytes]:
    """(width, height, RGB rows top first) of a snapshot, read by Pillow (not by the kiosk's own writer)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        return rgb.width, rgb.height, rgb.tobytes()
