"""Uploader: drains the outbox to the central (POST /api/v1/events) and sends the heartbeat and self-test.

Deletes from the outbox exactly the ids the central acknowledged. Network errors, 5xx, 408 and 429 back off
exponentially with full jitter (capped, Retry-After honoured); 401/403 pause uploads and retry on a long
interval; events the central refuses as invalid become dead letters, never silently dropped. All timing comes
from the injected Clock, so ``run_once`` can be driven by a ManualClock in tests.
"""

from __future__ import annotations

import email.utils
import importlib.metadata
import json
import logging
import random
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from common.clock import Clock, wait_until
from common.config import NodeConfig
from common.events import Event, make_event
from common.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

API = "/api/v1"
BACKOFF_BASE_S = 1.0
# while an alert waits, retries are at least this frequent whatever backoff_max_s says (EN 81-28: shortest delay)
ALERT_BACKOFF_MAX_S = 30.0
TOKEN_RECHECK_S = 60.0
IDLE_WAKE_S = 60.0


def package_version() -> str:
    try:
        return importlib.metadata.version("changbai-nodes")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def wait_on_clock(clock: Clock, seconds: float, wake: threading.Event) -> bool:
    """Wait ``seconds`` of the clock's time, or until ``wake`` is set; True when woken.

    Works for SystemClock (real time), FastClock (scaled) and ManualClock (returns once a test moves time
    past the deadline); never sleeps on wall time.
    """
    return wait_until(clock, clock.monotonic() + seconds, wake) if seconds > 0 else wake.is_set()


@dataclass
class SyncResult:
    """What one ``run_once`` did. ``status``: idle, sent, waiting (batch not due), backoff, auth_blocked,
    no_token, contract_error, failed."""

    status: str
    sent: int = 0
    acked: int = 0
    dead_lettered: int = 0
    requests: int = 0
    error: str | None = None
    retry_in_s: float | None = None
    heartbeat_sent: bool = False
    selftest: bool = False
    more: bool = False


class _Failure(Exception):
    """A failed upload; ``kind`` says how to react."""

    def __init__(self, kind: str, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.kind = kind  # transient, auth, contract
        self.error = error
        self.retry_after = retry_after


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - wall_now)


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
        session: requests.Session | None = None,
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
        self._session = session or requests.Session()
        # no proxies or .netrc from the environment: a netrc entry would replace our Authorization header
        self._session.trust_env = False
        # TLS verification is always on; a CA bundle adds trust, nothing turns it off
        self._session.verify = str(self._central.ca_bundle) if self._central.ca_bundle else True
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
        self._next_selftest = now
        self._token_mode_warned: int | None = None
        self.last_success_wall: float | None = None
        self.last_error: str | None = None
        self.last_error_wall: float | None = None
        self.last_heartbeat_wall: float | None = None
        self.last_selftest: dict[str, Any] | None = None
        self.totals = {"requests": 0, "acked": 0, "dead_lettered": 0, "heartbeats": 0, "loop_errors": 0}
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
        path = self._central.token_file
        try:
            mode = path.stat().st_mode
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            self._fail_state("no_token", f"token file {path} does not exist (provision the node)")
            return None
        except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
            self._fail_state("no_token", f"token file {path} unreadable: {type(exc).__name__}")
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO) and self._token_mode_warned != mode:
            self._token_mode_warned = mode
            log.warning("token file %s is readable by others (mode %o); it should be 0600", path, mode & 0o777)
        if not token:
            self._fail_state("no_token", f"token file {path} is empty")
            return None
        return token

    def _fail_state(self, state: str, error: str) -> None:
        if self._state != state or self.last_error != error:
            log.error("sync: %s; events are kept, retrying in %.0f s", error, TOKEN_RECHECK_S)
        self._state = state
        self.last_error = error
        self.last_error_wall = self._clock.wall()

    # ------------------------------------------------------------------------------------------ one step
    def run_once(self) -> SyncResult:
        """Do what is due now: commit due readings, a self-test, one upload (with bisection if needed), a
        heartbeat. Never raises for network or central trouble."""
        now = self._clock.monotonic()
        self._outbox.flush_due()
        with self._lock:
            wait = self._next_attempt - now
        if wait > 0:
            status = self._state if self._state in ("auth_blocked", "contract_error", "no_token") else "backoff"
            return SyncResult(status=status, retry_in_s=wait, error=self.last_error)
        result = SyncResult(status="idle")
        if now >= self._next_selftest:
            self._selftest(now)
            result.selftest = True
        token = self._read_token()
        if token is not None and self._state == "no_token":
            log.info("sync: token file %s found; uploading", self._central.token_file)
            self._state = "idle"
        if token is None:
            with self._lock:
                self._next_attempt = now + min(TOKEN_RECHECK_S, self._central.auth_retry_s)
            result.status = "no_token"
            result.error = self.last_error
            result.retry_in_s = min(TOKEN_RECHECK_S, self._central.auth_retry_s)
            return result
        if self._upload_due(now):
            self._upload_step(token, result)
            if result.status in ("backoff", "auth_blocked", "contract_error", "failed"):
                return result
        elif sum(self._outbox.depth().values()):
            result.status = "waiting"
        if now >= self._next_heartbeat and not result.more:
            self._send_heartbeat(token, result)
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

    def _upload_step(self, token: str, result: SyncResult) -> None:
        limit = self._central.batch_size
        items = self._outbox.batch_raw(limit)
        if not items:
            return
        mine = f'"node_id":{json.dumps(self._node_id, ensure_ascii=False)}'
        for event_id, body in list(items):
            if mine not in body:
                # only in an outbox carried over from another node id; the central would refuse the batch (403)
                self._outbox.dead_letter(event_id, f"event belongs to another node id, not {self._node_id}")
                result.dead_lettered += 1
                items.remove((event_id, body))
        if not items:
            return
        try:
            self._send(items, token, result)
            if not result.acked and not result.dead_lettered:
                # a 2xx that acknowledges nothing: sending the same batch again at once would spin
                raise _Failure("transient", f"NoAck: the central acknowledged none of {len(items)} events")
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
        result.more = len(items) >= limit and sum(depth.values()) > 0
        if not depth["reading"]:
            self._readings_since = None
        elif result.more:
            # a backlog is draining: the readings left are due now, not after another batch_max_age_s
            self._readings_since = self._clock.monotonic() - self._central.batch_max_age_s
        else:
            # the readings left arrived while this batch was on its way: their wait starts now
            self._readings_since = self._clock.monotonic()

    def _send(self, items: list[tuple[str, str]], token: str, result: SyncResult) -> int:
        """POST ``items``; on a whole-batch refusal (4xx, 413) split and retry the halves. Returns accepted."""
        wall = self._clock.wall()
        body = '{"node_wall_time":' + json.dumps(wall) + ',"events":[' + ",".join(b for _, b in items) + "]}"
        response = self._post(self.events_url, body.encode("utf-8"), token, result)
        code = response.status_code
        if 200 <= code < 300:
            return self._apply_reply(items, response, result)
        if code in (401, 403):
            raise _Failure("auth", f"HTTP {code} {self._reason(response)}")
        if code in (408, 429) or code >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), wall)
            raise _Failure("transient", f"HTTP {code}", retry_after)
        if 400 <= code < 500:
            reason = f"HTTP {code}: {self._reason(response)}"
            if len(items) > 1:
                # find the bad event(s): never dead-letter the good ones with them
                half = len(items) // 2
                accepted = self._send(items[:half], token, result)
                return accepted + self._send(items[half:], token, result)
            if code == 413 or self._single_is_event_problem(response):
                self._dead_letter(items[0][0], reason, result)
                return 0
            raise _Failure("contract", f"central refused a single event with {reason}; keeping it")
        raise _Failure("transient", f"HTTP {code} (unexpected)")

    @staticmethod
    def _single_is_event_problem(response: requests.Response) -> bool:
        """Does a whole-batch refusal of one event name the event? Else it may be our envelope or a contract
        mismatch, and dead-lettering would throw away a good event."""
        try:
            text = json.dumps(response.json())
        except ValueError:
            return False
        return "events" in text

    def _dead_letter(self, event_id: str, reason: str, result: SyncResult) -> None:
        if self._outbox.dead_letter(event_id, reason):
            result.dead_lettered += 1
            self.totals["dead_lettered"] += 1

    @staticmethod
    def _reason(response: requests.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            return response.reason or ""
        if isinstance(data, Mapping):
            for key in ("message", "detail", "error"):
                if key in data:
                    return str(data[key])[:300]
        return str(data)[:300]

    def _post(self, url: str, body: bytes, token: str, result: SyncResult) -> requests.Response:
        result.requests += 1
        self.totals["requests"] += 1
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        timeout = (self._central.connect_timeout_s, self._central.read_timeout_s)
        try:
            return self._session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise _Failure("transient", f"SSLError: TLS verification failed ({self._short(exc)})") from exc
        except requests.exceptions.Timeout as exc:
            raise _Failure("transient", type(exc).__name__) from exc
        except requests.exceptions.ConnectionError as exc:
            raise _Failure("transient", f"ConnectionError: {self._short(exc)}") from exc
        except requests.exceptions.RequestException as exc:
            raise _Failure("transient", type(exc).__name__) from exc

    @staticmethod
    def _short(exc: BaseException) -> str:
        return str(exc).replace("\n", " ")[:200]

    def _apply_reply(self, items: list[tuple[str, str]], response: requests.Response, result: SyncResult) -> int:
        try:
            reply = response.json()
        except ValueError as exc:
            raise _Failure("transient", "InvalidReply: response is not JSON") from exc
        if not isinstance(reply, Mapping) or not isinstance(reply.get("accepted"), list):
            raise _Failure("transient", "InvalidReply: no 'accepted' list in the response")
        sent = {event_id for event_id, _ in items}
        accepted = [i for i in reply["accepted"] if isinstance(i, str) and i in sent]
        result.sent += len(items)
        acked = self._outbox.ack(accepted) if accepted else 0
        result.acked += acked
        self.totals["acked"] += acked
        rejected = reply.get("rejected") or []
        for item in rejected if isinstance(rejected, list) else []:
            if not isinstance(item, Mapping):
                continue
            event_id = item.get("id")
            if isinstance(event_id, str) and event_id in sent and event_id not in accepted:
                self._dead_letter(event_id, f"rejected by central: {item.get('reason', '')}"[:500], result)
        return len(accepted)

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
            elif failure.kind == "contract":
                self._state = "contract_error"
                delay = self._central.auth_retry_s
                log.error("sync: %s; retrying in %.0f s", failure.error, delay)
            else:
                self._state = "backoff"
                cap = self._central.backoff_max_s
                if self._outbox.depth()["alert"]:
                    cap = min(cap, ALERT_BACKOFF_MAX_S)
                ceiling = min(cap, BACKOFF_BASE_S * 2 ** min(self._failures - 1, 30))
                delay = self._rng.uniform(0.0, ceiling)  # full jitter
                if failure.retry_after is not None:
                    delay = max(delay, min(failure.retry_after, self._central.backoff_max_s))
                # a long outage must not flood the journal (SD card): log the first few, then at 2^n attempts
                n = self._failures
                level = logging.WARNING if n <= 3 or n & (n - 1) == 0 else logging.DEBUG
                log.log(level, "sync: upload failed (%s), attempt %d; retrying in %.1f s", failure.error, n, delay)
            self._next_attempt = now + delay
        result.status = self._state if failure.kind != "transient" else "backoff"
        result.error = failure.error
        result.retry_in_s = delay

    # ------------------------------------------------------------------------------------------ heartbeat
    def _send_heartbeat(self, token: str, result: SyncResult) -> None:
        now = self._clock.monotonic()
        self._next_heartbeat = now + self._central.heartbeat_interval_s
        body = json.dumps(self.heartbeat_body(), ensure_ascii=False, default=str).encode("utf-8")
        try:
            response = self._post(self.heartbeat_url, body, token, result)
        except _Failure as failure:
            log.warning("sync: heartbeat failed: %s", failure.error)
            return
        if response.status_code in (401, 403):
            self._on_failure(_Failure("auth", f"HTTP {response.status_code} on heartbeat"), result)
            return
        if not 200 <= response.status_code < 300:
            log.warning("sync: heartbeat refused: HTTP %d %s", response.status_code, self._reason(response))
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
        """The heartbeat: uptime, version, outbox depth per priority, dropped, dead letters, last sensor read,
        clock state, sync status, last self-test, and the node's own health fields."""
        stats = self._outbox.stats()
        health = self._health_fields()
        return {
            "node_id": self._node_id,
            "role": self._config.node.role,
            "node_wall_time": self._clock.wall(),
            "clock_synced": self._clock.wall_synced(),
            "uptime_s": round(self._clock.monotonic() - self._started, 1),
            "version": self.version,
            "outbox_depth": stats["depth"],
            "dropped": stats["dropped"],
            "dead_letters": stats["dead_letters"],
            "last_sensor_read": health.get("last_sensor_read"),
            "selftest": self.last_selftest,
            "outbox": {
                k: stats[k]
                for k in (
                    "uncommitted_readings",
                    "db_bytes",
                    "db_limit_bytes",
                    "corrupt_recoveries",
                    "volatile",
                    "next_seq",
                )
            },
            "sync": self.status(),
            "health": health,
        }

    def _selftest(self, now: float) -> None:
        """The periodic self-test (EN 81-28 test call): checks, stored as a durable event and in the heartbeat."""
        self._next_selftest = now + self._central.selftest_interval_h * 3600.0
        checks: dict[str, Any] = {}
        checks["outbox_integrity"] = self._outbox.check()
        checks["token_present"] = self._central.token_file.exists()
        checks["clock_synced"] = self._clock.wall_synced()
        checks["last_upload_ok_wall"] = self.last_success_wall
        extra = self._health_fields().get("selftest")
        if isinstance(extra, Mapping):
            checks.update(extra)
        # an unsynced clock is reported, not a failure: events carry clock_synced and the upload's wall time
        ok = checks["outbox_integrity"] == "ok" and all(
            v is not False for k, v in checks.items() if k != "clock_synced"
        )
        report = {"ok": bool(ok), "checks": checks, "interval_h": self._central.selftest_interval_h}
        event = make_event(
            self._node_id,
            "selftest",
            wall_time=self._clock.wall(),
            clock_synced=self._clock.wall_synced(),
            severity="info" if ok else "warning",
            priority="state",
            payload=report,
        )
        try:
            self._outbox.put(event)
        except (OutboxError, sqlite3.Error) as exc:
            report["ok"] = False
            checks["outbox_writable"] = f"{type(exc).__name__}: {exc}"
            log.error("self-test: cannot store the report: %s", exc)
        report["at_wall"] = self._clock.wall()
        self.last_selftest = report
        (log.info if ok else log.warning)("self-test %s: %s", "ok" if ok else "FAILED", checks)

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
                **self.totals,
            }

    # ------------------------------------------------------------------------------------------ thread
    def _next_wake(self) -> float:
        now = self._clock.monotonic()
        deadlines = [self._next_heartbeat, self._next_selftest, now + IDLE_WAKE_S]
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

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (waits for an upload in progress, at most the request timeouts)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            limit = (
                timeout if timeout is not None else self._central.connect_timeout_s + self._central.read_timeout_s + 1
            )
            thread.join(limit)
            if thread.is_alive():
                log.warning("sync: uploader thread did not stop within %.0f s", limit)
        self._session.close()
