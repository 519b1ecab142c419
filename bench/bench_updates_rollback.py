"""How long a release that fails its health check takes to be rolled back by the node alone (target: within
5 minutes), on a real node: a lift node installed from a real bundle into a temporary root, kept running by a
systemd-like supervisor, and a release that exits at start rolled out to it with the default 150 s health
window. Three cases: the updater waits for the verdict; the updater is killed just after the switch; the
updater is killed just before its health deadline (the worst case). A killed updater is followed by the next
changbai-update.timer run (every 120 s; the timer's 10 s accuracy not added). ``--quick``: a 20 s window and
a 10 s timer."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.bench_updates_kill import BAD, NODE, V1, _reset, _rollout
from bench.figures import Figure
from bench.harness import register, start_central
from bench.update_rig import RELEASES, ManagedNode, NodeSupervisor, ReleaseKit, wait_for
from central.__main__ import main as central_main
from updates.journal import Journal

TIMER_S = 120.0


def _rollback_time(node: ManagedNode, url: str, kill: str, timer_s: float, window_s: float) -> float:
    """Seconds from the switch to the bad release until the node is back on the old one, said rolled back."""
    layout = _reset(node)
    _rollout(url, BAD)
    exe = node.root / "committed" / "venv" / "bin" / "changbai-update"
    proc = subprocess.Popen(
        [str(exe), "--config", str(node.config), "now"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: layout.current() == BAD or proc.poll() is not None, 900, "the switch to the bad release")
    switched = time.monotonic()
    if kill == "none":
        proc.wait(900)
    else:
        if kill == "at the deadline":
            time.sleep(max(0.0, window_s - 2.0 - (time.monotonic() - switched)))
        proc.kill()
        proc.wait()
        time.sleep(timer_s)  # until the next changbai-update.timer run
        node.updater("tick", timeout=900)
    wait_for(lambda: Journal.load(layout.journal).last_result.get("state") == "rolled_back", 900, "the rollback")
    assert layout.current() == V1
    return time.monotonic() - switched


def run(quick: bool) -> list[Figure]:
    window_s, timer_s = (20.0, 10.0) if quick else (150.0, TIMER_S)
    with tempfile.TemporaryDirectory(prefix="bench-update-rollback-") as tmp:
        folder = Path(tmp)
        kit = ReleaseKit.new(folder)
        bundles = {V1: kit.bundle(V1), BAD: kit.bundle(BAD, append=RELEASES["dies_at_start"])}
        server = start_central(folder)
        try:
            for bundle in bundles.values():
                args = [
                    "release",
                    "add",
                    str(bundle),
                    "--db",
                    str(server.database),
                    "--public-key",
                    str(kit.public_key),
                ]
                assert central_main(args) == 0
            token = register(server, NODE, "elevator", folder / "token")
            node = ManagedNode(folder / "node", server.url, token, kit.public_key, NODE, window_s)
            installed = node.first_install(bundles[V1])
            assert installed.returncode == 0, installed.stdout + installed.stderr
            times = {}
            with NodeSupervisor(node):
                wait_for(lambda: (node.dir / "var" / NODE / "health.json").exists(), 60, "the node's first health")
                for kill in ("none", "after the switch", "at the deadline"):
                    times[kill] = _rollback_time(node, server.url, kill, timer_s, window_s)
        finally:
            server.stop()
    window = f"{window_s:.0f} s window" + (" (quick)" if quick else "")
    return [
        Figure(f"bad release rolled back by the node, updater waiting ({window})", times["none"], "s", "< 300"),
        Figure(
            f"  updater killed just after the switch (+{timer_s:.0f} s timer)", times["after the switch"], "s", "< 300"
        ),
        Figure(
            f"  updater killed 2 s before its deadline (+{timer_s:.0f} s timer)", times["at the deadline"], "s", "< 300"
        ),
    ]
