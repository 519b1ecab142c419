"""The switch to a new version, in seconds: the session's lift node (real v1 and v2 venvs installed from real
bundles of this project, the real central on loopback) driven by the updater in this process.

- a release whose config check or self-test fails is never switched to;
- a release that fails after the switch is rolled back by the node alone, and its rollout halts;
- an updater killed during the trial leaves the trial its deadline (not a fresh window);
- kill -9 (a forked updater that SIGKILLs itself) before each step of the switch and of the commit leaves a node
  whose ``current`` runs: installed completely, its self-test passing on the config that belongs to it.

Releases with faults are the v1 bundle re-signed under another version and staged by copying v1's venv with the
fault added (``clone_install``), so the release's own faulty code is what runs. Their full builds and pip
installs, and kill -9 of the installed updater before each of its 12 steps, run in bench/bench_updates_e2e.py
(``changbai-bench --only updates_e2e``); 200 kills at random moments in bench/bench_updates_kill.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from bench.update_rig import RELEASES, ManagedNode, NodeSupervisor, wait_for
from common.files import write_atomic
from tests.update_helpers import (
    NODE,
    V1,
    V2,
    clone_install,
    publish,
    reset,
    rollout,
    set_config,
    variant_bundle,
)
from updates.bundle import MANIFEST, SIGNATURE
from updates.install import Staged
from updates.journal import Journal
from updates.layout import Layout
from updates.nodefiles import load_updater_config
from updates.updater import COMMIT_STEPS, STEPS, Updater

BAD = {"bad_config": "0.1.0+bc", "bad_selftest": "0.1.0+bs", "dies_at_start": "0.1.0+dies"}
SCHEMA = {"bad_config": 2, "bad_selftest": 1, "dies_at_start": 1}


@pytest.fixture
def rig(update_rig, release_kit, tmp_path):
    """The session's central and node, back on v1; ``rig.release(variant)`` publishes a faulty release."""
    central, node, bundles = update_rig
    reset(node)
    node.pidfile.unlink(missing_ok=True)  # the restart command then signals nobody unless a supervisor runs
    # the session's node is shared by every update test of this worker, in whatever order xdist gives them: a
    # fetch must not resume a .part another test left (a HashMismatch under two workers)
    shutil.rmtree(Layout(node.root).downloads, ignore_errors=True)

    def release(variant: str) -> str:
        version = BAD[variant]
        if version not in {r["version"] for r in central.get("/releases")["releases"]}:
            out = tmp_path / f"{version}.bundle"
            variant_bundle(bundles[V1], out, release_kit.private_key, version=version, config_schema=SCHEMA[variant])
            publish(central, release_kit, out)
        return version

    yield central, node, release
    reset(node)


def updater(node: ManagedNode, said: list[str] | None = None, **kwargs) -> Updater:
    """The node's updater as `changbai-update` builds it, in this process."""
    return Updater(load_updater_config(node.config), say=(said if said is not None else []).append, **kwargs)


def stage_for(node: ManagedNode, install: Callable | None = None) -> Staged:
    """Fetch (unless installed), install and pre-flight what the central offers, as `now` does before the switch."""
    up = updater(node)
    if install is not None:
        setattr(up.stager, "install", install)  # noqa: B010 - the clone stands in for pip
    with up.locked():
        offer = up.client.check(up.settings.channel, up.target(), up.running_version(), True)["update"]
        folder = up.layout.version_dir(offer["version"])
        if up.layout.problem(offer["version"], "elevator") is None:
            manifest = up.stager.check_manifest((folder / MANIFEST).read_bytes(), (folder / SIGNATURE).read_bytes())
        else:
            manifest = up.stager.fetch(up.client, offer)
        return up.stage(manifest)


def forked(run: Callable[[], object]) -> int:
    """``run()`` in a forked child (an updater process of its own); its exit code, or -SIGNAL."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            run()
        finally:
            os._exit(70)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked updater did not end within 120 s")
        time.sleep(0.01)


def node_report(central) -> dict:
    return [n for n in central.get("/updates/nodes")["nodes"] if n["node_id"] == NODE][0]


@pytest.mark.parametrize(
    ("variant", "expected"),
    [("bad_config", "config check of 0.1.0+bc failed"), ("bad_selftest", "self-test of 0.1.0+bs failed")],
)
def test_a_release_that_fails_its_checks_is_never_switched_to(rig, monkeypatch, variant, expected):
    central, node, release = rig
    layout = Layout(node.root)
    version = release(variant)
    rollout(central, version)
    up = updater(node)
    monkeypatch.setattr(up.stager, "install", clone_install(layout, V1, RELEASES[variant]))
    with up.locked():
        result = up.update(force=True)
    assert result["state"] == "failed" and expected in result["reason"], result
    problem = "health_timeout_s" if variant == "bad_config" else "a module of this release is broken"
    assert problem in result["reason"]
    assert (layout.current(), layout.committed()) == (V1, V1)
    assert node.config.read_bytes() == node.original_config
    assert not layout.version_dir(version).exists()  # what failed is removed
    report = node_report(central)
    assert report["update_state"] == "failed" and report["update_version"] == version
    again = updater(node).tick()  # the timer does not retry a release that failed here
    assert again["state"] == "none" and ("skipped" in again["reason"] or "next check" in again["reason"])


def test_a_release_that_fails_after_the_switch_is_rolled_back_by_the_node(rig, monkeypatch):
    central, node, release = rig
    layout = Layout(node.root)
    version = release("dies_at_start")
    started = rollout(central, version)
    set_config(node, "health_timeout_s = 20", "health_timeout_s = 5")
    health = node.dir / "var" / NODE / "health.json"
    health.unlink(missing_ok=True)
    with NodeSupervisor(node) as supervisor:
        wait_for(lambda: health.exists(), 60, "the v1 node's health file")
        up = updater(node)
        monkeypatch.setattr(up.stager, "install", clone_install(layout, V1, RELEASES["dies_at_start"]))
        with up.locked():
            result = up.update(force=True)
        assert supervisor.starts >= 3  # v1, the release (which exits at start, again and again), v1 again
    assert result["state"] == "rolled_back" and "did not come up within 5 s" in result["reason"], result
    assert (layout.current(), layout.committed()) == (V1, V1)
    assert node.config.read_bytes().replace(b"= 5\n", b"= 20\n") == node.original_config
    journal = Journal.load(layout.journal)
    assert journal.phase == "idle" and journal.last_result["state"] == "rolled_back"
    view = central.get(f"/rollouts/{started}")
    assert view["state"] == "halted" and "1 of 1 nodes failed" in view["reason"]


def test_an_updater_killed_during_the_trial_keeps_the_trials_deadline(rig):
    """The next timer run judges the trial by the deadline it had (not a fresh window), so a release that fails
    is rolled back at most one timer period after its deadline: 150 s + 120 s on a node."""
    central, node, release = rig
    layout = Layout(node.root)
    version = release("dies_at_start")
    rollout(central, version)
    staged = stage_for(node, clone_install(layout, V1, RELEASES["dies_at_start"]))

    def switch() -> None:
        up = updater(node)
        # killed while it waits for the release's health: the wait is held here, so the kill always lands in the
        # trial (the real wait could end it first, by the release's 5 s deadline, on a loaded machine)
        setattr(up, "wait_trial", lambda journal: time.sleep(3600))  # noqa: B010 (an instance's method, held)
        with up.locked():
            up.apply(staged, None)  # switches, restarts, then waits (held) for the release's health

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            switch()
        finally:
            os._exit(70)
    try:
        trial = wait_for(lambda: (j := Journal.load(layout.journal)).restarted_wall and j, 60, "the restart")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert trial.phase == "trial" and layout.current() == version
    said: list[str] = []
    # the timer's next run, once the deadline has passed (the updater's clock moved past it)
    result = updater(node, said, wall=lambda: time.time() + 3600).tick()
    assert result["state"] == "rolled_back" and result["version"] == version, result
    assert not [line for line in said if "resuming the trial" in line]  # no restart with a fresh window
    journal = Journal.load(layout.journal)
    assert journal.trial_deadline_wall == trial.trial_deadline_wall and layout.current() == V1


_SELFTESTS: set[tuple[str, bytes]] = set()


def runnable(node: ManagedNode) -> str:
    """The version ``current`` runs, after checking it can run: installed completely, its self-test passes on
    the config as it is now, and the config is the one that belongs to that version."""
    layout = Layout(node.root)
    current = layout.current()
    assert current is not None, "no current version"
    assert layout.problem(current, "elevator") is None, layout.problem(current, "elevator")
    config = node.config.read_bytes()
    migrated = b'note = "migrated to schema 2"' in config
    assert migrated == (current == V2), f"{current} with a config {'of' if migrated else 'not of'} schema 2"
    if current == V1:
        assert config == node.original_config
    seen = (current, hashlib.sha256(config).digest())
    if seen not in _SELFTESTS:  # one self-test per version and config: the same bytes give the same answer
        python = layout.venv(current) / "bin" / "python"
        cmd = [str(python), "-I", "-m", "updates.selftest", "--config", str(node.config)]
        cmd += ["--from-schema", str(layout.config_schema(current))]
        check = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        _SELFTESTS.add(seen)
    return current


def healthy_v2(node: ManagedNode) -> None:
    """What v2's node writes once its heartbeat reached the central and its self-check passed."""
    now = time.time() + 1.0  # started after the switch that comes next
    health = {"version": V2, "pid": 0, "started_wall": now, "heartbeat_ok_wall": now, "selftest_ok": True}
    write_atomic(node.dir / "var" / NODE / "health.json", json.dumps(health), mode=0o644)


def test_kill_9_before_each_step_of_the_switch_leaves_a_runnable_node(rig):
    central, node, _ = rig
    rollout(central, V2)
    staged = stage_for(node)  # the real v2: installed from its bundle, its self-test migrated the config
    steps = (*STEPS, *COMMIT_STEPS)
    seen = {}
    for step in steps:
        layout = reset(node)
        if steps.index(step) >= steps.index("restart"):
            healthy_v2(node)  # so the switch goes on to the commit (the real v2 node's health: test_update_node)

        def switch(step: str = step) -> None:
            def on_step(name: str) -> None:
                if name == step:
                    os.kill(os.getpid(), signal.SIGKILL)

            up = updater(node, on_step=on_step)
            with up.locked():
                up.apply(staged, None)

        assert forked(switch) == -signal.SIGKILL, f"the updater was not killed before {step}"
        # what runs next on a real node: the unit's ExecStartPre (after a crash or a power cut), then the timer
        up = updater(node)
        with up.locked():
            up.recover()
        if Journal.load(layout.journal).phase == "trial":
            assert updater(node).tick()["state"] == "committed"  # the timer finishes the trial
        seen[step] = runnable(node)
    assert seen["write-config"] == V1 and seen["journal-done"] == V2
    before_the_trial = steps.index("restart")  # until the journal says trial, the switch is undone
    assert [seen[s] for s in steps] == [V1] * before_the_trial + [V2] * (len(steps) - before_the_trial)


def test_an_update_is_refused_before_anything_changes_when_the_unit_runs_the_old_program(rig, tmp_path, monkeypatch):
    """Under real systemd a node installed with pip took an update before `provision install` had pointed its unit
    at /opt/changbai/current: the switch restarted the old program, waited the whole health timeout (150 s) and
    rolled back with "the node's health shows 0.1.0". Now the updater asks systemd first. systemd does not run in
    the tests: a stand-in `systemctl` answers `show` as systemd 252 does (scripts/systemd-walk asks the real one)."""
    central, node, release = rig
    layout = Layout(node.root)
    version = release("bad_config")
    rollout(central, version)
    up = updater(node)
    up.settings = dataclasses.replace(up.settings, restart_command=())  # as on a node: systemctl restart
    fake = tmp_path / "bin"
    fake.mkdir()
    answer = tmp_path / "execstart"
    (fake / "systemctl").write_text(f'#!/bin/sh\ncat "{answer}"\n')
    (fake / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    old = "/opt/changbai/venv/bin/elevator-node"
    answer.write_text(f"{{ path={old} ; argv[]={old} run --config /etc/changbai/node.toml ; ignore_errors=no }}\n")
    with up.locked():
        result = up.update(force=True)
    assert result["state"] == "refused" and "run provision install first" in result["reason"], result
    assert (layout.current(), layout.committed()) == (V1, V1) and not layout.version_dir(version).exists()
    new = f"{layout.root}/current/venv/bin/elevator-node"
    answer.write_text(f"{{ path={new} ; argv[]={new} run --config /etc/changbai/node.toml ; ignore_errors=no }}\n")
    assert up.unit_problem() is None


def test_a_report_the_central_refuses_does_not_hold_back_the_reports_after_it(rig):
    """Under real systemd a refused `update now --bundle` queued a report whose version was the bundle's path; the
    central answered 422, and every later report (a commit, a rollback) waited behind it for good, so a rollout
    whose release failed on this node never halted. A report the central refuses as invalid is dropped, and a run
    with no release version (a bundle refused before its manifest was read) queues none."""
    central, node, _ = rig
    up = updater(node)
    journal = up.journal()
    bogus = {"state": "refused", "version": "dist/x.bundle", "from_version": V1, "rollout": None, "reason": "r"}
    good = {"state": "failed", "version": "0.1.0+zz", "from_version": V1, "rollout": None, "reason": "checked"}
    journal.unreported = [bogus, good]
    up.save(journal)
    up.flush_reports()
    assert up.journal().unreported == []
    report = node_report(central)
    assert (report["update_version"], report["update_state"]) == ("0.1.0+zz", "failed"), report
    journal = up.journal()
    journal.finish("refused", "/media/usb/x.bundle", "not a bundle", 1.0)
    assert journal.unreported == [] and journal.last_result["version"] == "/media/usb/x.bundle"
