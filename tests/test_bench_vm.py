"""bench/vm.py's reading of a node's outbox, used by the qemu checks (which cannot run in CI) to judge a node."""

from __future__ import annotations

from pathlib import Path

from bench.vm import outbox_rows
from common.clock import ManualClock
from common.config import load_config
from common.events import make_event
from common.outbox import Outbox
from common.service import outbox_path
from provisioning.cli import main

FLAGS = [
    "--node-id",
    "cbxc-b12-meters",
    "--serial-port",
    "/dev/ttyUSB0",
    "--meter",
    "id=b12-301,address=1,profile=ultrad_int_ml,household.resident=B12-301",
]


def test_the_outbox_is_read_where_the_config_puts_it_while_the_node_holds_it_open(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "node.toml"
    argv = ["init", "--role", "meter", "--config", str(config), "--data-dir", str(tmp_path / "var")]
    assert (
        main([*argv, "--non-interactive", "--site", "changbai-xincun", "--central-url", "http://127.0.0.1:9", *FLAGS])
        == 0
    )
    assert outbox_rows(config) == {}  # no outbox yet: nothing made
    assert not outbox_path(load_config(config)).exists()
    node = load_config(config)
    outbox = Outbox(outbox_path(node), node.outbox, ManualClock(1.7e9), node_id=node.node.id)
    try:
        made = [
            make_event(
                node.node.id, "inactivity", wall_time=1.7e9, clock_synced=True, priority="alert", state="raised"
            ),
            make_event(node.node.id, "meter_reading", wall_time=1.7e9, clock_synced=True, priority="reading"),
        ]
        for event in made:
            outbox.put(event)
        outbox.flush()
        rows = outbox_rows(config)  # read-only, beside the open writer
        assert {prio: [e["kind"] for e in events] for prio, events in rows.items()} == {
            "alert": ["inactivity"],
            "state": [],
            "reading": ["meter_reading"],
        }
    finally:
        outbox.close()
    assert outbox_path(node).parent.is_relative_to(tmp_path / "var")
