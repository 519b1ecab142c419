"""Simplified Chinese glyphs: the kiosk's font setup picks the SC face of the Noto CJK collection.

Checked against tools nobody here wrote: fontconfig's fc-query names the faces of the .ttc and reads the file the
kiosk writes; Pillow (FreeType) renders the SC and the JP face straight from the collection by index; Kivy's own
SDL2 text provider renders 门 and 沪 through the kiosk's setup, in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from kiosk.config import DEFAULT_FONT_BOLD, ScreenSection
from kiosk.fonts import FontError, face_file, faces, kiosk_fonts

ROOT = Path(__file__).resolve().parent.parent
CHARS = "门沪"  # 门 (北门) and 沪 (the plate): JP and SC shapes differ
pytestmark = pytest.mark.skipif(not DEFAULT_FONT_BOLD.exists(), reason="fonts-noto-cjk not installed")


def fc_query(path: Path) -> dict[str, int]:
    """family -> face index, as fontconfig reads the file."""
    out = subprocess.run(
        ["fc-query", "-f", "%{index}\t%{family[0]}\n", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return {family: int(index) for index, family in (line.split("\t") for line in out.splitlines())}


@pytest.mark.skipif(shutil.which("fc-query") is None, reason="fontconfig tools missing")
def test_faces_agree_with_fontconfig_and_the_written_face_is_sc(tmp_path: Path) -> None:
    by_fontconfig = fc_query(DEFAULT_FONT_BOLD)
    ours = {f.family: f.index for f in faces(DEFAULT_FONT_BOLD)}
    assert ours == {k: v for k, v in by_fontconfig.items() if k in ours} and len(ours) == len(by_fontconfig)
    written = face_file(DEFAULT_FONT_BOLD, "Noto Sans CJK SC", tmp_path)
    assert fc_query(written) == {"Noto Sans CJK SC": 0}
    assert face_file(DEFAULT_FONT_BOLD, "Noto Sans CJK SC", tmp_path) == written  # written once, then reused


def test_a_face_the_collection_lacks_is_named_with_the_ones_it_has(tmp_path: Path) -> None:
    with pytest.raises(FontError, match=r"no face 'Noto Sans CJK XX' \(faces: 0: Noto Sans CJK JP, 1:"):
        face_file(DEFAULT_FONT_BOLD, "Noto Sans CJK XX", tmp_path)


KIVY_RENDER = """
import json, sys
from pathlib import Path
from kiosk.config import ScreenSection
from kiosk.fonts import kiosk_fonts
from kivy.core.text import Label as CoreLabel
_, bold = kiosk_fonts(ScreenSection(), Path(sys.argv[1]))
out = {}
for ch in sys.argv[2]:
    label = CoreLabel(text=ch, font_size=160, font_name=bold)
    label.resolve_font_name()
    label._size = label.get_extents(ch)
    label._render_begin()
    label._render_text(ch, 0, 0)
    data = label._render_end()
    out[ch] = [data.width, data.height, data.fmt, data.data.hex()]
print(json.dumps(out))
"""


def kivy_glyphs(cache: Path) -> dict[str, Image.Image]:
    """门 and 沪 as the kiosk draws them: its font setup, Kivy's SDL2 text provider (coverage as an L image)."""
    env = {**os.environ, "KIVY_NO_ARGS": "1", "KIVY_HOME": str(cache / "kivy"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", KIVY_RENDER, str(cache), CHARS], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    glyphs = {}
    for ch, (w, h, fmt, data) in json.loads(proc.stdout.splitlines()[-1]).items():
        assert fmt == "rgba"
        glyphs[ch] = Image.frombytes("RGBA", (w, h), bytes.fromhex(data)).getchannel("A")
    return glyphs


def pillow_glyph(index: int, ch: str) -> Image.Image:
    font = ImageFont.truetype(str(DEFAULT_FONT_BOLD), 160, index=index)
    image = Image.new("L", (400, 400), 0)
    ImageDraw.Draw(image).text((100, 100), ch, font=font, fill=255)
    return image


def shape(image: Image.Image, size: int = 48) -> list[bool]:
    """The glyph cropped to its ink and scaled to a fixed grid, as on/off cells."""
    box = image.point(lambda v: 255 if v >= 128 else 0).getbbox()
    assert box is not None, "no ink"
    return [v >= 128 for v in image.crop(box).resize((size, size), Image.Resampling.BILINEAR).tobytes()]


def overlap(a: list[bool], b: list[bool]) -> float:
    """Intersection over union of two on/off grids."""
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    either = sum(1 for x, y in zip(a, b, strict=True) if x or y)
    return both / either


@pytest.mark.skipif(shutil.which("fc-query") is None, reason="fontconfig tools missing")
def test_kiosk_draws_the_simplified_chinese_shapes_not_the_japanese_ones(tmp_path: Path) -> None:
    index = fc_query(DEFAULT_FONT_BOLD)
    drawn = kivy_glyphs(tmp_path)
    for ch in CHARS:
        kiosk = shape(drawn[ch])
        sc = shape(pillow_glyph(index["Noto Sans CJK SC"], ch))
        jp = shape(pillow_glyph(index["Noto Sans CJK JP"], ch))
        assert overlap(sc, jp) < 0.85, f"{ch}: the SC and JP faces should differ here"
        assert overlap(kiosk, sc) > 0.9, f"{ch}: the kiosk's glyph is not the SC face's"
        assert overlap(kiosk, sc) > overlap(kiosk, jp) + 0.1, ch


def test_default_screen_fonts_are_the_sc_face(tmp_path: Path) -> None:
    regular, bold = kiosk_fonts(ScreenSection(), tmp_path)
    assert [f.family for f in faces(Path(regular))] == ["Noto Sans CJK SC"]
    assert [f.family for f in faces(Path(bold))] == ["Noto Sans CJK SC"]


@pytest.mark.skipif(shutil.which("fc-query") is None, reason="fontconfig tools missing")
def test_a_face_a_power_cut_left_empty_is_written_again(tmp_path: Path, fsynced) -> None:
    """Under LazyFS, a power cut a second after the kiosk's first start left the cached face 0 bytes long, and
    every start after it crashed in SDL_ttf ("Couldn't load font file"). Now the face is fsynced when written,
    and a cached face of the wrong size is written again."""
    written = face_file(DEFAULT_FONT_BOLD, "Noto Sans CJK SC", tmp_path)
    assert fsynced.covers(written) and fsynced.covers(tmp_path)
    size = written.stat().st_size
    written.write_bytes(b"")  # what the power cut left
    assert face_file(DEFAULT_FONT_BOLD, "Noto Sans CJK SC", tmp_path) == written
    assert written.stat().st_size == size and fc_query(written) == {"Noto Sans CJK SC": 0}
