"""The water-meter node: polls the meters, feeds each household's wellbeing monitor, sends alerts and readings.

One thread does everything in turn (poll the meters that are due, judge, store, save): the bus has one owner
and nothing here waits on another thread. Alerts go to the outbox (durable) before any chime is played;
readings follow, durably, in one transaction per poll cycle.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from common.alerts import OpenAlert
from common.clock import Clock, SystemClock
from common.config import NodeConfig
from common.events import Detection, Event, make_event
from common.files import write_atomic
from common.outbox.reserve import Reserve
from common.service import NodeRuntime
from common.speech.voice import Voice, make_voice
from hal.audio import Speaker
from hal.modbus import ModbusBus
from meter_node.cadence import ReadingCadence
from meter_node.clock_frame import ClockWatch
from meter_node.config import MeterConfig, MeterEntry
from meter_node.home_devices import HomeDevices
from meter_node.reader import MeterRead, MeterReader, RegisterBus, meter_detection
from meter_node.voice import prompts
from meter_node.wellbeing import CHECK_IN_KIND, WellbeingMonitor, parse_local_date, recipients_for

log = logging.getLogger(__name__)

TECHNICAL_RECIPIENTS: tuple[str, ...] = ("maintenance", "operator")
TECHNICAL_KINDS = frozenset({"meter_offline", "meter_reset", "implausible_reading", "meter_health", "wellbeing_fault"})
STATE_FILE = "meter-state.json"
STATE_VERSION = 1
STATE_RESERVE = 256 * 1024  # bytes kept free for the state file (a few KB a meter) when the card fills


PORT_RETRY_S = 10.0  # a missing or unplugged USB adapter is looked for again this often


# ------------------------------------------------------------------------------------------------ the bus
class MeterBus(RegisterBus, Protocol):
    """The node's bus: what the reader reads through, and ``close`` (the node owns its bus)."""

    def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------- the node
class MeterNode:
    """Wires the reader, the wellbeing monitors, the alert book and the outbox for one ``[meter]`` config.

    It owns its ``runtime`` (outbox, alert book, uploader), its ``bus`` and its ``voice`` (None when no home has
    a chime): ``close()`` releases them all. ``build_node(config)`` makes one from its config. ``clock`` may be
    a FastClock or ManualClock: nothing here reads the system time.
    """

    def __init__(
        self, config: NodeConfig, clock: Clock, runtime: NodeRuntime, bus: MeterBus, voice: Voice | None
    ) -> None:
        section: MeterConfig = config.role_config
        self.config = config
        self.section = section
        self.clock = clock
        self.node_id = config.node.id
        self.runtime = runtime
        self.bus = bus
        self.voice = voice
        self.chime, self.taken_in = prompts()
        self.meters: dict[str, MeterEntry] = {m.id: m for m in section.meters}
        runtime.acks.on_taken_in = self._on_taken_in  # (the uploader's thread; the voice queues)
        self.reader = MeterReader(
            self.bus,
            section.meters,
            clock=clock,
            profile_dirs=[section.profile_dir] if section.profile_dir else [],
            offline_poll_s=section.offline_poll_s,
        )
        self.tz = ZoneInfo(config.node.timezone)
        self.monitors: dict[str, WellbeingMonitor] = {m.id: self._make_monitor(m) for m in section.meters}
        self.cadence = ReadingCadence(section.reading_min_interval_s, section.reading_sample_s)
        self.state_path = config.state_dir / STATE_FILE
        # released when the card is full, so the state after an alert (its open incident) is still saved: a
        # restart must neither raise the alert again nor forget to escalate it
        self._state_reserve = Reserve(self.state_path.with_name(STATE_FILE + ".reserve"), STATE_RESERVE, "meter state")
        self._away_applied: dict[str, str] = {}
        self.state_save_errors = 0
        self._load_state()
        for meter_id, monitor in self.monitors.items():  # what is open is the alert book's, not the state file's
            book = runtime.alerts.open_alerts()
            monitor.adopt_open({a.kind: (a.severity, a.raised_wall) for a in book if a.key == meter_id})
        self._next_save = clock.monotonic() + section.state_save_s
        self._dirty = False
        self._closed = False
        # the homes' buttons and door contacts: one that cannot be opened is told, the node goes on
        self.home = HomeDevices(self.meters.values(), config.gpio.pin_factory, clock.monotonic)
        try:
            self._tell_home_devices()
        except BaseException:
            self.home.close()  # build_node releases the rest
            raise
        self._apply_away()
        # a Pi has no clock of its own: after a power cut it starts at the time it stopped, and NTP then steps it
        # forward by the outage. Water used during the outage, dated by the stopped clock, would make a silence of
        # the whole outage after the step (a false alarm for every household); so the rules wait for NTP a while
        self._clock_wait_until: float | None = None
        self._presses_waited = False  # buttons and the door pressed during the wait are dated at its end
        if not clock.wall_synced() and section.clock_wait_min > 0:
            self._clock_wait_until = clock.monotonic() + section.clock_wait_min * 60.0
            log.warning(
                "wall clock not synchronised: the wellbeing rules wait for it, at most %g min", section.clock_wait_min
            )
        # what the rules see before the clock is synchronised is dated again when it steps (clock_frame.py)
        self.clock_watch = ClockWatch(clock, self.monitors)
        self.last_read_wall: float | None = None
        self.readings_stored = 0
        self.wellbeing_errors: dict[str, int] = {}
        self._faulted: set[str] = set()

    # ---------------------------------------------------------------------------------------------- setup
    def _make_monitor(self, meter: MeterEntry, state: Mapping[str, Any] | None = None) -> WellbeingMonitor:
        settings = meter.household.settings(self.section.wellbeing)
        return WellbeingMonitor(settings, self.tz, state, key=meter.id)

    def _apply_away(self) -> None:
        """``household.away_until`` from the config: away / in hospital until that local date."""
        now = self.clock.wall()
        for meter in self.meters.values():
            # applied once per value: a return home seen in the water (away ends on use) is not undone by a restart
            if not meter.household.away_until or self._away_applied.get(meter.id) == meter.household.away_until:
                continue
            self._away_applied[meter.id] = meter.household.away_until
            self._dirty = True
            until = parse_local_date(meter.household.away_until, self.tz)
            monitor = self.monitors[meter.id]
            if until > now:
                log.info("household %s away until %s", meter.household.resident, meter.household.away_until)
                for detection in monitor.set_away(until, now):
                    self._emit_wellbeing(meter, detection)

    def _tell_home_devices(self) -> None:
        """A ``home_device_fault`` to maintenance for each home device that could not be opened; one still open
        from an earlier start is cleared when its device opened this time."""
        now = self.clock.monotonic()
        for (meter_id, key), why in self.home.failed.items():
            house = {"meter_id": meter_id, "resident": self.meters[meter_id].household.resident, "device": key}
            payload = {**house, "reason": why[:300]}
            self._emit_technical(Detection("home_device_fault", "raised", now, "warning", payload, f"{meter_id}:{key}"))
        for meter_id, key in self.home.working:
            if self.runtime.alerts.is_open("home_device_fault", f"{meter_id}:{key}"):
                payload = {"meter_id": meter_id, "device": key}
                self._emit_technical(
                    Detection("home_device_fault", "cleared", now, "info", payload, f"{meter_id}:{key}")
                )

    # ---------------------------------------------------------------------------------------------- state
    def _load_state(self) -> None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # learned habits are lost, open alerts are not (the alert book keeps them): loud, not fatal
            log.error("meter state %s unreadable (%s: %s); starting fresh", self.state_path, type(exc).__name__, exc)
            return
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            log.error("meter state %s has an unknown layout; starting fresh", self.state_path)
            return
        self.reader.restore(data.get("counters", {}))
        away = data.get("away_applied", {})
        self._away_applied = {str(k): str(v) for k, v in away.items()} if isinstance(away, dict) else {}
        for meter_id, state in data.get("wellbeing", {}).items():
            if meter_id not in self.monitors or not isinstance(state, Mapping):
                continue
            try:
                self.monitors[meter_id] = self._make_monitor(self.meters[meter_id], state)
            except (ValueError, KeyError, TypeError) as exc:
                log.error(
                    "meter %s: learned wellbeing state unusable (%s: %s); learning afresh",
                    meter_id,
                    type(exc).__name__,
                    exc,
                )
        log.info("meter state restored from %s", self.state_path)

    def save_state(self) -> None:
        """Write counters and learned wellbeing state atomically (temp file, fsync, rename)."""
        data = {
            "version": STATE_VERSION,
            "saved_wall": self.clock.wall(),
            "counters": self.reader.to_state(),
            "wellbeing": {mid: m.state() for mid, m in self.monitors.items()},
            "away_applied": self._away_applied,
        }
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        try:
            self._write_state(text)
        except OSError as exc:
            # a full or failing SD card: say so, keep watching from memory, try again in a minute (not every tick)
            log.error("meter state: cannot write %s: %s: %s", self.state_path, type(exc).__name__, exc)
            self.state_save_errors += 1
            self._dirty = False
            self._next_save = self.clock.monotonic() + min(60.0, self.section.state_save_s)
            return
        self._dirty = False
        self._next_save = self.clock.monotonic() + self.section.state_save_s
        self._state_reserve.ensure()

    def _write_state(self, text: str) -> None:
        try:
            write_atomic(self.state_path, text)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self._state_reserve.release():
                raise
            write_atomic(self.state_path, text)

    # ---------------------------------------------------------------------------------------------- loop
    def step(self) -> float:
        """Do everything that is due now; returns the monotonic time when something is next due."""
        for meter_id, detection in self.clock_watch.check(self.monitors):
            self._emit_wellbeing(self.meters[meter_id], detection)
        self._handle_presses()
        readings: list[Event] = []
        polled = False
        for meter_id in self.reader.due():
            read = self.reader.poll(meter_id)
            polled = True
            self._handle_read(read, readings)
            if readings and readings[-1].priority == "state":
                self._store(readings)  # a meter's first total after start goes out at once, not after the cycle
                readings = []
        for detection in self.reader.check():
            self._emit_technical(detection)
        if readings:
            self._store(readings)
        if polled:
            meters = self.reader.health()
            offline = sorted(mid for mid, h in meters.items() if h["status"] == "offline")
            # the periodic self-test fails while a meter is offline: its household is not watched
            selftest = {"all_meters_online": not offline, "meters_offline": offline}
            self.runtime.set_health(
                last_sensor_read=self.last_read_wall,
                meters=meters,
                selftest=selftest,
                wellbeing_errors=dict(self.wellbeing_errors),
                state_save_errors=self.state_save_errors,
                audio=self.voice.health() if self.voice is not None else None,
            )
        now = self.clock.monotonic()
        # after an alert at once (a restart must not raise it again), else every state_save_s (SD card wear)
        if now >= self._next_save or self._dirty:
            self.save_state()
        return min(self.reader.next_due(), self._next_save)

    def _store(self, readings: list[Event]) -> None:
        """Readings of one poll cycle in one durable transaction: acknowledged means on disk."""
        stored = self.runtime.outbox.put_many(readings)
        if any(e.priority == "state" for e in stored):
            self.runtime.uploader.wake()
        self.readings_stored += len(stored)
        log.debug("stored %d reading(s), seq %s-%s", len(stored), stored[0].seq, stored[-1].seq)

    def tick(self, now: float) -> None:
        """``NodeRuntime.run``'s tick: poll what is due (``now`` is the runtime's monotonic time)."""
        self.step()

    def tick_interval_s(self) -> float:
        """How often the runtime should tick: a quarter of the shortest poll interval, 0.05 to 5 s (a read is
        at most that late; a FastClock community does not spin on ticks with nothing due)."""
        shortest = min((m.poll_interval_s for m in self.meters.values()), default=20.0)
        return min(5.0, max(0.05, shortest / 4.0))

    def _handle_read(self, read: MeterRead, readings: list[Event]) -> None:
        meter = self.meters[read.meter_id]
        wall = self.clock.wall() - (self.clock.monotonic() - read.at)
        for detection in read.detections:
            self._emit_technical(detection)
        # a gap (None) goes to the monitor too: it never counts as activity or inactivity
        if not self._waiting_for_clock():
            for detection in self._judge(meter, read, wall):
                self._emit_wellbeing(meter, detection)
        if read.total_litres is not None:
            self.last_read_wall = wall
        if self.cadence.due(meter.id, read.at, read.total_litres):
            assert read.total_litres is not None
            first = not self.cadence.seen(meter.id)
            self.cadence.recorded(meter.id, read.at, read.total_litres)
            readings.append(self._reading_event(meter, read, wall, first=first))

    def _waiting_for_clock(self) -> bool:
        """True while the node, started with its wall clock not synchronised, still waits for NTP (at most
        ``clock_wait_min``): the monitors then see the wait as a gap, and water used in it proves life at its end."""
        if self._clock_wait_until is None:
            return False
        if self.clock.wall_synced() or self.clock.monotonic() >= self._clock_wait_until:
            synced = self.clock.wall_synced()
            log.warning("wellbeing rules running: the wall clock %s", "is synchronised" if synced else "is still not")
            self._clock_wait_until = None
            self._presses_waited = True
            return False
        return True

    def _judge(self, meter: MeterEntry, read: MeterRead, wall: float) -> list[Detection]:
        """The household's wellbeing rules on one read. A fault in the rules for one household must neither
        stop the other households nor pass silently: it is logged with its traceback once, counted, and raised
        as a ``wellbeing_fault`` technical alert (that household is not watched until it clears)."""
        try:
            detections = self.clock_watch.give(self.monitors, meter.id, "read", read.at, read.total_litres)
        except Exception as exc:  # noqa: BLE001 - see the docstring: reported as an alert, never swallowed
            self.wellbeing_errors[meter.id] = self.wellbeing_errors.get(meter.id, 0) + 1
            if meter.id not in self._faulted:  # the traceback once per fault, not once per poll
                log.exception("meter %s: wellbeing rules failed", meter.id)
                self._faulted.add(meter.id)
                error = f"{type(exc).__name__}: {exc}"[:500]
                self._emit_technical(
                    meter_detection(meter.id, "wellbeing_fault", "raised", wall, "warning", error=error)
                )
            return []
        if meter.id in self._faulted:
            self._faulted.discard(meter.id)
            self._emit_technical(meter_detection(meter.id, "wellbeing_fault", "cleared", wall, "info"))
        return detections

    def _reading_event(self, meter: MeterEntry, read: MeterRead, wall: float, *, first: bool) -> Event:
        """A ``meter_reading``; the first of each meter after start is a state event so it goes out at once
        (the central sees at start that the meter answers and what it reads)."""
        payload = {
            "meter_id": meter.id,
            "resident": meter.household.resident,
            "total_litres": round(read.total_litres or 0.0, 3),
            "raw_litres": None if read.raw_litres is None else round(read.raw_litres, 3),
            "read_wall": round(wall, 3),
        }
        return make_event(
            self.node_id,
            "meter_reading",
            wall_time=wall,
            clock_synced=self.clock.wall_synced(),
            severity="info",
            state="observed",
            priority="state" if first else "reading",
            payload=payload,
        )

    def _emit_technical(self, detection: Detection) -> None:
        self.runtime.emit(detection, TECHNICAL_RECIPIENTS)
        if detection.kind != "meter_health":
            log.warning("meter %s: %s %s", detection.key, detection.kind, detection.state)

    def _emit_wellbeing(self, meter: MeterEntry, detection: Detection) -> None:
        payload = {**detection.payload, "meter_id": meter.id, "resident": meter.household.resident}
        detection = Detection(
            kind=detection.kind,
            state=detection.state,
            at=detection.at,
            severity=detection.severity,
            payload=payload,
            key=detection.key or meter.id,
        )
        self.runtime.emit(detection, recipients_for(detection))  # durable before anything else is done about it
        self._dirty = True
        # a question, or an alert raised; in the quiet hours only one that reaches someone (an info note waits)
        quiet = self.monitors[meter.id].quiet_until(detection.at) is not None
        raised = detection.state == "raised" and not (quiet and detection.severity == "info")
        if (raised or detection.kind == CHECK_IN_KIND) and meter.household.chime and self.voice is not None:
            self.voice.say(self.chime)

    def _on_taken_in(self, alert: OpenAlert) -> None:
        """Somebody who would come (family, social worker) acknowledged a home's alert: its chime tells the resident
        once that someone is coming (a resident who fell cannot reach the phone)."""
        meter = self.meters.get(alert.key)
        coming = {"family", "social_worker"} & set(alert.recipients)
        if coming and meter is not None and meter.household.chime and self.voice:
            self.voice.say(self.taken_in)

    def _handle_presses(self) -> None:
        if self._waiting_for_clock():
            return  # kept until the wait ends and dated then, like the water of the wait: see _waiting_for_clock
        redate, self._presses_waited = self._presses_waited, False
        while True:
            try:
                meter_id, what, mono = self.home.presses.get_nowait()
            except queue.Empty:
                return
            mono = self.clock.monotonic() if redate else mono
            wall = self.clock.wall() - (self.clock.monotonic() - mono)
            meter = self.meters[meter_id]
            found = self.clock_watch.give(self.monitors, meter_id, what, mono)
            if what != "door":  # the door has no event of its own: it moves many times a day
                log.info("household %s: %s pressed", meter.household.resident, "'I'm OK'" if what == "ok" else "away")
                kind = "im_ok_pressed" if what == "ok" else "going_out_pressed"
                payload = {"meter_id": meter_id, "resident": meter.household.resident}
                self.runtime.emit(Detection(kind, "observed", wall, "info", payload, meter_id), ("family",))
            for detection in found:
                self._emit_wellbeing(meter, detection)
            self._dirty = True

    def press_ok(self, meter_id: str) -> None:
        """The 'I'm OK' button of ``meter_id``'s household (also what a GPIO press does)."""
        self.home.put(meter_id, "ok")

    def run(self) -> None:
        """Run until SIGTERM/SIGINT or ``stop()``: the runtime's loop ticks the node; state saved at the end."""
        try:
            self.runtime.run(self.tick, self.tick_interval_s())
        finally:
            self.close()

    def stop(self) -> None:
        """Ask ``run`` to return (from another thread, e.g. the simulated community)."""
        self.runtime.request_stop()

    def health(self) -> dict[str, Any]:
        """Per-meter health for the heartbeat: status and counters by error class."""
        return {
            "meters": self.reader.health(),
            "last_read_wall": self.last_read_wall,
            "wellbeing_errors": dict(self.wellbeing_errors),
            "state_save_errors": self.state_save_errors,
        }

    def close(self) -> None:
        """Save state, release the buttons, the voice and the bus, stop the runtime. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.save_state()
        self._release()

    def _release(self) -> None:
        self.home.close()
        if self.voice is not None:
            self.voice.speaker.close()
        self.bus.close()
        self.runtime.stop()


def build_node(
    config: NodeConfig,
    clock: Clock | None = None,
    *,
    runtime: NodeRuntime | None = None,
    bus: MeterBus | None = None,
    speaker: Speaker | None = None,
) -> MeterNode:
    """A meter node from its config: its runtime (made here unless given: a test's), its bus (``hal.modbus.
    ModbusBus`` on the ``[meter]`` serial port, which opens a missing port later and reopens a failed one; unless
    given: a test's table of registers) and, when a home has a chime, its voice (the speaker from ``[audio]``
    unless given: a recording one, the community's timeline). The node owns them all."""
    clock = clock or SystemClock()
    section: MeterConfig = config.role_config
    runtime = runtime or NodeRuntime(config, clock)
    voice: Voice | None = None
    try:
        bus = bus if bus is not None else ModbusBus(section.serial, retry_s=PORT_RETRY_S, monotonic=clock.monotonic)
        if any(m.household.chime for m in section.meters):
            voice = make_voice(config.audio, config.node.timezone, clock.wall, speaker, prompts=prompts())
        return MeterNode(config, clock, runtime, bus, voice)
    except BaseException:
        if voice is not None:
            voice.speaker.close()
        if bus is not None:
            bus.close()
        runtime.stop()
        raise


def state_file(config: NodeConfig) -> Path:
    """Where a meter node keeps its counters and learned wellbeing state."""
    return config.state_dir / STATE_FILE
