"""The node's updater: stage a release beside the running version, switch the ``current`` link, restart the
unit, and keep the new version only if it reports healthy in time; else switch back by itself and say why.

Every step that changes the node is named (``STEPS``) and the journal is written before it, so a run after a
kill -9 or a power cut finds the node runnable and knows what to finish (``recover``). ``on_step(name)`` is
called before each step: the command line prints progress with it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import subprocess
import time
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.alerts import read_open
from common.config import NodeConfig
from common.files import write_atomic
from common.health_file import read_health
from common.service import outbox_path
from common.sync import package_version
from updates.fetch import CentralClient, CentralUnavailable, ReportRefused
from updates.install import PreflightFailed, Staged, Stager, base_python
from updates.journal import Journal
from updates.layout import Layout
from updates.manifest import Manifest, ReleaseError, local_target, parse_manifest
from updates.nodefiles import refusal, restore_config, sha256_of
from updates.policy import blockers, trial_verdict

log = logging.getLogger(__name__)

# the switch, in order; a kill -9 before any of them leaves a runnable node (tests/test_update_switch.py)
STEPS = ("backup-config", "journal-switching", "write-config", "switch-current", "journal-trial", "restart")
COMMIT_STEPS = ("commit-link", "journal-done")
POLL_S = 1.0


class UpdateBusy(ReleaseError):
    """Another updater run holds the lock (an update or a trial is going on)."""


class Updater:
    """One node's updater (run as root by changbai-update.timer, or by the technician's provision update)."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        client: CentralClient | None = None,
        on_step: Callable[[str], None] | None = None,
        say: Callable[[str], None] | None = None,
        python: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.role = config.node.role
        self.settings = config.update
        self.layout = Layout(config.update.root)
        self.config_path = Path(config.path).absolute()
        self.client = client or CentralClient(config)
        self._on_step = on_step
        self._say = say or (lambda text: log.info("%s", text))
        self.python = python or base_python()
        self.wall = wall
        self.stager = Stager(self.layout, self.role, config.update.public_key, self.say, config.update.min_free_mb)

    # ------------------------------------------------------------------------------------------- basics
    def say(self, text: str) -> None:
        self._say(text)

    def step(self, name: str) -> None:
        if self._on_step:
            self._on_step(name)

    @contextmanager
    def locked(self, wait: bool = True) -> Iterator[None]:
        """One updater at a time on a node (flock on ROOT/.lock); UpdateBusy when ``wait`` is False and taken."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with open(self.layout.root / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise UpdateBusy("another updater run is in progress on this node") from None
            yield

    def journal(self) -> Journal:
        return Journal.load(self.layout.journal)

    def save(self, journal: Journal) -> None:
        journal.save(self.layout.journal)

    def running_version(self) -> str:
        return self.layout.current() or package_version()

    def unit_problem(self) -> str | None:
        """Why restarting the node's unit would not start a new version (its ExecStart does not go through
        ROOT/current); None when it does, or when that cannot be told (a restart command of its own, no systemd)."""
        unit, current = f"changbai-{self.role}.service", self.layout.root / "current"
        if self.settings.restart_command:
            return None
        try:
            shown = subprocess.run(["systemctl", "show", "-p", "ExecStart", "--value", unit], capture_output=True,
                                   text=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        if "path=" not in shown.stdout or f"{current}/" in shown.stdout:
            return None
        return f"{unit} does not run through {current}: run provision install first (a restart would start the old program)"

    def restart_unit(self) -> None:
        command = list(self.settings.restart_command) or ["systemctl", "restart", f"changbai-{self.role}.service"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReleaseError(f"restart ({' '.join(command)}) failed: {exc}") from None
        if result.returncode != 0:
            raise ReleaseError(
                f"restart ({' '.join(command)}) exit {result.returncode}: {result.stderr.strip()[-300:]}"
            )

    # ------------------------------------------------------------------------------------------ recovery
    def recover(self) -> list[str]:
        """Make the node runnable and consistent after an interruption; returns what was done. Never waits."""
        done: list[str] = []
        self.layout.clean_temp_links()
        journal = self.journal()
        if journal.phase == "switching":
            self._undo_switch(journal)
            journal.finish(
                "failed", journal.to_version, "the switch was interrupted (power cut or kill); undone", self.wall()
            )
            done.append(f"undid the interrupted switch to {journal.to_version}")
        elif journal.phase == "rolling_back":
            self._undo_switch(journal)
            journal.finish("rolled_back", journal.to_version, journal.reason, self.wall())
            done.append(f"finished the rollback to {journal.from_version}")
        self.save(journal) if done else None
        current, committed = self.layout.current(), self.layout.committed()
        if current and self.layout.problem(current, self.role):
            fallback = self._fallback(current)
            if fallback:
                self.layout.point("current", fallback)
                done.append(f"current pointed to {current}, which cannot run; now {fallback}")
        current = self.layout.current()
        if current and (not committed or self.layout.problem(committed, self.role)) and journal.phase == "idle":
            self.layout.point("committed", current)
            done.append(f"committed set to {current}")
        return done

    def _fallback(self, broken: str) -> str | None:
        committed = self.layout.committed()
        if committed and committed != broken and not self.layout.problem(committed, self.role):
            return committed
        ready = [v for v in self.layout.installed() if v != broken and not self.layout.problem(v, self.role)]
        return ready[-1] if ready else None

    def _undo_switch(self, journal: Journal) -> None:
        """Back to ``from_version`` with the config it had (restored only if the switch had changed it)."""
        backup = self.layout.backup(journal.from_version)
        now_sha = sha256_of(self.config_path)
        if journal.config_after_sha != journal.config_before_sha and now_sha != journal.config_before_sha:
            if sha256_of(backup) == journal.config_before_sha:
                restore_config(backup, self.config_path)
            else:
                log.error("config backup %s missing or changed; config left as it is", backup)
        if self.layout.current() != journal.from_version:
            self.layout.point("current", journal.from_version)

    # ------------------------------------------------------------------------------------------- policy
    def blockers(self, force: bool) -> list[str]:
        state_dir = self.config.state_dir
        alerts = read_open(outbox_path(self.config))  # the node's own book, read-only
        health = read_health(state_dir) or {}
        kiosk_state = (health.get("role") or {}).get("kiosk_state")
        local = dt.datetime.now(zoneinfo.ZoneInfo(self.config.node.timezone)).time()
        return blockers(self.role, alerts, kiosk_state, local, self.settings.night_window, force)

    # ------------------------------------------------------------------------------------------- update
    def stage(self, manifest: Manifest) -> Staged:
        """Install (unless already READY) and run the new version's checks on the node's config."""
        version = manifest.version
        if self.layout.problem(version, self.role) is not None:
            self.step("install")
            self.stager.install(manifest, self.python)
        self.step("preflight")
        return self.stager.preflight(manifest, self.config_path, self.layout.config_schema(self.layout.current()))

    def apply(self, staged: Staged, rollout: int | None) -> dict[str, Any]:
        """Switch to a staged version, restart, and judge its health; commit or roll back."""
        journal = self.journal()
        version, previous = staged.manifest.version, self.layout.current()
        if previous is None:
            return self._first_install(journal, version, rollout)
        before = sha256_of(self.config_path)
        migrated = staged.migrated_config.read_bytes() if staged.migrated_config else None
        self.step("backup-config")
        write_atomic(self.layout.backup(previous), self.config_path.read_bytes(), mode=0o600)
        self.step("journal-switching")
        journal.phase, journal.from_version, journal.to_version, journal.rollout = (
            "switching",
            previous,
            version,
            rollout,
        )
        journal.config_before_sha = before
        journal.config_after_sha = hashlib.sha256(migrated).hexdigest() if migrated else before
        journal.started_wall, journal.reason, journal.restarted_wall = self.wall(), "", 0.0
        self.save(journal)
        self.step("write-config")
        if migrated:
            write_atomic(self.config_path, migrated, mode=self.config_path.stat().st_mode & 0o777)
        self.step("switch-current")
        self.layout.point("current", version)
        self.step("journal-trial")
        journal.phase = "trial"
        journal.trial_deadline_wall = self.wall() + self.settings.health_timeout_s
        self.save(journal)
        self.step("restart")
        self.say(f"switched {previous} -> {version}; restarting the node")
        try:
            self.restart_unit()
        except ReleaseError as exc:
            return self.rollback_trial(journal, f"{version} did not start: {exc}")
        journal.restarted_wall = self.wall()
        self._report_soon(journal, "switched", version, "")  # saves the journal
        return self.wait_trial(journal)

    def _first_install(self, journal: Journal, version: str, rollout: int | None) -> dict[str, Any]:
        self.layout.point("current", version)
        self.layout.point("committed", version)
        journal.rollout, journal.from_version = rollout, ""
        outcome = journal.finish("committed", version, "first install", self.wall())
        self.save(journal)
        return outcome

    def wait_trial(self, journal: Journal) -> dict[str, Any]:
        """Wait for the new version's healthy heartbeat (or its failure, or the deadline); commit or roll back."""
        while True:
            verdict, reason = trial_verdict(
                read_health(self.config.state_dir),
                journal.to_version,
                journal.started_wall,
                self.wall(),
                journal.trial_deadline_wall,
                self.settings.health_timeout_s,
            )
            if verdict == "healthy":
                return self.commit(journal, reason)
            if verdict == "unhealthy":
                return self.rollback_trial(journal, reason)
            time.sleep(POLL_S)

    def resume_trial(self, journal: Journal) -> dict[str, Any]:
        """A trial whose updater died. If the kill came before the node was restarted on the new version,
        restart it now with a fresh health window; else keep the window it had, so a bad release is rolled back
        at most one timer period after its deadline (150 s + 120 s). Then judge it as usual."""
        health = read_health(self.config.state_dir) or {}
        started = health.get("version") == journal.to_version and (health.get("started_wall") or 0) >= (
            journal.started_wall
        )
        if not journal.restarted_wall and not started:
            self.say(f"resuming the trial of {journal.to_version}: restarting the node on it")
            journal.started_wall = self.wall()
            journal.trial_deadline_wall = self.wall() + self.settings.health_timeout_s
            self.save(journal)
            try:
                self.restart_unit()
            except ReleaseError as exc:
                return self.rollback_trial(journal, f"{journal.to_version} did not start: {exc}")
            journal.restarted_wall = self.wall()
            self.save(journal)
        return self.wait_trial(journal)

    def commit(self, journal: Journal, reason: str) -> dict[str, Any]:
        self.step("commit-link")
        self.layout.point("committed", journal.to_version)
        self.step("journal-done")
        outcome = journal.finish("committed", journal.to_version, reason, self.wall())
        self.save(journal)
        self.say(f"{journal.to_version} is healthy and committed ({reason})")
        protect = {v for v in (self.layout.current(), self.layout.committed(), journal.from_version) if v}
        self.layout.prune(self.settings.keep_versions, protect)
        self.flush_reports()
        return outcome

    def rollback_trial(self, journal: Journal, reason: str) -> dict[str, Any]:
        """Back to the version before the switch, by the node alone; the reason goes to the central."""
        self.say(f"rolling back {journal.to_version} -> {journal.from_version}: {reason}")
        journal.phase, journal.reason = "rolling_back", reason
        self.save(journal)
        self._undo_switch(journal)
        try:
            self.restart_unit()
        except ReleaseError as exc:
            log.error("restart after rollback failed: %s (the unit's Restart=always retries it)", exc)
        outcome = journal.finish("rolled_back", journal.to_version, reason, self.wall())
        self._skip(journal, journal.to_version)
        self.save(journal)
        self.flush_reports()
        return outcome

    def _skip(self, journal: Journal, version: str) -> None:
        """A version that failed here is not tried again automatically (a technician's `update now` may)."""
        skipped = journal.last_result.setdefault("skip", [])
        journal.history[-1]["skip"] = sorted({*skipped, version})
        journal.last_result["skip"] = journal.history[-1]["skip"]

    def skipped(self, journal: Journal) -> set[str]:
        return {v for item in journal.history for v in item.get("skip", [])}

    # --------------------------------------------------------------------------------------- the runs
    def update(self, *, force: bool = False, bundle: Path | None = None) -> dict[str, Any]:
        """Ask the central (or take ``bundle``), stage, switch, judge. The outcome's ``state``: none, deferred,
        refused, failed, committed or rolled_back, with ``reason``."""
        journal = self.journal()
        rollout, offer = None, None
        if bundle is None:
            self.step("check")
            answer = self.client.check(self.settings.channel, self.target(), self.running_version(), force)
            offer = answer.get("update")
            journal.last_check_wall = self.wall()
            journal.last_check = f"offered {offer['version']}" if offer else str(answer.get("reason", ""))
            self.save(journal)
            if offer is None:
                return {"state": "none", "reason": journal.last_check}
            if offer["version"] in self.skipped(journal) and not force:
                return {"state": "none", "reason": f"{offer['version']} failed on this node before; skipped"}
            rollout = offer.get("rollout")
        waiting = self.blockers(force)
        if waiting:
            return self._deferred(journal, offer["version"] if offer else str(bundle), rollout, waiting)
        journal.rollout, journal.from_version = rollout, self.layout.current() or ""
        problem = self.unit_problem() if self.layout.current() is not None else None  # a first install never restarts
        if problem is not None:
            outcome = journal.finish("refused", offer["version"] if offer else str(bundle), problem, self.wall())
            self.save(journal)
            self.flush_reports()
            return outcome
        try:
            self.step("download")
            if offer is not None:
                manifest = self.stager.fetch(self.client, offer)
            else:
                assert bundle is not None, "no offer: a run with the technician's bundle"
                manifest = self.stager.unpack(bundle)
            staged = self.stage(manifest)
        except PreflightFailed as exc:
            version = offer["version"] if offer else "the bundle"
            self.stager.discard(version)
            outcome = journal.finish("failed", version, str(exc), self.wall())
            self._skip(journal, version)
            self.save(journal)
            self.flush_reports()
            return outcome
        except (ReleaseError, OSError) as exc:
            if isinstance(exc, CentralUnavailable):
                raise
            version = offer["version"] if offer else str(bundle)
            self.stager.discard(offer["version"] if offer else "")  # a full disk gets back what we took
            outcome = journal.finish("refused", version, refusal(exc), self.wall())
            self.save(journal)
            self.flush_reports()
            return outcome
        waiting = self.blockers(force)  # staging takes minutes: look again right before the switch
        if waiting:
            return self._deferred(journal, staged.manifest.version, rollout, waiting)
        self._report_soon(journal, "staged", staged.manifest.version, "installed and self-tested")
        try:
            return self.apply(staged, rollout)
        except OSError as exc:  # the disk refused a write of the switch (full, read-only): undo it
            if self.journal().phase not in ("idle", "switching"):
                raise
            self.recover()
            journal = self.journal()
            outcome = journal.finish("failed", staged.manifest.version, f"switch undone: {refusal(exc)}", self.wall())
            self.save(journal)
            self.flush_reports()
            return outcome

    def _deferred(self, journal: Journal, version: str, rollout: int | None, why: list[str]) -> dict[str, Any]:
        reason = "; ".join(why)
        if journal.last_check != f"deferred: {reason}":
            journal.last_check = f"deferred: {reason}"
            journal.rollout, journal.from_version = rollout, self.layout.current() or ""
            self._report_soon(journal, "deferred", version, reason)
        return {"state": "deferred", "version": version, "reason": reason}

    def tick(self) -> dict[str, Any]:
        """The timer's run: repair, send waiting reports, finish a trial, and check when the interval is up."""
        with self.locked(wait=False):
            done = self.recover()
            self.flush_reports()
            journal = self.journal()
            if journal.phase == "trial":
                return self.resume_trial(journal)
            if not self.settings.enabled:
                return {
                    "state": "none",
                    "reason": "updates disabled in the config ([update] enabled = false)",
                    "recovered": done,
                }
            due = journal.last_check_wall + self.interval_s() - self.wall()
            if due > 0:
                return {"state": "none", "reason": f"next check in {due / 60:.0f} min", "recovered": done}
            return self.update()

    def interval_s(self) -> float:
        """The check interval, spread by up to +-10 % per node so a fleet does not ask all at once."""
        spread = int(hashlib.sha256(self.config.node.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return self.settings.check_interval_h * 3600.0 * (0.9 + 0.2 * spread)

    def rollback(self, reason: str = "rolled back by a technician") -> dict[str, Any]:
        """Undo: end a trial now, or go back to the version before the current one (itself health-checked)."""
        with self.locked(wait=False):
            self.recover()
            journal = self.journal()
            if journal.phase == "trial":
                return self.rollback_trial(journal, reason)
            current = self.layout.current()
            previous = self._previous(journal, current)
            if previous is None:
                raise ReleaseError(f"no earlier version installed beside {current} to go back to")
            migrated = None
            if self.layout.config_schema(previous) != self.layout.config_schema(current):
                migrated = self.layout.backup(previous)
                if not migrated.is_file():
                    raise ReleaseError(
                        f"{previous} reads config schema {self.layout.config_schema(previous)}, and "
                        f"no config backup of it is left ({migrated})"
                    )
            raw = (self.layout.version_dir(previous) / "manifest.json").read_bytes()
            staged = Staged(parse_manifest(raw), migrated)
            journal.history.append({"state": "rolled_back", "version": current, "reason": reason, "skip": [current]})
            self.save(journal)
            return self.apply(staged, None)

    def _previous(self, journal: Journal, current: str | None) -> str | None:
        for item in reversed(journal.history):
            earlier = item.get("from_version")
            match = item.get("state") == "committed" and item.get("version") == current and earlier
            if match and not self.layout.problem(earlier, self.role):
                return earlier
        ready = [v for v in self.layout.installed() if v != current and not self.layout.problem(v, self.role)]
        return ready[-1] if ready else None

    def status(self) -> dict[str, Any]:
        journal = self.journal()
        return {
            "current": self.layout.current(),
            "committed": self.layout.committed(),
            "installed": self.layout.installed(),
            "phase": journal.phase,
            "to_version": journal.to_version if journal.phase != "idle" else None,
            "last_check": journal.last_check,
            "last_check_wall": journal.last_check_wall or None,
            "last_result": journal.last_result,
            "skipped": sorted(self.skipped(journal)),
            "unreported": len(journal.unreported),
            "channel": self.settings.channel,
            "health": read_health(self.config.state_dir),
        }

    # ----------------------------------------------------------------------------------------- reports
    def _report_soon(self, journal: Journal, state: str, version: str, reason: str) -> None:
        item = {"state": state, "version": version, "from_version": journal.from_version, "rollout": journal.rollout}
        journal.unreported = [*journal.unreported, {**item, "reason": reason, "at": self.wall()}]
        self.save(journal)
        self.flush_reports()

    def flush_reports(self) -> int:
        """Send queued reports to the central (oldest first); the rest wait for the next run."""
        journal = self.journal()
        sent = 0
        while journal.unreported:
            try:
                self.client.report(journal.unreported[0])
            except CentralUnavailable as exc:
                log.warning("update report not sent yet: %s", exc)
                break
            except ReportRefused as exc:  # never accepted: must not hold back the reports after it
                log.error("update report %s dropped: %s", journal.unreported[0], exc)
            journal.unreported.pop(0)
            sent += 1
        if sent:
            self.save(journal)
        return sent

    def target(self) -> str:
        return local_target()
