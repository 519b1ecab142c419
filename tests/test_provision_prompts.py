"""`provision prompts`: every prompt a role can say by id, the speech check with the real espeak-ng, a kiosk's pack
manifest recorded into real WAV files and checked back, a missing clip named."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from common.speech.pack import load_pack
from common.speech.voice import Voice
from hal.espeak import MANDARIN_VOICE, render_to_wav, respell
from kiosk.texts import load_texts
from provisioning.cli import main
from tests.speech_helpers import RecordingSpeaker

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RECORDER = f"{MANDARIN_VOICE}+f3"  # a second voice stands in for a volunteer's recordings


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["prompts", *argv])
    return code, capsys.readouterr().out


def test_every_role_lists_its_prompts_by_id(capsys) -> None:
    code, out = run(capsys, "--role", "elevator")
    assert code == 0
    assert "lift.entrapment  (once, when a passenger has been trapped for entrapment_s)" in out
    assert "请问电梯还在运行吗？" in out and "lift.reassurance" in out and "lift.alarm_ack" in out
    code, out = run(capsys, "--role", "meter", "--json")
    assert [p["id"] for p in json.loads(out)["prompts"]] == ["meter.chime", "meter.taken_in"]
    code, out = run(capsys, "--role", "kiosk", "--json")
    listed = {p["id"]: p for p in json.loads(out)["prompts"]}
    assert "kiosk.idle" in listed and "kiosk.error" in listed
    assert [p["id"] for p in listed["kiosk.assigned"]["pieces"]] == [f"kiosk.assigned.{n}" for n in (1, 2, 3)]
    assert "{pickup_point}" in listed["kiosk.idle"]["text"]  # no config: the gate stays a field


def test_check_reads_each_prompt_with_espeak_and_fails_on_english(capsys, tmp_path: Path) -> None:
    code, out = run(capsys, "--config", str(EXAMPLES / "kiosk.toml"), "--check")
    assert code == 0, out
    assert out.count("PASS  kiosk.") == len(load_texts(None, "x", "1").states)
    config = tmp_path / "node.toml"
    text = (EXAMPLES / "elevator.toml").read_text(encoding="utf-8")
    config.write_text(text.replace("repeat_s = 60", 'repeat_s = 60\nalarm_ack = "Help is on the way."'), "utf-8")
    code, out = run(capsys, "--config", str(config), "--check")
    assert code == 1
    assert "FAIL  lift.alarm_ack" in out and "switches language: (en)" in out and "PASS  lift.entrapment" in out


def test_a_kiosk_pack_recorded_from_its_manifest_covers_every_prompt(capsys, tmp_path: Path) -> None:
    kiosk = str(EXAMPLES / "kiosk.toml")
    code, out = run(capsys, "--config", kiosk, "--manifest")
    assert code == 0
    clips = tomllib.loads(out)["clips"]
    assert clips["kiosk.idle"] == "您好。按一下大按钮，就能叫出租车到长白新村北门。"  # the gate is in the recording
    assert {"word.沪", "word.W", "word.零", "word.两"} <= set(clips) and "零 二 幺" in clips["kiosk.no_car"]
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "pack.toml").write_text(out, encoding="utf-8")
    for clip_id, said in clips.items():
        render_to_wav(respell(said, MANDARIN_VOICE), pack / f"{clip_id}.wav", voice=RECORDER, volume=100)
    code, out = run(capsys, "--config", kiosk, "--pack", str(pack))
    # the car's colour and model come from the central: the manifest cannot know them, so espeak-ng says them
    # between the recorded pieces and the plate's words
    assert code == 0, out
    assert (
        "RECORDED     kiosk.assigned  (espeak-ng says what has no word clips: 白色 大众朗逸, 天蓝色 荣威 E I 五" in out
    )
    assert "RECORDED     kiosk.arrived" in out and "RECORDED     kiosk.no_car" in out
    texts = load_texts(None, "长白新村北门", "021-6543 2100")
    speaker = RecordingSpeaker()
    voice = Voice(speaker, load_pack(pack))
    arrived = texts.prompt("arrived", "zh")
    voice.say(arrived, texts.voice_fields({"plate": "沪A·D12345"}, "zh"))
    ((text, wavs),) = speaker.said
    assert isinstance(wavs, list | tuple)
    assert text == "您的车到了。车牌，沪 A，D 幺 二 三 四 五。请核对车牌再上车。"
    assert [w.stem for w in wavs] == ["kiosk.arrived.1", *[f"word.{c}" for c in "沪AD幺二三四五"], "kiosk.arrived.2"]
    (pack / "kiosk.no_car.wav").unlink()
    code, out = run(capsys, "--config", kiosk, "--pack", str(pack))
    assert "SYNTHESISED  kiosk.no_car  (the pack has no kiosk.no_car)" in out


def test_a_kiosk_pack_needs_the_kiosk_config(capsys) -> None:
    assert main(["prompts", "--role", "kiosk", "--manifest"]) == 2
    assert "a pack is recorded for one kiosk" in capsys.readouterr().err
