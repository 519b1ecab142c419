"""The lift's periodic voice self-test (common.speech.check through ElevatorNode): the entrapment prompt made with
the real espeak-ng and its phonemes read, or the pack's recording read back, and the real aplay probed with
silence on ALSA's null device; each failure named in the heartbeat's self-test."""

from __future__ import annotations

import shutil
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.clock import ManualClock
from common.config import parse_config
from common.service import NodeRuntime
from elevator_node.config import DEFAULT_ALARM_ACK, DEFAULT_REASSURANCE
from elevator_node.node import ElevatorNode, build_node
from hal.espeak import render_to_wav
from tests.test_elevator_node import START_WALL, config_text


@pytest.fixture
def nodes() -> Iterator[list[ElevatorNode]]:
    made: list[ElevatorNode] = []
    yield made
    for node in made:
        node.stop()


def lift(tmp_path: Path, nodes: list[ElevatorNode], audio: str, extra: str = "") -> ElevatorNode:
    """An elevator node on mock pins whose speaker is made from ``audio`` (the [audio] lines): real espeak-ng and
    real aplay."""
    text = config_text(tmp_path, "http://127.0.0.1:9", extra).replace(
        '[audio]\nbackend = "none"\n', f"[audio]\n{audio}\n"
    )
    config = parse_config(tomllib.loads(text), tmp_path / "node.toml")
    clock = ManualClock(wall=START_WALL)
    node = build_node(config, clock, runtime=NodeRuntime(config, clock))
    nodes.append(node)
    return node


def selftest(node: ElevatorNode) -> dict[str, Any]:
    node.step()
    return node.runtime.health()["selftest"]


def test_the_running_lift_checks_its_voice_and_reports_it_in_the_selftest(
    mock_factory: Any, tmp_path: Path, nodes: list[ElevatorNode]
) -> None:
    node = lift(tmp_path, nodes, 'backend = "espeak"\ndevice = "null"\nvoice = "cmn"')
    assert selftest(node)["voice"] is None  # not checked before the node runs
    node.start()
    deadline = time.monotonic() + 30
    while node.voice_check.ok is None and time.monotonic() < deadline:
        time.sleep(0.05)
    report = selftest(node)
    assert report["voice"] is True, report
    # the old cmn voice is replaced; espeak-ng rendered the prompt and read it in Mandarin; aplay took the silence
    assert report["voice_detail"].startswith("lift.entrapment espeak-ng cmn-latn-pinyin (")
    assert report["voice_detail"].endswith("toned syllables); silence played through the device")
    health = node.voice.speaker.health()
    assert (health["probes"], health["played"], health["last_error"]) == (1, 0, None)  # nothing was heard


def test_a_prompt_espeak_would_read_in_english_fails_the_voice_check(
    mock_factory: Any, tmp_path: Path, nodes: list[ElevatorNode]
) -> None:
    extra = '[elevator.voice]\nquestion = "请问电梯还在运行吗？Help is coming."\n'
    node = lift(tmp_path, nodes, 'backend = "espeak"\ndevice = "null"', extra)
    result = node.check_voice()
    assert result.ok is False
    assert "does not read it in Mandarin" in result.detail and "Help" in result.detail, result.detail
    assert selftest(node)["voice"] is False


def test_a_sound_device_that_does_not_open_fails_the_voice_check(
    mock_factory: Any, tmp_path: Path, nodes: list[ElevatorNode]
) -> None:
    node = lift(tmp_path, nodes, 'backend = "espeak"\ndevice = "plughw:CARD=NoSuchCard"')
    result = node.check_voice()
    assert result.ok is False
    assert "audio path: aplay failed:" in result.detail, result.detail  # the real aplay's own error


def test_a_recorded_prompt_is_read_back_and_a_missing_one_without_espeak_fails(
    mock_factory: Any, tmp_path: Path, nodes: list[ElevatorNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    clips = {"lift.reassurance": DEFAULT_REASSURANCE, "lift.alarm_ack": DEFAULT_ALARM_ACK}
    manifest = "".join(f'"{clip_id}" = "{text}"\n' for clip_id, text in clips.items())
    (pack / "pack.toml").write_text(f'[pack]\nname = "no entrapment"\n[clips]\n{manifest}', encoding="utf-8")
    for clip_id, text in clips.items():
        render_to_wav(text, pack / f"{clip_id}.wav", volume=100)
    question = tmp_path / "question.wav"  # a recording configured for the entrapment prompt alone
    render_to_wav("请问电梯还在运行吗？", question, volume=100)
    bin_dir = tmp_path / "bin"  # a box with aplay and without espeak-ng
    bin_dir.mkdir()
    (bin_dir / "aplay").symlink_to(shutil.which("aplay") or "/usr/bin/aplay")
    monkeypatch.setenv("PATH", str(bin_dir))
    audio = f'backend = "wav"\ndevice = "null"\npack = "{pack}"'

    first = lift(tmp_path / "a", nodes, audio, f'[elevator.voice]\nquestion_wav = "{question}"\n')
    recorded = first.check_voice()
    first.stop()  # its pins, for the next one
    assert recorded.ok is True, recorded.detail
    assert recorded.detail.startswith("lift.entrapment recorded (1 clips, ")

    unsaid = lift(tmp_path / "b", nodes, audio).check_voice()
    assert unsaid.ok is False
    assert "not recorded (the pack has no lift.entrapment) and espeak-ng is not installed" in unsaid.detail
