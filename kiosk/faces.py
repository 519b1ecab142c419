"""Kivy labels drawn through one SDL_ttf font per font file, resized per label, instead of one per file and size.

Kivy's SDL2 text provider opens a font for each (file, size) it meets and keeps it. For the kiosk's 17 MB CJK face
each open is a FreeType face of 2.2 MB (the CFF table's subroutines, charset and glyph offsets, copied out of the
file: measured), so every text size cost 2.2 MB of RSS. ``SharedFaceLabel`` keeps one font per file and sets its
size before it measures or draws (TTF_SetFontSize, SDL_ttf >= 2.0.18: the same call an open at that size makes),
then draws with the same SDL_ttf and SDL calls Kivy's provider makes, on the library Kivy loaded: the pixels are
the same (tests compare them with Kivy's own provider). Where that library or the call is missing, Kivy's provider
stays (``install()`` says so and returns False).

Import only after ``kiosk.kivyconf.configure_kivy()`` (Kivy's text provider).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

import kivy.uix.label
from kivy.core.image import ImageData
from kivy.core.text.text_sdl2 import LabelSDL2

log = logging.getLogger(__name__)
HINTING = {"normal": 0, "light": 1, "mono": 2, None: 3}  # TTF_HINTING_*
STYLE_UNDERLINE, STYLE_STRIKETHROUGH = 0x04, 0x08  # TTF_STYLE_*
BLENDMODE_NONE, BLENDMODE_BLEND = 0, 1  # SDL_BLENDMODE_*
RGBA_MASKS = (0x000000FF, 0x0000FF00, 0x00FF0000, 0xFF000000)  # as Kivy's provider: bytes R, G, B, A


class _Color(ctypes.Structure):
    _fields_ = [("r", ctypes.c_uint8), ("g", ctypes.c_uint8), ("b", ctypes.c_uint8), ("a", ctypes.c_uint8)]


class _Rect(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _Surface(ctypes.Structure):
    # the leading fields of SDL_Surface (SDL 2.x ABI), the only ones read here
    _fields_ = [
        ("flags", ctypes.c_uint32),
        ("format", ctypes.c_void_p),
        ("w", ctypes.c_int),
        ("h", ctypes.c_int),
        ("pitch", ctypes.c_int),
        ("pixels", ctypes.c_void_p),
    ]


_SURFACE = ctypes.POINTER(_Surface)
_FONT = ctypes.c_void_p
# name -> (result, argument types)
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "TTF_WasInit": (ctypes.c_int, []),
    "TTF_Init": (ctypes.c_int, []),
    "TTF_OpenFont": (_FONT, [ctypes.c_char_p, ctypes.c_int]),
    "TTF_SetFontSize": (ctypes.c_int, [_FONT, ctypes.c_int]),
    "TTF_GetFontStyle": (ctypes.c_int, [_FONT]),
    "TTF_SetFontStyle": (None, [_FONT, ctypes.c_int]),
    "TTF_GetFontHinting": (ctypes.c_int, [_FONT]),
    "TTF_SetFontHinting": (None, [_FONT, ctypes.c_int]),
    "TTF_GetFontKerning": (ctypes.c_int, [_FONT]),
    "TTF_SetFontKerning": (None, [_FONT, ctypes.c_int]),
    "TTF_SetFontOutline": (None, [_FONT, ctypes.c_int]),
    "TTF_SizeUTF8": (
        ctypes.c_int,
        [_FONT, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)],
    ),
    "TTF_FontAscent": (ctypes.c_int, [_FONT]),
    "TTF_FontDescent": (ctypes.c_int, [_FONT]),
    "TTF_RenderUTF8_Blended": (_SURFACE, [_FONT, ctypes.c_char_p, _Color]),
    "TTF_RenderUTF8_Solid": (_SURFACE, [_FONT, ctypes.c_char_p, _Color]),
    "SDL_CreateRGBSurface": (
        _SURFACE,
        [ctypes.c_uint32, ctypes.c_int, ctypes.c_int, ctypes.c_int] + [ctypes.c_uint32] * 4,
    ),
    "SDL_FreeSurface": (None, [_SURFACE]),
    "SDL_UpperBlit": (ctypes.c_int, [_SURFACE, ctypes.POINTER(_Rect), _SURFACE, ctypes.POINTER(_Rect)]),
    "SDL_SetSurfaceAlphaMod": (ctypes.c_int, [_SURFACE, ctypes.c_uint8]),
    "SDL_SetSurfaceBlendMode": (ctypes.c_int, [_SURFACE, ctypes.c_int]),
    "SDL_GetError": (ctypes.c_char_p, []),
}


class _Sdl:
    """The SDL2 and SDL2_ttf functions used here, from the copies of the libraries this process has loaded."""

    def __init__(self, sdl: ctypes.CDLL, ttf: ctypes.CDLL) -> None:
        for name, (restype, argtypes) in _SIGNATURES.items():
            function = getattr(ttf if name.startswith("TTF_") else sdl, name)  # AttributeError: too old
            function.restype, function.argtypes = restype, argtypes
            setattr(self, name, function)

    def __getattr__(self, name: str) -> Any:
        """Only reached for a function not in _SIGNATURES (the set ones are instance attributes); typed for mypy."""
        raise AttributeError(f"_Sdl has no {name}: add it to _SIGNATURES")


def loaded_libraries(maps: Path = Path("/proc/self/maps")) -> tuple[str, str] | None:
    """(SDL2, SDL2_ttf) as mapped into this process (the ones Kivy's provider uses), or None."""
    sdl = ttf = None
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5].strip() if len(fields) == 6 else ""
        name = Path(path).name
        if name.startswith("libSDL2_ttf"):
            ttf = ttf or path
        elif name.startswith("libSDL2-"):
            sdl = sdl or path
    return (sdl, ttf) if sdl and ttf else None


_sdl: _Sdl | None = None
# font file -> its one TTF_Font, with the size and style it is set to now
_fonts: dict[str, list[Any]] = {}


def _font(label: LabelSDL2) -> Any:
    """The file's one font, set to this label's size and style (SDL_ttf drops its glyph cache on a change)."""
    assert _sdl is not None
    options = label.options
    path, size = options["font_name_r"], int(options["font_size"])
    style = (STYLE_UNDERLINE if options["underline"] else 0) | (STYLE_STRIKETHROUGH if options["strikethrough"] else 0)
    entry = _fonts.get(path)
    if entry is None:
        if not _sdl.TTF_WasInit():
            _sdl.TTF_Init()
        font = _sdl.TTF_OpenFont(path.encode("utf-8"), size)
        if not font:
            raise OSError(f"{path}: SDL_ttf cannot open the font: {_sdl.SDL_GetError().decode(errors='replace')}")
        _sdl.TTF_SetFontStyle(font, style)
        entry = _fonts[path] = [font, size, style]
    font = entry[0]
    if entry[1] != size:
        if _sdl.TTF_SetFontSize(font, size) < 0:
            raise OSError(f"{path}: SDL_ttf cannot set size {size}: {_sdl.SDL_GetError().decode(errors='replace')}")
        entry[1] = size
    if entry[2] != style:
        _sdl.TTF_SetFontStyle(font, style)
        entry[2] = style
    return font


class SharedFaceLabel(LabelSDL2):
    """Kivy's SDL2 label, measuring and drawing through the file's one font (the steps of Kivy's _text_sdl2)."""

    def get_extents(self, text: str) -> tuple[int, int]:
        assert _sdl is not None
        font, outline = _font(self), self.options["outline_width"]
        w, h = ctypes.c_int(), ctypes.c_int()
        if outline:
            _sdl.TTF_SetFontOutline(font, outline)
        _sdl.TTF_SizeUTF8(font, text.encode("utf-8"), ctypes.byref(w), ctypes.byref(h))
        if outline:
            _sdl.TTF_SetFontOutline(font, 0)
        return w.value, h.value

    def get_descent(self) -> int:
        assert _sdl is not None
        return int(_sdl.TTF_FontDescent(_font(self)))

    def get_ascent(self) -> int:
        assert _sdl is not None
        return int(_sdl.TTF_FontAscent(_font(self)))

    def _render_begin(self) -> None:
        assert _sdl is not None
        w, h = self._size
        self._target = _sdl.SDL_CreateRGBSurface(0, w, h, 32, *RGBA_MASKS)
        if not self._target:
            raise MemoryError(f"SDL cannot make a {w}x{h} surface: {_sdl.SDL_GetError().decode(errors='replace')}")
        ctypes.memset(self._target.contents.pixels, 0, w * h * 4)

    def _render_text(self, text: str, x: int, y: int) -> None:
        assert _sdl is not None
        options, font = self.options, _font(self)
        hinting = HINTING.get(options["font_hinting"])
        if hinting is not None and _sdl.TTF_GetFontHinting(font) != hinting:
            _sdl.TTF_SetFontHinting(font, hinting)
        kerning = 1 if options["font_kerning"] else 0
        if bool(_sdl.TTF_GetFontKerning(font)) != bool(kerning):
            _sdl.TTF_SetFontKerning(font, kerning)
        draw = _sdl.TTF_RenderUTF8_Blended if options["font_blended"] else _sdl.TTF_RenderUTF8_Solid
        data, colour, outline = text.encode("utf-8"), options["color"], options["outline_width"]
        fg = _Color(*(int(c * 255) for c in colour[:3]), 255)
        if outline:
            _sdl.TTF_SetFontOutline(font, outline)
            surface = draw(font, data, _Color(*(int(c * 255) for c in options["outline_color"][:3]), 255))
            _sdl.TTF_SetFontOutline(font, 0)
        else:
            surface = draw(font, data, fg)
        if not surface:
            return
        if outline:
            inner = draw(font, data, fg)
            if not inner:
                _sdl.SDL_FreeSurface(surface)
                return
            at = _Rect(outline, outline, inner.contents.w, inner.contents.h)
            _sdl.SDL_SetSurfaceBlendMode(inner, BLENDMODE_BLEND)
            _sdl.SDL_UpperBlit(inner, None, surface, ctypes.byref(at))
            _sdl.SDL_FreeSurface(inner)
        at = _Rect(x, y, surface.contents.w, surface.contents.h)
        _sdl.SDL_SetSurfaceAlphaMod(surface, int(colour[3] * 255))
        _sdl.SDL_SetSurfaceBlendMode(surface, BLENDMODE_NONE)
        _sdl.SDL_UpperBlit(surface, None, self._target, ctypes.byref(at))
        _sdl.SDL_FreeSurface(surface)

    def _render_end(self) -> ImageData:
        assert _sdl is not None
        w, h = self._size
        pixels = ctypes.string_at(self._target.contents.pixels, w * h * 4)
        _sdl.SDL_FreeSurface(self._target)
        self._target = None
        return ImageData(w, h, "rgba", pixels)


def install() -> bool:
    """Every Kivy Label made from now on draws through ``SharedFaceLabel``; False (and Kivy's own provider stays)
    when Kivy does not use SDL2 for text here or the SDL_ttf it loaded is older than 2.0.18."""
    global _sdl
    if kivy.uix.label.CoreLabel is SharedFaceLabel:
        return True
    if kivy.uix.label.CoreLabel is not LabelSDL2:
        log.info("text: Kivy's %s provider kept (one font per size)", kivy.uix.label.CoreLabel.__name__)
        return False
    found = loaded_libraries()
    try:
        if found is None:
            raise OSError("SDL2 and SDL2_ttf not found among the loaded libraries")
        _sdl = _Sdl(ctypes.CDLL(found[0]), ctypes.CDLL(found[1]))
    except (OSError, AttributeError) as exc:
        log.warning("text: Kivy's SDL2 provider kept, one font per size (2.2 MB each for the CJK face): %s", exc)
        return False
    kivy.uix.label.CoreLabel = SharedFaceLabel
    return True


def open_fonts() -> dict[str, int]:
    """Font file -> the size its one font is set to now (for tests and logs)."""
    return {path: entry[1] for path, entry in _fonts.items()}
