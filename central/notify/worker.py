"""The notifier: a background thread in the central that plans, sends and records every notification.

Each tick it plans what the active alerts need by now (``central.notify.plan``; stored once by key), takes the
due deliveries (leased, so several central processes never send one twice at once), sends them on their channels
in a small thread pool (a slow robot never holds up an SMS) and records each attempt as it happens. A failed
delivery is retried with backoff until it is delivered, or dropped when the alert is resolved first.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from central.config import CentralConfig
from central.notify.channels import send
from central.notify.config import ChannelSection
from central.notify.links import LinkClaim, make_link
from central.notify.message import compose, compose_group
from central.notify.outage import OutageNotice
from central.notify.plan import ALL_CLEAR_WITHIN_S, GROUPED_KIND, NEWS_REASONS, OVER_REASONS, over_news, planned
from central.notify.retry import Outcome, delay_after
from central.notify.store import NotifyStore
from central.storage import StorageError, Store
from common.clock import Clock

log = logging.getLogger("central.notify")
RESCAN_S = 5.0  # alerts are planned again at least this often (escalations come due with time alone)
RESOLVED_SCAN = 200  # the newest resolved alerts looked at for the news that they are over, still to plan
LINK_SECRET = "ack_link"


def contact_list(raw: Any) -> list[dict[str, str]]:
    """Contacts as registered (objects, or plain strings) as ``{"name", "phone", ...}`` objects."""
    out = []
    for c in raw if isinstance(raw, list) else []:
        if isinstance(c, Mapping):
            out.append({k: str(v) for k, v in c.items() if isinstance(v, str | int)})
        elif isinstance(c, str):
            out.append({"name": c})
    return out


def recipients(contacts: list[dict[str, str]]) -> list[dict[str, str]]:
    """Who a message went to, as the delivery log keeps it."""
    return [{k: c[k] for k in ("name", "phone", "email") if c.get(k)} for c in contacts]


class RateLimit:
    """At most ``per_minute`` sends in any ``window_s`` (a minute; robots: about 20). ``take`` counts a send or says
    how long until one may go, in one step: the sending threads cannot all take the last place at once."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.sent: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self, now: float) -> float:
        """0 and this send counted, or the seconds until a place frees."""
        with self._lock:
            while self.sent and now - self.sent[0] >= self.window_s:
                self.sent.popleft()
            if not self.per_minute or len(self.sent) < self.per_minute:
                self.sent.append(now)
                return 0.0
            return self.window_s - (now - self.sent[0])


class Notifier:
    """Plans, sends and records notifications for one central (``start``/``stop``/``wake``)."""

    def __init__(
        self,
        store: Store,
        notify: NotifyStore,
        config: CentralConfig,
        clock: Clock,
        views: Callable[[list[dict[str, Any]], float], list[dict[str, Any]]],
        public_url: Callable[[], str],
    ) -> None:
        self.store, self.notify, self.config, self.clock = store, notify, config, clock
        self.settings = config.notify
        self._views = views
        self._public_url = public_url
        self._channels: dict[str, ChannelSection] = {c.id: c for c in self.settings.channels}
        self._limits = {c.id: RateLimit(c.rate_per_minute) for c in self.settings.channels}
        self._known: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="notify-send")
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._last_scan = 0.0
        self._next_due = float("inf")
        self._log_cursor = -1
        self._secret: bytes | None = None
        self._outage = OutageNotice(
            store.health.to_json, self.settings.channels, lambda c, m: send(c, m, self.settings.timeout_s)
        )

    # ------------------------------------------------------------------------------------------- lifecycle
    @property
    def enabled(self) -> bool:
        return bool(self._channels)

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            unsent, self._in_flight = list(self._in_flight), set()
        if unsent:  # claimed but never attempted: another process (or this one restarted) takes them at once
            with contextlib.suppress(StorageError):
                self.notify.release(unsent)

    def rescan(self) -> None:
        """Plan again now (a flat's contacts changed): not only when an alert changed or time passed."""
        self._last_scan = 0.0
        self._wake.set()

    def wake(self) -> None:
        """Something changed (an event arrived, an alert was acknowledged): look now, not at the next tick."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            for work in (self._outage.check, self.tick):  # the desk told of a failing database, then the alerts
                try:
                    work()
                except StorageError as exc:  # the database is away: the next tick tries again, nothing is lost
                    log.debug("notifier: storage error: %s", exc)  # the storage's health logs it (once a minute)
                except Exception:  # noqa: BLE001 - a bug must not end the notifier: logged with its traceback
                    log.exception("notifier %s failed", work.__name__)
            self._wake.wait(self.settings.tick_s)
            self._wake.clear()

    # ------------------------------------------------------------------------------------------------ work
    def tick(self) -> None:
        """Plan what is due, then send what is due."""
        now = self.clock.wall()
        cursor = self.notify.alert_log_cursor()
        if cursor != self._log_cursor or now >= self._next_due or time.monotonic() - self._last_scan >= RESCAN_S:
            self._scan(now)
            self._log_cursor = cursor
        # an attempt ends within timeout_s (a hard limit); the rest is for recording it. A process killed
        # mid-attempt leaves its lease: another process (or this one restarted) takes the delivery after it
        lease_s = self.settings.timeout_s * 2 + 3
        claimed = self.notify.claim_due(now, lease_s)
        with self._lock:
            fresh = [row for row in claimed if row["id"] not in self._in_flight]
        for rows in self._together(fresh):  # (should it fail, nothing is in flight: the leases run out)
            with self._lock:
                self._in_flight.update(row["id"] for row in rows)
            self._pool.submit(self._deliver, rows)

    def _together(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """The deliveries to send, each alone, but for nodes of one site gone silent (or heard again) together:
        ``group_silent_min`` or more due to one role on one channel for one reason go as one message, after the
        others (a compound's network down: one message, not a robot's five minutes of them)."""
        least = self.settings.group_silent_min
        if not least or len(rows) < least:
            return [[row] for row in rows]
        silent = [a for a in (self.store.alerts.get(row["alert"]) for row in rows) if a["kind"] == GROUPED_KIND]
        nodes = self.store.nodes.by_id({a["node_id"] for a in silent}) if len(silent) >= least else {}
        sites = {int(a["id"]): nodes[a["node_id"]].get("site") for a in silent if a["node_id"] in nodes}
        out: list[list[dict[str, Any]]] = []
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row["alert"] in sites:
                groups[(row["channel"], row["role"], row["reason"], sites[row["alert"]])].append(row)
            else:
                out.append([row])
        for group in groups.values():
            out += [group] if len(group) >= least else [[row] for row in group]
        return out

    def _scan(self, now: float) -> None:
        self._last_scan = time.monotonic()
        alerts = self.store.alerts.page("open", None, 5000) + self.store.alerts.page("acknowledged", None, 5000)
        # the newest resolved ones: the news that they are over is planned for them, and only that (the desk
        # resolving it a moment after the clear must not swallow the all-clear)
        resolved = self.store.alerts.page("resolved", None, RESOLVED_SCAN)
        over = [a for a in resolved if (news := over_news(a)) and now - news[1] <= ALL_CLEAR_WITHIN_S]
        views = self._views(alerts + over, now)
        plans, next_due = [], float("inf")
        for view in views:
            found = planned(view, view.get("urgent_at"), self.settings.channels_for, now,
                            tell_acknowledged=self.settings.tell_acknowledged)  # fmt: skip
            plans += [p for p in found if view["state"] != "resolved" or p.reason in OVER_REASONS]
            esc = view.get("escalation") or {}
            if esc.get("state") == "pending":
                next_due = min(next_due, float(esc["due_at"]))
        fresh = [p for p in plans if p.key not in self._known]
        if fresh:
            new = self.notify.plan(fresh, now)
            if new:
                log.info("notifier: %d new deliveries planned", new)
        self._known = {p.key for p in plans}  # only the active alerts' keys: the set never outgrows them
        self._next_due = next_due
        self.notify.drop_resolved(now)
        self._reopen_corrected(views[: len(alerts)], now)

    def _reopen_corrected(self, views: list[dict[str, Any]], now: float) -> None:
        """A delivery that failed for good (an invalid number) is tried again once its role's contacts are not
        the ones it failed with: correcting the number reaches the person while the alert is open."""
        by_id = {int(v["id"]): v for v in views}
        for row in self.notify.failed_of(list(by_id)):
            contacts = contact_list((by_id[row["alert"]].get("contacts") or {}).get(row["role"]))
            if recipients(contacts) != row["recipients"]:
                self.notify.reopen(row["id"], now, "the contacts were changed after it failed: tried again")

    def _link(self, view: Mapping[str, Any], role: str, names: str, key: str) -> str:
        base = self.settings.public_url or self._public_url()
        if not base:
            return ""
        if self._secret is None:
            self._secret = self.notify.secret(LINK_SECRET)
        expires = self.clock.wall() + self.settings.link_ttl_h * 3600
        return make_link(base, self._secret, LinkClaim(int(view["id"]), role, names, key, expires))

    def _deliver(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._attempt(rows)
        except StorageError as exc:
            log.warning("notifier: could not record delivery %s: %s", rows[0]["key"], exc)
        except Exception:  # noqa: BLE001 - logged with the traceback; the lease runs out and it is retried
            log.exception("notifier: delivery %s failed", rows[0]["key"])
        finally:
            with self._lock:
                self._in_flight.difference_update(row["id"] for row in rows)
            self._wake.set()

    def _attempt(self, rows: list[dict[str, Any]]) -> None:
        """One message for these deliveries (one, or a group from ``_together``), its outcome recorded on each."""
        now = self.clock.wall()
        row = rows[0]
        channel = self._channels.get(row["channel"])
        if channel is None:  # the channel left the config: kept in the log, tried again if it comes back
            for each in rows:
                self.notify.record(each["id"], Outcome(False, None, "channel not configured"), now, 0.0, [], now + 300)
            return
        wait = self._limits[channel.id].take(time.monotonic())
        if wait > 0:
            for each in rows:
                self.notify.defer(each["id"], now + wait)
            return
        live, alerts = [], []
        for each in rows:
            alert = self.store.alerts.get(each["alert"])
            if alert.get("state") == "resolved" and each["reason"] not in OVER_REASONS:  # resolved since claimed
                self.notify.drop_resolved(now, each["id"])  # not late
            else:
                live.append(each)
                alerts.append(alert)
        if not live:
            return
        views = self._views(alerts, now)
        role, reason = row["role"], row["reason"]
        each_told = [contact_list((v.get("contacts") or {}).get(role)) for v in views]
        contacts = list({tuple(sorted(c.items())): c for told in each_told for c in told}.values())
        if len(live) > 1:
            key, site = f"{live[0]['key']}+{len(live) - 1}", views[0].get("site")
            named = next((s.name for s in self.config.sites if s.id == site), "")
            message = compose_group(views, role, reason, contacts, key, named)
        else:
            names = "、".join(c.get("name", "") for c in contacts if c.get("name")) or role
            # news (it is over, a person took it in) asks nothing: no acknowledgement link
            link = "" if reason in NEWS_REASONS else self._link(views[0], role, names, live[0]["key"])
            message = compose(views[0], role, reason, contacts, live[0]["key"], link)
        started = time.monotonic()
        outcome = send(channel, message, self.settings.timeout_s)
        took_ms = (time.monotonic() - started) * 1000
        at = self.clock.wall()
        for each, told in zip(live, each_told, strict=True):  # each with its own alert's contacts, as it failed
            next_at = at + delay_after(
                outcome, each["attempts"] + 1, self.settings.retry_min_s, self.settings.retry_max_s
            )
            self.notify.record(each["id"], outcome, at, took_ms, recipients(told), next_at)
        which = ", ".join(str(each["alert"]) for each in live)
        if outcome.ok:
            log.info("notified %s of alert %s on %s (%s)", role, which, channel.id, reason)
        else:
            log.warning("alert %s to %s on %s failed: %s", which, role, channel.id, outcome.detail)
