"""The elevator node: GPIO inputs -> detector -> alerts in the outbox (first) -> voice prompts in the car.

Every input change (gpiozero callback) and a tick at least every ``tick_s`` run the detector. Its state is node
state in the outbox (``elevator.detector``), written in the same transaction as the alerts it decides, so an
incident survives a node restart and the detector and the alert book never disagree after a crash.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpiozero import Button, DigitalInputDevice
from gpiozero.exc import BadPinFactory, GPIOZeroError

from common.alerts import OpenAlert
from common.clock import Clock, SystemClock, wait_on_clock
from common.config import NodeConfig
from common.events import Detection, Event
from common.outbox import OutboxError
from common.service import NodeRuntime
from common.speech.check import VoiceCheck, check_voice
from common.speech.voice import Voice, make_voice
from elevator_node.config import ElevatorConfig
from elevator_node.detector import KINDS, ElevatorDetector
from elevator_node.lift_state import LiftSnapshot, Timing
from elevator_node.voice import ALARM_ACK, ENTRAPMENT, REASSURANCE, TAKEN_IN, prompts
from hal import gpio
from hal.audio import Speaker

log = logging.getLogger(__name__)

STATE_KEY = "elevator.detector"  # the detector's saved state, outbox node state
STATE_FILE_VERSION = 1
# versions up to 2026-12 kept it in this file beside the outbox; read once on the first start, then removed
LEGACY_STATE_FILE = "elevator_state.json"
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
MIN_SAVE_INTERVAL_S = 1.0
# the entrapment prompt made (not played) and the audio path probed, hourly in real time: it checks the machine's
# espeak-ng and sound card, which a fast simulated clock does not age (at x3000 a node hour is 1.2 s)
VOICE_CHECK_INTERVAL_S = 3600.0


def read_boot_id(path: Path = BOOT_ID_PATH) -> str | None:
    """The kernel's id of this boot: equal ids mean the monotonic clock did not restart."""
    try:
        return path.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def restart_shift(
    saved: Mapping[str, Any], *, now_mono: float, now_wall: float, wall_synced: bool, boot_id: str | None
) -> tuple[float, Timing]:
    """How to move saved detector times onto this run's monotonic axis, and how well that is known.

    Same boot: the monotonic clock went on, nothing to move. Else, when the wall clock was synced both when
    the state was saved and now, the downtime is known from wall time. Else the downtime is unknown and not
    counted (durations become lower bounds), measured from the last save.
    """
    saved_mono, saved_wall = float(saved["saved_mono"]), float(saved["saved_wall"])
    if boot_id is not None and saved.get("boot_id") == boot_id and now_mono >= saved_mono:
        return 0.0, "monotonic"
    if saved.get("wall_synced") and wall_synced and now_wall >= saved_wall:
        return (now_mono - now_wall) - (saved_mono - saved_wall), "wall_clock"
    return now_mono - saved_mono, "lower_bound"


class ElevatorNode:
    """One lift car's retrofit box, on its ``runtime`` (outbox, alert book, uploader) and its ``voice``; it owns
    both (``close()`` stops them). Pins come from hal.gpio (a test installs gpiozero's MockFactory first).
    ``build_node(config)`` makes one from its config.

    Use ``run()`` for the service (blocks until SIGTERM), or ``start()``/``stop()`` to run it in a thread (the
    simulated community), or call ``step()`` yourself (tests with a ManualClock).
    """

    def __init__(
        self, config: NodeConfig, clock: Clock, runtime: NodeRuntime, voice: Voice, *, boot_id: str | None = None
    ) -> None:
        self.config = config
        self.section: ElevatorConfig = config.role_config
        self.clock = clock
        self.runtime = runtime
        self.voice = voice
        self.prompts = {prompt.id: prompt for prompt in prompts(self.section)}
        # a process restart within one boot keeps the monotonic clock: only the real clock can tell
        self.boot_id = (
            boot_id if boot_id is not None else read_boot_id() if isinstance(self.clock, SystemClock) else None
        )
        self.legacy_state_path = config.state_dir / LEGACY_STATE_FILE
        self._lock = threading.RLock()
        self._pending: list[Detection] = []  # detections the outbox refused; retried before anything new
        self._saved_signature: str | None = None
        self._saved_at: float | None = None
        self._next_reassurance: float | None = None
        self._taken_in: list[tuple[str, str]] = []  # a passenger's alarms a person at the central acknowledged
        runtime.acks.on_taken_in = self._on_taken_in  # (the uploader's thread; said on the next tick)
        self._orphans: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_snapshot: LiftSnapshot | None = None
        self._devices: dict[str, DigitalInputDevice | Button] = {}
        self.voice_check = VoiceCheck(None, "not checked yet")
        self._voice_check_due: float | None = None  # real monotonic time; None: at the first tick
        self._voice_checker: threading.Thread | None = None
        try:
            self.detector = self._restore()
            self._make_inputs()
        except BaseException:
            self._release()  # a node that cannot start must not leave its outbox or speaker open
            raise

    # ------------------------------------------------------------------------------------------- inputs
    def _make_inputs(self) -> None:
        gpio.use_pin_factory(self.config.gpio.pin_factory)
        s = self.section
        try:
            for name in ("door", "occupancy", "moving", "level_zone", "inspection", "power_fail"):
                pin = getattr(s, name)
                if pin is not None:
                    self._devices[name] = gpio.make_input(pin)
            if s.alarm_button is not None:
                self._devices["alarm_button"] = gpio.make_button(s.alarm_button)
        except BaseException:
            self._close_devices()
            raise
        for device in self._devices.values():
            device.when_activated = self._on_input
            device.when_deactivated = self._on_input

    def _on_input(self) -> None:
        # gpiozero calls this from its own thread; the runtime logs and counts a failure like a tick's
        self.runtime.run_tick(self.tick, self.clock.monotonic())

    def read_snapshot(self) -> LiftSnapshot:
        """The inputs now; optional sensors that are not fitted are None."""
        d = self._devices

        def active(name: str) -> bool | None:
            return None if name not in d else bool(d[name].is_active)

        power_fail = active("power_fail")
        return LiftSnapshot(
            door_closed=bool(active("door")),
            occupied=bool(active("occupancy")),
            moving=active("moving"),
            in_door_zone=active("level_zone"),
            alarm_button=active("alarm_button"),
            inspection=active("inspection"),
            power_ok=None if power_fail is None else not power_fail,
        )

    # --------------------------------------------------------------------------------------------- step
    def tick(self, now: float | None = None) -> None:
        """The runtime's tick (``now`` is ignored: the node reads its own clock under its lock)."""
        self.step()

    def step(self) -> list[Event]:
        """Read the inputs, run the detector, store its detections (outbox first), then speak; returns events."""
        with self._lock:
            if not self._devices:
                return []  # closed: a late gpiozero callback has nothing to read
            now = self.clock.monotonic()
            snapshot = self.read_snapshot()
            self.last_snapshot = snapshot
            fresh = self.detector.update(now, snapshot)
            detections, self._pending = self._pending + fresh, []
            events = self._store(now, detections)
            self._reconcile_orphans(now)
            self._speak(now, fresh)
            if not self._pending:  # the state must not go to disk ahead of the alerts it decided
                self._persist(now)
            self.runtime.set_health(
                last_sensor_read=self.clock.wall(),
                lift_inputs={k: v for k, v in snapshot.__dict__.items() if v is not None},
                open_incidents=[inc["kind"] for inc in self.detector.open_incidents()],
                audio=self.voice.health(),
                selftest={
                    "lift_inputs_read": True,
                    "state_saved": not self.runtime.outbox.volatile,
                    **self.voice_check.report(),
                },
            )
            return events

    def _store(self, now: float, detections: list[Detection]) -> list[Event]:
        """The detections (to the catalogue's recipients) and the detector's state in one outbox transaction."""
        if not detections:
            return []
        text, signature = self._state_record(now)
        try:
            events = self.runtime.emit_many(detections, state={STATE_KEY: text})
        except OutboxError as exc:
            # the alerts must not be lost: keep them, try again on the next tick
            names = ", ".join(f"{d.kind} {d.state}" for d in detections)
            log.critical("cannot store %s: %s; retrying next tick", names, exc)
            self._pending = detections
            return []
        self._saved(now, signature)
        return events

    def _reconcile_orphans(self, now: float) -> None:
        """Alerts the alert book holds open but this detector does not (its state was lost) are cleared once
        the detector has had time to see the incident again; a new raise meanwhile continues the same alert."""
        if not self._orphans:
            return
        open_now = {(inc["kind"], inc["key"]) for inc in self.detector.open_incidents()}
        for ident, deadline in list(self._orphans.items()):
            if ident in open_now:
                del self._orphans[ident]
            elif now >= deadline:
                del self._orphans[ident]
                detection = Detection(ident[0], "cleared", now, "info", {"reason": "not_seen_after_restart"}, ident[1])
                self._store(now, [detection])

    # -------------------------------------------------------------------------------------------- voice
    def _speak(self, now: float, detections: list[Detection]) -> None:
        voice = self.section.voice
        for d in detections:
            if d.kind == "entrapment" and d.state == "raised":
                self._say(ENTRAPMENT, voice.question_wav)
                self._next_reassurance = now + voice.repeat_s
            elif d.kind == "entrapment" and d.state == "updated" and d.payload.get("restored"):
                self._next_reassurance = now  # the passenger heard nothing while the node was down
            elif d.kind == "entrapment" and d.state == "cleared":
                self._next_reassurance = None
            elif d.kind == "alarm_button" and d.state in ("raised", "updated"):
                self._say(ALARM_ACK, voice.alarm_ack_wav)
        with self._lock:
            taken, self._taken_in = self._taken_in, []
        if any(self.runtime.alerts.is_open(kind, key) for kind, key in taken):  # not to a car already empty
            self._say(TAKEN_IN, voice.taken_in_wav)
        if self._next_reassurance is not None and now >= self._next_reassurance:
            self._say(REASSURANCE, voice.reassurance_wav)
            self._next_reassurance = max(self._next_reassurance + voice.repeat_s, now + voice.repeat_s / 2)

    def _on_taken_in(self, alert: OpenAlert) -> None:
        """EN 81-28's acknowledgement reached the car: the passenger is told a person has the alarm."""
        if alert.kind in ("entrapment", "alarm_button"):
            with self._lock:
                self._taken_in.append((alert.kind, alert.key))

    def _say(self, prompt_id: str, wav: Path | None) -> None:
        # queues and never raises (hal.audio); a configured WAV wins, then the pack, then espeak-ng
        self.voice.say(self.prompts[prompt_id], wav=wav)

    def check_voice(self) -> VoiceCheck:
        """The voice part of the self-test (common.speech.check): the entrapment prompt made as the car would say
        it, phonemes read, the audio path probed with silence. Stored for the next heartbeat; logged on failure."""
        result = check_voice(
            self.voice, self.prompts[ENTRAPMENT], self.config.audio.voice, wav=self.section.voice.question_wav
        )
        if self._stop.is_set():
            return result  # the node is closing: a probe cut short by the speaker's close says nothing
        if result.ok is False:
            log.error("voice self-test FAILED: %s", result.detail)
        elif result.ok and not self.voice_check.ok:
            log.info("voice self-test: %s", result.detail)
        self.voice_check = result
        return result

    def _check_voice_when_due(self) -> None:
        """Start the voice check on its own thread when due (it runs espeak-ng: never on the tick's)."""
        now = time.monotonic()  # real time, not the node's clock (VOICE_CHECK_INTERVAL_S)
        if self._voice_check_due is not None and now < self._voice_check_due:
            return
        if self._voice_checker is not None and self._voice_checker.is_alive():
            return
        self._voice_check_due = now + VOICE_CHECK_INTERVAL_S
        self._voice_checker = threading.Thread(target=self.check_voice, name="voice-check", daemon=True)
        self._voice_checker.start()

    # -------------------------------------------------------------------------------------- persistence
    def _restore(self) -> ElevatorDetector:
        """The detector as the outbox (or, once, an older version's state file) saved it; else a fresh one.

        Open alerts the book holds and the detector does not are adopted (``_adopt_orphans``): with a usable
        state there are none, as both are written in one transaction; they come from a state that could not be
        used (damaged, another version) or an older version's file."""
        source, saved = self._read_saved()
        detector = ElevatorDetector(self.section)
        if saved is not None:
            try:
                if not isinstance(saved, dict) or saved.get("version") != STATE_FILE_VERSION:
                    raise ValueError(f"state version {saved.get('version') if isinstance(saved, dict) else None!r}")
                shift, timing = restart_shift(
                    saved,
                    now_mono=self.clock.monotonic(),
                    now_wall=self.clock.wall(),
                    wall_synced=self.clock.wall_synced(),
                    boot_id=self.boot_id,
                )
                detector = ElevatorDetector.from_state(self.section, saved["detector"], shift=shift, timing=timing)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("elevator state in %s unusable (%s: %s): starting fresh", source, type(exc).__name__, exc)
            else:
                opened = [inc["kind"] for inc in detector.open_incidents()] or "none"
                log.warning("elevator state restored (%s, shift %.1f s); open incidents: %s", timing, shift, opened)
        self._adopt_orphans(detector)
        return detector

    def _read_saved(self) -> tuple[str, Any]:
        """(where, the saved record or None). The outbox's; else, once after an upgrade, the older state file
        (removed once the outbox holds the state: ``_persist``)."""
        text, source = self.runtime.outbox.read_state(STATE_KEY), "the outbox"
        if text is None:
            source = str(self.legacy_state_path)
            try:
                text = self.legacy_state_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return source, None
            except (OSError, UnicodeDecodeError) as exc:
                log.error("elevator state %s unreadable (%s: %s): starting fresh", source, type(exc).__name__, exc)
                return source, None
        try:
            return source, json.loads(text)
        except ValueError as exc:
            log.error("elevator state in %s unreadable (%s: %s): starting fresh", source, type(exc).__name__, exc)
            return source, None

    def _adopt_orphans(self, detector: ElevatorDetector) -> None:
        book = self.runtime.alerts
        mine = {(inc["kind"], inc["key"]) for inc in detector.open_incidents()}
        grace = self.section.entrapment_s + 60.0
        for alert in book.open_alerts():
            if alert.kind in KINDS and (alert.kind, alert.key) not in mine:
                log.warning("alert %s/%s open without detector state: kept for %.0f s", alert.kind, alert.key, grace)
                self._orphans[(alert.kind, alert.key)] = self.clock.monotonic() + grace

    def _state_record(self, now: float) -> tuple[str, str]:
        """(the detector's saved state as JSON text, its signature: the state without its clock)."""
        exported = self.detector.export_state()
        body = dict(exported["state"])
        body.pop("last_at", None)
        record = {
            "version": STATE_FILE_VERSION,
            "boot_id": self.boot_id,
            "saved_mono": now,
            "saved_wall": self.clock.wall(),
            "wall_synced": self.clock.wall_synced(),
            "detector": exported,
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")), json.dumps(body, sort_keys=True)

    def _persist(self, now: float, force: bool = False) -> None:
        """Save the detector state when it changed, and every ``state_save_s`` while an incident or timer runs.

        At most one save per MIN_SAVE_INTERVAL_S unless ``force`` (the node stopping): a flapping input must not
        fsync the SD card on every edge. The state goes to the outbox as node state; while the disk refuses
        writes the outbox holds it in memory (the self-test's ``state_saved`` is false) and writes it later.
        """
        text, signature = self._state_record(now)
        since = None if self._saved_at is None else now - self._saved_at
        changed = signature != self._saved_signature
        refresh = self.detector.busy() and (since is None or since >= self.section.state_save_s)
        if not changed and not refresh and not force:
            return
        if changed and not force and since is not None and since < MIN_SAVE_INTERVAL_S:
            return
        self._saved_at = now  # also after a failure: retry at the same pace, not on every tick
        try:
            self.runtime.outbox.put_state({STATE_KEY: text})
        except OutboxError as exc:
            log.error("cannot save the elevator state: %s: %s", type(exc).__name__, exc)
            return
        self._saved(now, signature)

    def _saved(self, now: float, signature: str) -> None:
        """The state is in the outbox: an older version's state file is not needed any more."""
        self._saved_at, self._saved_signature = now, signature
        if not self.runtime.outbox.volatile and self.legacy_state_path.exists():
            try:
                self.legacy_state_path.unlink()  # the outbox holds the state now
            except OSError as exc:
                log.error("cannot remove the old state file %s: %s", self.legacy_state_path, exc)

    # ---------------------------------------------------------------------------------------- lifecycle
    def run(self) -> None:
        """The service, until SIGTERM/SIGINT: the runtime's loop (signals, systemd watchdog, heartbeat,
        housekeeping) ticks the node every ``tick_s``, and a thread wakes it exactly at the detector's next
        deadline, so an alert is raised at its threshold rather than up to a tick later. Then state saved,
        pins freed."""
        self._start_thread(housekeeping=False)
        try:
            self.runtime.run(self.tick, self.section.tick_s, before_stop=self._save_last)
        finally:
            self._stop_thread()
            self.close()

    def start(self) -> None:
        """Run in a background thread (the simulated community); ``stop()`` ends it."""
        if self._thread is not None:
            return
        self.runtime.start()
        self._start_thread(housekeeping=True)

    def _start_thread(self, housekeeping: bool) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(housekeeping,), name=f"elevator-{self.config.node.id}", daemon=True
        )
        self._thread.start()

    def _loop(self, housekeeping: bool) -> None:
        while not self._stop.is_set():
            ticked_at = self.clock.monotonic()
            self.runtime.run_tick(self.tick, ticked_at)
            self._check_voice_when_due()
            if housekeeping:
                self.runtime.housekeeping(self.clock.monotonic())
            with self._lock:  # a gpiozero callback may be updating the detector on another thread
                deadline = self.detector.next_deadline()
            # wait until a point in time, not for a duration: time that passed meanwhile counts
            target = ticked_at + self.section.tick_s
            if deadline is not None:
                target = min(target, deadline)
            wait_on_clock(self.clock, target - self.clock.monotonic(), self._stop)

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def stop(self) -> None:
        """Stop the background thread started by ``start()`` and release everything."""
        self._stop_thread()
        self.close()

    def _close_devices(self) -> None:
        for device in self._devices.values():
            try:
                device.close()
            except (OSError, RuntimeError) as exc:
                log.warning("closing a GPIO device failed: %s: %s", type(exc).__name__, exc)
        self._devices = {}

    def _save_last(self) -> None:
        """The state's last save, while the outbox is still open (``run``: before the runtime stops)."""
        with self._lock:
            if self._devices and not self.runtime.closed:
                self._persist(self.clock.monotonic(), force=True)

    def close(self) -> None:
        """Save state, free the pins, close the voice and stop the runtime. Idempotent."""
        self._save_last()
        with self._lock:
            self._close_devices()
        self._release()

    def _release(self) -> None:
        self._stop.set()
        self.voice.speaker.close()
        self.runtime.stop()


def build_node(
    config: NodeConfig,
    clock: Clock | None = None,
    *,
    runtime: NodeRuntime | None = None,
    speaker: Speaker | None = None,
    boot_id: str | None = None,
) -> ElevatorNode:
    """An elevator node from its config: its runtime (made here unless given: a test's, a bench's with a
    listener) and its voice (the prompt pack and day/night volume of ``[audio]``; the speaker from ``[audio]``
    unless one is given: a recording one in tests, the community's timeline). The node owns them all."""
    clock = clock or SystemClock()
    runtime = runtime or NodeRuntime(config, clock)
    try:
        voice = make_voice(config.audio, config.node.timezone, clock.wall, speaker, prompts=prompts(config.role_config))
    except BaseException:
        runtime.stop()
        raise
    return ElevatorNode(config, clock, runtime, voice, boot_id=boot_id)


def run_node(config: NodeConfig) -> int:
    """``elevator-node run``: build the node from its config and run until stopped; the exit code."""
    try:
        node = build_node(config)
    except (BadPinFactory, GPIOZeroError, OutboxError, OSError) as exc:
        log.critical("cannot start the elevator node: %s: %s", type(exc).__name__, exc)
        return 1
    node.run()
    return 0
