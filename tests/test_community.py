"""The main job end to end: central, lift, meter and kiosk on simulated hardware, at a faster pace than the
README's command; every check the run makes must pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_simulated_community_day_passes_every_check(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "community", "--speed", "120", "--hours-speed", "3000", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "20 passed, 0 failed" in out
    # what each party saw, in order: the trapped passenger is spoken to and the central is told
    trapped = out.index("stored urgent entrapment raised")
    assert out.index('voice: "请问电梯还在运行吗', trapped) > trapped
    assert out.index("ALERT urgent entrapment", trapped) > trapped
    # the wellbeing alert made during the outage reaches the central only after the network is back
    assert (
        out.index("stored warning inactivity raised")
        < out.index("the central is back")
        < out.index("ALERT warning inactivity")
    )
    assert "screen: assigned" in out and "ride" in out
    # the silent resident is asked first at home, and her family is told only when nobody answers
    asked = out.index("stored info check_in observed")
    assert out.index('voice: "您好，如果您一切安好', asked) > asked
    assert asked < out.index("stored warning inactivity raised")
