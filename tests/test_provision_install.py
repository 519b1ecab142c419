"""provision install (--dry-run and into a temporary root, unit files verified) and provision status."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from provisioning.cli import main
from provisioning.cmd_install import UNIT_DIR, backlight_device, render_unit
from provisioning.configfile import load_node_config
from provisioning.files import service_user_ids

BASE = ["--non-interactive", "--site", "changbai-xincun", "--central-url", "http://127.0.0.1:9"]
ROLE_FLAGS = {
    "elevator": ["--node-id", "cbxc-b7-lift1", "--building", "7", "--door-pin", "17", "--occupancy-pin", "27"],
    "meter": [
        "--node-id",
        "cbxc-b12-meters",
        "--serial-port",
        "/dev/ttyUSB0",
        "--meter",
        "id=b12-301,address=1,profile=ultrad_int_ml,household.resident=B12-301,household.ok_button.pin=5",
    ],
    "kiosk": ["--node-id", "cbxc-gate-kiosk", "--pickup-point", "北门 North Gate", "--hotline", "021-6543 2100"],
}
# what each role's service may use, and nothing more
ROLE_GROUPS = {
    "elevator": {"gpio", "audio"},
    "meter": {"gpio", "dialout", "audio"},
    "kiosk": {"audio", "video", "render", "input"},
}


def make_config(tmp_path: Path, role: str, *extra: str) -> Path:
    path = tmp_path / "etc" / "node.toml"
    data_dir = tmp_path / "var" / "changbai"
    argv = ["init", "--role", role, "--config", str(path), "--data-dir", str(data_dir), *BASE, *ROLE_FLAGS[role]]
    assert main([*argv, *extra]) == 0
    return path


def init_for(central, path: Path) -> Path:
    """An elevator node's config at ``path`` that points at the test central."""
    argv = ["init", "--role", "elevator", "--config", str(path), "--non-interactive", "--site", central.site]
    assert main([*argv, "--central-url", central.url, *ROLE_FLAGS["elevator"]]) == 0
    return path


def register_at(central, path: Path) -> str:
    """Init and register a node at the test central; its token."""
    init_for(central, path)
    key = path.parent / "claim"
    key.write_text(central.claim_key)
    assert main(["register", "--config", str(path), "--claim-key-file", str(key)]) == 0
    return (path.parent / "token").read_text()


def post_heartbeat(central, token: str, beat: dict) -> None:
    answer = requests.post(
        f"{central.url}/api/v1/heartbeat", json=beat, headers=central.node_headers(token), timeout=10
    )
    assert answer.status_code == 200


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_dry_run_prints_every_action_and_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = make_config(tmp_path, "elevator")
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    unit = UNIT_DIR / "changbai-elevator.service"
    existed = unit.exists()
    assert main(["install", "--config", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines and all(line.startswith("would: ") for line in lines)
    assert any("changbai-elevator.service" in line and "Type=notify" in line for line in lines)
    assert any("/var/lib/changbai" in line or "var/changbai" in line for line in lines)
    assert any("/etc/changbai" in line for line in lines)
    if service_user_ids("changbai") is None:  # this machine has no service user yet: install would make one
        assert any(line.startswith("would: create system user changbai") for line in lines)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert unit.exists() == existed


@pytest.mark.parametrize("role", ["elevator", "meter", "kiosk"])
def test_install_into_a_root(tmp_path: Path, role: str, capsys: pytest.CaptureFixture) -> None:
    config = make_config(tmp_path, role)
    token = config.parent / "token"
    token.write_text("not-a-real-token")
    token.chmod(0o600)
    root = tmp_path / "root"
    assert main(["install", "--config", str(config), "--root", str(root)]) == 0
    unit = root / "etc/systemd/system" / f"changbai-{role}.service"
    keys = unit_keys(unit.read_text())
    assert keys["Type"] == ["notify"]
    assert keys["NotifyAccess"] == ["main"]
    assert keys["Restart"] == ["always"]
    assert keys["WatchdogSec"] == ["30"]
    assert keys["User"] == ["changbai"]
    assert set(keys["SupplementaryGroups"][0].split()) == ROLE_GROUPS[role]
    assert keys["ProtectSystem"] == ["strict"]
    assert keys["ReadWritePaths"] == [str(tmp_path / "var" / "changbai")]
    assert keys["NoNewPrivileges"] == ["yes"] and keys["PrivateTmp"] == ["yes"]
    program = {"elevator": "elevator-node", "meter": "meter-node", "kiosk": "kiosk"}[role]
    exec_start = keys["ExecStart"][0].split()
    assert Path(exec_start[0]).name == program and Path(exec_start[0]).exists()
    assert exec_start[exec_start.index("--config") + 1] == str(config)
    assert "run" in exec_start
    assert "@" not in unit.read_text().replace("\n# ", "")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(root / "etc/changbai") == 0o750
    assert mode(root / str(tmp_path / "var" / "changbai").lstrip("/")) == 0o750
    assert mode(root / str(config).lstrip("/")) == 0o640
    assert mode(root / str(token).lstrip("/")) == 0o600
    assert mode(unit) == 0o644
    out = capsys.readouterr()
    assert "not-a-real-token" not in out.out + out.err


@pytest.mark.parametrize("role", ["elevator", "meter", "kiosk"])
def test_unit_files_pass_systemd_analyze_verify(tmp_path: Path, role: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed here (apt install systemd)")
    config = make_config(tmp_path, role)
    root = tmp_path / "root"
    assert main(["install", "--config", str(config), "--root", str(root)]) == 0
    unit = root / "etc/systemd/system" / f"changbai-{role}.service"
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Unknown" not in output and "ignoring" not in output, output


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # the check above can fail: the same unit with a missing program is refused
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed here (apt install systemd)")
    config = make_config(tmp_path, "elevator")
    root = tmp_path / "root"
    assert main(["install", "--config", str(config), "--root", str(root)]) == 0
    unit = root / "etc/systemd/system" / "changbai-elevator.service"
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("ExecStart=", "ExecStart=/nonexistent/bin/"))
    result = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


@pytest.mark.parametrize("role", ["elevator", "meter", "kiosk"])
def test_exec_start_is_a_command_line_the_node_program_understands(tmp_path: Path, role: str) -> None:
    # the unit's command line, with a config that is not there: the program must parse it and refuse the
    # config (exit 2, "not found"), not stumble over its arguments
    config = make_config(tmp_path, role)
    root = tmp_path / "root"
    assert main(["install", "--config", str(config), "--root", str(root)]) == 0
    unit = root / "etc/systemd/system" / f"changbai-{role}.service"
    command = unit_keys(unit.read_text())["ExecStart"][0].split()
    command[command.index("--config") + 1] = str(tmp_path / "absent.toml")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert "absent.toml" in result.stderr and "not found" in result.stderr


def test_install_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    config = make_config(tmp_path, "elevator")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["install", "--config", str(config)]) == 5
    assert "root" in capsys.readouterr().err


def test_install_refuses_a_missing_program(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = make_config(tmp_path, "elevator")
    empty = tmp_path / "bin"
    empty.mkdir()
    assert main(["install", "--config", str(config), "--root", str(tmp_path / "r"), "--bin-dir", str(empty)]) == 2
    assert "elevator-node" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_install_with_a_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text('[node]\nid = "x"\n')
    assert main(["install", "--config", str(bad), "--dry-run"]) == 2
    assert "node.id" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ status
def test_status_shows_the_last_heartbeat(central, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "etc" / "node.toml"
    token = register_at(central, path)
    post_heartbeat(central, token, {"uptime_s": 12.0, "version": "test-1", "outbox_depth": 3, "clock_synced": True})
    operator_key = tmp_path / "operator.key"
    operator_key.write_text(central.operator_key)
    capsys.readouterr()
    code = main(["status", "--config", str(path), "--operator-key-file", str(operator_key)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "last heartbeat" in out and "outbox_depth: 3" in out and "version: test-1" in out
    assert "systemd not available" in out or "changbai-elevator.service" in out
    assert token not in out
    # with the node's own token (a node may read its own record)
    code = main(["status", "--config", str(path), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    report = json.loads(captured.out)
    assert report["central"]["heartbeat"]["outbox_depth"] == 3
    assert report["central"]["seen_ago_s"] is not None and report["central"]["stale"] is False
    assert token not in captured.out + captured.err


def test_status_when_the_central_is_down(central, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = init_for(central, tmp_path / "node.toml")
    (tmp_path / "token").write_text("whatever")
    central.stop()
    assert main(["status", "--config", str(path), "--timeout", "2"]) == 3
    assert "central unreachable" in capsys.readouterr().out


def test_status_of_a_node_the_central_never_heard(central, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "node.toml"
    register_at(central, path)
    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == 1
    assert "last heartbeat never" in capsys.readouterr().out
    (tmp_path / "token").write_text("a-token-the-central-never-gave")
    assert main(["status", "--config", str(path)]) == 5
    assert "refused" in capsys.readouterr().out


def test_real_install_refuses_paths_the_service_cannot_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # a config under /tmp would vanish behind PrivateTmp=yes; the refusal comes before any step runs (and in
    # case it ever does not, every step that would touch this machine fails the test instead)
    from provisioning import cmd_install

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("install touched the system")

    for name in ("_run", "_fix", "atomic_write"):
        monkeypatch.setattr(cmd_install, name, must_not_run)
    monkeypatch.setattr("os.geteuid", lambda: 0)  # as root, so the path check is what refuses
    config = make_config(tmp_path, "elevator")
    capsys.readouterr()
    assert main(["install", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "PrivateTmp" in err and "/etc/changbai" in err
    assert main(["install", "--config", str(config), "--dry-run"]) == 0
    assert "a real install refuses this" in capsys.readouterr().err


def test_an_existing_user_runs_the_service_with_its_own_group(tmp_path: Path) -> None:
    import grp
    import pwd

    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' here")
    config = make_config(tmp_path, "elevator")
    root = tmp_path / "root"
    assert main(["install", "--config", str(config), "--root", str(root), "--user", "nobody"]) == 0
    keys = unit_keys((root / "etc/systemd/system/changbai-elevator.service").read_text())
    assert keys["User"] == ["nobody"]
    assert keys["Group"] == [grp.getgrgid(entry.pw_gid).gr_name]


def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, active_state: str) -> None:
    """A systemctl on PATH that answers `show` like systemd does for the unit."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f"printf 'ActiveState={active_state}\\nSubState=running\\nNRestarts=2\\n"
        "ExecMainStartTimestamp=Wed 2026-11-25 09:00:00 CST\\nUnitFileState=enabled\\nResult=success\\n'\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr("provisioning.cmd_status.systemd_running", lambda: True)


@pytest.mark.parametrize(("state", "code"), [("active", 0), ("failed", 1)])
def test_status_reads_the_unit_from_systemctl(
    central, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, state: str, code: int
) -> None:
    path = tmp_path / "node.toml"
    post_heartbeat(central, register_at(central, path), {"uptime_s": 5.0})
    fake_systemctl(tmp_path, monkeypatch, state)
    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == code
    out = capsys.readouterr().out
    assert f"changbai-elevator.service: {state} (running), enabled, restarts 2" in out


def test_a_kiosk_may_dim_its_display_through_the_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``ProtectKernelTunables`` makes /sys read-only and the kernel's ``brightness`` file is root's: without the
    device in ``ReadWritePaths`` and the file given to the video group, the installed kiosk logged "Read-only file
    system" and never dimmed (seen under real systemd with a stand-in backlight folder outside the data directory)."""
    device = tmp_path / "sys/devices/platform/soc/dsi/rpi_backlight/backlight/10-0045"
    device.mkdir(parents=True)
    (device / "brightness").write_text("255\n")
    (device / "max_brightness").write_text("255\n")
    link = tmp_path / "sys/class/backlight/10-0045"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(device, link.parent))
    config = make_config(tmp_path, "kiosk", "--set", f'kiosk.screen.backlight="{link}"')
    capsys.readouterr()
    assert main(["install", "--config", str(config), "--dry-run"]) == 0
    assert f"backlight {device.resolve()} writable by the video group" in capsys.readouterr().out
    node = load_node_config(config)
    assert backlight_device(node) == device.resolve()
    unit = render_unit(node, user="changbai", groups=["video"], bin_dir=Path(sys.executable).parent,
                       watchdog_s=30, backlight_at=backlight_device(node))  # fmt: skip
    keys = unit_keys(unit)
    assert keys["ReadWritePaths"] == [f"{tmp_path / 'var' / 'changbai'} {device.resolve()}"]
    assert keys["ExecStartPre"] == [
        f"+-/bin/chgrp video {device.resolve()}/brightness",
        f"+-/bin/chmod g+w {device.resolve()}/brightness",
    ]
    assert keys["ProtectKernelTunables"] == ["yes"]
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        path = tmp_path / "changbai-kiosk.service"
        path.write_text(unit)
        result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "ignoring" not in result.stdout + result.stderr, result.stderr
