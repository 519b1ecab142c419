"""The voice part of a node's periodic self-test, run without a sound in the car: the prompt that matters most (a
lift's entrapment prompt) is made as it would be said (the pack's recordings read back, or espeak-ng's rendering
measured and its phonemes checked for Mandarin), and a short silence goes through the player and the device.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.speech.pack import MIN_RMS
from common.speech.voice import Prompt, Voice
from hal.audio import AudioError, probe_audio, scratch_dir
from hal.espeak import check_speech, render_to_wav
from hal.wavfile import WavError, read_info

log = logging.getLogger(__name__)

MIN_SPEECH_S = 0.5  # a rendering shorter than this did not say a sentence


@dataclass(frozen=True)
class VoiceCheck:
    """One check of the voice: ``ok`` (None: nothing to check, the node has no speaker) and what was found."""

    ok: bool | None
    detail: str

    def report(self) -> dict[str, object]:
        """For the self-test's checks: ``voice`` False when it failed, and the detail."""
        return {"voice": self.ok, "voice_detail": self.detail}


def _recorded(clips: list[Path | str]) -> tuple[str | None, str]:
    """(problem, description) of the pack's clips as they are on disk now (text parts are espeak-ng's)."""
    seconds = 0.0
    for path in clips:
        if not isinstance(path, Path):
            continue
        try:
            info = read_info(path)
        except WavError as exc:
            return f"recording unreadable: {exc}", ""
        if math.isnan(info.rms) or info.rms < MIN_RMS:
            return f"recording {path.name} is silent (RMS {info.rms:.4f})", ""
        seconds += info.duration_s
    return None, f"recorded ({len(clips)} clips, {seconds:.1f} s)"


def _synthesised(text: str, synth_voice: str) -> tuple[str | None, str]:
    """(problem, description) of espeak-ng saying ``text``: rendered and measured, phonemes read."""
    try:
        with tempfile.TemporaryDirectory(prefix="changbai-check-", dir=scratch_dir()) as tmp:
            info = read_info(render_to_wav(text, Path(tmp) / "check.wav", synth_voice, volume=100))
        speech = check_speech(text, synth_voice)
    except (AudioError, WavError) as exc:
        return f"cannot be synthesised: {exc}", ""
    if info.duration_s < MIN_SPEECH_S or math.isnan(info.rms) or info.rms < MIN_RMS:
        return f"espeak-ng rendered {info.duration_s:.2f} s at RMS {info.rms:.4f}: nothing audible", ""
    if not speech.ok:
        return f"espeak-ng {synth_voice} does not read it in Mandarin: {speech.problems[0]}", ""
    return None, f"espeak-ng {synth_voice} ({info.duration_s:.1f} s, {speech.tones} toned syllables)"


def check_voice(
    voice: Voice,
    prompt: Prompt,
    synth_voice: str,
    *,
    fields: Mapping[str, str] | None = None,
    wav: Path | None = None,
    probe_timeout_s: float = 130.0,
) -> VoiceCheck:
    """Can ``prompt`` be said now? As the voice would say it (``wav``, a recording configured for this prompt,
    first; then the pack; else espeak-ng in the speaker's voice, or ``synth_voice`` when the speaker has none),
    and the audio path probed with silence."""
    health = voice.speaker.health()
    if health.get("backend") == "none":
        return VoiceCheck(None, "audio.backend = none")
    synth_voice = str(health.get("voice") or synth_voice)  # the speaker's (cmn is replaced by cmn-latn-pinyin)
    clips, why = voice.recording(prompt, fields or {})
    if wav is not None and wav.is_file():
        clips, why = [wav], None
    if clips:
        problem, how = _recorded(clips)
    elif health.get("synthesis") is False:  # backend wav without espeak-ng
        problem, how = f"not recorded ({why}) and espeak-ng is not installed: it would not be said", ""
    else:
        problem, how = _synthesised(prompt.fill(fields), synth_voice)
    if problem:
        return VoiceCheck(False, f"{prompt.id}: {problem}")
    probed, error = probe_audio(voice.speaker, probe_timeout_s)
    if error:
        return VoiceCheck(False, f"{prompt.id} {how}; audio path: {error}")
    path = "silence played through the device" if probed else "audio path not probed (no player)"
    return VoiceCheck(True, f"{prompt.id} {how}; {path}")
