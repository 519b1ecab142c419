"""One process per outbox (common/outbox/lock.py): a second process on the same file is refused; a process on
another disk at the same path, sharing the network namespace, is not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.clock import ManualClock
from common.config import OutboxSection
from common.outbox import Outbox, OutboxError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cbxc-b7-u2-lift1" / "outbox.sqlite"


def open_outbox(path: Path, clock: ManualClock) -> Outbox:
    return Outbox(path, OutboxSection(), clock)


def test_a_second_process_cannot_open_the_same_outbox(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock)
    script = (
        "import sys; from pathlib import Path; from common.config import OutboxSection;"
        "from common.outbox import Outbox, OutboxError; from common.clock import ManualClock\n"
        "try:\n    Outbox(Path(sys.argv[1]), OutboxSection(), ManualClock())\n"
        "except OutboxError as exc:\n    print(exc); sys.exit(3)\n"
    )
    try:
        other = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, cwd=REPO, timeout=60
        )
        assert other.returncode == 3 and "in use by another process" in other.stdout
        with pytest.raises(OutboxError, match="in use"):
            open_outbox(path, clock)  # a second Outbox in this process is refused too
    finally:
        box.close()
    open_outbox(path, clock).close()  # free again once closed


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_another_disk_at_the_same_path_in_the_same_network_is_not_locked_out(path: Path, clock: ManualClock) -> None:
    """Two nodes in containers that share the host's network, each with its own disk at the same path: the abstract
    socket lock (per network namespace) once locked the second out for good. A process in its own mount namespace
    with a fresh tmpfs at that folder stands for the second container; the same disk is still refused."""
    box = open_outbox(path, clock)
    try:
        script = (
            "import sys; from pathlib import Path; from common.outbox.lock import ProcessLock\n"
            "ProcessLock(Path(sys.argv[1])); print('locked')\n"
        )
        folder = path.parent
        other = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs tmpfs "{folder}" && exec "$0" -c "$1" "$2"', sys.executable, script, str(path)],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        if "cannot change root filesystem propagation" in other.stderr:
            pytest.skip("no private mount namespace here (a chroot): " + other.stderr.strip()[-200:])
        assert other.stdout.strip() == "locked", other.stderr[-2000:]
        with pytest.raises(OutboxError, match="in use"):
            open_outbox(path, clock)
    finally:
        box.close()
