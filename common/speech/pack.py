"""Prompt packs: a community's own recordings (Mandarin, Shanghainese, any voice) that replace espeak-ng.

A pack is a folder with ``pack.toml`` and one WAV per clip id::

    [pack]
    name = "长白新村 志愿者录音"
    language = "zh"                       # zh: the texts are Chinese (spoken in Mandarin or a dialect); en
    [clips]
    "lift.entrapment" = "请问电梯还在运行吗？……"   # -> lift.entrapment.wav
    "kiosk.assigned.1" = "司机已接单。车牌，"        # a prompt with variable parts: its fixed pieces, numbered
    "word.沪" = "沪"                                # words and characters the variable parts are made of

Every WAV must be 16-bit PCM, audible, and (for pieces joined into one prompt) of one sample rate and channel
count. A clip that is missing or broken is left out and listed in ``problems``: its prompt is synthesised.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.problems import ProblemsError
from hal.wavfile import SAMPLE_WIDTH, WavError, WavInfo, read_info

MANIFEST = "pack.toml"
WORD_PREFIX = "word."
MIN_RMS = 0.003  # about -50 dBFS: below this a clip is silence (a muted microphone, an empty file)
MAX_CLIP_S = 60.0
LANGUAGES = ("zh", "en")


class PackError(ProblemsError):
    """A pack that cannot be used at all (no folder, no manifest, bad TOML); ``problems`` has one line each."""


@dataclass(frozen=True)
class Clip:
    """One recording: its id, the text it says, the file and what the file holds."""

    id: str
    text: str
    path: Path
    info: WavInfo


@dataclass(frozen=True)
class PromptPack:
    """The usable clips of a pack folder, and what was wrong with the others."""

    folder: Path
    name: str
    language: str
    clips: Mapping[str, Clip]
    problems: tuple[str, ...] = ()
    words: tuple[tuple[str, Path], ...] = field(default=(), repr=False)  # (text, file) of words, longest first

    def clip(self, clip_id: str) -> Clip | None:
        return self.clips.get(clip_id)

    def word_clips(self, value: str) -> tuple[list[Path], str | None]:
        """Clips that say ``value`` (spaces and punctuation skipped), longest words first; else the first
        character or word that has no clip."""
        spoken = _letters(value)
        paths: list[Path] = []
        at = 0
        while at < len(spoken):
            word = next(((text, path) for text, path in self.words if spoken.startswith(text, at)), None)
            if word is None:
                return [], spoken[at]
            paths.append(word[1])
            at += len(word[0])
        return paths, None


def _letters(text: str) -> str:
    """What is said of a text: letters and digits only, Latin letters upper case ('沪 A，d' -> '沪AD')."""
    return "".join(ch.upper() for ch in text if ch.isalnum())


def _clip_problems(clip_id: str, text: object, path: Path) -> tuple[WavInfo | None, list[str]]:
    if not isinstance(text, str) or not text.strip():
        return None, [f"{clip_id}: its text must be a non-empty string"]
    if "/" in clip_id or clip_id.startswith("."):
        return None, [f"{clip_id!r}: not a clip id (letters, digits, dots, underscores)"]
    try:
        info = read_info(path)
    except WavError as exc:
        return None, [f"{clip_id}: {exc}"]
    if info.width != SAMPLE_WIDTH:
        return None, [f"{clip_id}: {path.name} is {8 * info.width}-bit; record or convert to 16-bit PCM"]
    if not 0.1 <= info.duration_s <= MAX_CLIP_S:
        return None, [f"{clip_id}: {path.name} lasts {info.duration_s:.2f} s; allowed 0.1..{MAX_CLIP_S:g} s"]
    if math.isnan(info.rms) or info.rms < MIN_RMS:
        return None, [f"{clip_id}: {path.name} is silent (RMS {info.rms:.4f} of full scale)"]
    return info, []


def load_pack(folder: Path) -> PromptPack:
    """Read and check a pack folder. Raises PackError when there is no usable manifest; clips that are missing or
    broken are left out and listed in ``problems``."""
    manifest = folder / MANIFEST
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError(
            [f"{manifest}: no such file (a prompt pack is a folder with {MANIFEST} and WAV files)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PackError([f"{manifest}: cannot be read ({exc})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise PackError([f"{manifest}: invalid TOML: {exc}"]) from None
    head, listed = data.get("pack", {}), data.get("clips")
    fatal = [f"{manifest}: [{name}]: unknown section; allowed: pack, clips" for name in set(data) - {"pack", "clips"}]
    if not isinstance(listed, dict) or not listed:
        fatal.append(f'{manifest}: [clips]: missing or empty (one line per clip: "id" = "its text")')
    language = head.get("language", "zh") if isinstance(head, dict) else None
    if language not in LANGUAGES:
        fatal.append(f"{manifest}: pack.language = {language!r}: allowed: {', '.join(LANGUAGES)}")
    if fatal or not isinstance(listed, dict):
        raise PackError(fatal)
    clips: dict[str, Clip] = {}
    problems: list[str] = []
    for clip_id, text in sorted(listed.items()):
        path = folder / f"{clip_id}.wav"
        info, found = _clip_problems(clip_id, text, path)
        problems += [f"{folder}: {line}" for line in found]
        if info is not None:
            clips[clip_id] = Clip(clip_id, text.strip(), path, info)
    for stray in sorted(p.stem for p in folder.glob("*.wav") if p.stem not in listed):
        problems.append(f"{folder}: {stray}.wav is not listed in {MANIFEST} (not used)")
    pieces = [c for c in clips.values() if c.id.startswith(WORD_PREFIX) or c.id.rsplit(".", 1)[-1].isdigit()]
    formats = {c.info.format for c in pieces}
    if len(formats) > 1:
        problems.append(f"{folder}: pieces joined into one prompt differ in format {sorted(formats)}; "
                        "convert them to one rate and channel count (sox IN -r 22050 -c 1 -b 16 OUT)")  # fmt: skip
    words = [(_letters(c.text), c.path) for c in clips.values() if c.id.startswith(WORD_PREFIX)]
    words.sort(key=lambda word: len(word[0]), reverse=True)
    name = str(head.get("name", folder.name))
    return PromptPack(folder, name, str(language), clips, tuple(problems), tuple(words))
