"""The [elevator] config section: defaults from REFERENCE.md, checks across fields, the voice prompts table."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from common.config import ConfigError, parse_config
from elevator_node.config import DEFAULT_QUESTION, ElevatorConfig

BASE = """
[node]
id = "cbxc-b7-u2-lift1"
role = "elevator"
site = "changbai-xincun"

[central]
url = "http://127.0.0.1:9"

[elevator]
building = "7"
door = { pin = 17 }
occupancy = { pin = 27 }
"""


def load(text: str) -> ElevatorConfig:
    return parse_config(tomllib.loads(text), Path("node.toml")).role_config


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(text)
    return "\n".join(info.value.problems)


def test_defaults_follow_the_issue_and_reference() -> None:
    section = load(BASE)
    assert section.entrapment_s == 90.0 and section.door_held_open_s == 120.0
    assert section.alarm_hold_s == 3.0 and section.alarm_bypass_s == 30.0
    assert 45.0 <= section.stopped_outside_door_zone_s <= 60.0
    assert section.occupancy_kind == "presence" and section.moving is None and section.level_zone is None
    assert section.voice.question == DEFAULT_QUESTION and section.voice.repeat_s == 60.0
    assert section.tick_s <= 0.5


def test_optional_sensors_and_voice_files() -> None:
    section = load(
        BASE
        + 'occupancy_kind = "motion"\nmoving = { pin = 22, bounce_s = 0.2 }\nalarm_button = { pin = 24 }\n'
        + '[elevator.voice]\nquestion_wav = "/etc/changbai/voice/q.wav"\nrepeat_s = 90\n'
    )
    assert section.moving is not None and section.alarm_button is not None
    assert section.occupancy_kind == "motion" and section.moving.pin == 22 and section.alarm_button.pin == 24
    assert section.voice.question_wav == Path("/etc/changbai/voice/q.wav") and section.voice.repeat_s == 90.0


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("moving = { pin = 17 }\n", "moving.pin = 17: already used by door"),
        ("alarm_button = { pin = 27 }\n", "alarm_button.pin = 27: already used by occupancy"),
        ("alarm_hold_s = 10\nalarm_bypass_s = 5\n", "alarm_bypass_s must be at least alarm_hold_s"),
        ("entrapment_s = 10\ndoor_open_confirm_s = 10\n", "door_open_confirm_s must be shorter than entrapment_s"),
        ('occupancy_kind = "radar"\n', "elevator.occupancy_kind = 'radar'"),
        ("tick_s = 2\n", "elevator.tick_s = 2"),
        ("[elevator.voice]\nrepeat_s = 1\n", "elevator.voice.repeat_s = 1"),
        ("[elevator.voice]\nqestion = 'x'\n", "elevator.voice.qestion"),
    ],
)
def test_bad_values_name_the_key(extra: str, expected: str) -> None:
    assert expected in problems(BASE + extra)
