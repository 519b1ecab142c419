"""A full disk during an update, on a real small filesystem (a tmpfs holding the whole node: its versions,
its data directory with the outbox, its config): an update that does not fit is refused before any byte is
fetched, and a disk that fills during the download or the install costs nothing. No half-installed version
becomes current, the running node is never restarted, what the attempt wrote is removed, and once there is
room the node's events reach the central again."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.small_disk import CannotMount, SmallDisk
from bench.update_rig import FileFaultProxy, ManagedNode, NodeSupervisor, wait_for
from tests.fixtures.central import CentralHandle, config_document
from tests.update_helpers import V1, V2, copy_install, outcome, publish, reset, rollout, set_config
from updates.layout import READY, Layout

NODE = "cbxc-b9-u2-lift1"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def disk_node(update_rig, release_kit, tmp_path_factory) -> Iterator[tuple]:
    """A lift node on v1 whose every file is on a 192 MB tmpfs, kept running; v2 rolled out."""
    _, _, bundles = update_rig
    try:
        disk = SmallDisk(tmp_path_factory.mktemp("disk") / "card", 192 * 1024)
    except CannotMount as exc:
        pytest.skip(f"no small filesystem to fill: {exc}")
    central = CentralHandle(tmp_path_factory.mktemp("central"), config_document())  # its own: the rig's
    central.start()  # rollouts count only their own node
    try:
        for bundle in bundles.values():
            publish(central, release_kit, bundle)
        token = central.register(NODE, "elevator")
        node = ManagedNode(disk.root / "node", central.url, token, release_kit.public_key, NODE, 20)
        set_config(node, "[update]\n", "[update]\nmin_free_mb = 5\n")
        node.original_config = node.config.read_bytes()
        copy_install(Layout(update_rig[1].root), V1, Layout(node.root))  # as `now --bundle` installed it there
        with NodeSupervisor(node) as supervisor:
            wait_for(lambda: (central.node(NODE).get("health") or {}).get("version") == V1, 60, "v1's heartbeat")
            yield central, node, disk, supervisor
    finally:
        central.close()
        disk.unmount()


@pytest.fixture
def fresh(disk_node):
    central, node, disk, supervisor = disk_node
    layout = reset(node)
    rollout(central, V2)
    yield central, node, disk, supervisor, layout
    disk.free()
    reset(node)


def leave_free(disk: SmallDisk, free: int) -> None:
    """Fill the disk until ``free`` bytes are left."""
    with open(disk.filler, "wb") as filler:
        filler.write(b"\0" * max(0, disk.free_bytes() - free))


def nothing_of_v2(layout: Layout) -> None:
    assert (layout.current(), layout.committed()) == (V1, V1)
    assert not layout.version_dir(V2).exists(), "a half-installed version was left"
    assert not (layout.downloads / V2).exists(), "the attempt's downloads were left"


def node_carries_on(central, node: ManagedNode, disk: SmallDisk, supervisor: NodeSupervisor, starts: int) -> None:
    """The node was never restarted; once the disk has room its outbox is sound and its heartbeat arrives."""
    assert supervisor.starts == starts and supervisor.running()
    disk.free()
    beat = central.node(NODE)["last_heartbeat_at"] or 0
    wait_for(lambda: (central.node(NODE)["last_heartbeat_at"] or 0) > beat, 60, "a heartbeat after the disk has room")
    outbox = node.dir / "var" / NODE / "outbox.sqlite"
    with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_an_update_that_does_not_fit_is_refused_before_any_download(fresh):
    central, node, disk, supervisor, layout = fresh
    starts = supervisor.starts
    leave_free(disk, 40 * MB)  # v2 needs its 9 MB download, about 45 MB installed, and 5 MB left over
    before = disk.free_bytes()
    result = node.updater("now")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"refused {V2}: not enough disk for {V2}" in outcome(result) and "min_free_mb 5 MB" in outcome(result)
    nothing_of_v2(layout)
    assert abs(disk.free_bytes() - before) < MB
    report = [n for n in central.get("/updates/nodes")["nodes"] if n["node_id"] == NODE][0]
    assert report["update_state"] == "refused" and "not enough disk" in report["reason"]
    node_carries_on(central, node, disk, supervisor, starts)


@pytest.mark.slow
def test_a_disk_that_fills_during_the_download(fresh):
    central, node, disk, supervisor, layout = fresh
    starts, files = supervisor.starts, []

    def fill_at_the_third_file() -> None:
        files.append(1)
        if len(files) == 3:
            disk.fill()

    proxy = FileFaultProxy(central.port, before_file=fill_at_the_third_file)
    set_config(node, central.url, proxy.url)
    try:
        result = node.updater("now")
    finally:
        proxy.close()
    assert len(files) >= 3 and disk.filler.exists()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"refused {V2}: disk full: No space left on device" in outcome(result)
    nothing_of_v2(layout)
    assert disk.free_bytes() > 0  # the two files it had fetched are given back
    node_carries_on(central, node, disk, supervisor, starts)


@pytest.mark.slow
def test_a_disk_that_fills_during_the_install(fresh):
    central, node, disk, supervisor, layout = fresh
    starts = supervisor.starts

    def fill_once_installing() -> None:
        wait_for(lambda: (layout.venv(V2) / "bin" / "python").exists(), 120, "the install to start", step=0.02)
        disk.fill()

    filler = threading.Thread(target=fill_once_installing, daemon=True)
    filler.start()
    result = node.updater("now")
    filler.join(5)
    assert disk.filler.exists(), "the disk was not filled during the install"
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"refused {V2}" in outcome(result) and "No space left on device" in outcome(result), outcome(result)
    nothing_of_v2(layout)
    assert not (layout.version_dir(V2) / READY).exists()
    node_carries_on(central, node, disk, supervisor, starts)
    assert os.path.realpath(node.root / "current") == str(Path(layout.version_dir(V1)).resolve())


def test_a_version_is_on_disk_before_it_is_marked_ready(tmp_path, fsynced):
    """pip and the self-test write without fsync; READY promises a whole version, so the tree is made durable
    first (under LazyFS, a power cut 2 s after a first install left 1,804 files of the venv empty)."""
    layout = Layout(tmp_path / "opt")
    site = layout.venv("1.0") / "lib" / "python3.11" / "site-packages" / "elevator_node"
    site.mkdir(parents=True)
    (site / "node.py").write_text("print('lift')\n")
    (layout.venv("1.0") / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (layout.venv("1.0") / "bin").mkdir()
    (layout.venv("1.0") / "bin" / "python").symlink_to("/usr/bin/python3")
    layout.mark_ready("1.0", {"ok": True})
    version = layout.version_dir("1.0")
    assert fsynced.covers(site / "node.py") and fsynced.covers(layout.venv("1.0") / "pyvenv.cfg")
    assert all(fsynced.covers(p) for p in (site, version, layout.versions, version / READY))
