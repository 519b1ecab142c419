"""The simulated community: the reference central, a lift, a water meter and a kiosk on simulated hardware.

One day is played with a fast clock: a resident hails a taxi at the north gate, a passenger is trapped between
floors, a resident asks for help at the kiosk, the central goes off the network from 16:00 (for 90 minutes, or until the silent resident's warning is
stored), and a resident living alone stops using water (her home asks her first; nobody answers). Every
party's view is printed as a timeline, and the run ends by checking that every event the nodes stored reached
the central exactly once.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import shutil
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from central.config import parse_central_config
from central.server import CentralServer
from common.clock import FastClock
from common.config import NodeConfig, parse_config
from common.tomlwrite import dumps
from community.checks import people_told
from community.messages import Messages
from community.parties import START, CentralWatcher, Resident, payload_summary
from community.timeline import Timeline, TimelineSpeaker
from elevator_node.node import ElevatorNode
from elevator_node.node import build_node as build_lift
from elevator_node.sim import lift_sensors
from elevator_node.voice import TAKEN_IN
from hal.sim.meter import SimulatedMeter, SimulatedMeterBus
from hal.sim.serial_pair import SerialPair
from kiosk.node import KioskNode
from kiosk.node import build_node as build_kiosk
from meter_node.node import MeterNode
from meter_node.node import build_node as build_meter
from meter_node.profiles import load_profile
from meter_node.voice import TAKEN_IN_TEXT
from provisioning import cmd_register

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SITE = "changbai-xincun"
CLAIM_KEY = "community-demo-claim-key-0001"
OPERATOR_KEY = "community-demo-operator-key-0001"

LIFT, METER, KIOSK = "cbxc-b7-u2-lift1", "cbxc-b12-meters", "cbxc-north-gate-kiosk"
METER_ID = "b12-301"
METER_PROFILE = "ultrad_int_ml"


@dataclass(frozen=True)
class Speeds:
    """Simulated seconds per real second in each phase."""

    day: float = 60.0  # the ride and the lift: minutes matter
    hours: float = 1000.0  # the long afternoon and evening of the silent resident


@dataclass
class Outcome:
    """What the run saw, checked at the end."""

    checks: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def check(self, name: str, ok: bool, note: str = "") -> None:
        self.checks[name] = ok
        self.notes[name] = note

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


# ------------------------------------------------------------------------------------------------ set-up
def _node_config(example: str, workdir: Path, url: str, changes: dict[str, Any]) -> tuple[Path, NodeConfig]:
    """An example config with this run's data dir, central, token file, mock pins and the given changes."""
    data = tomllib.loads((ROOT / "examples" / example).read_text(encoding="utf-8"))
    node_id = data["node"]["id"]
    data["node"].update(data_dir=str(workdir / "data"), log_level="WARNING")
    data["central"] = {
        "url": url,
        "token_file": str(workdir / f"{node_id}.token"),
        "batch_max_age_s": 30.0,
        "heartbeat_interval_s": 1800.0,
    }
    data["gpio"] = {"pin_factory": "mock"}
    data["audio"] = {"backend": "none"}
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    path = workdir / f"{node_id}.toml"
    path.write_text(dumps(data, header=f"simulated community: {node_id}"), encoding="utf-8")
    return path, parse_config(data, path)


def _register(config_path: Path, claim_file: Path, contacts: list[str]) -> None:
    argv = ["--config", str(config_path), "--claim-key-file", str(claim_file), "--non-interactive"]
    for contact in contacts:
        argv += ["--contact", contact]
    with contextlib.redirect_stdout(io.StringIO()):  # the timeline says it once for all three
        code = cmd_register.main(argv)
    if code != 0:
        raise RuntimeError(f"provision register {config_path.name} failed with exit code {code}")


class Community:
    """Builds every party, plays the day, checks the outcome."""

    def __init__(self, workdir: Path, speeds: Speeds, timeline_out: Any = None) -> None:
        self.workdir = workdir
        self.speeds = speeds
        self.clock = FastClock(speed=speeds.day, start_wall=START.timestamp())
        self.timeline = Timeline(self.clock, out=timeline_out)
        self.outcome = Outcome()
        self.put_ids: dict[str, list[str]] = {LIFT: [], METER: [], KIOSK: []}
        self.outage: tuple[float, float] | None = None  # (start, end) wall times; end 0 while it lasts
        self.put_during_outage: list[tuple[str, str]] = []  # (node id, event id)
        self.stored: list[tuple[str, str, str]] = []  # (node id, kind, state) of every event stored
        self.kiosk_screens: list[str] = []  # every screen the kiosk showed, in order
        self._severity: dict[str, str] = {}  # alert id -> last severity printed
        self._closers: list[Callable[[], None]] = []
        self._http = requests.Session()
        self._http.headers["Authorization"] = f"Bearer {OPERATOR_KEY}"

    # -------------------------------------------------------------------------------------- building
    def build(self) -> None:
        """The central, then the three nodes registered and running, then the parties who act on their own."""
        self._start_central()
        configs = self._configure_nodes()
        self._start_nodes(*configs)
        self.watcher = CentralWatcher(self)
        self.watcher.start()
        self._closers.append(self.watcher.stop)
        self.resident = Resident(self)
        self.resident.start()
        self._closers.append(self.resident.stop)

    def _start_central(self) -> None:
        tl = self.timeline
        self.messages = Messages(tl)
        self.messages.start()
        self._closers.append(self.messages.stop)
        central_config = parse_central_config(
            {
                "sites": [{"id": SITE, "name": "长白新村 Changbai Xincun", "claim_key": CLAIM_KEY}],
                "operators": [{"name": "社区中心 community centre", "key": OPERATOR_KEY}],
                "escalation": {"after_s": 600},
                "fleet": {"seed": 7, "no_car_rate": 0.0, "assign_delay_min_s": 20, "assign_delay_max_s": 60},
                "notify": self.messages.notify_section(),
            },
            self.workdir / "central.toml",
        )
        self.central = CentralServer(central_config, self.workdir / "central.sqlite", clock=self.clock)
        self.central.start()
        self._closers.append(self.central.stop)
        tl.add("central", f"reference central up at {self.central.url} (SQLite {self.workdir / 'central.sqlite'})")

    def _configure_nodes(self) -> tuple[NodeConfig, NodeConfig, NodeConfig]:
        """The three nodes' configs on the simulated hardware, each registered by the technician."""
        tl = self.timeline
        self.factory = MockFactory()
        Device.pin_factory = self.factory
        self._closers.append(self.factory.reset)

        url = self.central.url
        lift_path, lift_config = _node_config("elevator.toml", self.workdir, url, {})
        kiosk_path, kiosk_config = _node_config(
            "kiosk.toml",
            self.workdir,
            url,
            {"kiosk": {"button": {"pin": 6, "hold_s": 2.0}, "led": {"pin": 13}, "led_pwm": False}},
        )
        self.pair = SerialPair(self.workdir / "serial")
        self.node_port, self.meter_port = node_port, meter_port = self.pair.start()
        self._closers.append(self.pair.stop)
        meter_path, meter_config = _node_config(
            "meter.toml",
            self.workdir,
            url,
            {
                "meter": {
                    "serial": {"port": node_port, "baudrate": 9600, "timeout_s": 0.2, "retries": 2},
                    "meters": [
                        {
                            "id": METER_ID,
                            "address": 1,
                            "profile": METER_PROFILE,
                            "poll_interval_s": 120,
                            "offline_after_s": 1800,
                            # a chime and an "I'm OK" button in the flat (pin 16: the lift and the kiosk have
                            # the others): she is asked first (examples/meter.toml: ask_first_min = 10)
                            "household": {"resident": "B12-301", "chime": True, "ok_button": {"pin": 16}},
                        }
                    ],
                }
            },
        )
        claim = self.workdir / "claim.key"
        claim.write_text(CLAIM_KEY, encoding="utf-8")
        claim.chmod(0o600)
        _register(
            lift_path,
            claim,
            [
                "property_management=物业值班 Property desk,021-6500 0001",
                "maintenance=维保 Lift maintenance,021-6500 0002",
            ],
        )
        _register(
            meter_path,
            claim,
            ["family=女儿 Daughter,139 0000 0301", "social_worker=社工 Social worker Wang,021-6500 0003"],
        )
        _register(kiosk_path, claim, [])
        tl.add("technician", "registered lift, water meter and kiosk with `provision register` (tokens mode 0600)")
        return lift_config, kiosk_config, meter_config

    def _start_nodes(self, lift_config: NodeConfig, kiosk_config: NodeConfig, meter_config: NodeConfig) -> None:
        tl = self.timeline
        self.meter_sim = SimulatedMeterBus(self.meter_port, baudrate=9600, node_path=self.node_port).start()
        self._closers.append(self.meter_sim.stop)
        self.meter_sim.add_slave(1)
        self.water = SimulatedMeter(
            self.meter_sim, 1, load_profile(METER_PROFILE).register_writes, total_litres=48_210.0
        )

        self.car_voice = TimelineSpeaker(tl, "lift car B7-U2 #1")
        self.lift = build_lift(lift_config, self.clock, speaker=self.car_voice)
        self.lift_sim = lift_sensors(self.factory, lift_config.role_config)
        self.lift_sim.apply(door_closed=True, occupied=False, moving=False, in_door_zone=True)  # idle at floor 1
        self.kiosk_voice = TimelineSpeaker(tl, "kiosk north gate")
        self.kiosk = build_kiosk(kiosk_config, self.clock, speaker=self.kiosk_voice)
        self.kiosk.controller.add_listener(self._on_kiosk_view)
        self.home_voice = TimelineSpeaker(tl, "home B12-301")
        self.meter = build_meter(meter_config, self.clock, speaker=self.home_voice)
        for node_id, node in self._nodes().items():
            node.runtime.outbox.add_listener(functools.partial(self._on_put, node_id))

        self.lift.start()
        self._closers.append(self.lift.stop)
        self.kiosk.start_thread()
        self._closers.append(self.kiosk.close)
        meter_thread = threading.Thread(target=self.meter.run, name="meter-node", daemon=True)
        meter_thread.start()

        def stop_meter() -> None:
            self.meter.stop()
            meter_thread.join(10)
            self.meter.runtime.stop()

        self._closers.append(stop_meter)

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except (OSError, RuntimeError, requests.RequestException) as exc:
                log.warning("closing %s: %s: %s", closer, type(exc).__name__, exc)
        self._closers.clear()

    # ------------------------------------------------------------------------------------- observers
    _ALERT_STATES = ("raised", "updated", "cleared")

    def _on_put(self, node_id: str, event: Any) -> None:
        self.put_ids[node_id].append(event.id)
        self.stored.append((node_id, event.kind, event.state))
        if self.outage is not None and not self.outage[1]:
            self.put_during_outage.append((node_id, event.id))
        if event.alert_id and event.state == "updated" and self._severity.get(event.alert_id) == event.severity:
            return  # a re-notification (EN 81-28: re-sent until acknowledged): counted, not printed
        if event.alert_id:
            self._severity[event.alert_id] = event.severity
        if event.priority == "alert" or event.kind in ("ride_requested", "ride_assigned", "meter_offline", "check_in"):
            party = {LIFT: "lift node", METER: "meter node", KIOSK: "kiosk node"}[node_id]
            detail = payload_summary(event.payload)
            self.timeline.add(party, f"stored {event.severity} {event.kind} {event.state}{detail} -> outbox")

    def _on_kiosk_view(self, view: Any) -> None:
        extra = f" plate {view.plate}" if getattr(view, "plate", None) else ""
        self.kiosk_screens.append(view.state)
        self.timeline.add("kiosk north gate", f"screen: {view.state}{extra}")

    # --------------------------------------------------------------------------------------- playing
    def wait_until(self, hh_mm: str, day: int = 0) -> None:
        hour, minute = map(int, hh_mm.split(":"))
        target = (START + timedelta(days=day)).replace(hour=hour, minute=minute, second=0).timestamp()
        self.clock.sleep(max(0.0, target - self.clock.wall()))

    def hold_until(self, hh_mm: str, done: Callable[[], bool], what: str, bound_s: float = 120.0) -> None:
        """Wait for simulated ``hh_mm`` and then for ``done()``: what the next step of the script needs to have
        happened (on a loaded machine the nodes fall behind the fast clock), at most ``bound_s`` real seconds."""
        self.wait_until(hh_mm)
        if not _wait_real(done, bound_s):
            self.timeline.add("director", f"gave up waiting for {what} after {bound_s:.0f} s real time")

    def play(self) -> None:
        tl = self.timeline
        self.clock.set_speed(self.speeds.day)
        self.wait_until("07:02")
        tl.add("resident at north gate", "presses the big arcade button")
        self.factory.pin(6).drive_low()
        self.clock.sleep(1)
        self.factory.pin(6).drive_high()
        self.wait_until("07:10")

        tl.add("passenger", "calls the lift at floor 1, steps in, the doors close and the car starts up")
        self.lift_sim.apply(door_closed=False)
        self.clock.sleep(3)
        self.lift_sim.apply(occupied=True)
        self.clock.sleep(4)
        self.lift_sim.apply(door_closed=True)
        self.clock.sleep(3)
        self.lift_sim.apply(moving=True, in_door_zone=False)
        self.clock.sleep(6)
        tl.add("passenger", "the car stops between floors 3 and 4 and does not move")
        self.lift_sim.apply(moving=False)
        self.wait_until("07:24")
        tl.add("maintenance", "arrives, brings the car to floor 3 and opens the doors")
        self.lift_sim.apply(moving=True)
        self.clock.sleep(5)
        self.lift_sim.apply(moving=False, in_door_zone=True)
        self.clock.sleep(2)
        self.lift_sim.apply(door_closed=False)
        self.clock.sleep(5)
        self.lift_sim.apply(occupied=False)
        self.clock.sleep(8)
        self.lift_sim.apply(door_closed=True)
        tl.add("maintenance", "the passenger is out; the lift is back in service")
        self.wait_until("07:32")
        tl.add("resident at north gate", "feels dizzy and holds the big button down for help")
        self.factory.pin(6).drive_low()
        time.sleep(3.5)  # gpiozero times a hold in real seconds (arcade_hold_s 3 s); it orders no taxi
        self.factory.pin(6).drive_high()
        taken_in = lambda: "help_taken_in" in self.kiosk_screens  # noqa: E731
        self.hold_until("07:45", taken_in, "the desk taking in her call for help")

        tl.add("director", f"fast forward x{self.speeds.hours:g} through the day")
        self.clock.set_speed(self.speeds.hours)
        self.wait_until("16:00")
        tl.add("network", "the central goes off the network (outage begins)")
        self.central.stop()
        self.watcher.pause(True)
        self.outage = (self.clock.wall(), 0.0)
        # the central stays away until the silent resident's warning is stored on the node: its readings only
        # count where the meter was read, so a loaded machine (late polls on a fast clock) raises it later
        raised = (METER, "inactivity", "raised")
        self.hold_until("17:30", lambda: raised in self.stored, "the meter's inactivity warning")
        self.outage = (self.outage[0], self.clock.wall())
        self.central.start()
        self.watcher.pause(False)
        tl.add("network", "the central is back (outage over)")
        self.hold_until("23:00", lambda: "going" in self.messages.answered, "the social worker's answer")
        self.hold_until(
            "23:00", lambda: "daughter" in self.messages.closed, "the family told of the social worker's visit"
        )
        self.clock.set_speed(self.speeds.day)
        tl.add("director", "end of the scripted day; waiting for the nodes to drain their outboxes")

    def _nodes(self) -> dict[str, ElevatorNode | KioskNode | MeterNode]:
        return {LIFT: self.lift, KIOSK: self.kiosk, METER: self.meter}

    # ------------------------------------------------------------------------------------- checking
    def verify(self) -> Outcome:
        out = self.outcome
        nodes = self._nodes()
        for node in nodes.values():
            node.runtime.uploader.wake()
        # the nodes keep running (a reading may be stored at any moment): check the events stored up to a moment
        # at which every outbox was empty, i.e. everything stored before it had been acknowledged by the central
        checked: dict[str, list[str]] = {}

        def all_empty() -> bool:
            checked.update({node_id: list(ids) for node_id, ids in self.put_ids.items()})
            return all(sum(n.runtime.outbox.depth().values()) == 0 for n in nodes.values())

        drained = _wait_real(all_empty, 20)
        out.check("every outbox drained", drained)
        self.watcher.poll()
        at_central: Counter[str] = Counter()
        for node_id, ids in checked.items():
            stored = Counter(e["id"] for e in self._events(node_id))
            at_central.update(stored)
            missing = [i for i in ids if stored[i] == 0]
            doubled = [i for i, n in stored.items() if n > 1]
            gaps = self.api_get(f"/nodes/{node_id}").get("seq_gaps") or []
            out.check(
                f"{node_id}: every stored event at the central once",
                not missing and not doubled and not gaps,
                f"{len(ids)} stored on the node, {sum(stored.values())} at the central, "
                f"{len(missing)} missing, {len(doubled)} twice, seq gaps {gaps}",
            )
        alerts = self.api_get("/alerts", state="all", limit=500)["alerts"]
        asked = self.api_get(f"/residents/{SITE}/B12-301")["check_ins"]["recent"]
        people_told(out.check, alerts, asked, METER, self.messages.closed)
        for voice, text, check in (
            (
                self.car_voice,
                self.lift.prompts[TAKEN_IN].template,
                "the trapped passenger heard that a person has the alarm (the acknowledgement reached the car)",
            ),
            (
                self.home_voice,
                TAKEN_IN_TEXT,
                "the fallen resident heard that someone is coming (the acknowledgement reached her home)",
            ),
        ):
            out.check(check, voice.said.count(text) == 1, f"said {voice.said.count(text)} time(s)")  # fmt: skip
        said = self.kiosk_voice.said.count(self.kiosk.texts.voice("help_taken_in", "zh"))
        shown = self.kiosk_screens.count("help_taken_in")
        out.check(
            "the resident at the kiosk was shown and told that the desk has her call for help",
            said == 1 and shown == 1,
            f"said {said} time(s), shown {shown} time(s)",
        )
        out.check("every message delivered once", *self.messages.check([d for a in alerts for d in a["deliveries"]]))
        rides = self.api_get("/rides")["rides"]
        out.check(
            "one press, one taxi, arrived",
            len(rides) == 1 and rides[0]["status"] == "arrived",
            str([r["status"] for r in rides]),
        )
        made = self.put_during_outage
        minutes = (self.outage[1] - self.outage[0]) / 60 if self.outage else 0.0
        delivered = sum(at_central[i] == 1 for _, i in made)
        out.check(
            "outage: everything stored during it arrived afterwards",
            bool(made) and delivered == len(made),
            f"{len(made)} events stored during the {minutes:.0f} min outage, {delivered} delivered once",
        )
        return out

    def api_get(self, path: str, **params: Any) -> Any:
        """GET /api/v1{path} at the central as the operator (the community centre)."""
        answer = self._http.get(f"{self.central.url}/api/v1{path}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def _events(self, node_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.api_get("/events", node_id=node_id, after=after, limit=10_000)
            if not page["events"]:
                return found
            found += page["events"]
            after = page["next_after"]


def _wait_real(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def run(speeds: Speeds, workdir: Path | None = None, keep: bool = False, out: Any = None) -> Outcome:
    """Play the community's day; returns what was checked. ``workdir`` is kept when given or ``keep``."""
    own = workdir is None
    path = Path(tempfile.mkdtemp(prefix="changbai-community-")) if workdir is None else workdir
    path.mkdir(parents=True, exist_ok=True)
    community = Community(path, speeds, out)
    try:
        community.build()
        community.play()
        return community.verify()
    finally:
        community.close()
        if own and not keep:
            shutil.rmtree(path, ignore_errors=True)
