"""Central fault cases at scale (issue 12), for ``changbai-bench --only faults`` (bench/bench_faults.py calls
``run_cases``) or on their own: ``python -m bench.faults_central [--quick] [--peer-tree DIR]``.

- ``slow-client flood``: 1,100 half-open connections and 60 unfinished 2 MB bodies held against a real
  ``central serve`` process whose open-file limit is 1,024 (soft and hard, the harshest systemd case), while a
  node keeps uploading and a load balancer probes /health. Figures: events in / delivered / lost / duplicated,
  the longest /health outage, the central's peak RSS, accept-error log lines.
- ``poisoned payloads``: batches each carrying good events beside one poisoned event (260 levels deep, NaN,
  a lone surrogate, seq 2^63, no node_id, 70 kB); every good event must be stored once, every read answer 200.

``--peer-tree DIR`` runs the same cases against another checkout (e.g. the central before this work) in the same
run, for a side-by-side figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.figures import Figure, print_table

ROOT = Path(__file__).resolve().parents[1]
SITE, CLAIM_KEY, OPERATOR_KEY = "bench-site", "bench-claim-key-000000000001", "bench-operator-key-000000001"
NODE = "bench-lift-0001"


@dataclass
class CaseResult:
    """One row of the faults table (node columns are None: these cases have no node process)."""

    case: str
    events_in: int
    delivered: int
    lost: int
    duplicated: int
    recover_s: float
    central_peak_rss_mb: float
    node_peak_rss_mb: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class CentralProcess:
    """``central serve`` from ``tree`` on a free loopback port, its RSS sampled every 20 ms."""

    def __init__(self, workdir: Path, tree: Path = ROOT, nofile: int | None = 1024) -> None:
        self.config = workdir / "central.toml"
        self.config.write_text(
            f'[[sites]]\nid = "{SITE}"\nclaim_key = "{CLAIM_KEY}"\n[[operators]]\nname = "bench"\n'
            f'key = "{OPERATOR_KEY}"\n',
            encoding="utf-8",
        )
        self.config.chmod(0o600)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "central.log"
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        command = [sys.executable, "-m", "central", "serve", "--config", str(self.config), "--db"]
        self.db = workdir / "central.sqlite3"
        command += [str(self.db), "--port", str(self.port), "--log-level", "WARNING"]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=out, preexec_fn=limit)
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"central did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def _sample(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while not self._stop.is_set():
            try:
                rss = next(int(x.split()[1]) for x in status.read_text().splitlines() if x.startswith("VmRSS"))
                self.peak_rss_kb = max(self.peak_rss_kb, rss)
            except (OSError, StopIteration, ValueError):
                return
            time.sleep(0.02)

    def register(self) -> str:
        body = {"claim_key": CLAIM_KEY, "node_id": NODE, "role": "elevator", "site": SITE}
        return requests.post(f"{self.url}/api/v1/nodes/register", json=body, timeout=10).json()["token"]

    def stored_ids(self) -> list[str]:
        """Every stored event id, from the database itself (an old central may fail to answer reads)."""
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return [row[0] for row in db.execute("SELECT id FROM events ORDER BY row")]
        finally:
            db.close()

    def log_lines(self, text: str) -> int:
        return sum(1 for line in self.log.read_text(errors="replace").splitlines() if text in line)

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def event(seq: int, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "node_id": NODE,
        "kind": "door_state",
        "severity": "info",
        "state": "observed",
    }
    ev.update(priority="state", wall_time=time.time(), clock_synced=True, payload={"n": seq}, seq=seq)
    ev.update(fields)
    return ev


class Uploader:
    """A node's behaviour, reduced: send a batch until it is answered, keep what was acknowledged."""

    def __init__(self, central: CentralProcess, token: str) -> None:
        self.central, self.token = central, token
        self.sent: list[str] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.acked: set[str] = set()
        self.seq = 0

    def upload(self, batch: list[dict[str, Any]], text: str | None = None, give_up_s: float = 60.0) -> dict | None:
        good = [e for e in batch if e.get("node_id") == NODE and "poison" not in e.get("payload", {})]
        self.sent += [e["id"] for e in good]
        self.events.update((e["id"], e) for e in good)
        data = (text or json.dumps({"node_wall_time": time.time(), "events": batch})).encode("utf-8")
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        deadline = time.monotonic() + give_up_s
        while time.monotonic() < deadline:
            try:
                answer = requests.post(f"{self.central.url}/api/v1/events", data=data, headers=headers, timeout=5)
            except requests.RequestException:
                time.sleep(0.2)
                continue
            if answer.status_code == 200:
                self.acked |= set(answer.json()["accepted"])
                return answer.json()
            time.sleep(float(answer.headers.get("Retry-After", "0.2")))
        return None

    def resend_unacknowledged(self, batch_size: int = 200) -> None:
        missing = [self.events[i] for i in self.sent if i not in self.acked and i in self.events]
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            self.sent = [i for i in self.sent if i not in {e["id"] for e in batch}]
            self.upload(batch, give_up_s=60.0)

    def next_batch(self, size: int) -> list[dict[str, Any]]:
        batch = [event(self.seq + i + 1) for i in range(size)]
        self.seq += size
        return batch


def _count(central: CentralProcess, uploader: Uploader) -> tuple[int, int, int]:
    stored = central.stored_ids()
    delivered = len(set(stored) & set(uploader.sent))
    return delivered, len(uploader.sent) - delivered, len(stored) - len(set(stored))


def _hold_connections(port: int, half_open: int, bodies: int, sockets: list[socket.socket], until: float) -> None:
    """Open the flood's connections (giving up at ``until``: a central that stopped accepting is the finding)."""
    for _ in range(half_open):
        if time.monotonic() > until:
            return
        try:
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            time.sleep(0.01)
    head = (
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2097000\r\n\r\n"
    )
    for _ in range(bodies):
        if time.monotonic() > until:
            return
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(head + b" " * 1_500_000)
            sockets.append(sock)
        except OSError:
            continue


def slow_client_flood(workdir: Path, quick: bool, tree: Path = ROOT, label: str = "") -> CaseResult:
    """Hold the flood for ``hold_s`` while uploading and probing /health; then count."""
    central = CentralProcess(workdir, tree)
    token = central.register()
    uploader = Uploader(central, token)
    sockets: list[socket.socket] = []
    hold_s = 8.0 if quick else 30.0
    until = time.monotonic() + hold_s
    flood = threading.Thread(target=_hold_connections, args=(central.port, 1100, 60, sockets, until), daemon=True)
    gaps, last_ok, probes, probe_ok = [], time.monotonic(), 0, 0
    started = time.monotonic()
    flood.start()
    try:
        while time.monotonic() - started < hold_s:
            probes += 1
            try:
                if requests.get(f"{central.url}/api/v1/health", timeout=2).status_code == 200:
                    probe_ok += 1
                    gaps.append(time.monotonic() - last_ok)
                    last_ok = time.monotonic()
            except requests.RequestException:
                pass
            uploader.upload(uploader.next_batch(10), give_up_s=5.0)
        flood.join()
    finally:
        for sock in sockets:
            sock.close()
    uploader.upload([], give_up_s=60.0)  # the central is reachable again
    uploader.resend_unacknowledged()  # as a node does with what the flood kept it from delivering
    delivered, lost, duplicated = _count(central, uploader)
    result = CaseResult(
        f"slow-client flood{label}",
        len(uploader.sent),
        delivered,
        lost,
        duplicated,
        round(max(gaps + [time.monotonic() - last_ok]), 2),
        round(central.peak_rss_kb / 1024, 1),
        notes={
            "health probes answered": f"{probe_ok}/{probes}",
            "accept-error log lines": central.log_lines("out of system resource"),
            "connections held": len(sockets),
        },
    )
    central.stop()
    return result


def poisoned_payloads(workdir: Path, quick: bool, tree: Path = ROOT, label: str = "") -> CaseResult:
    """Batches of good events, each with one poisoned event; every read must still answer 200."""
    central = CentralProcess(workdir, tree)
    uploader = Uploader(central, central.register())
    deep: dict = {"leaf": 1}
    for _ in range(259):
        deep = {"d": deep}
    poisons: list[tuple[str, dict[str, Any]]] = [
        ("deep", {"payload": {"poison": deep}, "kind": "entrapment", "state": "raised", "alert_id": "a-deep"}),
        ("nan", {"payload": {"poison": "NAN"}}),
        ("surrogate", {"payload": {"poison": "SURROGATE"}, "alert_id": "SURROGATE", "state": "raised"}),
        ("seq 2^63", {"seq": 2**63, "payload": {"poison": 1}}),
        ("no node_id", {"node_id": None, "payload": {"poison": 1}}),
        ("70 kB", {"payload": {"poison": "x" * 70_000}}),
    ]
    rounds, started, answers, failed_reads = (12 if quick else 120), time.monotonic(), 0, 0
    for i in range(rounds):
        name, fields = poisons[i % len(poisons)]
        extra = dict(fields)
        bad = event(extra.pop("seq", 0), **extra)
        if bad["node_id"] is None:
            del bad["node_id"]
        batch = [*uploader.next_batch(5), bad]
        text = json.dumps({"node_wall_time": time.time(), "events": batch})
        text = text.replace('"NAN"', "NaN").replace('"SURROGATE"', '"\\ud800"')
        if uploader.upload(batch, text, give_up_s=3.0) is not None:
            answers += 1
        for path in ("/alerts?state=all", "/events?limit=50", "/nodes"):
            try:
                code = requests.get(
                    f"{central.url}/api/v1{path}", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=10
                ).status_code
            except requests.RequestException:
                code = 0
            failed_reads += code != 200
    delivered, lost, duplicated = _count(central, uploader)
    result = CaseResult(
        f"poisoned payloads{label}",
        len(uploader.sent),
        delivered,
        lost,
        duplicated,
        round(time.monotonic() - started, 2),
        round(central.peak_rss_kb / 1024, 1),
        notes={"batches answered 200": f"{answers}/{rounds}", "reads not 200": failed_reads},
    )
    central.stop()
    return result


def run_cases(quick: bool, peer_tree: Path | None = None) -> list[CaseResult]:
    """Every central case (and each against ``peer_tree`` too, when given)."""
    results = []
    trees = [(ROOT, "")] + ([(peer_tree, " [peer]")] if peer_tree else [])
    for case in (slow_client_flood, poisoned_payloads):
        for tree, label in trees:
            with tempfile.TemporaryDirectory(prefix="bench-faults-central-") as tmp:
                results.append(case(Path(tmp), quick, tree, label))
            print(f"[faults_central] {results[-1]}", file=sys.stderr, flush=True)
    return results


def figures(results: list[CaseResult]) -> list[Figure]:
    """The results as bench figures (one line per column)."""
    out = []
    for r in results:
        out.append(Figure(f"{r.case}: events in / delivered", f"{r.events_in} / {r.delivered}", "", "all"))
        out.append(Figure(f"{r.case}: lost / duplicated", f"{r.lost} / {r.duplicated}", "", "0 / 0"))
        out.append(Figure(f"{r.case}: longest /health gap or run time", r.recover_s, "s"))
        out.append(Figure(f"{r.case}: central peak RSS", r.central_peak_rss_mb, "MB", "<= 150 MB"))
        out += [Figure(f"{r.case}: {k}", str(v)) for k, v in r.notes.items()]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults_central", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peer-tree", type=Path, help="another checkout to run the same cases against")
    args = parser.parse_args(argv)
    print_table(figures(run_cases(args.quick, args.peer_tree)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
