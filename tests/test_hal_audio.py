"""hal.audio: prompts are queued and never raise; espeak-ng renders real WAVs; no sound card is logged once."""

from __future__ import annotations

import array
import logging
import math
import os
import shutil
import stat
import subprocess
import threading
import wave
from pathlib import Path

import pytest

from hal.audio import QUEUE_MAX, AudioError, AudioSpec, EspeakSpeaker, NullSpeaker, make_speaker
from hal.espeak import espeak_amplitude, render_to_wav
from tests.speech_helpers import sox_stat


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hal.audio" and r.levelno >= logging.WARNING]


@pytest.fixture
def fake_aplay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An ``aplay`` on PATH that logs its arguments and plays until the test creates the release file.

    The machine has no sound card, so a real aplay cannot show a prompt being played; espeak-ng stays real.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "aplay-calls"
    release = tmp_path / "release"
    script = bin_dir / "aplay"
    sleep = shutil.which("sleep")
    played = tmp_path / "played"
    played.mkdir()
    # each file played is copied aside (numbered), so a test can measure what the card would have got with sox
    script.write_text(
        f'#!/bin/sh\necho "$@" >> "{calls}"\nfor a; do last="$a"; done\n'
        f'{shutil.which("cp")} "$last" "{played}/$({shutil.which("ls")} "{played}" | {shutil.which("wc")} -l).wav"\n'
        f'while [ ! -e "{release}" ]; do {sleep} 0.01; done\nexit 0\n',
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng must be installed (apt-get install espeak-ng)"
    os.symlink(espeak, bin_dir / "espeak-ng")
    if sox := shutil.which("sox"):  # measures what was played (speech_helpers.sox_stat)
        os.symlink(sox, bin_dir / "sox")
    monkeypatch.setenv("PATH", str(bin_dir))

    class Player:
        def release(self) -> None:
            release.touch()

        def calls(self) -> list[str]:
            return calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []

        def played(self) -> list[Path]:
            """Copies of the files aplay was given, in order."""
            return sorted(played.glob("*.wav"), key=lambda p: int(p.stem))

    return Player()


def test_render_to_wav_writes_real_audio(tmp_path: Path) -> None:
    cases = (
        ("cmn-latn-pinyin", "请保持冷静，救援人员正在赶来。"),
        ("en", "Please stay calm, help is coming."),
        ("cmn-latn-pinyin", "-5 度"),
    )
    for voice, text in cases:
        path = render_to_wav(text, tmp_path / f"{voice}-{len(text)}.wav", voice=voice)
        data = path.read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
        assert len(data) > 8000, f"{voice}: {len(data)} bytes is not a spoken sentence"


def test_render_to_wav_with_unknown_voice_raises(tmp_path: Path) -> None:
    # espeak-ng itself exits 0 and speaks English for an unknown voice: a typo would go unnoticed
    with pytest.raises(AudioError, match="'cmm' is not an espeak-ng voice"):
        render_to_wav("请保持冷静", tmp_path / "x.wav", voice="cmm")
    assert not (tmp_path / "x.wav").exists()


def test_speaker_with_unknown_voice_still_speaks_and_reports(fake_aplay, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="hal.audio")
    fake_aplay.release()
    speaker = make_speaker(AudioSpec(voice="cmm"))
    try:
        speaker.say("请保持冷静")
        assert speaker.wait_idle(10)
        health = speaker.health()
    finally:
        speaker.close()
    assert health["played"] == 1  # default voice beats silence in a stuck lift
    assert "cmm" in str(health["error"])
    assert len(warnings_from(caplog)) == 1


def test_no_sound_card_logs_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hal.audio")
    # a device that exists on no machine: aplay fails here and on a developer's laptop alike
    speaker = make_speaker(AudioSpec(device="changbai_no_such_card"))
    try:
        for _ in range(3):
            speaker.say("请保持冷静")
        speaker.say(wav=Path("/nonexistent/prompt.wav"), text="fallback text")
        assert speaker.wait_idle(30)
        health = speaker.health()
    finally:
        speaker.close()
    assert "aplay" in str(health["last_error"])
    assert health["played"] == 0 and health["failed"] == 1 and health["dropped"] == 3  # muted after one failure
    audio_warnings = [w for w in warnings_from(caplog) if "audio unavailable" in w]
    assert len(audio_warnings) == 1, warnings_from(caplog)


def test_missing_players_log_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither espeak-ng nor aplay
    caplog.set_level(logging.DEBUG, logger="hal.audio")
    speaker = make_speaker(AudioSpec())
    try:
        speaker.say("one")
        speaker.say("two")
        assert speaker.wait_idle(10)
        health = speaker.health()
    finally:
        speaker.close()
    assert "espeak-ng not found" in str(health["last_error"])
    found = warnings_from(caplog)
    assert len(found) == 1 and "apt-get install espeak-ng alsa-utils" in found[0], found


def test_say_returns_while_the_prompt_plays(fake_aplay) -> None:
    speaker = make_speaker(AudioSpec(device="plughw:1,0", voice="en"))
    try:
        speaker.say("Help is coming.")
        assert not speaker.wait_idle(0.2)  # the player is still "playing": say() did not wait for it
        fake_aplay.release()
        assert speaker.wait_idle(10)
        assert speaker.health()["played"] == 1
    finally:
        speaker.close()
    (call,) = fake_aplay.calls()
    assert call.startswith("-q -D plughw:1,0 ") and call.endswith("prompt.wav")


def test_wav_prompt_goes_to_aplay(fake_aplay, tmp_path: Path) -> None:
    wav = render_to_wav("电梯", tmp_path / "lift.wav")
    fake_aplay.release()
    speaker = make_speaker(AudioSpec())
    try:
        speaker.say("spoken only when the WAV is missing", wav=wav, volume=100)
        speaker.say("spoken only when the WAV is missing", wav=wav)  # 80 %: a scaled copy is played
        assert speaker.wait_idle(10)
    finally:
        speaker.close()
    direct, scaled = fake_aplay.calls()
    assert direct == f"-q {wav}" and scaled.endswith("/prompt.wav") and str(wav) not in scaled


def test_a_full_queue_drops_prompts_and_keeps_count(fake_aplay) -> None:
    speaker = make_speaker(AudioSpec())
    total = QUEUE_MAX + 5
    try:
        callers = [threading.Thread(target=speaker.say, args=(f"prompt {i}",)) for i in range(total)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(5)
        assert not any(t.is_alive() for t in callers)
        fake_aplay.release()
        assert speaker.wait_idle(30)
        health = speaker.health()
    finally:
        speaker.close()
    assert health["dropped"] >= total - QUEUE_MAX - 1
    assert health["played"] + health["dropped"] == total


def test_close_is_prompt_and_later_prompts_are_ignored(fake_aplay) -> None:
    speaker = make_speaker(AudioSpec())
    assert isinstance(speaker, EspeakSpeaker)
    speaker.say("first")
    speaker.say("second")
    fake_aplay.release()
    speaker.close()
    speaker.close()
    speaker.say("after close")  # ignored, never raises
    assert not speaker._thread.is_alive()


def test_close_stops_a_prompt_that_is_playing(fake_aplay, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="hal.audio")
    speaker = make_speaker(AudioSpec())
    assert isinstance(speaker, EspeakSpeaker)
    speaker.say("a long reassurance")
    for _ in range(500):  # until the worker has rendered the text and started the player
        if fake_aplay.calls():
            break
        threading.Event().wait(0.01)
    assert fake_aplay.calls(), "the player never started"
    speaker.close(timeout=10)  # the player would block for ever: close() must stop it
    assert not speaker._thread.is_alive()
    assert speaker.health()["failed"] == 0 and not warnings_from(caplog)


def test_backend_none_says_nothing() -> None:
    speaker = make_speaker(AudioSpec(backend="none"))
    assert isinstance(speaker, NullSpeaker)
    speaker.say("已收到您的求助")
    assert speaker.wait_idle(0) and speaker.health()["last_error"] is None


def test_volume_maps_onto_espeak_amplitude() -> None:
    assert [espeak_amplitude(v) for v in (0, 50, 80, 100)] == [0, 100, 160, 200]


def test_audio_coming_back_is_noticed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    # an aplay that fails while the "card" file is missing: a USB sound card unplugged, then plugged back
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    card = tmp_path / "card"
    script = bin_dir / "aplay"
    script.write_text(
        f'#!/bin/sh\n[ -e "{card}" ] && exit 0\necho "aplay: main:831: audio open error: No such device" >&2\nexit 1\n',
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    os.symlink(shutil.which("espeak-ng") or "/usr/bin/espeak-ng", bin_dir / "espeak-ng")
    monkeypatch.setenv("PATH", str(bin_dir))
    caplog.set_level(logging.INFO, logger="hal.audio")
    speaker = EspeakSpeaker(AudioSpec(), retry_after_s=0.0)
    try:
        speaker.say("one")
        speaker.say("two")
        assert speaker.wait_idle(10)
        assert speaker.health()["failed"] == 2 and "No such device" in str(speaker.health()["last_error"])
        card.touch()
        speaker.say("three")
        assert speaker.wait_idle(10)
        health = speaker.health()
    finally:
        speaker.close()
    assert health["played"] == 1 and health["last_error"] is None
    messages = [r.getMessage() for r in caplog.records if r.name == "hal.audio"]
    assert sum("audio unavailable" in m for m in messages) == 1
    assert "audio works again" in messages


def test_wav_backend_speaks_what_has_no_recording_with_espeak(fake_aplay, tmp_path: Path, caplog) -> None:
    """backend wav: a prompt without a recording is spoken by espeak-ng (sox hears speech), warned once per text."""
    caplog.set_level(logging.WARNING, logger="hal.audio")
    fake_aplay.release()
    speaker = make_speaker(AudioSpec(backend="wav"))
    missing = tmp_path / "reassurance.wav"
    try:
        for _ in range(3):
            speaker.say("请保持冷静", wav=missing)
        assert speaker.wait_idle(20)
        health = speaker.health()
    finally:
        speaker.close()
    assert (health["played"], health["skipped"], health["unsaid"], health["last_error"]) == (3, 0, 0, None)
    assert health["voice"] == "cmn-latn-pinyin"
    stat = sox_stat(fake_aplay.played()[0])  # what the card got: espeak-ng's speech, not silence
    assert stat["Length (seconds)"] > 0.8 and stat["RMS     amplitude"] > 0.02, stat
    found = warnings_from(caplog)
    assert len([w for w in found if "reassurance.wav is missing" in w]) == 1, found
    assert len([w for w in found if "no recording of '请保持冷静'; espeak-ng says it" in w]) == 1, found


def test_wav_backend_without_espeak_reports_each_unsaid_prompt(fake_aplay, tmp_path: Path) -> None:
    """backend wav and no espeak-ng: a prompt without a recording is counted unsaid with the reason as the
    speaker's error, and a recorded prompt after it still plays (the audio is not muted)."""
    (Path(os.environ["PATH"]) / "espeak-ng").unlink()
    recorded = tmp_path / "lift.wav"
    write_tone(recorded)
    fake_aplay.release()
    speaker = make_speaker(AudioSpec(backend="wav"))
    try:
        speaker.say("请保持冷静", wav=tmp_path / "missing.wav")
        assert speaker.wait_idle(10)
        unsaid = speaker.health()
        speaker.say("请保持冷静", wav=recorded, volume=100)
        assert speaker.wait_idle(10)
        after = speaker.health()
    finally:
        speaker.close()
    assert (unsaid["played"], unsaid["unsaid"], unsaid["muted"]) == (0, 1, False)
    assert "espeak-ng is not installed" in unsaid["last_error"] and "请保持冷静" in unsaid["last_error"]
    assert (after["played"], after["last_error"]) == (1, None)
    assert fake_aplay.calls() == [f"-q {recorded}"]


def write_tone(path: Path, seconds: float = 0.5, rate: int = 22050) -> None:
    """A 440 Hz tone as a 16-bit mono WAV: a recording that is not espeak-ng's."""
    tone = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(array.array("h", tone).tobytes())


def test_a_field_without_word_clips_is_said_by_espeak_between_the_recordings(fake_aplay, tmp_path: Path) -> None:
    """kiosk.assigned from a pack recorded at 44.1 kHz stereo, quieter than espeak-ng, with no words for the car:
    the played file (measured by sox) is in the recordings' format, as long as the clips plus espeak-ng's part,
    and that part is about as loud as the clips around it."""
    from common.speech.pack import MANIFEST, load_pack
    from common.speech.voice import Voice
    from kiosk.texts import load_texts

    texts = load_texts(None, "长白新村北门", "021-6543 2100")
    prompt = texts.prompt("assigned", "zh")
    fields = texts.voice_fields(
        {"plate": "沪A·D12345", "colour_zh": "天蓝色", "model_zh": "荣威Ei5", "eta_min": 2}, "zh"
    )
    pack = tmp_path / "pack"
    pack.mkdir()
    clips = {**dict(prompt.pieces()), **{f"word.{w}": w for w in ("沪", "A", "D", "幺", "二", "三", "四", "五", "两")}}
    for clip_id, text in clips.items():  # a volunteer's recording: another voice, another format, quieter
        render_to_wav(text, tmp_path / "raw.wav", voice="cmn-latn-pinyin+f3", volume=100)
        sox = ["sox", str(tmp_path / "raw.wav"), "-r", "44100", "-c", "2", str(pack / f"{clip_id}.wav"), "vol", "0.3"]
        subprocess.run(sox, check=True, env={"PATH": os.environ["PATH"]})
    manifest = "".join(f'"{clip_id}" = "{text}"\n' for clip_id, text in clips.items())
    (pack / MANIFEST).write_text(f'[pack]\nname = "volunteers"\n[clips]\n{manifest}', encoding="utf-8")
    fake_aplay.release()
    speaker = make_speaker(AudioSpec())
    voice = Voice(speaker, load_pack(pack))
    try:
        voice.say(prompt, fields)
        assert speaker.wait_idle(30)
        health = speaker.health()
    finally:
        speaker.close()
    assert (health["played"], health["last_error"]) == (1, None)
    (played,) = fake_aplay.played()
    info = subprocess.run(["sox", "--i", str(played)], capture_output=True, text=True, check=True).stdout
    assert "Sample Rate    : 44100" in info and "Channels       : 2" in info, info
    parts, _ = voice.recording(prompt, fields)
    recorded = [p for p in parts if isinstance(p, Path)]
    assert [p if isinstance(p, str) else p.stem for p in parts] == [
        "kiosk.assigned.1", *[f"word.{c}" for c in "沪AD幺二三四五"], "天蓝色 荣威 E I 五",
        "kiosk.assigned.2", "word.两", "kiosk.assigned.3",
    ]  # fmt: skip
    before = sum(sox_stat(p)["Length (seconds)"] for p in recorded[:9])
    clips_s = sum(sox_stat(p)["Length (seconds)"] for p in recorded)
    total = sox_stat(played)["Length (seconds)"]
    synthesised_s = total - clips_s
    assert synthesised_s > 1.0, (total, clips_s)  # espeak-ng said the car
    # the middle of espeak-ng's part, against the recordings' mean level (the volume schedule scales all by 0.8)
    trim = ["trim", f"{before + synthesised_s * 0.25:.3f}", f"{synthesised_s * 0.5:.3f}"]
    done = subprocess.run(["sox", str(played), "-n", *trim, "stat"], capture_output=True, text=True, check=True)
    part_rms = float(next(x for x in done.stderr.splitlines() if x.startswith("RMS     amplitude")).split(":")[1])
    clip_rms = sum(sox_stat(p)["RMS     amplitude"] for p in recorded) / len(recorded)
    assert 0.5 * clip_rms * 0.8 < part_rms < 2.0 * clip_rms * 0.8, (part_rms, clip_rms)
