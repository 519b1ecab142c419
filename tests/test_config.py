"""Config validation: every example loads; each kind of bad config exits 2 naming the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.config import ConfigError, load_config, load_config_or_exit

ROOT = Path(__file__).resolve().parent.parent
# every node config example; central.toml is the central's own config (tests/test_central_*.py load it)
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml") if p.name != "central.toml")

BASE = """
[node]
id = "test-node-1"
role = "elevator"
site = "changbai-xincun"

[central]
url = "http://127.0.0.1:9"

[elevator]
building = "7"
door = { pin = 17 }
occupancy = { pin = 27 }
"""


def test_examples_exist_for_every_role() -> None:
    roles = {load_config(p).node.role for p in EXAMPLES}
    assert roles == {"elevator", "meter", "kiosk"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads(path: Path) -> None:
    config = load_config(path)
    assert config.role_config is not None
    assert config.node.id


def test_values_are_typed_and_frozen(tmp_path: Path) -> None:
    f = tmp_path / "node.toml"
    f.write_text(BASE)
    config = load_config(f)
    assert config.role_config.door.pin == 17
    assert isinstance(config.central.read_timeout_s, float)
    assert config.state_dir == Path("/var/lib/changbai/test-node-1")
    with pytest.raises(AttributeError):
        config.node.id = "other"  # type: ignore[misc]  # writing a frozen setting is the test


BAD = [
    ("wrong type", BASE.replace('building = "7"', "building = 7"), "elevator.building = 7", "a string"),
    ("out of range", BASE + "entrapment_s = 5\n", "elevator.entrapment_s = 5", "out of range"),
    ("unknown key", BASE + "entrapmnet_s = 95\n", "elevator.entrapmnet_s", "unknown key"),
    ("bad literal", BASE.replace('role = "elevator"', 'role = "lift"'), "node.role = 'lift'", "allowed"),
    ("missing key", BASE.replace('site = "changbai-xincun"\n', ""), "node.site", "missing"),
    ("pin range", BASE.replace("pin = 27", "pin = 40"), "elevator.occupancy.pin = 40", "out of range"),
    ("bool not int", BASE.replace("pin = 27", "pin = true"), "elevator.occupancy.pin = True", "integer"),
    ("unknown section", BASE + "[kiosk]\npickup_point='x'\n", "[kiosk]", "does not match node.role"),
    ("bad url", BASE.replace("http://127.0.0.1:9", "ftp://x"), "central.url", "does not match"),
    ("invalid toml", BASE + "[[[\n", "invalid TOML", ""),
]


@pytest.mark.parametrize(("name", "text", "key", "why"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_the_key(tmp_path: Path, name: str, text: str, key: str, why: str) -> None:
    f = tmp_path / "node.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    message = "\n".join(info.value.problems)
    assert key in message and why in message and str(f) in message


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    f = tmp_path / "node.toml"
    f.write_text(BASE.replace("pin = 27", "pin = 99").replace('building = "7"', "building = 7") + "typo = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert len(info.value.problems) == 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "node.toml"
    f.write_text(BASE)
    f.chmod(0)
    with pytest.raises(ConfigError, match="not readable"):
        load_config(f)


def test_unreadable_file_when_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads any file, so as root the permission error is injected where the OS would raise it."""
    if os.geteuid() != 0:
        pytest.skip("covered by test_unreadable_file")
    f = tmp_path / "node.toml"
    f.write_text(BASE)

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ConfigError, match="not readable"):
        load_config(f)


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "node.toml"
    f.write_bytes(b"[node]\nid = '\xff\xfe'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(f)


def test_or_exit_prints_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "node.toml"
    f.write_text(BASE.replace("pin = 27", "pin = 99") + "typo = 1\n")
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(f)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("config error: ") for line in lines)


def test_wrong_role_for_program(tmp_path: Path) -> None:
    f = tmp_path / "node.toml"
    f.write_text(BASE)
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(f, expected_role="meter")
    assert info.value.code == 2


def test_configuration_reference_is_current() -> None:
    """docs/configuration.md is generated from the dataclasses; regenerate it when a setting changes."""
    from common.configdoc import render

    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert current == render(), "run: python -m common.configdoc > docs/configuration.md"
