"""The kiosk node: ride flow + arcade button + LED + voice + outbox, with or without the touch screen.

``KioskNode`` is the whole kiosk except the screen: the screen (kiosk/app.py) attaches to its controller, and
``run_headless()`` runs it by button and voice alone (a kiosk whose screen broke still hails taxis).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from common.alerts import OpenAlert
from common.clock import Clock, SystemClock
from common.config import NodeConfig
from common.events import Detection
from common.files import fsync_path, write_atomic
from common.outbox import OutboxError
from common.service import NodeRuntime, systemd_notify, watchdog_interval_s
from common.speech.voice import Voice, VolumeSchedule, make_voice
from hal.audio import Speaker
from hal.backlight import Backlight, open_backlight
from kiosk.client import RidesClient
from kiosk.config import KioskConfig
from kiosk.controller import KioskController
from kiosk.ride import RideMachine
from kiosk.ride_events import HelpTakenIn, RaiseAlert, Report, RideView
from kiosk.texts import Texts, load_texts

if TYPE_CHECKING:  # gpiozero is imported only by a kiosk with an arcade button or LED (see _start_gpio)
    from gpiozero import LED, PWMLED, Button

log = logging.getLogger(__name__)
TICK_S = 0.25
HELP_KEY = "kiosk"


@dataclass(frozen=True)
class LedPattern:
    """How the arcade button's LED shows a state (seconds)."""

    kind: Literal["off", "on", "blink", "pulse"]
    on_s: float = 0.0
    off_s: float = 0.0


# slow pulse at idle so the button can be found; fast blink while the kiosk works; steady when a car comes;
# off when out of service (the hotline is on screen and in the voice prompt)
LED_PATTERNS: dict[str, LedPattern] = {
    "idle": LedPattern("pulse", 1.5, 1.5),
    "requesting": LedPattern("blink", 0.15, 0.15),
    "searching": LedPattern("blink", 0.15, 0.15),
    "assigned": LedPattern("on"),
    "arrived": LedPattern("on"),
    "no_car": LedPattern("blink", 1.0, 1.0),
    "cancelled": LedPattern("blink", 1.0, 1.0),
    "car_late": LedPattern("on"),
    "offline": LedPattern("off"),
    "error": LedPattern("off"),
    "help_requested": LedPattern("blink", 0.5, 0.5),
    "help_taken_in": LedPattern("on"),
    "confirm_cancel": LedPattern("on"),
}


def led_pattern(state: str, pwm: bool) -> LedPattern:
    """The LED pattern of ``state``; a pulse becomes a slow blink on a pin without PWM."""
    pattern = LED_PATTERNS.get(state, LedPattern("off"))
    if pattern.kind == "pulse" and not pwm:
        return LedPattern("blink", pattern.on_s, pattern.off_s)
    return pattern


def apply_led(led: LED | PWMLED, pattern: LedPattern) -> None:
    """Drive a gpiozero LED or PWMLED with ``pattern`` (blinks run on gpiozero's background thread)."""
    if pattern.kind == "off":
        led.off()
    elif pattern.kind == "on":
        led.on()
    elif pattern.kind == "pulse" and hasattr(led, "pulse"):
        led.pulse(fade_in_time=pattern.on_s, fade_out_time=pattern.off_s, background=True)
    else:
        led.blink(on_time=pattern.on_s, off_time=pattern.off_s, background=True)


class KioskNode:
    """One kiosk, on its ``runtime`` (outbox, alert book, uploader), ``voice`` and ``rides`` client; it owns them
    (``close()`` stops them). ``build_node(config)`` makes one from its config; tests and the simulated
    community give their own clock, speaker or rides client to ``build_node``."""

    def __init__(
        self,
        config: NodeConfig,
        clock: Clock,
        runtime: NodeRuntime,
        voice: Voice,
        rides: RidesClient,
        texts: Texts,
        *,
        use_gpio: bool = True,
    ) -> None:
        self.config = config
        kiosk: KioskConfig = config.role_config
        self.kiosk = kiosk
        self.clock = clock
        self.runtime = runtime
        self.texts = texts
        self.voice = voice
        self.speaker = voice.speaker
        self.rides = rides
        machine = RideMachine(kiosk.timing, now=self.clock.monotonic())
        self.controller = KioskController(
            machine,
            self.rides,
            self.clock,
            self.texts,
            voice=self.voice,
            voice_language=kiosk.voice_language,
            record=self._record,
            raise_alert=self._raise_alert,
        )
        # the desk acknowledged the help request: the resident waiting at the kiosk hears that, once (EN 81-28's
        # acknowledgement, common.acks; called on the uploader's thread)
        runtime.acks.on_taken_in = self._on_taken_in
        # everything the view listener touches exists before the button can be pressed
        self.button: Button | None = None
        self.led: LED | PWMLED | None = None
        self.led_state: LedPattern | None = None
        self.record_failures = 0
        self._help_seen: dict[str, float] = {}  # alert id -> monotonic time this process first saw it open
        # the screen dims at the same night hours the voice gets quieter ([audio] night_start..night_end)
        self.night = VolumeSchedule(config.audio, config.node.timezone)
        self.backlight: Backlight | None = None
        self._arcade_held = False
        self._view_changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._started = False
        self._saved_ride: tuple[str, str | None] | None = None
        self._to_resume = self._load_ride()
        self._saved_ride = self._to_resume  # on disk already
        self.controller.add_listener(self._on_view)
        if use_gpio and (kiosk.button is not None or kiosk.led is not None):
            self._start_gpio()
        self._on_view(machine.view())

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    @property
    def state(self) -> str:
        return self.controller.state

    def _start_gpio(self) -> None:
        # gpiozero (with its pin factories, 2.2 MB resident in the screen's process: measured) is loaded only by a
        # kiosk that has an arcade button or LED; a screen-only kiosk never needs it
        from gpiozero.exc import GPIOZeroError

        try:
            self._open_gpio()
        except GPIOZeroError as exc:
            # the screen still hails taxis: report the broken button to maintenance and go on without it
            log.error("arcade button/LED unusable: %s", exc)
            self.close_gpio()
            self.fault("gpio", f"{type(exc).__name__}: {exc}")
        else:
            self.part_ok("gpio")

    def _open_gpio(self) -> None:
        from hal.gpio import make_button, make_led, use_pin_factory

        use_pin_factory(self.config.gpio.pin_factory)
        if self.kiosk.button is not None:
            self.button = make_button(self.kiosk.button)
            # a press counts when the button is let go, so holding it for help never also orders a taxi;
            # gpiozero calls these on its own thread; the controller is thread-safe
            self.button.hold_time = self.kiosk.timing.arcade_hold_s
            self.button.when_held = self._arcade_held_down
            self.button.when_released = self._arcade_released
        if self.kiosk.led is not None:
            # dimmable: the idle pulse when the pin can do PWM (lgpio: any pin), else a slow blink
            self.led = make_led(self.kiosk.led, dimmable=self.kiosk.led_pwm)

    def _arcade_held_down(self, *_: Any) -> None:
        self._arcade_held = True
        self.controller.help("button")

    def _arcade_released(self, *_: Any) -> None:
        if self._arcade_held:
            self._arcade_held = False
            return
        self.controller.press("button")

    def close_gpio(self) -> None:
        for device in (self.button, self.led):
            if device is not None:
                device.close()
        self.button = self.led = None

    def fault(self, part: str, reason: str) -> None:
        """A broken part (screen, gpio): one alert to maintenance per part, open until the part works again."""
        detection = Detection(
            "kiosk_fault", "raised", self.clock.monotonic(), "warning", {"part": part, "reason": reason[:300]}, key=part
        )
        self.runtime.emit(detection)  # to the catalogue's recipients

    def part_ok(self, part: str) -> None:
        if self.runtime.alerts.is_open("kiosk_fault", part):
            self.runtime.emit(
                Detection("kiosk_fault", "cleared", self.clock.monotonic(), "info", {"part": part}, key=part)
            )

    # ------------------------------------------------------------------------------------- inputs
    def press(self, source: str = "button") -> None:
        """A press of the call button (the arcade button, or a simulated one)."""
        self.controller.press(source)

    def cancel(self, source: str = "button") -> None:
        self.controller.cancel(source)

    def tick(self, now: float | None = None) -> None:
        """Timeouts, polls and retries, then the runtime's housekeeping (committing readings, re-notifying)."""
        self.controller.tick()
        self._close_old_help()
        self._set_brightness()
        self.runtime.housekeeping(self.clock.monotonic() if now is None else now)

    def safe_tick(self) -> None:
        """``tick`` for the screen's clock: an exception is logged and counted by the runtime, never fatal."""
        self.runtime.run_tick(self.tick, self.clock.monotonic())

    # ------------------------------------------------------------------------------------- effects
    def _on_view(self, view: RideView) -> None:
        pattern = led_pattern(view.state, hasattr(self.led, "pulse"))
        if self.led is not None and pattern != self.led_state:
            apply_led(self.led, pattern)
        self.led_state = pattern
        self.runtime.set_health(
            kiosk_state=view.state, presses=self.controller.counts["presses"], audio=self.voice.health()
        )
        self._save_ride()
        with self._view_changed:
            self._view_changed.notify_all()

    # ------------------------------------------------------------------------------------- restarts
    @property
    def ride_file(self) -> Path:
        return self.state_dir / "ride.json"

    def _save_ride(self) -> None:
        """Keep the active ride on disk so a restart (watchdog, power blip) can pick it up again: fsynced, since a
        power cut would otherwise leave an empty file (found under LazyFS: changbai-bench --only power_cut)."""
        active = self.controller.machine.active_ride()
        if active == self._saved_ride or self._to_resume is not None:
            return  # unchanged, or a saved ride still waits for start() to pick it up
        try:
            if active is None:
                self.ride_file.unlink(missing_ok=True)
                fsync_path(self.ride_file.parent)
            else:
                body = {"request_id": active[0], "ride_id": active[1], "saved_wall": self.clock.wall()}
                write_atomic(self.ride_file, json.dumps(body))
        except OSError as exc:
            log.error("cannot save the active ride to %s: %s", self.ride_file, exc)
            return
        self._saved_ride = active

    def _load_ride(self) -> tuple[str, str | None] | None:
        try:
            body = json.loads(self.ride_file.read_text(encoding="utf-8"))
            request_id, ride_id, saved = body["request_id"], body.get("ride_id"), float(body["saved_wall"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring unreadable %s: %s", self.ride_file, exc)
            return None
        if not isinstance(request_id, str) or not (ride_id is None or isinstance(ride_id, str)):
            log.error("ignoring %s: bad ids", self.ride_file)
            return None
        age = self.clock.wall() - saved
        if self.clock.wall_synced() and age > self.kiosk.timing.assigned_max_s:
            log.info("the ride saved %.0f s ago is too old to pick up", age)
            self.ride_file.unlink(missing_ok=True)
            return None
        return (request_id, ride_id)

    def wait_for_state(self, *states: str, timeout_s: float = 10.0) -> bool:
        """Block (real seconds) until the kiosk shows one of ``states``; False on timeout. For scenarios."""
        with self._view_changed:
            return self._view_changed.wait_for(lambda: self.controller.state in states, timeout_s)

    def _on_taken_in(self, alert: OpenAlert) -> None:
        if alert.kind == "help_requested":
            self.controller.handle(HelpTakenIn())

    def _raise_alert(self, alert: RaiseAlert) -> None:
        """help_requested: an alert to the property desk, re-sent until it closes (help_clear_s after)."""
        detection = Detection(alert.kind, "raised", self.clock.monotonic(), alert.severity, alert.payload, key=HELP_KEY)
        try:
            self.runtime.emit(detection)  # to the catalogue's recipients
        except OutboxError as exc:
            self.record_failures += 1
            self.runtime.set_health(record_failures=self.record_failures)
            log.error("could not store the help request in the outbox: %s", exc)
            return
        self.runtime.uploader.wake()

    def open_backlight(self) -> None:
        """Take the display's backlight (for the screen; a headless kiosk leaves it alone)."""
        self.backlight = open_backlight(self.kiosk.screen.backlight)

    def brightness_now(self) -> int:
        """Backlight percent for this moment: night_brightness from night_start to night_end, else day."""
        screen = self.kiosk.screen
        local = datetime.fromtimestamp(self.clock.wall(), ZoneInfo(self.night.timezone)).time()
        return screen.night_brightness if self.night.is_night(local) else screen.day_brightness

    def _set_brightness(self) -> None:
        if self.backlight is not None and self.backlight.set_percent(self.brightness_now()):
            self.runtime.set_health(screen_brightness=self.backlight.percent)

    def _close_old_help(self) -> None:
        """The node cannot see help arrive: the request is re-sent until help_clear_s, then closed on the node (the
        central keeps it open until an operator resolves it). Its age is the lesser of the wall clock's and the
        monotonic clock's since this process first saw it: a wall clock stepped forward (NTP after a power cut)
        must not close it early; after a restart it may stay open up to help_clear_s longer."""
        now = self.clock.monotonic()
        helps = [a for a in self.runtime.alerts.open_alerts() if a.kind == "help_requested"]
        self._help_seen = {a.alert_id: self._help_seen.get(a.alert_id, now) for a in helps}
        for alert in helps:
            age = min(self.clock.wall() - alert.raised_wall, now - self._help_seen[alert.alert_id])
            if age >= self.kiosk.timing.help_clear_s:
                payload = {"why": "help_clear_s passed on the kiosk"}
                self.runtime.emit(Detection("help_requested", "cleared", now, "info", payload, key=alert.key))

    def _record(self, report: Report) -> None:
        try:
            self.runtime.record_state(report.kind, dict(report.payload), report.severity)
        except OutboxError as exc:
            # the resident's ride matters more than its record: the ride goes on, the failure is counted
            self.record_failures += 1
            self.runtime.set_health(record_failures=self.record_failures)
            log.error("could not store %s in the outbox: %s", report.kind, exc)
            return
        # ride events are worth sending now (the operator page shows rides live), not at the next idle wake-up
        self.runtime.uploader.wake()

    # ------------------------------------------------------------------------------------- running
    def start(self) -> None:
        """Start the uploader and the rides worker (the screen or ``run_headless`` drives the ticks)."""
        if not self._started:
            self._started = True
            self.runtime.start()
            self.controller.start()
            if self._to_resume is not None:
                log.info("picking up ride %s from before the restart", self._to_resume[0])
                self.controller.resume(*self._to_resume)
                self._to_resume = None

    def run_headless(self) -> int:
        """Button, LED and voice only, until SIGTERM; the runtime pings the watchdog from this loop."""
        self.start()
        try:
            self.runtime.run(self.tick, TICK_S)
        finally:
            self.close()
        return 0

    def start_thread(self) -> None:
        """``run_headless`` on a background thread (the simulated community); ``close()`` stops it."""
        self.start()
        self._thread = threading.Thread(target=self.runtime.run, args=(self.tick, TICK_S), name="kiosk-node")
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        """Stop everything; idempotent."""
        self.runtime.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
            self._thread = None
        self.controller.stop()
        self.runtime.stop()
        self.close_gpio()
        self.rides.close()
        self.speaker.close()

    # ------------------------------------------------------------------------------------- systemd
    @staticmethod
    def notify(message: str) -> bool:
        return systemd_notify(message)

    def watchdog_period_s(self) -> float:
        """How often the UI thread pings the watchdog: the config, else half of WatchdogSec, else never."""
        return self.kiosk.watchdog_ping_s or watchdog_interval_s() or 0.0


def build_node(
    config: NodeConfig,
    clock: Clock | None = None,
    *,
    texts: Texts | None = None,
    runtime: NodeRuntime | None = None,
    rides: RidesClient | None = None,
    speaker: Speaker | None = None,
    use_gpio: bool = True,
) -> KioskNode:
    """A kiosk from its config: its texts (``[kiosk] texts``), runtime, voice (the prompts in the kiosk's voice
    language, the speaker from ``[audio]`` unless one is given) and rides client (to ``[central]``), each made
    here unless given. The node owns them all."""
    clock = clock or SystemClock()
    kiosk: KioskConfig = config.role_config
    texts = texts or load_texts(kiosk.texts, kiosk.pickup_point, kiosk.hotline, kiosk.pickup_point_en)
    runtime = runtime or NodeRuntime(config, clock)
    voice: Voice | None = None
    try:
        language = kiosk.voice_language
        voice = make_voice(
            config.audio, config.node.timezone, clock.wall, speaker, language, prompts=texts.prompts(language)
        )
        rides = rides or RidesClient.from_config(config)
        return KioskNode(config, clock, runtime, voice, rides, texts, use_gpio=use_gpio)
    except BaseException:  # a kiosk that cannot start leaves nothing open
        if rides is not None:
            rides.close()
        if voice is not None:
            voice.speaker.close()
        runtime.stop()
        raise
