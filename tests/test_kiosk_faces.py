"""One SDL_ttf font per font file (kiosk/faces.py): the same pixels as Kivy's own SDL2 text provider, which nobody
here wrote, for every text of kiosk/texts.toml at the kiosk's text sizes, with the sizes interleaved so the one
font is resized between labels; and one font open for all those sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.config import DEFAULT_FONT_BOLD

ROOT = Path(__file__).resolve().parent.parent

COMPARE = """
import json, sys, tempfile, tomllib
from pathlib import Path
from kiosk.config import ScreenSection
from kiosk.kivyconf import configure_kivy
configure_kivy(ScreenSection(fullscreen=False), fullscreen=False, kivy_home=Path(tempfile.mkdtemp()))
import kivy.uix.label
from kivy.core.text.text_sdl2 import LabelSDL2
from kiosk import faces, theme
from kiosk.fonts import kiosk_fonts

installed = faces.install()
_, bold = kiosk_fonts(ScreenSection(), Path(sys.argv[1]))
texts = []
def walk(value):
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            walk(item)
walk(tomllib.loads((Path("kiosk") / "texts.toml").read_text(encoding="utf-8")))
texts += ["沪A·F00308", "沪B·59700D", "021-6543 2100", "长白新村北门"]
px = theme.ScreenGeometry.of(7.0, 800, 480).layout_px()
sizes = [px[k] for k in ("text", "heading", "hotline", "plate", "text_en")]

class Capture:
    def blit_data(self, data):
        self.data = data

def pixels(cls, text, size, options):
    label = cls(text=text, font_name=bold, font_size=size, **options)
    label.resolve_font_name()
    label._size = label.render()
    if label._size[0] <= 1:
        return None
    label.texture = Capture()
    label.render(real=True)
    data = label.texture.data
    return [data.width, data.height, data.data.hex()]

variants = [{}, {"text_size": (300, None), "halign": "center", "color": (0.1, 0.2, 0.3, 0.8)}]
compared, differ = 0, []
for variant in variants:
    for text in texts:
        for size in sizes:
            ours, kivys = pixels(faces.SharedFaceLabel, text, size, variant), pixels(LabelSDL2, text, size, variant)
            compared += 1
            if ours != kivys:
                differ.append([text, size])
print(json.dumps({"installed": installed, "core": kivy.uix.label.CoreLabel.__name__, "compared": compared,
                  "differ": differ[:5], "open": faces.open_fonts(), "loaded": faces.loaded_libraries(),
                  "sample": faces.loaded_libraries(Path(sys.argv[2]))}))
"""


SAMPLE_MAPS = (
    "7f00-7f01 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libSDL2_image-2.0.so.0.600.3\n"
    "7f01-7f02 r-xp 00000000 08:01 2 /opt/venv/Kivy.libs/libSDL2_ttf-2-df2c5903.0.so.0.2200.0\n"
    "7f02-7f03 rw-p 00000000 00:00 0 \n"
    "7f03-7f04 r-xp 00000000 08:01 3 /opt/venv/Kivy.libs/libSDL2-2-d9872e50.0.so.0.3000.7\n"
)


@pytest.mark.skipif(not DEFAULT_FONT_BOLD.exists(), reason="fonts-noto-cjk not installed")
def test_one_font_per_file_draws_what_kivys_own_provider_draws(tmp_path: Path) -> None:
    # in a fresh interpreter: Kivy is set up once per process, before its first import
    (tmp_path / "maps").write_text(SAMPLE_MAPS)
    env = {**os.environ, "KIVY_NO_ARGS": "1", "KIVY_HOME": str(tmp_path / "kivy"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", COMPARE, str(tmp_path / "fonts"), str(tmp_path / "maps")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["installed"] and out["core"] == "SharedFaceLabel"
    assert out["compared"] > 400 and out["differ"] == []
    assert len(out["open"]) == 1  # every size through one font
    sdl, ttf = out["loaded"]  # the copies Kivy loaded (its wheel's, or the system's)
    assert Path(sdl).name.startswith("libSDL2-") and Path(ttf).name.startswith("libSDL2_ttf") and Path(ttf).exists()
    assert out["sample"] == [
        "/opt/venv/Kivy.libs/libSDL2-2-d9872e50.0.so.0.3000.7",
        "/opt/venv/Kivy.libs/libSDL2_ttf-2-df2c5903.0.so.0.2200.0",
    ]
