"""How long a resident waits for a prompt: say() to played through the real espeak-ng and aplay (ALSA's null
device consumes at once, so the figure is the delay before sound starts), synthesised and from a recorded pack at
the night volume; the cost of scaling a recording (beside a per-sample clamp, the peer); the speech check's cost.
"""

from __future__ import annotations

import array
import statistics
import tempfile
import time
import wave
from pathlib import Path

from bench.figures import Figure
from common.config import AudioSection
from common.speech.pack import MANIFEST, load_pack
from common.speech.voice import Prompt, Voice, VolumeSchedule
from hal.audio import AudioSpec, make_speaker
from hal.espeak import MANDARIN_VOICE, check_speech, render_to_wav, respell
from hal.wavfile import join_and_scale, read_info
from provisioning.prompts import role_prompts


def _said_to_played_ms(voice: Voice, prompt: Prompt, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        voice.say(prompt)
        assert voice.speaker.wait_idle(60)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _clamped(path: Path, gain: float) -> float:
    """The peer: the same scaling with a clamp and round per sample; seconds."""
    with wave.open(str(path), "rb") as w:
        data = w.readframes(w.getnframes())
    samples = array.array("h")
    samples.frombytes(data)
    start = time.perf_counter()
    array.array("h", (max(-32768, min(32767, round(s * gain))) for s in samples))
    return time.perf_counter() - start


def run(quick: bool) -> list[Figure]:
    runs = 2 if quick else 7
    entrapment = role_prompts("elevator")[0]
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-speech-") as tmp:
        folder = Path(tmp) / "pack"
        folder.mkdir()
        clip = render_to_wav(respell(entrapment.template, MANDARIN_VOICE), folder / f"{entrapment.id}.wav", volume=100)
        (folder / MANIFEST).write_text(f'[clips]\n"{entrapment.id}" = "{entrapment.template}"\n', encoding="utf-8")
        length_s = read_info(clip).duration_s
        speaker = make_speaker(AudioSpec(backend="auto", device="null"))
        try:
            synthesised = _said_to_played_ms(Voice(speaker), entrapment, runs)
            # below 100 %: the recording is scaled before it plays
            schedule = VolumeSchedule(AudioSection(volume=50, night_volume=50), "Asia/Shanghai")
            night = Voice(speaker, load_pack(folder), schedule=schedule, wall=time.time)
            recorded = _said_to_played_ms(night, entrapment, runs)
        finally:
            speaker.close()
        start = time.perf_counter()
        for _ in range(runs):
            join_and_scale([clip], Path(tmp) / "s.wav", 0.5)
        scale_s = (time.perf_counter() - start) / runs
        peer_s = statistics.median(_clamped(clip, 0.5) for _ in range(max(1, runs // 2)))
        kiosk_texts = [t for p in role_prompts("kiosk") for t in p.texts()]
        start = time.perf_counter()
        for text in kiosk_texts:
            check_speech(text, MANDARIN_VOICE)
        check_ms = (time.perf_counter() - start) * 1000 / len(kiosk_texts)
    figures += [
        Figure(
            "speech: lift.entrapment say() -> played, espeak-ng",
            statistics.median(synthesised),
            "ms",
            f"median of {runs}; the prompt lasts {length_s:.1f} s",
        ),
        Figure("speech: lift.entrapment say() -> played, pack at 50%", statistics.median(recorded), "ms", "median"),
        Figure("speech: scale a recording to 50%", scale_s * 1000, "ms", f"{length_s:.1f} s clip, mean of {runs}"),
        Figure("speech: per-sample clamp (peer), same clip", peer_s * 1000, "ms", f"{peer_s / scale_s:.1f}x slower"),
        Figure("speech: speech check per kiosk text (2 espeak-ng runs)", check_ms, "ms", f"{len(kiosk_texts)} texts"),
    ]
    return figures
