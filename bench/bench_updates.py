"""Staged rollouts to 1,000 simulated lift nodes on the real central (HTTP on loopback), side by side: a bad
release whose first stage fails (the rollout must halt there) and a good one (it must go through every stage).

Each simulated node asks ``GET /api/v1/updates/check`` like the updater does and reports ``committed`` or
``rolled_back``; nodes do not install anything here (the node side is in tests/test_update_node.py). The
release record is added to the central's release table directly (no files). The central's clock is moved one
soak period per round, so the printed timeline is in simulated hours. Prints the timeline of each rollout.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.figures import Figure
from bench.harness import OPERATOR_KEY, register, start_central
from central.server import CentralServer
from updates.manifest import local_target

PILOTS = 20
SOAK_S = 3600.0


class SteppedClock:
    """Real time plus an offset the bench moves (the central's soak timer)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> float:
        return time.time() + self.offset

    def wall_synced(self) -> bool:
        return True

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, until: float, wake: threading.Event) -> bool:
        return wake.wait(max(0.0, until - self.monotonic()))


def _rollout(server: CentralServer, clock: SteppedClock, tokens: dict[str, str], version: str, bad: bool) -> dict:
    operator = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    body = {"role": "elevator", "version": version, "shares": [5, 25, 100], "max_failure_rate": 0.1, "soak_s": SOAK_S}
    started = requests.post(f"{server.url}/api/v1/rollouts", json=body, headers=operator, timeout=30).json()
    session = requests.Session()
    offered: set[str] = set()
    running = {n: "0.1.0" for n in tokens}
    checks = 0
    t0 = time.monotonic()
    for _round in range(12):
        for node, token in tokens.items():
            channel = "pilot" if node.endswith(("-p",)) else "stable"
            params = {"target": local_target(), "version": running[node], "channel": channel}
            headers = {"Authorization": f"Bearer {token}"}
            offer = session.get(f"{server.url}/api/v1/updates/check", params=params, headers=headers, timeout=30).json()
            checks += 1
            if not offer.get("update"):
                continue
            offered.add(node)
            state = "rolled_back" if bad else "committed"
            report = {"rollout": started["id"], "version": version, "state": state, "from_version": running[node]}
            report["reason"] = "no healthy heartbeat within 150 s" if bad else ""
            session.post(f"{server.url}/api/v1/updates/report", json=report, headers=headers, timeout=30)
            if not bad:
                running[node] = version
        view = session.get(f"{server.url}/api/v1/rollouts/{started['id']}", headers=operator, timeout=30).json()
        if view["state"] != "running":
            break
        clock.offset += SOAK_S
    view["offered"], view["checks"], view["elapsed_s"] = len(offered), checks, time.monotonic() - t0
    return view


def _print_timeline(title: str, view: dict) -> None:
    print(f"\n{title}: rollout {view['id']} of {view['version']}, {view['state']}")
    start = view["timeline"][0]["at"]
    for entry in view["timeline"]:
        print(f"  +{(entry['at'] - start) / 3600:5.1f} h  {entry['action']:9}  {entry['detail']}")
    for stage in view["stages"]:
        print(
            f"  stage {stage['name']:5} {stage['status']:8} nodes {stage['nodes']:4}  ok {stage['succeeded']:4}"
            f"  failed {stage['failed']:4}  not started {stage['not_started']:4}"
        )


def run(quick: bool) -> list[Figure]:
    count = 200 if quick else 1000
    with tempfile.TemporaryDirectory(prefix="bench-updates-") as tmp:
        folder = Path(tmp)
        clock = SteppedClock()
        server = start_central(folder)
        server.stop()
        server.clock = clock  # the same database, served again with the stepped clock
        server.start()
        try:
            releases = server.app.state.releases
            for version in ("0.2.0-bad", "0.2.0"):
                manifest: dict[str, Any] = {
                    "version": version,
                    "role": "elevator",
                    "target": local_target(),
                    "config_schema": 1,
                    "files": [],
                    "notes": "bench: record only",
                }
                releases.add_release(manifest, "{}", "", clock.wall())
            tokens = {}
            for i in range(count):
                node = f"bench-lift-{i:04d}" + ("-p" if i < PILOTS else "")
                tokens[node] = register(server, node, "elevator", folder / f"t{i}")
            for node, token in tokens.items():  # every node has asked before (every 6 h): its channel is known
                channel = "pilot" if node.endswith("-p") else "stable"
                params = {"target": local_target(), "version": "0.1.0", "channel": channel}
                requests.get(
                    f"{server.url}/api/v1/updates/check",
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
            bad = _rollout(server, clock, tokens, "0.2.0-bad", bad=True)
            _print_timeline(f"bad release to {count} nodes", bad)
            requests.post(
                f"{server.url}/api/v1/rollouts/{bad['id']}/abort",
                headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                timeout=30,
            )
            good = _rollout(server, clock, tokens, "0.2.0", bad=False)
            _print_timeline(f"good release to {count} nodes", good)
        finally:
            server.stop()
    beyond = sum(s["succeeded"] + s["failed"] for s in bad["stages"][1:])
    return [
        Figure(f"bad release, {count} nodes: rollout state", bad["state"], "", "halted"),
        Figure("bad release: stage it halted in", bad["stages"][bad["stage"]]["name"], "", "the first (pilot)"),
        Figure("bad release: nodes offered it", bad["offered"], "nodes", f"<= pilots ({PILOTS})"),
        Figure("bad release: nodes beyond the first stage that got it", beyond, "nodes", "0"),
        Figure(f"good release, {count} nodes: rollout state", good["state"], "", "completed"),
        Figure("good release: nodes committed", sum(s["succeeded"] for s in good["stages"]), "nodes", str(count)),
        Figure("good release: stages", len(good["stages"]), "", "pilot, 5 %, 25 %, 100 %"),
        Figure("check requests per second (central, loopback)", good["checks"] / good["elapsed_s"], "req/s", ""),
    ]
