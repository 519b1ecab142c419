"""bench/vm.py's reading of a node's outbox, used by the qemu checks (which cannot run in CI) to judge a node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


# ------------------------------------------------------------------ bench/gpio_vm.py: the lift on a kernel's GPIO
def test_the_gpio_check_runs_the_shipped_example_config_with_only_its_host_lines_changed(tmp_path: Path) -> None:
    from bench import gpio_vm

    example = (Path(__file__).resolve().parent.parent / "examples" / "elevator.toml").read_text(encoding="utf-8")
    config = tmp_path / "lift.toml"
    config.write_text(gpio_vm.node_config(example, 8123), encoding="utf-8")
    node = load_config(config)
    assert node.node.id == gpio_vm.NODE_ID
    assert node.gpio.pin_factory == "lgpio"
    assert node.central.url == "http://10.0.2.2:8123" and node.audio.backend == "none"
    assert str(node.central.token_file) == "/etc/changbai/token"  # where the guest puts it: the example's place
    with pytest.raises(ValueError, match="backend"):
        gpio_vm.node_config(example.replace('backend = "auto"', 'backend = "alsa"'), 8123)


def _marks() -> dict[str, float]:
    names = ("door-closed", "door-opened", "alarm-pressed", "door-opened-again", "mains-lost", "mains-back")
    return dict(zip(names, (1000.0, 1120.0, 1140.0, 1148.0, 1155.0, 1170.0), strict=True))


DELAYS = {"entrapment_s": 90.0, "door_open_confirm_s": 2.0, "alarm_hold_s": 3.0, "power_loss_s": 2.0}


def _stored(**late: float) -> list[dict]:
    when = {
        ("entrapment", "raised"): 1090.5,
        ("entrapment", "cleared"): 1122.1,
        ("alarm_button", "raised"): 1143.2,
        ("alarm_button", "cleared"): 1150.1,
        ("power_loss", "raised"): 1157.1,
        ("power_loss", "cleared"): 1170.1,
    }
    return [
        {"kind": kind, "state": state, "wall_time": t + late.get(f"{kind}_{state}", 0.0)}
        for (kind, state), t in when.items()
    ]


SERVICE = {"install": 0, "result": "success", "restarts": 0, "errors": []}
GOOD_FAULTS: dict[str, dict[str, Any]] = {
    "busy": {"exit": 1, "traceback": False, "last": ["BCM 17 (input): already in use"]},
    "nochip": {"exit": 1, "traceback": False, "last": ["gpio.pin_factory = 'lgpio': cannot start it"]},
}


def test_the_gpio_check_passes_alerts_in_time_and_faults_told_in_words() -> None:
    from bench.gpio_vm import EXPECTED, expected_delays, judge

    assert judge(_marks(), _stored(), GOOD_FAULTS, DELAYS, SERVICE) == []
    assert expected_delays() == DELAYS  # the example config's (and the defaults'), which the guest's node runs
    assert {mark for _, _, mark, _ in EXPECTED} == set(_marks())


def test_the_gpio_check_fails_a_late_missing_or_extra_alert_and_a_traceback() -> None:
    from bench.gpio_vm import judge

    late = judge(_marks(), _stored(entrapment_raised=40.0), GOOD_FAULTS, DELAYS, SERVICE)
    assert any("entrapment raised 130.5 s after door-closed" in f for f in late)
    early = judge(_marks(), _stored(entrapment_raised=-30.0), GOOD_FAULTS, DELAYS, SERVICE)
    assert any("entrapment raised 60.5 s" in f for f in early)
    missing = [e for e in _stored() if e["kind"] != "power_loss" or e["state"] != "cleared"]
    assert judge(_marks(), missing, GOOD_FAULTS, DELAYS, SERVICE) == ["no power_loss cleared stored"]
    extra = [*_stored(), {"kind": "stopped_outside_door_zone", "state": "raised", "wall_time": 1060.0}]
    assert judge(_marks(), extra, GOOD_FAULTS, DELAYS, SERVICE) == [
        "alerts nobody caused: ['stopped_outside_door_zone']"
    ]
    crashed: dict[str, dict[str, Any]] = {
        **GOOD_FAULTS,
        "busy": {"exit": 1, "traceback": True, "last": ["lgpio.error: 'GPIO busy'"]},
    }
    found = judge(_marks(), _stored(), crashed, DELAYS, SERVICE)
    assert any("traceback instead of a message" in f for f in found)
    assert any("does not name the pin" in f for f in found)
    ran_on: dict[str, dict[str, Any]] = {**GOOD_FAULTS, "nochip": {"exit": None, "traceback": False, "last": []}}
    assert judge(_marks(), _stored(), ran_on, DELAYS, SERVICE) == [
        "nochip: the node did not stop with an error (exit None)"
    ]
    restarted = {**SERVICE, "restarts": 2, "errors": ["CRITICAL cannot start the elevator node"]}
    assert judge(_marks(), _stored(), GOOD_FAULTS, DELAYS, restarted) == [
        "the unit: result success, 2 restart(s)",
        "errors in the unit's journal: ['CRITICAL cannot start the elevator node']",
    ]
    assert judge(_marks(), _stored(), GOOD_FAULTS, DELAYS, {**SERVICE, "install": 4}) == ["provision install exited 4"]


@pytest.mark.parametrize("name", ["gpio_vm", "netem_vm"])
def test_a_vm_checks_guest_side_runs_without_the_central(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    module = importlib.import_module(f"bench.{name}")
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # the guest's venv has no central
    for loaded in ("bench.harness", "central.server"):
        monkeypatch.delitem(sys.modules, loaded, raising=False)
    seen: list[int] = []

    def guest(port: int) -> int:
        seen.append(port)
        return 0

    monkeypatch.setattr(module, "guest", guest)
    assert module.main(["--guest", "8123"]) == 0 and seen == [8123]
