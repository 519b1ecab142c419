"""kill -9 at random moments of real updates, and the time a bad release takes to be rolled back by the node.

A lift node is installed from a real bundle into a temporary root and kept running from ``ROOT/current`` by a
supervisor that behaves like systemd (Restart=always, ``changbai-update recover`` as ExecStartPre). Each round
starts the node's own updater (``ROOT/committed/venv/bin/changbai-update now``) towards a release whose config
schema differs (so a config of the wrong version would not validate), and SIGKILLs it after a random delay
drawn over the length of an unkilled update. Then, as on a node, the next start or timer tick repairs
(``recover``, and ``tick`` when a trial was left), and the round checks: ``current`` is a completely installed
version whose self-test passes on the config as it is, and the config is byte for byte the original (version
1) or its migration (version 2). Every tenth round the new version is removed first, so kills land in the
install too. Between rounds the node is put back on version 1 (links, config, journal).

Then a release that exits at start is rolled out with the default 150 s health window: once with the updater
waiting (the node rolls back alone), once with the updater killed just after the switch (the next timer tick,
here 120 s later as with changbai-update.timer, restarts the trial and rolls back).
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from bench.figures import Figure
from bench.harness import OPERATOR_KEY, register, start_central
from bench.update_rig import RELEASES, ManagedNode, NodeSupervisor, ReleaseKit, wait_for
from central.__main__ import main as central_main
from updates.journal import Journal
from updates.layout import Layout

V1, V2, BAD = "0.1.0+k1", "0.1.0+k2", "0.1.0+kbad"
NODE = "bench-kill-lift"


def _rollout(url: str, version: str) -> int:
    """A rollout of ``version`` to every lift node at once (any other one aborted first); its id."""
    headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    for item in requests.get(f"{url}/api/v1/rollouts", headers=headers, timeout=30).json()["rollouts"]:
        if item["state"] in ("running", "paused", "halted"):
            requests.post(f"{url}/api/v1/rollouts/{item['id']}/abort", headers=headers, timeout=30)
    body = {"role": "elevator", "version": version, "shares": [100], "soak_s": 0}
    answer = requests.post(f"{url}/api/v1/rollouts", json=body, headers=headers, timeout=30)
    answer.raise_for_status()
    return int(answer.json()["id"])


def _reset(node: ManagedNode) -> Layout:
    layout = Layout(node.root)
    layout.point("current", V1)
    layout.point("committed", V1)
    node.config.write_bytes(node.original_config)
    layout.journal.unlink(missing_ok=True)
    return layout


def _runnable(node: ManagedNode) -> str | None:
    """None when the node can run, else what is wrong."""
    layout = Layout(node.root)
    current = layout.current()
    if current is None:
        return "no current version"
    problem = layout.problem(current, "elevator")
    if problem:
        return problem
    cmd = [str(layout.venv(current) / "bin" / "python"), "-I", "-m", "updates.selftest", "--config", str(node.config)]
    check = subprocess.run([*cmd, "--from-schema", str(layout.config_schema(current))], capture_output=True, text=True)
    if check.returncode != 0:
        return f"{current}: {check.stdout.strip()[-300:]}"
    migrated = b'note = "migrated to schema 2"' in node.config.read_bytes()
    if migrated != (current == V2) or (current == V1 and node.config.read_bytes() != node.original_config):
        return f"{current} with the config of the other version"
    return None


def _kill_rounds(node: ManagedNode, url: str, rounds: int, rng: random.Random) -> dict:
    exe = node.root / "committed" / "venv" / "bin" / "changbai-update"
    spans = []
    for _warm_up in range(2):  # the first downloads and installs version 2; the second finds it installed
        started = time.monotonic()
        _reset(node)
        _rollout(url, V2)
        done = subprocess.run([str(exe), "--config", str(node.config), "now"], capture_output=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        spans.append(time.monotonic() - started)
    broken, killed, on_v2 = [], 0, 0
    ends: dict[str, int] = {}
    for index in range(rounds):
        layout = _reset(node)
        _rollout(url, V2)
        install = index % 10 == 9
        if install:
            shutil.rmtree(layout.version_dir(V2), ignore_errors=True)
        proc = subprocess.Popen([str(exe), "--config", str(node.config), "now"], stdout=subprocess.PIPE, text=True)
        try:
            out, _ = proc.communicate(timeout=rng.uniform(0.0, spans[0] if install else spans[1]))
            last = (out.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            end = last.split(" ")[0]
            ends[end] = ends.get(end, 0) + 1
            if end != "committed" and ends[end] <= 2:
                print(f"  round {index} ended: {last[:300]}")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            killed += 1
        node.updater("recover")
        if Journal.load(layout.journal).phase == "trial":
            node.updater("tick")
        problem = _runnable(node)
        if problem:
            broken.append(f"round {index}: {problem}")
        on_v2 += Layout(node.root).current() == V2
    return {"spans": spans, "killed": killed, "broken": broken, "on_v2": on_v2, "ends": ends}


def run(quick: bool) -> list[Figure]:
    rounds = 20 if quick else 200
    rng = random.Random(17)
    with tempfile.TemporaryDirectory(prefix="bench-update-kill-") as tmp:
        folder = Path(tmp)
        kit = ReleaseKit.new(folder)
        bundles = {
            V1: kit.bundle(V1),
            V2: kit.bundle(V2, append=RELEASES["schema2"]),
        }
        server = start_central(folder)
        try:
            for bundle in bundles.values():
                db = str(server.database)
                assert (
                    central_main(["release", "add", str(bundle), "--db", db, "--public-key", str(kit.public_key)]) == 0
                )
            token = register(server, NODE, "elevator", folder / "token")
            node = ManagedNode(folder / "node", server.url, token, kit.public_key, NODE, 20 if quick else 150)
            installed = node.first_install(bundles[V1])
            assert installed.returncode == 0, installed.stdout + installed.stderr
            with NodeSupervisor(node):
                wait_for(lambda: (node.dir / "var" / NODE / "health.json").exists(), 60, "the node's first health")
                kills = _kill_rounds(node, server.url, rounds, rng)
        finally:
            server.stop()
    for line in kills["broken"][:10]:
        print(f"  NOT RUNNABLE: {line}")
    full, warm = kills["spans"]
    ends = ", ".join(f"{n} {state}" for state, n in sorted(kills["ends"].items())) or "-"
    return [
        Figure(
            f"kill -9 rounds during updates (random moment over {warm:.0f} s; every tenth over {full:.0f} s, install)",
            rounds,
            "rounds",
            "200",
        ),
        Figure(f"  of which the updater was killed (the others ended: {ends})", kills["killed"], "rounds", ""),
        Figure(
            "  node left without a runnable version, or with the other version's config",
            len(kills["broken"]),
            "rounds",
            "0",
        ),
        Figure("  rounds that ended on the new version", kills["on_v2"], "rounds", ""),
    ]
