"""The updater's pure rules (when a node may update, how a trial is judged), the node's health file and config
migrations, without installing anything."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from common.health_file import HealthFile, read_health
from tests.conftest import eventually
from updates.migrations import MIGRATIONS, Migration, MigrationError, migrate
from updates.policy import blockers, in_window, trial_verdict

URGENT = {"kind": "entrapment", "severity": "urgent"}


def test_the_night_window_may_cross_midnight():
    assert in_window("01:00-05:00", dt.time(3, 0)) and not in_window("01:00-05:00", dt.time(5, 0))
    assert in_window("23:00-05:00", dt.time(23, 30)) and in_window("23:00-05:00", dt.time(4, 59))
    assert not in_window("23:00-05:00", dt.time(12, 0))


def test_an_urgent_alert_blocks_every_role_even_when_forced():
    for role in ("elevator", "meter", "kiosk"):
        found = blockers(role, [URGENT], "idle", dt.time(3, 0), "01:00-05:00", force=True)
        assert any("urgent alert is open on the node (entrapment)" in b for b in found)
    assert (
        blockers("elevator", [{"kind": "door_held_open", "severity": "warning"}], None, dt.time(12), "01:00-05:00")
        == []
    )


def test_a_kiosk_updates_only_idle_and_at_night_unless_a_technician_forces_the_hour():
    assert blockers("kiosk", [], "idle", dt.time(3, 0), "01:00-05:00") == []
    assert "outside the kiosk's night window" in blockers("kiosk", [], "idle", dt.time(12, 0), "01:00-05:00")[0]
    assert blockers("kiosk", [], "idle", dt.time(12, 0), "01:00-05:00", force=True) == []
    busy = blockers("kiosk", [], "assigned", dt.time(3, 0), "01:00-05:00", force=True)
    assert busy == ["the kiosk is busy (assigned); it updates only when idle"]


def _health(version="2", started=100.0, beat=105.0, ok=True, failed=()):
    return {
        "version": version,
        "started_wall": started,
        "heartbeat_ok_wall": beat,
        "selftest_ok": ok,
        "selftest_failed": list(failed),
    }


def test_a_trial_is_judged_from_the_new_processs_health():
    assert trial_verdict(_health(), "2", 99.0, 106.0, 249.0, 150)[0] == "healthy"
    old_process = _health(started=50.0, beat=60.0)
    assert trial_verdict(old_process, "2", 99.0, 106.0, 249.0, 150)[0] == "wait"
    assert trial_verdict(_health(beat=None), "2", 99.0, 106.0, 249.0, 150)[0] == "wait"
    verdict, why = trial_verdict(_health(ok=False, failed=["lift_inputs_read"]), "2", 99.0, 106.0, 249.0, 150)
    assert verdict == "unhealthy" and "lift_inputs_read" in why
    verdict, why = trial_verdict(_health(version="1", started=50.0), "2", 99.0, 250.0, 249.0, 150)
    assert verdict == "unhealthy" and "did not come up within 150 s (the node's health shows 1)" in why
    verdict, why = trial_verdict(_health(beat=None), "2", 99.0, 250.0, 249.0, 150)
    assert verdict == "unhealthy" and "no heartbeat reached the central" in why


def test_the_health_file_is_written_on_change_and_a_new_heartbeat_alone_once_a_minute(tmp_path):
    health = HealthFile(tmp_path, "0.2.0")
    assert health.publish(None, None, {"kiosk_state": "idle"})
    assert not health.publish(None, None, {"kiosk_state": "idle"})
    assert health.publish(1000.0, {"ok": True, "checks": {"token_present": True}}, {"kiosk_state": "idle"})
    assert not health.publish(1300.0, {"ok": True, "checks": {"token_present": True}}, {"kiosk_state": "idle"})
    assert health.publish(1300.0, {"ok": True, "checks": {}}, {"kiosk_state": "assigned"})
    data = read_health(tmp_path)
    assert (
        data["version"] == "0.2.0" and data["heartbeat_ok_wall"] == 1300.0 and data["role"]["kiosk_state"] == "assigned"
    )


def test_migrations_run_in_order_and_a_gap_or_a_newer_config_is_an_error(monkeypatch):
    monkeypatch.setitem(MIGRATIONS, 1, Migration("a", lambda d: {**d, "a": 1}))
    monkeypatch.setitem(MIGRATIONS, 2, Migration("b", lambda d: {**d, "b": d["a"] + 1}))
    doc = {"node": {}}
    migrated, done = migrate(doc, 1, 3)
    assert migrated == {"node": {}, "a": 1, "b": 2} and doc == {"node": {}} and len(done) == 2
    with pytest.raises(MigrationError, match="from config schema 3 to 4"):
        migrate(doc, 3, 4)
    with pytest.raises(MigrationError, match="newer"):
        migrate(doc, 5, 3)


def test_a_pip_left_behind_by_a_killed_updater_dies_with_it():
    """kill -9 of the updater alone (not the power) must not leave its pip writing into versions/VERSION while
    the next run replaces that folder (bench_updates_kill found rounds refused with "File exists")."""
    script = (
        "import subprocess; from updates.install import _die_with_parent; "
        "child = subprocess.Popen(['sleep', '120'], preexec_fn=_die_with_parent); print(child.pid, flush=True); "
        "child.wait()"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()

    def gone() -> bool:
        try:
            return Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0] == "Z"  # dead, not yet reaped
        except FileNotFoundError:
            return True

    eventually(gone, 10, what="the child to die with its parent")
