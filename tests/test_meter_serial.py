"""The meter node on the real serial path: a pymodbus RTU peer over a socat pair, every fault class a bus can
show (silence, bad CRC, exceptions, garbage, short frames, the wrong slave), rollover, a replaced meter, a
phantom jump, and an adapter that is not plugged in at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.clock import ManualClock
from common.config import NodeConfig
from meter_node.profiles import load_profile
from tests import test_meter_node
from tests.test_meter_node import NODE_ID, ONE_METER, START_WALL, Harness, node_config

harnesses = test_meter_node.harnesses  # the fixture
registered = test_meter_node.registered  # the fixture


# ------------------------------------------------------------------- the real serial path, every fault
SERIAL_METERS = """
[[meter.meters]]
id = "b12-301"
address = 1
profile = "u32_le_litres"
poll_interval_s = 60
offline_after_s = 600
household = { resident = "B12-301" }

[[meter.meters]]
id = "b12-302"
address = 2
profile = "tuf2000_long_real4"
poll_interval_s = 60
household = { resident = "B12-302" }

[[meter.meters]]
id = "b12-303"
address = 3
profile = "pulse_u32_10l"
poll_interval_s = 60
household = { resident = "B12-303" }
"""


def check_what_the_central_got(registered: Any, h: Harness, near_top: float) -> None:
    """After test_every_fault_class_on_the_serial_bus: each meter's events and totals at the central."""

    def kinds(meter_id: str) -> list[tuple[str, str]]:
        found = registered.events(NODE_ID)
        return [(e["kind"], e["state"]) for e in found if e["payload"].get("meter_id") == meter_id]

    assert ("meter_reset", "observed") in kinds("b12-301")
    assert [k for k in kinds("b12-301") if k[0] == "meter_offline"] == [
        ("meter_offline", "raised"),
        ("meter_offline", "cleared"),
    ]
    assert ("meter_health", "observed") in kinds("b12-301")
    assert ("implausible_reading", "observed") in kinds("b12-302")
    assert not any(k[0] in ("meter_reset", "implausible_reading") for k in kinds("b12-303"))
    health = h.node.health()["meters"]
    assert health["b12-303"]["rollovers"] == 1 and health["b12-302"]["implausible"] == 1
    assert health["b12-301"]["resets"] == 1

    readings: dict[str, list[Any]] = {}
    for e in registered.events(NODE_ID, kind="meter_reading"):
        readings.setdefault(e["payload"]["meter_id"], []).append(e["payload"])
    # the pulse meter's continuous total went past the register width; its raw value wrapped
    assert readings["b12-303"][-1]["total_litres"] == near_top + 40.0
    assert readings["b12-303"][-1]["raw_litres"] == 20.0
    # the replaced meter's total carries on from where the old one stopped (+1 L used after)
    assert readings["b12-301"][-1]["total_litres"] == 5001.0
    assert readings["b12-301"][-1]["raw_litres"] == 4.0
    # the phantom 900 m3 never became a reading
    assert max(r["total_litres"] for r in readings["b12-302"]) < 124_000.0


def test_every_fault_class_on_the_serial_bus(
    meter_bus: Any, registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    import dataclasses

    from hal.modbus import ModbusBus
    from hal.sim.meter import SimulatedMeter

    sim = meter_bus.sim
    flat = SimulatedMeter(sim, 1, load_profile("u32_le_litres").register_writes, 5000.0)
    tuf = SimulatedMeter(sim, 2, load_profile("tuf2000_long_real4").register_writes, 123_456.5)
    pulses = load_profile("pulse_u32_10l")
    assert pulses.rollover_litres is not None
    near_top = pulses.rollover_litres - 20.0  # two pulses below the counter's width
    pulse = SimulatedMeter(sim, 3, pulses.register_writes, near_top)
    bus = ModbusBus(dataclasses.replace(meter_bus.port, retries=0))  # each injected fault is one failed read
    try:
        h = Harness(node_config(tmp_path, registered.url, SERIAL_METERS), bus, ManualClock(wall=START_WALL))
        harnesses.append(h)
        h.run(60)
        health = h.node.health()["meters"]
        assert all(m["reads_ok"] == 1 and m["status"] == "ok" for m in health.values()), health

        # each fault class is counted under its own name, and the read is a gap, not a total
        expected = {
            "silence": "no_response",
            "bad_crc": "crc",
            "exception": "slave_exception",
            "garbage": "crc",
            "short": "short_frame",
            "wrong_slave": "wrong_responder",
        }
        for fault, counter in expected.items():
            before = h.node.health()["meters"]["b12-301"][counter]
            sim.inject(1, fault)
            h.run(60)
            assert h.node.health()["meters"]["b12-301"][counter] == before + 1, fault
        assert h.node.health()["meters"]["b12-301"]["status"] == "degraded"
        assert h.node.health()["meters"]["b12-302"]["status"] == "ok"  # the others never noticed

        # rollover: the 10 L pulse counter passes its width; the total keeps counting, no reset
        pulse.draw(40.0)
        h.run(60)
        # counter reset: the flat's meter is replaced and starts from 3 L
        flat.set_total(3.0)
        h.run(60)
        # a phantom jump on the TUF meter, gone at the next read
        tuf.set_total(900_000.0)
        h.run(60)
        tuf.set_total(123_457.0)
        h.run(60)
        # silence long enough: meter offline, then back
        sim.set_present(1, False)
        h.run(11 * 60)
        sim.set_present(1, True)
        flat.draw(1.0)
        h.run(120)
        h.sync()
    finally:
        bus.close()

    check_what_the_central_got(registered, h, near_top)


def test_missing_serial_adapter_is_an_offline_meter_not_a_crash(
    registered: Any, tmp_path: Path, harnesses: list[Harness]
) -> None:
    """The USB adapter is not plugged in at start: the node runs, the meter goes offline (alert at the
    central), and once the port appears the node opens it and reads again."""
    from hal.sim.meter import SimulatedMeter, SimulatedMeterBus
    from hal.sim.serial_pair import SerialPair

    pair_dir = tmp_path / "pair"
    config = with_port(node_config(tmp_path, registered.url, ONE_METER), str(pair_dir / "node"))
    h = Harness(config, None, ManualClock(wall=START_WALL))  # the node builds its bus on a port not there yet
    harnesses.append(h)
    h.run(11 * 60)
    assert h.node.health()["meters"]["b12-301"]["port_error"] >= 1
    assert h.node.health()["meters"]["b12-301"]["status"] == "offline"
    with SerialPair(directory=pair_dir) as (_node_path, meter_path), SimulatedMeterBus(meter_path) as sim:
        SimulatedMeter(sim, 1, load_profile("u32_le_litres").register_writes, 777.0)
        h.run(60)
        h.sync()
        h.node.close()
    assert h.node.health()["meters"]["b12-301"]["reads_ok"] >= 1
    assert [e["state"] for e in registered.events(NODE_ID, kind="meter_offline")] == ["raised", "cleared"]
    assert registered.events(NODE_ID, kind="meter_reading")[0]["payload"]["total_litres"] == 777.0


def with_port(config: NodeConfig, port: str) -> NodeConfig:
    import dataclasses

    meter = config.role_config
    serial = dataclasses.replace(meter.serial, port=port)
    return dataclasses.replace(config, role_config=dataclasses.replace(meter, serial=serial))
