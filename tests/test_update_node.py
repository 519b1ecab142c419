"""The updater on a node, end to end: real bundles built from this project, served by the real central on
loopback, installed into a temporary root by the node's own installed updater, the lift node run from the
``current`` link by a supervisor that behaves like systemd's Restart=always.

Releases that fail (their checks, or after the switch) and kill -9 before each step of the switch:
tests/test_update_switch.py, in seconds; the same end to end with full builds and installs, and kill -9 of the
installed updater before each of its steps: bench/bench_updates_e2e.py (``changbai-bench --only updates_e2e``)."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.update_rig import CuttingProxy, ManagedNode, NodeSupervisor, wait_for
from common.alerts import STATE_KEY
from common.clock import SystemClock
from common.config import OutboxSection
from common.outbox import Outbox
from common.service import OUTBOX_FILE
from tests.update_helpers import NODE, V1, V2, outcome, publish, reset, rollout, set_config, variant_bundle
from updates.layout import Layout
from updates.manifest import generate_key, public_key_pem
from updates.nodefiles import load_updater_config
from updates.updater import Updater


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
    bundle = variant_bundle(bundles[V2], tmp_path / "evil.bundle", key, version="0.1.0+evil")
    publish(central, release_kit, bundle, key=tmp_path / "other.pub")
    rollout(central, "0.1.0+evil")
    result = node.updater("now")
    assert result.returncode == 1 and "refused 0.1.0+evil" in outcome(result) and "signature" in outcome(result)
    assert Layout(node.root).current() == V1
    assert not (node.root / "versions" / "0.1.0+evil").exists()


def test_a_file_changed_or_truncated_on_the_central_is_refused(rig, release_kit):
    central, node, _ = rig
    layout = reset(node)
    shutil.rmtree(layout.downloads, ignore_errors=True)
    ready = (
        layout.version_dir(V2) / "READY"
    ).exists()  # v2 may be installed by an earlier test: it is downloaded anyway
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
        assert layout.current() == V1 and (layout.version_dir(V2) / "READY").exists() == ready
        assert not list(layout.downloads.rglob("requests-*")), "a refused file was kept"
    finally:
        wheel.write_bytes(original)


def test_a_download_cut_twice_by_the_network_is_resumed_with_range(rig):
    """The updater's own download (a real CentralClient, the real central behind a proxy that cuts the file
    twice) continues where each cut left it; every file then matches the signed manifest's hash."""
    central, node, _ = rig
    layout = reset(node)
    shutil.rmtree(layout.downloads, ignore_errors=True)
    rollout(central, V2)
    proxy = CuttingProxy(central.port, after_bytes=20_000, cuts=2)
    said: list[str] = []
    try:
        set_config(node, central.url, proxy.url)
        updater = Updater(load_updater_config(node.config), say=said.append)
        offer = updater.client.check(updater.settings.channel, updater.target(), V1, True)["update"]
        manifest = updater.stager.fetch(updater.client, offer)
    finally:
        proxy.close()
        shutil.rmtree(layout.downloads, ignore_errors=True)
        reset(node)
    assert proxy.cut == 2 and manifest.version == V2
    assert len([line for line in said if "resuming" in line]) == 2, said  # continued with a Range request
    assert layout.current() == V1


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
