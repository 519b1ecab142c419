"""hal.audio: prompts are queued and never raise; espeak-ng renders real WAVs; no sound card is logged once."""

from __future__ import annotations

import array
import logging
import math
import os
import shutil
import stat
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
