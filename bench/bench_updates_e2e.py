"""The update tests that need whole builds and installs, end to end (moved out of the suite, which checks the
same behaviours in seconds in tests/test_update_switch.py and tests/test_update_node.py).

A lift node is installed from a real bundle of this project into a temporary root and kept running from
``ROOT/current`` by a systemd-like supervisor; releases with faults are real bundles built from the project
with the fault in their code, and the node's own installed updater (``ROOT/committed/venv/bin/changbai-update``)
downloads, installs (pip, offline) and checks them:

- a release whose config check fails, and one whose self-test fails: never switched to, reported failed;
- a release that exits at start: rolled back by the node within its health window, its rollout halted;
- the updater killed after the restart: the next timer run keeps the trial's deadline and rolls back;
- a download cut twice by the network: resumed with Range, then installed;
- kill -9 of the installed updater before each of its steps (check, download, install, preflight, the six
  steps of the switch, the two of the commit), then ``recover`` (and ``tick`` for a trial) as on a node: the
  node's ``current`` passes its self-test on the config that belongs to it.

Each line says ``ok`` or what failed, and how long the scenario took. ``--quick`` skips the kill loop.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.bench_updates_kill import NODE, V1, V2, _reset, _rollout, _runnable
from bench.figures import Figure, print_table
from bench.harness import OPERATOR_KEY, register, start_central
from bench.update_rig import RELEASES, CuttingProxy, ManagedNode, NodeSupervisor, ReleaseKit, wait_for
from central.__main__ import main as central_main
from common.files import write_atomic
from updates.journal import Journal
from updates.layout import Layout
from updates.updater import COMMIT_STEPS, STEPS

KILL_STEPS = ("check", "download", "install", "preflight", *STEPS, *COMMIT_STEPS)
BAD = {"bad_config": "0.1.0+kbc", "bad_selftest": "0.1.0+kbs", "dies_at_start": "0.1.0+kdies"}


class Rig:
    """The central, the release kit and the node of one run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.kit = ReleaseKit.new(folder)
        self.server = start_central(folder)
        self.bundles = {V1: self.kit.bundle(V1), V2: self.kit.bundle(V2, append=RELEASES["schema2"])}
        for bundle in self.bundles.values():
            self.publish(bundle)
        token = register(self.server, NODE, "elevator", folder / "token")
        self.node = ManagedNode(folder / "node", self.server.url, token, self.kit.public_key, NODE, 20)
        installed = self.node.first_install(self.bundles[V1])
        assert installed.returncode == 0, installed.stdout + installed.stderr

    @property
    def url(self) -> str:
        return self.server.url

    def publish(self, bundle: Path) -> None:
        args = ["release", "add", str(bundle), "--db", str(self.server.database), "--public-key"]
        assert central_main([*args, str(self.kit.public_key)]) == 0

    def release(self, variant: str) -> str:
        version = BAD[variant]
        if version not in self.bundles:
            self.bundles[version] = self.kit.bundle(version, append=RELEASES[variant])
            self.publish(self.bundles[version])
        return version

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
        answer = requests.get(f"{self.url}/api/v1{path}", headers=headers, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def report(self) -> dict[str, Any]:
        return [n for n in self.get("/updates/nodes")["nodes"] if n["node_id"] == NODE][0]

    def set_timeout(self, seconds: int) -> None:
        text = self.node.config.read_text().replace("health_timeout_s = 20", f"health_timeout_s = {seconds}")
        write_atomic(self.node.config, text, mode=0o640)


def outcome(result: subprocess.CompletedProcess) -> str:
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr


def failing_checks(rig: Rig) -> None:
    node = rig.node
    for variant, expected in (("bad_config", "config check of"), ("bad_selftest", "self-test of")):
        layout = _reset(node)
        version = rig.release(variant)
        _rollout(rig.url, version)
        result = node.updater("now")
        said = outcome(result)
        assert result.returncode == 1 and f"{expected} {version} failed" in said, result.stdout + result.stderr
        assert (layout.current(), layout.committed()) == (V1, V1) and node.config.read_bytes() == node.original_config
        report = rig.report()
        assert report["update_state"] == "failed" and report["update_version"] == version, report


def rolled_back(rig: Rig) -> None:
    node = rig.node
    layout = _reset(node)
    version = rig.release("dies_at_start")
    started = _rollout(rig.url, version)
    rig.set_timeout(8)
    with NodeSupervisor(node):
        wait_for(lambda: (node.dir / "var" / NODE / "health.json").exists(), 60, "the v1 node's health file")
        result = node.updater("now")
    said = outcome(result)
    assert result.returncode == 1 and f"rolled_back {version}" in said and "within 8 s" in said, said
    assert (layout.current(), layout.committed()) == (V1, V1)
    view = rig.get(f"/rollouts/{started}")
    assert view["state"] == "halted" and "1 of 1 nodes failed" in view["reason"], view


def deadline_kept(rig: Rig) -> None:
    node = rig.node
    layout = _reset(node)
    version = rig.release("dies_at_start")
    _rollout(rig.url, version)
    rig.set_timeout(8)
    exe = node.root / "committed" / "venv" / "bin" / "changbai-update"
    with NodeSupervisor(node):
        wait_for(lambda: (node.dir / "var" / NODE / "health.json").exists(), 60, "the v1 node's health file")
        updater = subprocess.Popen([str(exe), "--config", str(node.config), "now"], stdout=subprocess.DEVNULL)
        try:
            trial = wait_for(lambda: (j := Journal.load(layout.journal)).restarted_wall and j, 600, "the restart")
        finally:
            updater.kill()
            updater.wait()
        assert trial.phase == "trial" and layout.current() == version
        wait_for(lambda: time.time() > trial.trial_deadline_wall, 60, "the trial's deadline")
        result = node.updater("tick")  # the timer's next run
    assert f"rolled_back {version}" in outcome(result), result.stdout + result.stderr
    assert "resuming the trial" not in result.stdout  # not restarted with a fresh window
    assert Journal.load(layout.journal).trial_deadline_wall == trial.trial_deadline_wall and layout.current() == V1


def resumed(rig: Rig) -> None:
    node = rig.node
    layout = _reset(node)
    for leftover in (layout.version_dir(V2), layout.downloads):
        shutil.rmtree(leftover, ignore_errors=True)
    _rollout(rig.url, V2)
    proxy = CuttingProxy(rig.server.port, after_bytes=20_000, cuts=2)
    try:
        write_atomic(node.config, node.config.read_text().replace(rig.url, proxy.url), mode=0o640)
        result = node.updater("now")
    finally:
        proxy.close()
        write_atomic(node.config, node.original_config, mode=0o640)
    assert proxy.cut == 2 and "resuming" in result.stdout, result.stdout + result.stderr
    assert (layout.version_dir(V2) / "READY").exists(), result.stdout + result.stderr  # installed and checked


def killed_at_each_step(rig: Rig) -> None:
    node = rig.node
    script = Path(__file__).with_name("update_kill_at.py")
    seen, broken = {}, []
    with NodeSupervisor(node):
        for step in KILL_STEPS:
            layout = _reset(node)
            _rollout(rig.url, V2)  # the last round's commit completed the previous one
            if step == "install":
                shutil.rmtree(layout.version_dir(V2), ignore_errors=True)
            python = node.root / "committed" / "venv" / "bin" / "python"
            cmd = [str(python), str(script), str(node.config), step]
            killed = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            assert killed.returncode == -9, f"{step}: not killed: {killed.stdout[-300:]} {killed.stderr[-300:]}"
            repaired = node.updater("recover")  # the unit's ExecStartPre after a crash, then the timer
            assert repaired.returncode == 0, repaired.stderr
            if Journal.load(layout.journal).phase == "trial":
                node.updater("tick")
            problem = _runnable(node)
            if problem:
                broken.append(f"{step}: {problem}")
            seen[step] = Layout(node.root).current()
    assert not broken, "; ".join(broken)
    assert seen["journal-done"] == V2 and seen["write-config"] == V1, seen


SCENARIOS: dict[str, tuple[str, Callable[[Rig], None]]] = {
    "checks": ("releases failing their config check / self-test: never switched to", failing_checks),
    "rollback": ("release exiting at start: rolled back by the node, rollout halted", rolled_back),
    "deadline": ("updater killed after the restart: the trial keeps its deadline", deadline_kept),
    "resume": ("download cut twice: resumed with Range, installed", resumed),
    "kill": (f"kill -9 before each of the updater's {len(KILL_STEPS)} steps: node runnable", killed_at_each_step),
}


def run(quick: bool) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-update-e2e-") as tmp:
        started = time.monotonic()
        rig = Rig(Path(tmp))
        figures.append(Figure("build v1 and v2, install v1 (set-up)", time.monotonic() - started, "s", ""))
        try:
            for name, (what, scenario) in SCENARIOS.items():
                if quick and name == "kill":
                    continue
                started = time.monotonic()
                try:
                    scenario(rig)
                    verdict = "ok"
                except AssertionError as exc:
                    verdict = f"FAILED: {str(exc)[:200]}"
                    print(f"  {name}: {verdict}")
                figures.append(Figure(f"{what} ({time.monotonic() - started:.0f} s)", verdict, "", "ok"))
        finally:
            rig.server.stop()
    failed = [f for f in figures if str(f.value).startswith("FAILED")]
    if failed:
        print_table(figures)
        raise AssertionError(f"{len(failed)} update scenario(s) failed: " + "; ".join(f.name for f in failed))
    return figures
