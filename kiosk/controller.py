"""Runs the ride machine for the screen and the arcade button alike: effects to voice, listeners, outbox, network.

Presses and cancels are handled on the caller's thread (the UI thread for a touch), so the screen changes
before any network call starts; the rides API runs on one worker thread and its answers come back as events.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from common.clock import Clock
from common.speech.voice import Voice
from common.spoken import Language
from kiosk import ride_events as ev
from kiosk.client import CentralRejectedError, CentralUnreachableError, RidesClient
from kiosk.ride import RideMachine
from kiosk.texts import Texts

log = logging.getLogger(__name__)

ViewListener = Callable[[ev.RideView], None]
Recorder = Callable[[ev.Report], None]
AlertRaiser = Callable[[ev.RaiseAlert], None]


class KioskController:
    """The one ride flow of a kiosk; thread-safe: press/cancel/tick may come from any thread."""

    def __init__(
        self,
        machine: RideMachine,
        rides: RidesClient,
        clock: Clock,
        texts: Texts,
        *,
        voice: Voice | None = None,
        voice_language: Language = "zh",
        record: Recorder | None = None,
        raise_alert: AlertRaiser | None = None,
    ) -> None:
        self.machine = machine
        self.rides = rides
        self.clock = clock
        self.texts = texts
        self.voice = voice
        self.voice_language = voice_language
        self._record = record
        self._raise_alert = raise_alert
        self._listeners: list[ViewListener] = []
        self._lock = threading.RLock()
        self._work: queue.Queue[ev.Effect | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self.spoken: list[str] = []  # the last prompts, for health and tests (bounded)
        self.counts = {"presses": 0, "requests": 0, "polls": 0, "cancels": 0, "network_errors": 0}

    # ----------------------------------------------------------------------------------------- inputs
    def add_listener(self, listener: ViewListener) -> None:
        """Called with every new view (on the thread that caused it); must not block."""
        self._listeners.append(listener)

    def press(self, source: str = "screen") -> None:
        self.counts["presses"] += 1
        self.handle(ev.Press(source))

    def cancel(self, source: str = "screen") -> None:
        self.handle(ev.Cancel(source))

    def confirm_cancel(self, source: str = "screen") -> None:
        self.handle(ev.ConfirmCancel(source))

    def back(self, source: str = "screen") -> None:
        self.handle(ev.Back(source))

    def help(self, source: str = "screen") -> None:
        self.handle(ev.Help(source))

    def tick(self) -> None:
        self.handle(ev.Tick())

    def network_down(self, reason: str = "") -> None:
        self.handle(ev.NetworkDown(reason))

    def handle(self, event: ev.RideEvent) -> None:
        with self._lock:
            effects = self.machine.handle(self.clock.monotonic(), event)
            self._apply(effects)

    def resume(self, request_id: str, ride_id: str | None) -> None:
        """Pick up a ride saved before a restart (see RideMachine.resume)."""
        with self._lock:
            self._apply(self.machine.resume(self.clock.monotonic(), request_id, ride_id))

    def view(self) -> ev.RideView:
        with self._lock:
            return self.machine.view()

    @property
    def state(self) -> str:
        return self.machine.shown

    # ---------------------------------------------------------------------------------------- effects
    def _apply(self, effects: list[ev.Effect]) -> None:
        # an alert is stored before anything else is done about it; then what the resident sees and hears;
        # the outbox and the network after
        for effect in effects:
            if isinstance(effect, ev.RaiseAlert) and self._raise_alert is not None:
                self._raise_alert(effect)
        for effect in effects:
            if isinstance(effect, ev.Show):
                for listener in self._listeners:
                    listener(effect.view)
        for effect in effects:
            if isinstance(effect, ev.Speak):
                self._speak(effect)
        for effect in effects:
            if isinstance(effect, ev.Report):
                self._report(effect)
            elif isinstance(effect, ev.SendRequest | ev.PollRide | ev.CancelRide | ev.Probe):
                self._work.put(effect)

    def _speak(self, effect: ev.Speak) -> None:
        try:
            prompt = self.texts.prompt(effect.key, self.voice_language)
            fields = self.texts.voice_fields(effect.params, self.voice_language)
            text = prompt.fill(fields)
        except (KeyError, ValueError, IndexError) as exc:
            log.error("voice prompt %s cannot be filled in: %s", effect.key, exc)
            return
        self.spoken.append(text)
        del self.spoken[:-50]
        if self.voice is not None:
            self.voice.say(prompt, fields)  # the prompt pack's recording when it has one, else espeak-ng

    def _report(self, report: ev.Report) -> None:
        if self._record is None:
            return
        try:
            self._record(report)
        except (OSError, ValueError, RuntimeError) as exc:
            # the resident's ride matters more than the record of it: log and go on
            log.error("could not record %s: %s", report.kind, exc)

    # ----------------------------------------------------------------------------------------- worker
    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work_loop, name="kiosk-rides", daemon=True)
            self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._worker is not None:
            self._work.put(None)
            self._worker.join(timeout)
            self._worker = None

    def _work_loop(self) -> None:
        while True:
            effect = self._work.get()
            if effect is None:
                return
            event = self._call(effect)
            if event is not None:
                self.handle(event)

    def _call(self, effect: ev.Effect) -> ev.RideEvent | None:
        """One rides API call on the worker thread -> the event that reports its outcome."""
        about = getattr(effect, "request_id", None)
        try:
            if isinstance(effect, ev.SendRequest):
                self.counts["requests"] += 1
                st = self.rides.request(effect.request_id)
                return ev.RideReply(effect.request_id, st.ride_id, st.status, st.car, st.eta_s)
            if isinstance(effect, ev.PollRide):
                self.counts["polls"] += 1
                st = self.rides.status(effect.ride_id)
                return ev.RideReply(effect.request_id, st.ride_id, st.status, st.car, st.eta_s)
            if isinstance(effect, ev.CancelRide):
                self.counts["cancels"] += 1
                ride_id = effect.ride_id
                if ride_id is None:
                    # the order's answer never came: the same request id names the same ride (or makes it)
                    ride_id = self.rides.request(effect.request_id).ride_id
                self.rides.cancel(ride_id)
                return ev.CancelDone(effect.request_id)
            if isinstance(effect, ev.Probe):
                self.rides.probe()
                return ev.NetworkUp()
        except CentralUnreachableError as exc:
            self.counts["network_errors"] += 1
            log.warning("central unreachable (%s): %s", type(effect).__name__, exc)
            return ev.CentralUnreachable(about, str(exc))
        except CentralRejectedError as exc:
            log.error("central refused %s: HTTP %s %s", type(effect).__name__, exc.http_status, exc.reason)
            return ev.CentralRejected(about, exc.http_status, exc.reason)
        return None
