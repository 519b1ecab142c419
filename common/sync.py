"""Uploader: drains the outbox to the central (POST /api/v1/events) and sends the heartbeat and self-test.

Deletes from the outbox exactly the ids the central acknowledged. A reply is judged by its status code and by
the typed refusal body only our central sends (common/reply.py): 401/403 from our central pause uploads; 413
splits the batch; an event becomes a dead letter only when our central says that event is invalid; anything
else (network errors, 5xx, 429, a proxy's 404 page, garbage) keeps everything and backs off exponentially with
full jitter, honouring Retry-After. All timing comes from the injected Clock, so ``run_once`` can be driven by
a ManualClock in tests.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.acks import Acknowledgements
from common.clock import Clock, wait_on_clock
from common.config import NodeConfig
from common.contract import API_PREFIX, PRIORITY_HEADER
from common.events import Event
from common.http import HttpClient, HttpFailure, HttpReply
from common.outbox import Outbox, OutboxError
from common.reply import Verdict, backoff_delay, classify_upload, describe, is_auth_refusal
from common.report import heartbeat_body, package_version
from common.selftest import SelfTest
from common.token import TokenFile

log = logging.getLogger(__name__)

API = API_PREFIX
# while an alert waits, retries are at least this frequent whatever backoff_max_s says (EN 81-28: shortest delay)
ALERT_BACKOFF_MAX_S = 30.0
TOKEN_RECHECK_S = 60.0
IDLE_WAKE_S = 60.0
MAX_FINAL_BATCHES = 20  # at a stop on a refusing disk: what memory holds (its bound / batch size, twice)


@dataclass
class SyncResult:
    """What one ``run_once`` did. ``status``: idle, sent, waiting (batch not due), backoff, auth_blocked,
    no_token, failed. ``held``: events the central did not take this time and that wait for a later retry."""

    status: str
    sent: int = 0
    acked: int = 0
    dead_lettered: int = 0
    held: int = 0
    requests: int = 0
    error: str | None = None
    retry_in_s: float | None = None
    heartbeat_sent: bool = False
    selftest: bool = False
    more: bool = False


class _Failure(Exception):
    """A failed upload; ``kind`` (transient, auth) says how to react."""

    def __init__(self, kind: str, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error
        self.retry_after = retry_after


class Uploader:
    """Sends the outbox to the central. ``run_once()`` does one step; ``start()`` runs it on a thread.

    ``health`` (optional) returns the node's health fields for the heartbeat (e.g. ``last_sensor_read``);
    a ``selftest`` mapping in it is merged into the self-test report.
    """

    def __init__(
        self,
        config: NodeConfig,
        outbox: Outbox,
        clock: Clock,
        health: Callable[[], dict] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._central = config.central
        self._node_id = config.node.id
        self._outbox = outbox
        self._clock = clock
        self._health = health
        self._rng = rng or random.Random()
        base = self._central.url.rstrip("/")
        self.events_url = f"{base}{API}/events"
        self.heartbeat_url = f"{base}{API}/heartbeat"
        self.api_url = f"{base}{API}"
        self.acks: Acknowledgements | None = None  # set by the node's runtime: asks what a person has taken in
        self._http = HttpClient.for_central(self._central)
        self.version = package_version()
        host = (urllib.parse.urlsplit(self._central.url).hostname or "").lower()
        if self._central.url.lower().startswith("http://") and host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("central.url %s is plain HTTP: the node's token and events cross the network unencrypted", base)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        now = clock.monotonic()
        self._started = now
        self._next_attempt = now
        self._failures = 0
        self._auth_blocked = False
        self._state = "idle"
        self._readings_since: float | None = None
        self._next_heartbeat = now
        self.selftest = SelfTest(config, outbox, clock)
        self._token = TokenFile(self._central.token_file)
        # events the central did not take (a lone event still 413, a rejection with a code that is not final):
        # kept in the outbox, left out of batches until this monotonic time, so they cannot stall the rest
        self._held: dict[str, float] = {}
        self.last_success_wall: float | None = None
        self.last_error: str | None = None
        self.last_error_wall: float | None = None
        self.last_heartbeat_wall: float | None = None
        self.totals = {"requests": 0, "acked": 0, "dead_lettered": 0, "held": 0, "heartbeats": 0, "loop_errors": 0}
        outbox.add_listener(self._on_put)

    # ------------------------------------------------------------------------------------------ waking
    def _on_put(self, event: Event) -> None:
        if event.priority == "alert":
            # an alert goes out at once: skip any backoff or auth wait for one attempt
            with self._lock:
                self._next_attempt = min(self._next_attempt, self._clock.monotonic())
            self._wake.set()
        elif event.priority == "state" or self._readings_since is None:
            # a state event goes at the next chance; a first reading starts the batch_max_age_s wait
            self._wake.set()

    def wake(self) -> None:
        """Make the thread look at the outbox now."""
        self._wake.set()

    # ------------------------------------------------------------------------------------------ token
    def _read_token(self) -> str | None:
        token = self._token.read()
        if token is None:
            self._fail_state("no_token", self._token.problem or "no token")
        return token

    def _fail_state(self, state: str, error: str) -> None:
        if self._state != state or self.last_error != error:
            log.error("sync: %s; events are kept, retrying in %.0f s", error, TOKEN_RECHECK_S)
        self._state = state
        self.last_error = error
        self.last_error_wall = self._clock.wall()

    # ------------------------------------------------------------------------------------------ one step
    def run_once(self) -> SyncResult:
        """Do what is due now: commit due readings, a self-test, one upload (split if the central says the batch
        is too large), a heartbeat. Never raises for network or central trouble."""
        now = self._clock.monotonic()
        self._outbox.flush_due()
        with self._lock:
            wait = self._next_attempt - now
        if wait > 0:
            status = self._state if self._state in ("auth_blocked", "no_token") else "backoff"
            return SyncResult(status=status, retry_in_s=wait, error=self.last_error)
        result = SyncResult(status="idle")
        result.selftest = self.selftest.run_if_due(
            now, self.last_success_wall, lambda: self._health_fields().get("selftest")
        )
        token = self._read_token()
        if token is not None and self._state == "no_token":
            log.info("sync: token file %s found; uploading", self._central.token_file)
            self._state = "idle"
        if token is None:
            retry = min(TOKEN_RECHECK_S, self._central.auth_retry_s)
            with self._lock:
                self._next_attempt = now + retry
            result.status, result.error, result.retry_in_s = "no_token", self.last_error, retry
            return result
        if self._upload_due(now):
            self._upload_step(token, result)
            if result.status in ("backoff", "auth_blocked", "failed"):
                return result
        elif sum(self._outbox.depth().values()):
            result.status = "waiting"
        if now >= self._next_heartbeat and not result.more:
            self._send_heartbeat(token, result)
        if self.acks is not None and not result.more:
            self.acks.step(
                now, lambda url: self._http.request("GET", url, headers={"Authorization": f"Bearer {token}"})
            )
        return result

    def _upload_due(self, now: float) -> bool:
        depth = self._outbox.depth()
        if depth["alert"] or depth["state"]:
            return True
        if not depth["reading"]:
            self._readings_since = None
            return False
        if depth["reading"] >= self._central.batch_size:
            return True
        if self._readings_since is None:
            self._readings_since = now
        return now - self._readings_since >= self._central.batch_max_age_s

    def _held_now(self) -> set[str]:
        now = self._clock.monotonic()
        for event_id in [i for i, until in self._held.items() if until <= now]:
            del self._held[event_id]
        return set(self._held)

    def _upload_step(self, token: str, result: SyncResult) -> None:
        limit = self._central.batch_size
        items = self._outbox.batch_raw(limit, exclude=self._held_now())
        if not items:
            return
        try:
            self._deliver(items, token, result)
            self._log_held(result)
            if not result.acked and not result.dead_lettered:
                # a reply that takes no event (a 2xx without one, every event too large): back off, do not spin
                why = f" ({result.error})" if result.error else ""
                raise _Failure("transient", f"NoAck: the central took none of {len(items)} events{why}")
        except _Failure as failure:
            self._on_failure(failure, result)
            return
        result.status = "sent"
        with self._lock:
            self._failures = 0
            self._auth_blocked = False
            self._state = "ok"
        self.last_success_wall = self._clock.wall()
        depth = self._outbox.depth()
        result.more = len(items) >= limit and sum(depth.values()) > len(self._held)
        if not depth["reading"]:
            self._readings_since = None
        elif result.more:
            # a backlog is draining: the readings left are due now, not after another batch_max_age_s
            self._readings_since = self._clock.monotonic() - self._central.batch_max_age_s
        else:
            # the readings left arrived while this batch was on its way: their wait starts now
            self._readings_since = self._clock.monotonic()

    def _deliver(self, items: list[tuple[str, str]], token: str, result: SyncResult) -> None:
        """POST ``items`` and apply the verdict; a batch too large for the central is split in halves."""
        wall = self._clock.wall()
        body = '{"node_wall_time":' + json.dumps(wall) + ',"events":[' + ",".join(b for _, b in items) + "]}"
        alert = self._outbox.carries_alert([event_id for event_id, _ in items])
        verdict = classify_upload(self._post(self.events_url, body.encode("utf-8"), token, result, alert), wall)
        if verdict.action == "ack":
            self._apply(items, verdict, result)
        elif verdict.action == "split" and len(items) > 1:
            half = len(items) // 2
            self._deliver(items[:half], token, result)
            self._deliver(items[half:], token, result)
        elif verdict.action == "split":
            self._hold(items[0][0], f"{verdict.error}: this one event is larger than the central takes", result)
        elif verdict.action == "auth":
            raise _Failure("auth", verdict.error)
        else:
            raise _Failure("transient", verdict.error, verdict.retry_after)

    def _apply(self, items: list[tuple[str, str]], verdict: Verdict, result: SyncResult) -> None:
        sent = {event_id for event_id, _ in items}
        accepted = [i for i in verdict.accepted if i in sent]
        result.sent += len(items)
        acked = self._outbox.ack(accepted) if accepted else 0
        result.acked += acked
        self.totals["acked"] += acked
        taken = set(accepted)
        for rejection in verdict.rejected:
            if rejection.event_id not in sent or rejection.event_id in taken:
                continue
            taken.add(rejection.event_id)
            reason = f"rejected by central: {rejection.code or 'no code'}: {rejection.reason}"[:500]
            if rejection.final:
                self._dead_letter(rejection.event_id, reason, result)
            else:
                self._hold(rejection.event_id, reason, result)

    def _hold(self, event_id: str, reason: str, result: SyncResult) -> None:
        self._held[event_id] = self._clock.monotonic() + self._central.backoff_max_s
        result.held += 1
        result.error = reason
        self.totals["held"] += 1

    def _log_held(self, result: SyncResult) -> None:
        if result.held:
            log.warning(
                "sync: %d event(s) kept, not taken by the central (%s); retrying them in %.0f s",
                result.held,
                result.error,
                self._central.backoff_max_s,
            )

    def _dead_letter(self, event_id: str, reason: str, result: SyncResult) -> None:
        if self._outbox.dead_letter(event_id, reason):
            result.dead_lettered += 1
            self.totals["dead_lettered"] += 1
        else:  # the disk refuses the move now: kept, and not sent again at once
            self._hold(event_id, reason, result)

    def _post(self, url: str, body: bytes, token: str, result: SyncResult, alert: bool = False) -> HttpReply:
        result.requests += 1
        self.totals["requests"] += 1
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        if alert:  # the central admits it on slots of its own: an alert never waits behind readings
            headers[PRIORITY_HEADER] = "alert"
        try:
            return self._http.request("POST", url, body=body, headers=headers)
        except HttpFailure as exc:
            raise _Failure("transient", exc.text) from exc

    def _on_failure(self, failure: _Failure, result: SyncResult) -> None:
        now = self._clock.monotonic()
        self.last_error = failure.error
        self.last_error_wall = self._clock.wall()
        with self._lock:
            self._failures += 1
            if failure.kind == "auth":
                self._auth_blocked = True
                self._state = "auth_blocked"
                delay = self._central.auth_retry_s
                log.error(
                    "sync: the central refused this node's token (%s) for node %s; uploads paused, events kept, "
                    "retrying in %.0f s (check the token file %s or re-provision)",
                    failure.error,
                    self._node_id,
                    delay,
                    self._central.token_file,
                )
            else:
                self._state = "backoff"
                cap = self._central.backoff_max_s
                alert_cap = ALERT_BACKOFF_MAX_S if self._outbox.depth()["alert"] else cap
                delay = backoff_delay(self._failures, min(cap, alert_cap), cap, failure.retry_after, self._rng)
                # a long outage must not flood the journal (SD card): log the first few, then at 2^n attempts
                n = self._failures
                level = logging.WARNING if n <= 3 or n & (n - 1) == 0 else logging.DEBUG
                log.log(level, "sync: upload failed (%s), attempt %d; retrying in %.1f s", failure.error, n, delay)
            self._next_attempt = now + delay
        result.status = self._state
        result.error = failure.error
        result.retry_in_s = delay

    # ------------------------------------------------------------------------------------------ heartbeat
    def _send_heartbeat(self, token: str, result: SyncResult) -> None:
        now = self._clock.monotonic()
        self._next_heartbeat = now + self._central.heartbeat_interval_s
        body = json.dumps(self.heartbeat_body(), ensure_ascii=False, default=str).encode("utf-8")
        try:
            reply = self._post(self.heartbeat_url, body, token, result)
        except _Failure as failure:
            log.warning("sync: heartbeat failed: %s", failure.error)
            return
        if is_auth_refusal(reply):
            self._on_failure(_Failure("auth", f"{describe(reply)} on heartbeat"), result)
            return
        if not 200 <= reply.status < 300:
            log.warning("sync: heartbeat refused: %s", describe(reply))
            return
        result.heartbeat_sent = True
        self.totals["heartbeats"] += 1
        self.last_heartbeat_wall = self._clock.wall()

    def _health_fields(self) -> dict[str, Any]:
        if self._health is None:
            return {}
        try:
            return dict(self._health())
        except Exception as exc:  # noqa: BLE001 - a broken health callback must not stop heartbeats
            log.exception("sync: health callback failed")
            return {"health_error": f"{type(exc).__name__}: {exc}"}

    def heartbeat_body(self) -> dict[str, Any]:
        """The heartbeat (common/report.py)."""
        return heartbeat_body(
            self._config,
            self._clock,
            outbox_stats=self._outbox.stats(),
            health=self._health_fields(),
            uptime_s=self._clock.monotonic() - self._started,
            version=self.version,
            selftest=self.selftest.last,
            sync=self.status(),
        )

    # ------------------------------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """For health: last success, last error class, consecutive failures, state."""
        with self._lock:
            wait = max(0.0, self._next_attempt - self._clock.monotonic())
            return {
                "state": self._state,
                "auth_blocked": self._auth_blocked,
                "consecutive_failures": self._failures,
                "last_success_wall": self.last_success_wall,
                "last_error": self.last_error,
                "last_error_wall": self.last_error_wall,
                "last_heartbeat_wall": self.last_heartbeat_wall,
                "next_attempt_in_s": round(wait, 1),
                "held_events": len(self._held),
                **self.totals,
            }

    # ------------------------------------------------------------------------------------------ thread
    def _next_wake(self) -> float:
        now = self._clock.monotonic()
        deadlines = [self._next_heartbeat, self.selftest.next_at, now + IDLE_WAKE_S, *self._held.values()]
        if self.acks is not None:
            deadlines.append(self.acks.next_at())
        with self._lock:
            if self._next_attempt > now:
                deadlines.append(self._next_attempt)
            elif self._readings_since is not None:
                deadlines.append(self._readings_since + self._central.batch_max_age_s)
            elif self._outbox.depth()["reading"]:
                deadlines.append(now + self._central.batch_max_age_s)
        flush_at = self._outbox.next_flush_at()
        if flush_at is not None:
            deadlines.append(flush_at)
        return max(0.0, min(deadlines) - now)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                result = self.run_once()
            except (OutboxError, sqlite3.Error, OSError, ValueError) as exc:
                self.totals["loop_errors"] += 1
                log.exception("sync: step failed: %s", type(exc).__name__)
                result = SyncResult(status="failed", error=type(exc).__name__)
                wait_on_clock(self._clock, 5.0, self._stop)
            except Exception:  # noqa: BLE001 - the uploader thread must never die silently; counted in health
                self.totals["loop_errors"] += 1
                log.exception("sync: unexpected error in the upload loop")
                result = SyncResult(status="failed")
                wait_on_clock(self._clock, 5.0, self._stop)
            if self._stop.is_set():
                break
            if result.more:
                continue
            wait_on_clock(self._clock, self._next_wake(), self._wake)

    def start(self) -> None:
        """Run the uploader on a daemon thread until ``stop()``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="uploader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None, *, send_unstored: bool = False) -> None:
        """Stop the thread (waits for an upload in progress, at most the request's time limit); with
        ``send_unstored``, one last upload of the events only memory holds (the disk refused them)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            limit = timeout if timeout is not None else self._central.request_limit_s + 1
            thread.join(limit)
            if thread.is_alive():
                log.warning("sync: uploader thread did not stop within %.0f s", limit)
        if send_unstored and (thread is None or not thread.is_alive()):
            self._send_unstored()
        self._http.close()

    def _send_unstored(self) -> None:
        """At a stop while the disk refuses writes: what only memory holds is sent now (readings whatever their
        age), batch after batch until a request fails."""
        for _ in range(MAX_FINAL_BATCHES):
            if self._outbox.stats()["storage"] == "ok" or not sum(self._outbox.depth().values()):
                return
            with self._lock:
                self._next_attempt = self._readings_since = self._clock.monotonic() - self._central.batch_max_age_s
            result = self.run_once()
            log.warning("sync: upload at the stop of what the disk refused: %s (%d acked)", result.status, result.acked)
            if result.status != "sent":
                return
