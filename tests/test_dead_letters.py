"""Dead letters are never final: `provision dead-letters` lists them with the central's reasons and ``--resend``
queues them again beside a running node; after an upgrade the node sends them again once by itself."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.clock import ManualClock, SystemClock
from common.config import load_config
from common.service import NodeRuntime
from provisioning.cli import main
from tests.sync_helpers import FakeCentral, fake_central

NODE = "cbxc-b7-u2-lift1"


@pytest.fixture
def fake() -> Iterator[FakeCentral]:
    with fake_central(node_id=NODE) as central:
        yield central


def write_config(tmp_path: Path, url: str, token: str) -> Path:
    path = tmp_path / "etc" / "node.toml"
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    argv = ["init", "--role", "elevator", "--non-interactive", "--config", str(path), "--force", "--node-id", NODE]
    argv += ["--site", "changbai-xincun", "--central-url", url, "--location", "B7 U2", "--building", "7"]
    argv += ["--door-pin", "17", "--occupancy-pin", "27", "--data-dir", str(tmp_path / "data")]
    argv += ["--token-file", str(token_file)]
    assert main(argv) == 0
    return path


def runtime_with_dead_letters(config_path: Path, fake: FakeCentral, clock: Any) -> tuple[NodeRuntime, list[str]]:
    """A node whose central refused two events as invalid (they are dead letters now)."""
    runtime = NodeRuntime(load_config(config_path), clock)
    fake.reject_kinds.add("odd_kind")
    bad = [runtime.record_state("odd_kind", {"n": i}).id for i in range(2)]
    runtime.record_state("door_state", {})
    assert runtime.uploader.run_once().dead_lettered == 2
    fake.reject_kinds.clear()  # the central learned the kind (or the node was fixed)
    return runtime, bad


def test_the_command_lists_dead_letters_with_the_centrals_reasons(
    fake: FakeCentral, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = write_config(tmp_path, fake.url, fake.token)
    runtime, bad = runtime_with_dead_letters(config_path, fake, ManualClock())
    runtime.stop()
    capsys.readouterr()
    assert main(["dead-letters", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "2 dead letter(s)" in out and all(i in out for i in bad)
    assert "invalid_event" in out and "kind not allowed" in out and "odd_kind" in out
    assert main(["dead-letters", "--config", str(config_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {d["id"] for d in listed} == set(bad) and all(d["priority"] == "state" for d in listed)
    assert main(["dead-letters", "--config", str(config_path), "--resend", "--id", "no-such-id"]) == 2


def test_resend_beside_a_running_node_delivers_them(fake: FakeCentral, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, fake.url, fake.token)
    runtime, bad = runtime_with_dead_letters(config_path, fake, SystemClock())
    loop = threading.Thread(target=runtime.run, args=(lambda _now: None, 0.05), daemon=True)
    loop.start()
    try:
        assert main(["dead-letters", "--config", str(config_path), "--resend", "--id", bad[0]]) == 0
        deadline = time.monotonic() + 30
        while bad[0] not in fake.events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bad[0] in fake.events
        assert [d["id"] for d in runtime.outbox.dead_letters()] == [bad[1]]
    finally:
        runtime.request_stop()
        loop.join(30)
    assert not loop.is_alive()


def test_an_upgrade_sends_the_dead_letters_again_once(
    fake: FakeCentral, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = write_config(tmp_path, fake.url, fake.token)
    monkeypatch.setattr("common.sync.package_version", lambda: "1.0")
    clock = ManualClock()
    runtime, bad = runtime_with_dead_letters(config_path, fake, clock)
    runtime.stop()
    fake.reject_kinds.add("odd_kind")
    again = NodeRuntime(load_config(config_path), clock)  # same version: nothing is sent again
    assert len(again.outbox.dead_letters()) == 2
    again.stop()
    fake.reject_kinds.clear()
    monkeypatch.setattr("common.sync.package_version", lambda: "1.1")
    upgraded = NodeRuntime(load_config(config_path), clock)
    assert upgraded.outbox.dead_letters() == [] and upgraded.outbox.depth()["state"] >= 2
    upgraded.uploader.run_once()
    assert set(bad) <= set(fake.events)
    upgraded.stop()
