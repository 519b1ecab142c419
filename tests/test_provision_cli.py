"""provision's command line: every subcommand documents its exit codes; unknown commands and Ctrl-C."""

from __future__ import annotations

import subprocess
import sys

import pytest

from provisioning import cli
from provisioning.cli import SUBCOMMANDS, main


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_help_documents_exit_codes(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes" in out
    for code in ("0", "1", "2", "3", "4", "5"):
        assert f"\n  {code}  " in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["provison"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_ctrl_c_is_130_and_said(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def interrupted(argv: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("provisioning.cmd_status.main", interrupted)
    assert main(["status"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_console_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from provisioning.cli import main; sys.exit(main(['--help']))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert all(name in done.stdout for name in SUBCOMMANDS)
    assert cli.__doc__ and "init" in cli.__doc__
