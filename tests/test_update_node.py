"""The updater on a node, end to end: real bundles built from this project, served by the real central on
loopback, installed into a temporary root by the node's own installed updater, the lift node run from the
``current`` link by a supervisor that behaves like systemd's Restart=always."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from bench.update_rig import RELEASES, CuttingProxy, ManagedNode, NodeSupervisor, wait_for
from common.alerts import STATE_KEY
from common.clock import SystemClock
from common.config import OutboxSection
from common.files import write_atomic
from common.outbox import Outbox
from common.service import OUTBOX_FILE
from tests.update_helpers import NODE, V1, V2, outcome, publish, reset, rollout
from updates.bundle import MANIFEST, SIGNATURE
from updates.journal import Journal
from updates.layout import Layout
from updates.manifest import generate_key, parse_manifest, public_key_pem, sign_manifest
from updates.updater import COMMIT_STEPS, STEPS


@pytest.fixture
def rig(update_rig):
    return update_rig


def test_the_node_updates_itself_migrates_its_config_and_commits(rig):
    central, node, _ = rig
    layout = reset(node)
    rollout(central, V2)
    with NodeSupervisor(node) as supervisor:
        wait_for(lambda: central.node(NODE).get("health"), 30, "the v1 node's first heartbeat")
        result = node.updater("tick")
        assert result.returncode == 0, result.stdout + result.stderr
        assert outcome(result).startswith(f"committed {V2}"), result.stdout
        assert (layout.current(), layout.committed()) == (V2, V2)
        assert supervisor.starts >= 2
    assert b'note = "migrated to schema 2"' in node.config.read_bytes()
    assert layout.backup(V1).read_bytes() == node.original_config
    assert central.node(NODE)["health"]["version"] == V2
    states = [n for n in central.get("/updates/nodes")["nodes"] if n["node_id"] == NODE]
    assert states[0]["update_state"] == "committed" and states[0]["version"] == V2
    status = node.updater("status", link="current")
    assert f"running version:   {V2}" in status.stdout and "last update:       committed" in status.stdout


def test_a_release_signed_with_another_key_is_refused(rig, release_kit, tmp_path):
    central, node, bundles = rig
    reset(node)
    key = generate_key()  # someone else's key: the central trusts it here, the node does not
    (tmp_path / "other.pub").write_bytes(public_key_pem(key.public_key()))
    with tarfile.open(bundles[V2]) as src:
        manifest = parse_manifest(src.extractfile(MANIFEST).read())
        raw, signature = sign_manifest(dataclasses.replace(manifest, version="0.1.0+evil"), key)
        bundle = tmp_path / "evil.bundle"
        with tarfile.open(bundle, "w") as dst:
            for member in src.getmembers():
                data = {MANIFEST: raw, SIGNATURE: signature}.get(member.name) or src.extractfile(member).read()
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
    publish(central, release_kit, bundle, key=tmp_path / "other.pub")
    rollout(central, "0.1.0+evil")
    result = node.updater("now")
    assert result.returncode == 1 and "refused 0.1.0+evil" in outcome(result) and "signature" in outcome(result)
    assert Layout(node.root).current() == V1
    assert not (node.root / "versions" / "0.1.0+evil").exists()


def test_a_file_changed_on_the_central_is_refused_and_a_cut_download_resumes(rig, release_kit):
    central, node, bundles = rig
    layout = reset(node)
    shutil.rmtree(layout.version_dir(V2), ignore_errors=True)
    shutil.rmtree(layout.downloads, ignore_errors=True)
    rollout(central, V2)
    files = central.db_path.parent / "releases" / "elevator" / release_kit.target / V2 / "files"
    wheel = next(files.glob("requests-*.whl"))
    original = wheel.read_bytes()
    try:
        wheel.write_bytes(original[:-10] + b"0123456789")
        result = node.updater("now")
        assert result.returncode == 1 and "sha256" in outcome(result), result.stdout
        wheel.write_bytes(original[: len(original) // 2])  # truncated at the source
        result = node.updater("now")
        assert result.returncode == 1 and "truncated" in outcome(result), result.stdout
        assert layout.current() == V1 and not (layout.version_dir(V2) / "READY").exists()
    finally:
        wheel.write_bytes(original)

    proxy = CuttingProxy(central.port, after_bytes=20_000, cuts=2)
    try:
        text = node.config.read_text().replace(central.url, proxy.url)
        write_atomic(node.config, text, mode=0o640)
        result = node.updater("now")
        assert proxy.cut == 2, result.stdout + result.stderr
        assert "resuming" in result.stdout, result.stdout  # the cut downloads were continued with Range
        assert (layout.version_dir(V2) / "READY").exists() or layout.current() == V2
    finally:
        proxy.close()
        write_atomic(node.config, node.original_config, mode=0o640)


@pytest.mark.parametrize(
    ("variant", "expected"),
    [("bad_config", "config check of 0.1.0+bc failed"), ("bad_selftest", "self-test of 0.1.0+bs failed")],
)
def test_a_release_that_fails_its_checks_is_never_switched_to(rig, release_kit, variant, expected):
    central, node, _ = rig
    layout = reset(node)
    version = {"bad_config": "0.1.0+bc", "bad_selftest": "0.1.0+bs"}[variant]
    publish(central, release_kit, release_kit.bundle(version, append=RELEASES[variant]))
    rollout(central, version)
    result = node.updater("now")
    assert result.returncode == 1 and expected in outcome(result), result.stdout + result.stderr
    if variant == "bad_config":
        assert "health_timeout_s" in outcome(result)
    else:
        assert "a module of this release is broken" in outcome(result)
    assert (layout.current(), layout.committed()) == (V1, V1)
    assert node.config.read_bytes() == node.original_config
    report = [n for n in central.get("/updates/nodes")["nodes"] if n["node_id"] == NODE][0]
    assert report["update_state"] == "failed" and report["update_version"] == version
    again = node.updater("tick")  # the timer does not retry a release that failed here
    assert "skipped" in outcome(again) or "next check" in outcome(again)


def test_a_release_that_fails_after_the_switch_is_rolled_back_by_the_node(rig, release_kit):
    central, node, _ = rig
    layout = reset(node)
    version = "0.1.0+dies"
    publish(central, release_kit, release_kit.bundle(version, append=RELEASES["dies_at_start"]))
    started = rollout(central, version)
    text = node.config.read_text().replace("health_timeout_s = 20", "health_timeout_s = 8")
    write_atomic(node.config, text, mode=0o640)
    with NodeSupervisor(node):
        wait_for(lambda: (Path(node.dir / "var" / NODE / "health.json")).exists(), 30, "the v1 node's health file")
        result = node.updater("now")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"rolled_back {version}" in outcome(result) and "did not come up within 8 s" in outcome(result)
    assert (layout.current(), layout.committed()) == (V1, V1)
    journal = Journal.load(layout.journal)
    assert journal.phase == "idle" and journal.last_result["state"] == "rolled_back"
    view = central.get(f"/rollouts/{started}")
    assert view["state"] == "halted" and "1 of 1 nodes failed" in view["reason"]


def test_an_updater_killed_after_the_restart_keeps_the_trials_deadline(rig, release_kit):
    """The next timer run judges the trial by the deadline it had (not a fresh window), so a release that fails
    is rolled back at most one timer period after its deadline: 150 s + 120 s on a node."""
    central, node, _ = rig
    layout = reset(node)
    version = "0.1.0+dies"
    if version not in {r["version"] for r in central.get("/releases")["releases"]}:
        publish(central, release_kit, release_kit.bundle(version, append=RELEASES["dies_at_start"]))
    rollout(central, version)
    text = node.config.read_text().replace("health_timeout_s = 20", "health_timeout_s = 8")
    write_atomic(node.config, text, mode=0o640)
    exe = node.root / "committed" / "venv" / "bin" / "changbai-update"
    with NodeSupervisor(node):
        wait_for(lambda: (Path(node.dir / "var" / NODE / "health.json")).exists(), 30, "the v1 node's health file")
        updater = subprocess.Popen([str(exe), "--config", str(node.config), "now"], stdout=subprocess.DEVNULL)
        try:
            trial = wait_for(lambda: (j := Journal.load(layout.journal)).restarted_wall and j, 300, "the restart")
        finally:
            updater.kill()
            updater.wait()
        assert trial.phase == "trial" and layout.current() == version
        wait_for(lambda: time.time() > trial.trial_deadline_wall, 30, "the trial's deadline")
        result = node.updater("tick")  # the timer's next run
    assert f"rolled_back {version}" in outcome(result), result.stdout + result.stderr
    assert "resuming the trial" not in result.stdout  # not restarted with a fresh window
    journal = Journal.load(layout.journal)
    assert journal.trial_deadline_wall == trial.trial_deadline_wall and layout.current() == V1


def book_in_outbox(node: ManagedNode, book: str | None) -> None:
    with Outbox(node.dir / "var" / NODE / OUTBOX_FILE, OutboxSection(), SystemClock(), node_id=NODE) as outbox:
        outbox.put_state({STATE_KEY: book})


def test_no_update_while_a_passenger_is_trapped(rig):
    central, node, _ = rig
    layout = reset(node)
    rollout(central, V2)
    alert = {"alert_id": "a1", "kind": "entrapment", "key": "", "severity": "urgent", "raised_wall": 1.0}
    (node.dir / "var" / NODE).mkdir(parents=True, exist_ok=True)
    book_in_outbox(node, json.dumps([alert]))  # the node's alert book, where the node keeps it
    try:
        result = node.updater("now")
    finally:
        book_in_outbox(node, None)
    assert result.returncode == 0 and "deferred" in outcome(result) and "urgent alert" in outcome(result)
    assert layout.current() == V1
    state = [n for n in central.get("/updates/nodes")["nodes"] if n["node_id"] == NODE][0]
    assert state["update_state"] == "deferred"


KILL_STEPS = ("check", "download", "install", "preflight", *STEPS, *COMMIT_STEPS)


def node_is_runnable(node: ManagedNode) -> str:
    """The version ``current`` runs, after checking it can run: installed completely, its self-test passes on
    the config as it is now, and the config is the one that belongs to that version."""
    layout = Layout(node.root)
    current = layout.current()
    assert current is not None, "no current version"
    assert layout.problem(current, "elevator") is None, layout.problem(current, "elevator")
    python = layout.venv(current) / "bin" / "python"
    cmd = [str(python), "-I", "-m", "updates.selftest", "--config", str(node.config)]
    check = subprocess.run([*cmd, "--from-schema", str(layout.config_schema(current))], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    migrated = b'note = "migrated to schema 2"' in node.config.read_bytes()
    assert migrated == (current == V2), f"{current} with a config {'of' if migrated else 'not of'} schema 2"
    if current == V1:
        assert node.config.read_bytes() == node.original_config
    return current


@pytest.mark.slow
def test_kill_9_at_every_step_of_an_update_leaves_a_runnable_node(rig):
    central, node, _ = rig
    rollout(central, V2)
    script = Path(__file__).with_name("update_kill_at.py")
    seen = {}
    with NodeSupervisor(node):
        for step in KILL_STEPS:
            layout = reset(node)
            rollout(central, V2)  # the last round's commit completed the previous one
            if step == "install":
                shutil.rmtree(layout.version_dir(V2))
            python = node.root / "committed" / "venv" / "bin" / "python"
            killed = subprocess.run(
                [str(python), str(script), str(node.config), step], capture_output=True, text=True, timeout=300
            )
            assert killed.returncode == -9, f"{step}: {killed.stdout} {killed.stderr}"
            # what runs next on a real node: the unit's ExecStartPre (after a crash or a power cut) or the timer
            repaired = node.updater("recover")
            assert repaired.returncode == 0, repaired.stderr
            if Journal.load(layout.journal).phase == "trial":
                node.updater("tick")  # the timer finishes the trial
            seen[step] = node_is_runnable(node)
    assert set(seen) == set(KILL_STEPS)
    assert seen["journal-done"] == V2 and seen["write-config"] == V1
