"""How a node gets its updater: `provision init --release-key FILE` installs the release public key (checked),
and `provision install` on a node the updater manages runs the node through ``ROOT/current`` with
``changbai-update recover`` before each start and installs changbai-update.service and .timer, which
systemd-analyze accepts and whose command lines the installed updater understands."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from provisioning.cli import main
from tests.test_provision_install import BASE, ROLE_FLAGS, make_config, unit_keys
from tests.update_helpers import reset
from updates.manifest import generate_key, key_id, private_key_pem, public_key_pem


def test_init_installs_the_release_key_beside_the_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    key = generate_key()
    pub = tmp_path / "usb" / "release.pub"
    pub.parent.mkdir()
    pub.write_bytes(public_key_pem(key.public_key()))
    config = make_config(tmp_path, "elevator", "--release-key", str(pub))
    installed = config.parent / "release.pub"
    assert installed.read_bytes() == pub.read_bytes() and installed.stat().st_mode & 0o777 == 0o644
    assert tomllib.loads(config.read_text())["update"]["public_key"] == str(installed)
    assert f"key id {key_id(key.public_key())}" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", ["private", "garbage"])
def test_init_refuses_what_is_not_a_release_public_key(tmp_path: Path, wrong: str, capsys) -> None:
    bad = tmp_path / "release.key"
    bad.write_bytes(private_key_pem(generate_key(), None) if wrong == "private" else b"not a key\n")
    argv = ["init", "--role", "elevator", "--config", str(tmp_path / "etc" / "node.toml"), *BASE]
    assert main([*argv, *ROLE_FLAGS["elevator"], "--release-key", str(bad)]) == 2
    assert "--release-key" in capsys.readouterr().err
    assert not (tmp_path / "etc" / "node.toml").exists() and not (tmp_path / "etc" / "release.pub").exists()


def test_install_on_a_managed_node_adds_recover_and_the_update_timer(update_rig, tmp_path: Path) -> None:
    _, node, _ = update_rig
    reset(node)
    root = tmp_path / "root"
    assert main(["install", "--config", str(node.config), "--root", str(root)]) == 0
    units = root / "etc/systemd/system"
    lift = unit_keys((units / "changbai-elevator.service").read_text())
    assert lift["ExecStart"][0].startswith(f"{node.root}/current/venv/bin/elevator-node run --config")
    pre = lift["ExecStartPre"][0]
    assert pre == f"-+{node.root}/committed/venv/bin/changbai-update --config {node.config} recover"
    service = unit_keys((units / "changbai-update.service").read_text())
    assert service["ExecStart"] == [f"{node.root}/committed/venv/bin/changbai-update --config {node.config} tick"]
    assert unit_keys((units / "changbai-update.timer").read_text())["OnUnitInactiveSec"] == ["2min"]
    for text in (units / name for name in ("changbai-update.service", "changbai-update.timer")):
        assert "@" not in text.read_text()
    # the command lines are ones the node's installed updater understands
    repaired = subprocess.run(pre[2:].split(), capture_output=True, text=True, timeout=60)
    assert repaired.returncode == 0 and "nothing to repair" in repaired.stdout, repaired.stdout + repaired.stderr
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed here (apt install systemd)")
    files = [str(units / n) for n in ("changbai-elevator.service", "changbai-update.service", "changbai-update.timer")]
    result = subprocess.run([analyze, "verify", *files], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Unknown" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_install_on_a_node_not_managed_says_how_to_start(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = make_config(tmp_path, "elevator")
    root = tmp_path / "root"
    assert main(["install", "--config", str(config), "--root", str(root)]) == 0
    assert "provision update now --bundle FILE" in capsys.readouterr().err
    assert not (root / "etc/systemd/system/changbai-update.timer").exists()
    assert "ExecStartPre" not in (root / "etc/systemd/system/changbai-elevator.service").read_text()
