"""Backing up a running central (docs/central.md): a node uploads batch after batch while the backup is taken, by
the `sqlite3` command the docs give (``.backup``) and by ``central migrate-db --to FILE.jsonl.gz`` (from SQLite and
from PostgreSQL; restored to SQLite). Each copy must
be a whole snapshot, as a restore needs it: the node's batches up to some batch and none after it, every batch
acknowledged before the backup began among them, and a central must serve from it. The uploads go on meanwhile.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from central.__main__ import main
from tests.fixtures.central import CentralHandle, config_document, wire_event

LIFT = "cbxc-b7-u2-lift1"
BATCH = 100


class Uploads:
    """A node posting batches of BATCH events in a thread until stopped; each batch's ids once acknowledged."""

    def __init__(self, central: Any, token: str) -> None:
        self.central, self.token = central, token
        self.batches: list[list[str]] = []  # acknowledged, in order
        self.refused: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 1
        while not self.stop.is_set():
            events = [wire_event(LIFT, seq + i) for i in range(BATCH)]
            answer = self.central.post_events(self.token, events)
            if answer.status_code != 200:
                self.refused.append(answer.status_code)
                continue
            assert sorted(answer.json()["accepted"]) == sorted(e["id"] for e in events)
            self.batches.append([e["id"] for e in events])
            seq += BATCH

    def until(self, count: int) -> None:
        while len(self.batches) < count and self.thread.is_alive():
            self.stop.wait(0.01)


def _batches_in(copy: set[str], uploads: Uploads, before: int) -> int:
    """How many of the node's batches ``copy`` holds: a whole prefix, or the test fails."""
    held = [bool(set(batch) & copy) for batch in uploads.batches]
    whole = [set(batch) <= copy for batch, here in zip(uploads.batches, held, strict=True) if here]
    count = sum(held)
    assert all(whole), "a batch is in the copy in part: not one snapshot"
    assert held == [True] * count + [False] * (len(held) - count), "the copy's batches are not a prefix"
    assert count >= before, f"{before} batches were acknowledged before the backup began; the copy has {count}"
    return count


@pytest.mark.parametrize(
    ("central_engine", "how"),
    [("sqlite", "sqlite3 .backup"), ("sqlite", "migrate-db"), ("postgresql", "migrate-db")],
    indirect=["central_engine"],
)
def test_a_backup_of_a_running_central_is_one_whole_snapshot_that_serves(
    make_central: Any, tmp_path: Path, how: str, capsys: Any
) -> None:
    if how.startswith("sqlite3") and not shutil.which("sqlite3"):
        pytest.skip("needs the sqlite3 command (scripts/bootstrap.sh installs it)")
    central = make_central()
    uploads = Uploads(central, central.register(LIFT, "elevator"))
    uploads.thread.start()
    uploads.until(20)
    before = len(uploads.batches)
    (tmp_path / "restored").mkdir()
    copy = tmp_path / "restored" / "central.sqlite3"  # where a central made in that folder keeps its database
    if how.startswith("sqlite3"):
        done = subprocess.run(["sqlite3", str(central.db_path), f".backup {copy}"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    else:
        dump = tmp_path / "backup.jsonl.gz"
        assert main(["migrate-db", "--from", str(central.database), "--to", str(dump)]) == 0
    during = len(uploads.batches)
    uploads.until(during + 20)  # the node goes on after the backup
    uploads.stop.set()
    uploads.thread.join(30)
    if not how.startswith("sqlite3"):
        assert main(["migrate-db", "--from", str(dump), "--to", str(copy)]) == 0
    capsys.readouterr()
    assert not uploads.refused  # the backup held no upload back
    restored = CentralHandle(tmp_path / "restored", config_document())
    restored.start()
    try:
        copied = {e["id"] for e in restored.events(LIFT)}
        count = _batches_in(copied, uploads, before)
        assert len(copied) == count * BATCH
        assert restored.node(LIFT)["seq_missing"] == 0  # its sequence book agrees with what it holds
        # the node goes on where it was: what it sent after the backup (and deleted) shows as lost on its page
        token = restored.register(LIFT, "elevator")
        seq = len(uploads.batches) * BATCH + 1
        assert restored.post_events(token, [wire_event(LIFT, seq)]).status_code == 200
        assert restored.node(LIFT)["seq_missing"] == (len(uploads.batches) - count) * BATCH
    finally:
        restored.close()
    assert before <= count <= len(uploads.batches) - 20
