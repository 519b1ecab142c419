"""A node's voice: every prompt has a stable id and a text; ``Voice.say`` plays the prompt pack's recording of it
when the pack has one (pieces and words joined for prompts with variable parts), else has espeak-ng speak the
text, at the day or night volume of the node's local time.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common.clock import within_hours
from common.config import AudioSection
from common.speech.pack import PackError, PromptPack, load_pack
from hal.audio import AudioSpec, Speaker, make_speaker

log = logging.getLogger(__name__)


_PAUSES = "，。、；：？！,.;:?!"


def _speakable(text: str) -> str:
    return "".join(ch.upper() for ch in text if ch.isalnum())


@dataclass(frozen=True)
class Prompt:
    """One thing a node can say: a stable id ("lift.entrapment"), its text with {fields} for the variable parts
    (already written for listening), when it is said, and example fields (for checks and listings)."""

    id: str
    template: str
    when: str = ""
    examples: tuple[Mapping[str, str], ...] = field(default=(), compare=False)
    words: tuple[str, ...] = field(default=(), compare=False)  # what a pack records for the fields (digits...)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(self.template) if name))

    def fill(self, fields: Mapping[str, str] | None = None) -> str:
        return self.template.format(**(fields or {}))

    def pieces(self) -> list[tuple[str, str]]:
        """The clips a pack needs for this prompt, as (clip id, text): the whole prompt when it has no fields,
        else each fixed piece between fields that has something to say, numbered from 1."""
        if not self.fields:
            return [(self.id, self.template)]
        literals = [literal for literal, _, _, _ in string.Formatter().parse(self.template)]
        spoken = [literal for literal in literals if _speakable(literal)]
        return [(f"{self.id}.{n}", literal) for n, literal in enumerate(spoken, 1)]

    def texts(self) -> list[str]:
        """Every example filled in (the text alone when it has no fields): what a speech check reads."""
        if not self.fields:
            return [self.template]
        return [self.fill(example) for example in self.examples]


# --------------------------------------------------------------------------------------------- the schedule
@dataclass(frozen=True)
class VolumeSchedule:
    """Day and night volume by the node's local time, from the ``[audio]`` section itself (volume, night_volume,
    night_start, night_end); the night may run over midnight (22:00-07:00)."""

    audio: AudioSection
    timezone: str

    def is_night(self, local: dtime) -> bool:
        return within_hours(local, self.audio.night_start, self.audio.night_end)

    def volume_at(self, wall_s: float) -> int:
        local = datetime.fromtimestamp(wall_s, ZoneInfo(self.timezone)).time()
        return self.audio.night_volume if self.is_night(local) else self.audio.volume


# ------------------------------------------------------------------------------------------------ the voice
def pack_gaps(pack: PromptPack, prompts: Iterable[Prompt]) -> dict[str, str]:
    """The prompts ``pack`` cannot say (with every example, for prompts with variable parts), and why: these are
    synthesised."""
    gaps = {}
    for prompt in prompts:
        for fields in prompt.examples or ({},):
            _, why = pack_clips(pack, prompt, fields)
            if why:
                gaps[prompt.id] = why
                break
    return gaps


def pack_clips(pack: PromptPack, prompt: Prompt, fields: Mapping[str, str]) -> tuple[list[Path | str], str | None]:
    """What says ``prompt`` with ``fields``, in order: the whole recording, or its fixed pieces with the words of
    each field between them, where a field without word clips (a car model heard for the first time) is its text,
    for espeak-ng to say; ([], why not) when a fixed piece is missing or says another text."""
    clips: list[Path | str] = []
    pieces = iter(prompt.pieces())
    for literal, name, _, _ in string.Formatter().parse(prompt.template):
        if _speakable(literal) or not prompt.fields:
            clip_id, text = next(pieces)
            clip = pack.clip(clip_id)
            if clip is None:
                return [], f"the pack has no {clip_id}"
            if _speakable(clip.text) != _speakable(text):
                return [], f"the pack's {clip_id} says {clip.text!r}, the node's text is {text!r}"
            clips.append(clip.path)
        elif literal.strip() and clips and isinstance(clips[-1], str):
            clips[-1] += literal.strip()  # punctuation after a synthesised field: its pause
        if name:
            value = str(fields.get(name, ""))
            words, missing = pack.word_clips(value)
            if missing is None:
                clips += words
            elif clips and isinstance(clips[-1], str):  # next to another synthesised field: one phrase
                clips[-1] += value if clips[-1][-1:] in _PAUSES else f" {value}"
            else:
                clips.append(value)
    return clips, None


def synthesised_parts(pack: PromptPack, prompt: Prompt) -> list[str]:
    """The parts of ``prompt``'s examples the pack has no words for (espeak-ng says them between its clips)."""
    found: list[str] = []
    for fields in prompt.examples:
        parts, _ = pack_clips(pack, prompt, fields)
        found += [part for part in parts if isinstance(part, str) and part not in found]
    return found


class Voice:
    """Says prompts by id through a Speaker: recordings from the pack where it has them, else synthesis."""

    def __init__(
        self,
        speaker: Speaker,
        pack: PromptPack | None = None,
        *,
        schedule: VolumeSchedule | None = None,
        wall: Callable[[], float] | None = None,
        pack_problem: str | None = None,
        prompts: Iterable[Prompt] = (),
    ) -> None:
        self.speaker = speaker
        self.pack = pack
        self.schedule = schedule
        self._wall = wall
        self.pack_problem = pack_problem
        # prompt id -> why the pack cannot say it; known at start for the node's own prompts, so a missing
        # recording shows in the log and the heartbeat before the day it is needed
        self.synthesised: dict[str, str] = pack_gaps(pack, prompts) if pack is not None else {}
        for prompt_id, why in self.synthesised.items():
            log.warning("prompt pack %s: %s will be synthesised: %s", pack.name if pack else "", prompt_id, why)

    def volume(self) -> int | None:
        """The volume for a prompt said now (None: the speaker's own, when there is no schedule or clock)."""
        if self.schedule is None or self._wall is None:
            return None
        return self.schedule.volume_at(self._wall())

    def say(self, prompt: Prompt, fields: Mapping[str, str] | None = None, wav: Path | None = None) -> str:
        """Say ``prompt`` with its variable ``fields``; ``wav`` (a recording configured for this one prompt) wins
        over the pack. Returns the text (spoken, or what the recording says). Never raises for audio."""
        text = prompt.fill(fields)
        if wav is None and self.pack is not None:
            clips, why = self.recording(prompt, fields or {})
            if clips:
                self.speaker.say(text=text, wav=clips, volume=self.volume())
                return text
            if self.synthesised.get(prompt.id) != why:
                self.synthesised[prompt.id] = why or ""
                log.warning("prompt pack %s: %s is synthesised: %s", self.pack.name, prompt.id, why)
        self.speaker.say(text=text, wav=wav, volume=self.volume())
        return text

    def recording(self, prompt: Prompt, fields: Mapping[str, str]) -> tuple[list[Path | str], str | None]:
        """The pack's clips for ``prompt`` in order, or ([], why not)."""
        if self.pack is None:
            return [], "no prompt pack"
        return pack_clips(self.pack, prompt, fields)

    def health(self) -> dict[str, Any]:
        pack: dict[str, object] | None = None
        if self.pack is not None or self.pack_problem:
            pack = {
                "name": self.pack.name if self.pack else None,
                "clips": len(self.pack.clips) if self.pack else 0,
                "problem": self.pack_problem,
                "synthesised": dict(sorted(self.synthesised.items())),
            }
        return {**self.speaker.health(), "pack": pack}


def open_pack(audio: AudioSection, language: str = "zh") -> tuple[PromptPack | None, str | None]:
    """The configured prompt pack, or (None, why) when there is none or it cannot be used (never raises: a lift
    speaks with espeak-ng rather than not at all)."""
    if audio.pack is None:
        return None, None
    try:
        pack = load_pack(audio.pack)
    except PackError as exc:
        problem = "; ".join(exc.problems)
        log.error("audio.pack not used, speaking with espeak-ng: %s", problem)
        return None, problem
    if pack.language != language:
        problem = f"{audio.pack}: pack.language = {pack.language!r} but this node speaks {language!r}"
        log.error("audio.pack not used: %s", problem)
        return None, problem
    for line in pack.problems:
        log.warning("prompt pack: %s", line)
    return pack, None


def audio_spec(audio: AudioSection) -> AudioSpec:
    return AudioSpec(backend=audio.backend, voice=audio.voice, device=audio.device, volume=audio.volume)


def make_voice(
    audio: AudioSection,
    timezone: str,
    wall: Callable[[], float],
    speaker: Speaker | None = None,
    language: str = "zh",
    prompts: Iterable[Prompt] = (),
) -> Voice:
    """The node's voice from ``[audio]``: its speaker (made here unless given), pack and volume schedule; the
    pack is checked against the node's ``prompts`` at once."""
    pack, problem = open_pack(audio, language)
    return Voice(
        speaker if speaker is not None else make_speaker(audio_spec(audio)),
        pack,
        schedule=VolumeSchedule(audio, timezone),
        wall=wall,
        pack_problem=problem,
        prompts=prompts,
    )
