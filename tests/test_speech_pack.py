"""Prompt packs made of real WAV files: recordings replace synthesis by prompt id, prompts with a plate are joined
from pieces and words, a missing or stale clip falls back to espeak-ng and says so, broken clips are refused."""

from __future__ import annotations

import logging
import subprocess
import wave
from pathlib import Path

import pytest

from common.config import AudioSection
from common.speech.pack import MANIFEST, PackError, load_pack
from common.speech.voice import Voice, open_pack, pack_gaps
from hal.audio import AudioSpec, make_speaker
from hal.espeak import MANDARIN_VOICE, check_speech, render_to_wav, respell
from hal.wavfile import join_and_scale, read_info
from provisioning.prompts import role_prompts
from tests.speech_helpers import RecordingSpeaker, sox_stat

# a second voice stands in for a volunteer's recording: real WAV files, told apart from the node's own synthesis
RECORDER = f"{MANDARIN_VOICE}+f3"


def record(folder: Path, clips: dict[str, str], language: str = "zh") -> Path:
    """A pack folder: one WAV per clip id (spoken by RECORDER) and its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["[pack]", 'name = "test volunteers"', f'language = "{language}"', "[clips]"]
    for clip_id, text in clips.items():
        render_to_wav(respell(text, MANDARIN_VOICE), folder / f"{clip_id}.wav", voice=RECORDER, volume=100)
        lines.append(f'"{clip_id}" = "{text}"')
    (folder / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def lift_clips() -> dict[str, str]:
    return {p.id: p.template for p in role_prompts("elevator")}


def assigned_prompt():
    from kiosk.texts import load_texts

    texts = load_texts(None, "长白新村北门", "021-6543 2100")
    return texts.prompt("assigned", "zh"), texts


def test_a_recorded_prompt_replaces_synthesis_and_a_missing_one_falls_back(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="common.speech.voice")
    clips = lift_clips()
    del clips["lift.alarm_ack"]
    pack = load_pack(record(tmp_path / "pack", clips))
    assert pack.problems == () and set(pack.clips) == {"lift.entrapment", "lift.reassurance", "lift.taken_in"}
    speaker = RecordingSpeaker()
    voice = Voice(speaker, pack)
    entrapment, reassurance, alarm_ack, _ = role_prompts("elevator")
    voice.say(entrapment)
    voice.say(alarm_ack)
    voice.say(alarm_ack)
    assert speaker.said[0] == (entrapment.template, [tmp_path / "pack" / "lift.entrapment.wav"])
    assert speaker.said[1] == (alarm_ack.template, None)  # synthesised
    warned = [r.getMessage() for r in caplog.records if "synthesised" in r.getMessage()]
    assert warned == ["prompt pack test volunteers: lift.alarm_ack is synthesised: the pack has no lift.alarm_ack"]
    assert voice.health()["pack"]["synthesised"] == {"lift.alarm_ack": "the pack has no lift.alarm_ack"}
    assert pack_gaps(pack, role_prompts("elevator")) == {"lift.alarm_ack": "the pack has no lift.alarm_ack"}
    # a node tells its prompts up front: the gap is in the log and the heartbeat before anyone needs the prompt
    caplog.clear()
    started = Voice(RecordingSpeaker(), pack, prompts=role_prompts("elevator"))
    assert started.health()["pack"]["synthesised"] == {"lift.alarm_ack": "the pack has no lift.alarm_ack"}
    assert [r.getMessage() for r in caplog.records] == [
        "prompt pack test volunteers: lift.alarm_ack will be synthesised: the pack has no lift.alarm_ack"
    ]


def test_a_recording_of_another_text_is_not_played(tmp_path: Path) -> None:
    clips = lift_clips()
    clips["lift.entrapment"] = "请问电梯还在运行吗？"  # the config's text is longer: the recording is stale
    voice = Voice(RecordingSpeaker(), load_pack(record(tmp_path / "pack", clips)))
    entrapment = role_prompts("elevator")[0]
    _, why = voice.recording(entrapment, {})
    assert why is not None and "the pack's lift.entrapment says '请问电梯还在运行吗？'" in why


def test_a_prompt_with_a_plate_is_joined_from_pieces_and_words(tmp_path: Path) -> None:
    prompt, texts = assigned_prompt()
    fields = texts.voice_fields(
        {"plate": "沪A·D12345", "colour_zh": "白色", "model_zh": "大众朗逸", "eta_min": 2}, "zh"
    )
    pieces = dict(prompt.pieces())
    assert pieces == {
        "kiosk.assigned.1": "司机已接单。车牌，",
        "kiosk.assigned.2": "，大约",
        "kiosk.assigned.3": "分钟到达。",
    }
    words = {f"word.{w}": w for w in ("沪", "A", "D", "幺", "二", "三", "四", "五", "两", "白色", "大众朗逸")}
    folder = record(tmp_path / "pack", {**pieces, **words})
    voice = Voice(RecordingSpeaker(), load_pack(folder))
    clips, why = voice.recording(prompt, fields)
    assert why is None
    order = ["kiosk.assigned.1", *[f"word.{c}" for c in "沪AD幺二三四五"], "word.白色", "word.大众朗逸"]
    order += ["kiosk.assigned.2", "word.两", "kiosk.assigned.3"]
    assert clips == [folder / f"{name}.wav" for name in order]
    paths = [c for c in clips if isinstance(c, Path)]
    joined = join_and_scale(paths, tmp_path / "joined.wav", gain=0.5)
    parts = sum(read_info(c).duration_s for c in paths)
    stat = sox_stat(joined)
    assert stat["Length (seconds)"] == pytest.approx(parts, abs=0.01)
    assert stat["RMS     amplitude"] == pytest.approx(
        0.5 * sox_stat(join_and_scale(paths, tmp_path / "full.wav"))["RMS     amplitude"], rel=0.02
    )  # noqa: E501
    # a plate with a letter nobody recorded, a car the pack has no words for: the pack says the fixed pieces and
    # the fields it has words for, espeak-ng the rest (one phrase for neighbouring fields)
    other = texts.voice_fields(
        {"plate": "沪A·K12345", "colour_zh": "天蓝色", "model_zh": "荣威Ei5", "eta_min": 2}, "zh"
    )
    mixed, why = voice.recording(prompt, other)
    assert why is None
    assert mixed == [folder / "kiosk.assigned.1.wav", "沪 A，K 幺 二 三 四 五。天蓝色 荣威 E I 五",
                     folder / "kiosk.assigned.2.wav", folder / "word.两.wav", folder / "kiosk.assigned.3.wav"]  # fmt: skip
    assert check_speech(str(mixed[1])).ok  # the part espeak-ng says, read by the real espeak-ng in Mandarin
    # a fixed piece missing: the whole prompt is synthesised
    (folder / "kiosk.assigned.2.wav").unlink()
    assert Voice(RecordingSpeaker(), load_pack(folder)).recording(prompt, fields) == (
        [],
        "the pack has no kiosk.assigned.2",
    )


def test_joined_clips_play_through_the_real_aplay(tmp_path: Path) -> None:
    pack = load_pack(record(tmp_path / "pack", lift_clips()))
    speaker = make_speaker(AudioSpec(backend="auto", device="null"))
    voice = Voice(speaker, pack)
    try:
        for prompt in role_prompts("elevator"):
            voice.say(prompt)
        assert speaker.wait_idle(60)
        health = voice.health()
    finally:
        speaker.close()
    assert (health["played"], health["failed"], health["last_error"]) == (4, 0, None)
    assert health["pack"] == {"name": "test volunteers", "clips": 4, "problem": None, "synthesised": {}}


def write_wav(path: Path, samples: bytes, width: int = 2, rate: int = 22050) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples)


def test_broken_clips_are_left_out_and_named(tmp_path: Path) -> None:
    folder = record(tmp_path / "pack", lift_clips())
    write_wav(folder / "lift.reassurance.wav", b"\0\0" * 22050)  # a second of silence
    subprocess.run(["sox", str(folder / "lift.entrapment.wav"), "-b", "8", str(folder / "e8.wav")], check=True)
    (folder / "e8.wav").replace(folder / "lift.entrapment.wav")  # 8-bit
    (folder / "lift.alarm_ack.wav").write_bytes(b"ID3 an mp3, not a wav")
    write_wav(folder / "lift.extra.wav", b"\1\1" * 100)
    pack = load_pack(folder)
    assert list(pack.clips) == ["lift.taken_in"]  # the one clip left whole
    problems = "\n".join(pack.problems)
    assert "lift.reassurance: lift.reassurance.wav is silent" in problems
    assert "lift.entrapment: lift.entrapment.wav is 8-bit; record or convert to 16-bit PCM" in problems
    assert "lift.alarm_ack:" in problems and "not a PCM WAV file" in problems
    assert "lift.extra.wav is not listed in pack.toml (not used)" in problems


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        (None, "pack.toml: no such file"),
        ("[clips\n", "invalid TOML"),
        ('[pack]\nlanguage = "fr"\n[clips]\n"a" = "b"\n', "pack.language = 'fr': allowed: zh, en"),
        ("[pack]\n", "[clips]: missing or empty"),
    ],
)
def test_a_pack_without_a_usable_manifest_is_refused(tmp_path: Path, manifest: str | None, problem: str) -> None:
    tmp_path.joinpath("p").mkdir()
    if manifest is not None:
        (tmp_path / "p" / MANIFEST).write_text(manifest, encoding="utf-8")
    with pytest.raises(PackError) as info:
        load_pack(tmp_path / "p")
    assert problem in str(info.value)


def test_a_node_whose_pack_cannot_be_used_speaks_with_espeak(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="common.speech.voice")
    pack, problem = open_pack(AudioSection(pack=tmp_path / "nowhere"))
    assert pack is None and "no such file" in str(problem)
    english = record(tmp_path / "en", {"kiosk.cancelled": "已取消叫车。"}, language="en")
    pack, problem = open_pack(AudioSection(pack=english), language="zh")
    assert pack is None and "pack.language = 'en' but this node speaks 'zh'" in str(problem)
    assert len([r for r in caplog.records if "audio.pack not used" in r.getMessage()]) == 2
