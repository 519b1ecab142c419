"""The ride state machine: one press orders one car; pure (time, event) -> effects, no I/O, no Kivy.

The screen, the arcade button and the voice all run on the effects this machine returns. Network replies come
back as events; the machine never waits for one, so the kiosk can answer a press at once and never hangs. A new
ride starts only from idle; help (told, then taken in) and the cancel question are overlays shown over the ride,
which goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiosk.config import RideTimingSection
from kiosk.ride_events import (
    ACTIVE_STATES,
    CENTRAL_STATUSES,
    CLOSED_BY_CENTRAL,
    DRIVER_STATES,
    HELP_SCREENS,
    RESULT_STATES,
    Back,
    Cancel,
    CancelDone,
    CancelRide,
    Car,
    CentralRejected,
    CentralUnreachable,
    ConfirmCancel,
    Effect,
    Help,
    HelpTakenIn,
    NetworkDown,
    NetworkUp,
    PollRide,
    Press,
    Probe,
    RaiseAlert,
    Report,
    RideEvent,
    RideReply,
    RideState,
    RideView,
    SendRequest,
    Show,
    Speak,
    Tick,
    new_request_id,
)

# a real change of the ride ends an overlay: the resident must see the plate, the arrival or the outcome
OVERLAY_BREAKERS = frozenset({"idle", "assigned", "arrived", "no_car", "cancelled", "error"})


class RideMachine:
    """One kiosk's ride: ``handle(now, event) -> effects``. ``now`` is monotonic seconds.

    ``timing`` is the ``[kiosk.timing]`` config section itself (one place for every default).
    """

    def __init__(
        self,
        timing: RideTimingSection | None = None,
        make_request_id: Callable[[], str] = new_request_id,
        now: float = 0.0,
    ) -> None:
        self.t = timing or RideTimingSection()
        self._make_request_id = make_request_id
        self.state: RideState = "idle"
        self.since = now
        self.overlay: RideState | None = None  # help_requested or confirm_cancel, over ``state``
        self.overlay_since = now
        self.request_id: str | None = None
        self.ride_id: str | None = None
        self.car: Car | None = None
        self.eta_due: float | None = None
        self.late_at: float | None = None  # promised arrival + late_after_s, fixed when the car is assigned
        self.requested_at: float | None = None  # the press that started the ride
        self.searching_since: float | None = None
        self.assigned_at: float | None = None
        self.next_reassure: float | None = None
        # a network call in flight: (what, sent at); one at a time, a reply or its timeout frees it
        self.in_flight: tuple[str, float] | None = None
        self.next_due: float | None = None  # next poll/retry/probe
        # a ride to cancel that the central has not confirmed yet (the screen has moved on already)
        self.cancel_owed: str | None = None
        self.cancel_ride_id: str | None = None
        self.cancel_next: float | None = None
        self.resumed = False  # the ride came from before a restart; its first answer decides what to show

    def resume(self, now: float, request_id: str, ride_id: str | None) -> list[Effect]:
        """Pick up a ride the kiosk had before a restart (watchdog, power blip): ask the central where it is.

        Nothing is ordered twice (the same request id); a ride the central has closed meanwhile returns the
        kiosk to idle without announcing an old outcome to whoever stands at the gate now.
        """
        out: list[Effect] = []
        self.request_id, self.ride_id = request_id, ride_id
        self.requested_at = now
        self.resumed = True
        self._enter(now, "requesting" if ride_id is None else "searching", out)
        if ride_id is not None:
            self.searching_since = now
        out.append(Report("ride_resumed", "info", {"request_id": request_id, "ride_id": ride_id}))
        self._send(now, out)
        return out

    def active_ride(self) -> tuple[str, str | None] | None:
        """(request id, ride id) of a ride that may still bring a car, for saving across a restart."""
        if self.request_id is None:
            return None
        return (self.request_id, self.ride_id)

    # ---------------------------------------------------------------------------------------- queries
    @property
    def shown(self) -> RideState:
        """The screen now: the overlay if there is one, else the ride's state."""
        return self.overlay or self.state

    def view(self) -> RideView:
        since = self.overlay_since if self.overlay else self.since
        return RideView(
            self.shown,
            self.car,
            self.eta_due,
            self.ride_id,
            since,
            self.request_id is not None,
            self.requested_at,
            self.state,
        )

    def eta_left(self, now: float) -> float | None:
        return None if self.eta_due is None else max(0.0, self.eta_due - now)

    def voice_params(self, now: float) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.car is not None:
            car = self.car
            params.update(plate=car.plate, colour=car.colour, model=car.model)
            params.update(colour_zh=car.colour_zh or car.colour, model_zh=car.model_zh or car.model)
        left = self.eta_left(now)
        if left is not None:
            params["eta_min"] = max(1, round(left / 60))
        if self.requested_at is not None:
            params["minutes"] = max(1, int((now - self.requested_at) // 60))
        return params

    # ---------------------------------------------------------------------------------------- events
    def handle(self, now: float, event: RideEvent) -> list[Effect]:
        """Apply one event at monotonic time ``now``; returns what to do, in order."""
        out: list[Effect] = []
        match event:
            case Press():
                self._on_press(now, event, out)
            case Cancel():
                self._on_cancel(now, event, out)
            case ConfirmCancel():
                if self.overlay == "confirm_cancel":
                    self.overlay = None
                    self._cancel_now(now, event.source, out)
            case Back():
                self._on_back(now, out)
            case Help():
                self._on_help(now, event, out)
            case HelpTakenIn():
                self._on_help_taken_in(now, out)
            case RideReply():
                self._on_reply(now, event, out)
            case CentralUnreachable():
                self._on_unreachable(now, event, out)
            case CentralRejected():
                self._on_rejected(now, event, out)
            case CancelDone():
                if event.request_id == self.cancel_owed:
                    self._clear_cancel()
            case NetworkDown():
                if self.state == "idle":
                    self._enter(now, "offline", out)
                    out.append(Report("central_unreachable", "warning", {"reason": event.reason}))
                    self.next_due = now + self.t.retry_interval_s
            case NetworkUp():
                self._on_network_up(now, out)
            case Tick():
                pass
        self._due(now, out)
        return out

    def _on_press(self, now: float, event: Press, out: list[Effect]) -> None:
        out.append(Report("button_pressed", "info", {"source": event.source, "state": self.shown}))
        if self.overlay == "confirm_cancel":
            self._close_overlay(now, out)  # the big button means "keep my taxi"
            out.append(Speak(self.state, self.voice_params(now)))
            return
        if self.state in RESULT_STATES - {"arrived"} and self.overlay is None:
            self._reset(now, out)  # no car / cancelled / error: back to idle, where the next press orders
            return
        if self.overlay is not None or self.state != "idle":
            # never a second car: say again where things stand (the plate again on arrived, the hotline offline)
            out.append(Speak(self.shown, self.voice_params(now)))
            out.append(Show(self.view()))
            return
        self.request_id = self._make_request_id()
        self.ride_id = None
        self.car = None
        self.eta_due = self.late_at = None
        self.requested_at = now
        self.searching_since = None
        self.assigned_at = None
        self._enter(now, "requesting", out)
        out.append(Report("ride_requested", "info", {"request_id": self.request_id, "source": event.source}))
        self._send(now, out)

    def _on_cancel(self, now: float, event: Cancel, out: list[Effect]) -> None:
        if self.overlay is not None:
            return  # neither overlay has a cancel button: a stale tap
        if self.state in RESULT_STATES:
            self._reset(now, out)
            return
        if self.request_id is None:
            return  # idle, or offline with nothing ordered: nothing to cancel
        if self.car is not None and (self.state in DRIVER_STATES or self.state == "offline"):
            self._open_overlay(now, "confirm_cancel", out)  # a driver is on the way: ask first
            return
        self._cancel_now(now, event.source, out)

    def _cancel_now(self, now: float, source: str, out: list[Effect]) -> None:
        if self.request_id is None:
            return
        request_id, ride_id = self.request_id, self.ride_id
        self.cancel_owed, self.cancel_ride_id, self.cancel_next = request_id, ride_id, now
        payload = {"request_id": request_id, "ride_id": ride_id, "by": "resident", "source": source}
        out.append(Report("ride_cancelled", "info", payload))
        self._drop_ride()
        self._enter(now, "cancelled", out)

    def _on_back(self, now: float, out: list[Effect]) -> None:
        if self.overlay is not None:
            self._close_overlay(now, out)
        elif self.state in RESULT_STATES:
            self._reset(now, out)

    def _on_help(self, now: float, event: Help, out: list[Effect]) -> None:
        if self.overlay in HELP_SCREENS:
            self._open_overlay(now, self.overlay, out)  # asked again while told: told again, no second alert
            return
        payload: dict[str, Any] = {"source": event.source, "kiosk_state": self.state}
        if self.request_id is not None:
            payload["request_id"] = self.request_id
        if self.car is not None:
            payload["plate"] = self.car.plate
        out.append(RaiseAlert("help_requested", "warning", payload))
        self._open_overlay(now, "help_requested", out)

    def _on_help_taken_in(self, now: float, out: list[Effect]) -> None:
        if self.overlay == "confirm_cancel":
            out.append(Speak("help_taken_in", self.voice_params(now)))  # the question she is answering stays
            return
        # shown even after the help screen timed out: she is likely still waiting there (help_hold_s again)
        self._open_overlay(now, "help_taken_in", out)

    def _on_reply(self, now: float, reply: RideReply, out: list[Effect]) -> None:
        if reply.request_id == self.cancel_owed:
            if reply.status in ("cancelled", "arrived", "no_car"):
                self._clear_cancel()  # the central has closed the ride we wanted cancelled
            elif self.cancel_ride_id is None:
                self.cancel_ride_id = reply.ride_id  # cancelled before the order's answer came back
        if reply.request_id != self.request_id:
            return  # a late answer about a ride the kiosk has moved on from
        self.in_flight = None
        if reply.status not in CENTRAL_STATUSES:
            self._fault(now, out, 0, f"unknown ride status {reply.status!r}")
            return
        if self.resumed:
            self.resumed = False
            if reply.status in ("arrived", "no_car", "cancelled"):
                payload = {"request_id": self.request_id, "status": reply.status}
                out.append(Report("ride_closed_while_down", "info", payload))
                self._reset(now, out)
                return
        if self.state == "offline":
            out.append(Report("central_reachable", "info", {}))
        self.ride_id = reply.ride_id
        if reply.eta_s is not None:
            self.eta_due = now + max(0.0, reply.eta_s)
        status = reply.status
        if status == "searching":
            if self.searching_since is None:
                self.searching_since = now
            if self.state != "searching":
                self._enter(now, "searching", out)
                self.next_reassure = now + self.t.reassure_every_s
        elif status == "assigned":
            if reply.car is None or not reply.car.plate:
                self._fault(now, out, 0, "assigned without a plate")
                return
            if self.state not in DRIVER_STATES or reply.car != self.car:
                self.car = reply.car
                self.assigned_at = now
                promised = self.eta_due if self.eta_due is not None else now + self.t.late_without_eta_s
                self.late_at = promised + (self.t.late_after_s if self.eta_due is not None else 0.0)
                self._enter(now, "assigned", out)
                payload = {"request_id": self.request_id, "ride_id": self.ride_id, "plate": self.car.plate}
                out.append(Report("ride_assigned", "info", payload))
        else:  # arrived, no_car, cancelled: the central closed the ride
            out.append(Report(f"ride_{status}", "info", {"request_id": self.request_id, "ride_id": self.ride_id}))
            self._drop_ride()
            self._enter(now, CLOSED_BY_CENTRAL[status], out)
            return
        self.next_due = now + self.t.poll_interval_s

    def _on_unreachable(self, now: float, event: CentralUnreachable, out: list[Effect]) -> None:
        if event.request_id is not None and event.request_id != self.request_id:
            return
        self.in_flight = None
        if self.state in ACTIVE_STATES or (event.request_id is None and self.state == "idle"):
            self._enter(now, "offline", out)
            out.append(Report("central_unreachable", "warning", {"reason": event.reason}))
        self.next_due = now + self.t.retry_interval_s

    def _on_rejected(self, now: float, event: CentralRejected, out: list[Effect]) -> None:
        if event.request_id is not None and event.request_id == self.cancel_owed:
            payload = {"http_status": event.http_status, "reason": event.reason[:200]}
            out.append(Report("cancel_refused", "warning", payload))
            self._clear_cancel()  # e.g. the ride is already closed; asking again will not change the answer
            return
        if event.request_id is not None and event.request_id != self.request_id:
            return
        self.in_flight = None
        self._fault(now, out, event.http_status, event.reason)

    def _on_network_up(self, now: float, out: list[Effect]) -> None:
        if self.state != "offline":
            return
        out.append(Report("central_reachable", "info", {}))
        if self.request_id is None:
            self._enter(now, "idle", out)
            self.next_due = None
        else:
            self.next_due = now  # resend or poll at once
            self.in_flight = None

    # ------------------------------------------------------------------------------------------ time
    def _due(self, now: float, out: list[Effect]) -> None:
        """Timeouts, polls, retries and prompts that are due at ``now``."""
        t = self.t
        if self.in_flight is not None and now - self.in_flight[1] >= t.reply_timeout_s:
            # the worker never answered: never leave a spinner hanging
            self.in_flight = None
            if self.state in ACTIVE_STATES:
                self._enter(now, "offline", out)
                out.append(Report("central_unreachable", "warning", {"reason": "no reply"}))
            self.next_due = now + t.retry_interval_s
        self._due_overlay(now, out)
        self._due_screen(now, out)
        if self.state == "offline" and self.request_id is not None and self.requested_at is not None:
            waited = now - self.requested_at
            if self.ride_id is None and waited >= t.request_give_up_s:
                # the order never got through: stop, and cancel it in case it reached the central after all
                self._give_up(now, out, "offline", "request not delivered")
            elif waited >= t.assigned_max_s:
                self._give_up(now, out, "offline", "central unreachable for the whole ride")
        if self.in_flight is None and self.next_due is not None and now >= self.next_due:
            self._send(now, out)
        if self.cancel_owed is not None and self.cancel_next is not None and now >= self.cancel_next:
            out.append(CancelRide(self.cancel_owed, self.cancel_ride_id))
            self.cancel_next = now + t.retry_interval_s

    def _due_overlay(self, now: float, out: list[Effect]) -> None:
        t = self.t
        hold = {"help_requested": t.help_hold_s, "help_taken_in": t.help_hold_s, "confirm_cancel": t.confirm_hold_s}
        if self.overlay is not None and now - self.overlay_since >= hold[self.overlay]:
            self._close_overlay(now, out)  # an unanswered cancel question keeps the ride

    def _due_screen(self, now: float, out: list[Effect]) -> None:
        t, state = self.t, self.state
        hold = t.arrived_hold_s if state == "arrived" else t.result_hold_s
        if state in RESULT_STATES and now - self.since >= hold:
            self._reset(now, out)
        elif (
            state == "searching"
            and self.searching_since is not None
            and now - self.searching_since >= t.search_give_up_s
        ):
            self._give_up(now, out, "no_car", "searching too long")
        elif state in DRIVER_STATES and self.assigned_at is not None and now - self.assigned_at >= t.assigned_max_s:
            out.append(Report("ride_expired", "warning", {"request_id": self.request_id, "ride_id": self.ride_id}))
            self.cancel_owed, self.cancel_ride_id, self.cancel_next = self.request_id, self.ride_id, now
            self._reset(now, out)
        elif state == "assigned" and self.late_at is not None and now >= self.late_at:
            payload = {"request_id": self.request_id, "ride_id": self.ride_id, "plate": self.car and self.car.plate}
            out.append(Report("ride_late", "warning", payload))
            self._enter(now, "car_late", out)
        elif state == "searching" and self.next_reassure is not None and now >= self.next_reassure:
            self.next_reassure = now + t.reassure_every_s
            if self.overlay is None:
                out.append(Speak("searching_wait", self.voice_params(now)))

    def _give_up(self, now: float, out: list[Effect], state: RideState, why: str) -> None:
        payload = {"request_id": self.request_id, "ride_id": self.ride_id, "why": why}
        out.append(Report("ride_given_up", "warning", payload))
        self.cancel_owed, self.cancel_ride_id, self.cancel_next = self.request_id, self.ride_id, now
        self._drop_ride()
        self._enter(now, state, out)
        if state == "offline":
            self.next_due = now + self.t.retry_interval_s

    def _fault(self, now: float, out: list[Effect], http_status: int, reason: str) -> None:
        out.append(Report("central_error", "warning", {"http_status": http_status, "reason": reason[:200]}))
        if self.request_id is not None and self.ride_id is not None:
            # the central knows this ride: make sure no car comes for a kiosk that shows an error
            self.cancel_owed, self.cancel_ride_id, self.cancel_next = self.request_id, self.ride_id, now
        self._drop_ride()
        self._enter(now, "error", out)

    # -------------------------------------------------------------------------------------- helpers
    def _send(self, now: float, out: list[Effect]) -> None:
        if self.request_id is None:
            if self.state == "offline":
                out.append(Probe())
                self.in_flight = ("probe", now)
            self.next_due = None if self.state != "offline" else now + self.t.retry_interval_s
            return
        if self.ride_id is None:
            out.append(SendRequest(self.request_id))
            self.in_flight = ("request", now)
        else:
            out.append(PollRide(self.request_id, self.ride_id))
            self.in_flight = ("poll", now)
        self.next_due = None

    def _enter(self, now: float, state: RideState, out: list[Effect]) -> None:
        self.state = state
        self.since = now
        if self.overlay is not None and state in OVERLAY_BREAKERS:
            self.overlay = None
        if self.overlay is None:
            out.append(Show(self.view()))
        out.append(Speak(state, self.voice_params(now)))

    def _open_overlay(self, now: float, overlay: RideState, out: list[Effect]) -> None:
        self.overlay, self.overlay_since = overlay, now
        out.append(Show(self.view()))
        out.append(Speak(overlay, self.voice_params(now)))

    def _close_overlay(self, now: float, out: list[Effect]) -> None:
        self.overlay = None
        out.append(Show(self.view()))

    def _drop_ride(self) -> None:
        """Forget the current ride (the car stays on screen for arrived; no more network for it)."""
        self.request_id = None
        self.ride_id = None
        self.resumed = False
        self.in_flight = None
        self.next_due = None
        self.searching_since = None
        self.assigned_at = None
        self.requested_at = None
        self.next_reassure = None
        self.late_at = None

    def _reset(self, now: float, out: list[Effect]) -> None:
        self._drop_ride()
        self.car = None
        self.eta_due = None
        self._enter(now, "idle", out)

    def _clear_cancel(self) -> None:
        self.cancel_owed = self.cancel_ride_id = self.cancel_next = None
