"""The meter node's command line and config checks: `meter-node run` with a bad config or an unknown profile,
a fast-clock run stopped cleanly, `replay`, and a broken site profile named by file and key."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from common.clock import FastClock
from common.config import ConfigError, load_config
from meter_node.node import build_node
from tests import test_meter_node
from tests.conftest import eventually
from tests.test_meter_node import NODE_ID, ONE_METER, ROOT, START_WALL, Speaker, TableBus, node_config

registered = test_meter_node.registered  # the fixture


# ------------------------------------------------------------------------------------------ command line
def test_run_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text((ROOT / "examples" / "meter.toml").read_text().replace("address = 2", "address = 300"))
    done = subprocess.run(
        [sys.executable, "-m", "meter_node", "run", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "meter.meters[1].address = 300" in done.stderr and "out of range" in done.stderr


def test_unknown_profile_in_config_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text((ROOT / "examples" / "meter.toml").read_text().replace('"pulse_u32_10l"', '"acme_9000"'))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "meters[1].profile = 'acme_9000': unknown profile" in str(info.value)


def test_fast_clock_run_and_stop(registered: Any, tmp_path: Path) -> None:
    """What the simulated community does: the node's own loop on a FastClock, stopped from another thread."""
    bus = TableBus()
    bus.add(1, "u32_le_litres", 5000.0)
    clock = FastClock(speed=600.0, start_wall=START_WALL)
    node = build_node(node_config(tmp_path, registered.url, ONE_METER), clock, bus=bus, speaker=Speaker())
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    try:
        eventually(lambda: bus.reads >= 5, what="five reads of the bus")
        eventually(lambda: registered.events(NODE_ID, kind="meter_reading"), what="a reading at the central")
    finally:
        node.stop()
        thread.join(10.0)
    assert not thread.is_alive()
    # the node's own runtime (uploader thread included) delivered the first reading
    assert registered.events(NODE_ID, kind="meter_reading")[0]["payload"]["total_litres"] == 5000.0


def test_replay_command_is_dispatched(tmp_path: Path) -> None:
    """``meter-node replay`` runs meter_node.replay: JSON lines only on stdout; a bad row exits 2."""
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 1, 5, 6, 0, tzinfo=timezone(timedelta(hours=8)))
    rows = ["time,total_litres"] + [
        f"{(start + timedelta(minutes=10 * i)).isoformat()},{5000 + (3 * i if i < 3 else 9)}" for i in range(60)
    ]
    csv_file = tmp_path / "readings.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "meter_node", "replay", str(csv_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert ("inactivity", "raised") in [(e["kind"], e["state"]) for e in events]
    csv_file.write_text(rows[0] + "\nyesterday,12\n")
    bad = subprocess.run(
        [sys.executable, "-m", "meter_node", "replay", str(csv_file)], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and ":2" in bad.stderr and bad.stdout == ""


def test_a_broken_site_profile_stops_the_config_naming_file_and_key(tmp_path: Path) -> None:
    site_profiles = tmp_path / "profiles"
    site_profiles.mkdir()
    shipped = (ROOT / "meter_node" / "profiles" / "u32_le_litres.toml").read_text()
    (site_profiles / "acme_9000.toml").write_text(shipped.replace('swap = "word_byte"', 'swap = "little"'))
    text = (ROOT / "examples" / "meter.toml").read_text().replace('"pulse_u32_10l"', '"acme_9000"')
    text = text.replace("[meter.serial]", f'[meter]\nprofile_dir = "{site_profiles}"\n\n[meter.serial]')
    config_file = tmp_path / "node.toml"
    config_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(config_file)
    message = str(info.value)
    assert str(site_profiles / "acme_9000.toml") in message and "swap = 'little'" in message
    (site_profiles / "acme_9000.toml").write_text(shipped)
    assert load_config(config_file).role_config.meters[1].profile == "acme_9000"
