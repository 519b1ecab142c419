"""Faults at scale (issue 12): a real node process (bench/fault_node.py) behind a hostile network
(bench/hostile.py) or on a real small filesystem that is full or read-only (bench/small_disk.py), sending to a
real ``central serve`` process; then the central's own cases (bench/faults_central.py: slow-client flood,
poisoned payloads). Prints one table: case, events in, delivered, lost, duplicated, time to recover (from the
end of the fault until the central holds every event), peak RSS of the node and of the central.

Disk cases need root (they mount a tmpfs); without it they are reported as skipped with the reason.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench import faults_central
from bench.faults_central import OPERATOR_KEY, CaseResult, CentralProcess
from bench.figures import Figure
from bench.hostile import SPRING_BOOT_404_HTML, Fault, HostileProxy
from bench.small_disk import CannotMount, SmallDisk

ROOT = Path(__file__).resolve().parents[1]
TEXT = {"Content-Type": "text/html"}
NETWORK_FAULTS: dict[str, Fault] = {
    "413 to every request": Fault("reply", 413, b"<html>413 Request Entity Too Large</html>", TEXT),
    "404 Spring Boot page naming events": Fault("reply", 404, SPRING_BOOT_404_HTML, TEXT),
    "500 from a proxy": Fault("reply", 500, b"Internal Server Error", TEXT),
    "429 Retry-After 2 (seconds)": Fault("reply", 429, b"", {"Retry-After": "2"}),
    "429 Retry-After HTTP date": Fault("reply", 429, b"", {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}),
    "429 Retry-After garbage": Fault("reply", 429, b"", {"Retry-After": "soon"}),
    "200 captive portal page": Fault("reply", 200, b"<html><form>Wi-Fi login</form></html>", TEXT),
    "reply dripped 1 byte / 0.5 s": Fault("drip", interval_s=0.5),
    "300 MB reply": Fault("huge", size=300 * 1024 * 1024),
    "reset mid-reply after storing": Fault("reset"),
    "307 redirect elsewhere": Fault("redirect", location="http://127.0.0.1:9/api/v1/events"),
}
DOWN = Fault("reply", 503, b"down", TEXT)  # the central unreachable through the proxy


class NodeProcess:
    """One run of bench/fault_node.py; ``peak_rss_kb`` is its VmHWM, read just before it is stopped."""

    def __init__(self, bench: NodeBench, url: str, events: int, seconds: float, first: int = 0) -> None:
        command = [sys.executable, "-m", "bench.fault_node", "--data", str(bench.data), "--token", str(bench.token)]
        command += ["--side", str(bench.side), "--url", url, "--events", str(events), "--seconds", str(seconds)]
        command += ["--first", str(first)]
        self.log = (bench.workdir / f"node-{first}.log").open("wb")
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log)
        self.peak_rss_kb = 0
        self.expect("ready", 60)

    def expect(self, word: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode().strip()
            if line == word:
                return
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"the node process ended (exit {self.proc.returncode}) before '{word}'")
        raise RuntimeError(f"the node process did not say '{word}' within {timeout_s:g} s")

    def stop(self) -> None:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            self.peak_rss_kb = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM"))
        except (OSError, StopIteration):
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@dataclass
class NodeBench:
    """One node case's places and parts: the central, the hostile network in front of it, maybe a disk."""

    workdir: Path
    central: CentralProcess
    proxy: HostileProxy
    disk: SmallDisk | None
    events: int
    fault_s: float

    @property
    def data(self) -> Path:
        return (self.disk.root if self.disk else self.workdir) / "data"

    @property
    def token(self) -> Path:
        return self.workdir / "token"

    @property
    def side(self) -> Path:
        return self.workdir / "put.txt"

    def node(self, events: int, first: int = 0, seconds: float | None = None) -> NodeProcess:
        return NodeProcess(self, self.proxy.url, events, self.fault_s if seconds is None else seconds, first)


# ------------------------------------------------------------------------------------------ the faults
# each runs the node through its fault and returns the processes it started and the moment the fault ended
Scenario = Callable[[NodeBench], tuple[list[NodeProcess], float]]


def network(fault: Fault) -> Scenario:
    def scenario(b: NodeBench) -> tuple[list[NodeProcess], float]:
        b.proxy.always(fault)
        node = b.node(b.events)
        node.expect("done", b.fault_s + 120)
        b.proxy.heal()
        return [node], time.monotonic()

    return scenario


def full_at_start(b: NodeBench) -> tuple[list[NodeProcess], float]:
    assert b.disk is not None
    b.disk.fill()
    node = b.node(b.events)
    node.expect("done", b.fault_s + 120)
    b.disk.free()
    return [node], time.monotonic()


def _two_runs(b: NodeBench, between: Callable[[], object]) -> tuple[NodeProcess, NodeProcess]:
    """Half the events while the central is away (they stay queued), a stop, ``between``, the other half."""
    half = b.events // 2
    b.proxy.always(DOWN)
    first = b.node(half, seconds=b.fault_s / 2)
    first.expect("done", b.fault_s + 120)
    first.stop()
    between()
    b.proxy.heal()
    second = b.node(b.events - half, first=half, seconds=b.fault_s / 2)
    second.expect("done", b.fault_s + 120)
    return first, second


def healthy_on_full(b: NodeBench) -> tuple[list[NodeProcess], float]:
    assert b.disk is not None
    nodes = _two_runs(b, b.disk.fill)
    b.disk.free()
    return list(nodes), time.monotonic()


def read_only_at_start(b: NodeBench) -> tuple[list[NodeProcess], float]:
    assert b.disk is not None
    nodes = _two_runs(b, b.disk.read_only)
    b.disk.read_write()
    return list(nodes), time.monotonic()


def fills_while_running(b: NodeBench) -> tuple[list[NodeProcess], float]:
    assert b.disk is not None
    b.proxy.always(DOWN)  # nothing leaves: every event must be kept on a filling disk
    node = b.node(b.events)
    time.sleep(b.fault_s / 3)
    b.disk.fill()
    node.expect("done", b.fault_s + 120)
    b.disk.free()
    b.proxy.heal()
    return [node], time.monotonic()


def restart_on_full(b: NodeBench) -> tuple[list[NodeProcess], float]:
    assert b.disk is not None
    half = b.events // 2
    first = b.node(half, seconds=b.fault_s / 2)
    time.sleep(b.fault_s / 4)
    b.disk.fill()
    first.expect("done", b.fault_s + 120)
    first.stop()
    second = b.node(b.events - half, first=half, seconds=b.fault_s / 2)
    second.expect("done", b.fault_s + 120)
    b.disk.free()
    return [first, second], time.monotonic()


DISK_FAULTS: dict[str, Scenario] = {
    "full disk at start, empty data dir": full_at_start,
    "healthy outbox on a full disk at start": healthy_on_full,
    "read-only data dir at start": read_only_at_start,
    "disk fills while running (central away)": fills_while_running,
    "node restarted on a full disk": restart_on_full,
}


# ------------------------------------------------------------------------------------------ one case
def stored(central: CentralProcess) -> list[tuple[str, int | None]]:
    """(id, seq) of every event the central holds, in the order stored."""
    found: list[tuple[str, int | None]] = []
    after = 0
    while True:
        page = requests.get(
            f"{central.url}/api/v1/events",
            params={"after": after, "limit": 10000},
            headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
            timeout=30,
        ).json()
        if not page["events"]:
            return found
        found += [(e["id"], e.get("seq")) for e in page["events"]]
        after = page["next_after"]


def run_node_case(name: str, scenario: Scenario, workdir: Path, quick: bool, disk: bool) -> CaseResult:
    central = CentralProcess(workdir, nofile=None)
    (workdir / "token").write_text(central.register())
    (workdir / "token").chmod(0o600)
    proxy = HostileProxy(central.url)
    small = SmallDisk(workdir / "card", 16384) if disk else None
    bench = NodeBench(workdir, central, proxy, small, 300 if quick else 2000, 4.0 if quick else 12.0)
    nodes: list[NodeProcess] = []
    try:
        nodes, healed_at = scenario(bench)
        put = dict(line.split() for line in bench.side.read_text().splitlines())
        deadline, held = time.monotonic() + 180, stored(central)
        while not set(put) <= {i for i, _ in held} and time.monotonic() < deadline:
            time.sleep(0.25)
            held = stored(central)
        recover_s = max(0.0, time.monotonic() - healed_at) if set(put) - {i for i, _ in held} == set() else float("nan")
    finally:
        for node in nodes:
            node.stop()
        proxy.close()
        if small is not None:
            small.unmount()
    ids = Counter(i for i, _ in held)
    seqs = Counter(s for _, s in held if s is not None)
    lost_alerts = sum(1 for i, p in put.items() if p == "alert" and i not in ids)
    result = CaseResult(
        name,
        len(put),
        sum(1 for i in put if i in ids),
        sum(1 for i in put if i not in ids),
        sum(n - 1 for n in ids.values()) + sum(n - 1 for n in seqs.values()),
        round(recover_s, 2),
        round(central.peak_rss_kb / 1024, 1),
        round(max(n.peak_rss_kb for n in nodes) / 1024, 1),
        notes={
            "alerts in / lost": f"{sum(1 for p in put.values() if p == 'alert')} / {lost_alerts}",
            **(_disk_notes(workdir) if disk else {}),
        },
    )
    central.stop()
    return result


def _disk_notes(workdir: Path) -> dict[str, Any]:
    """What the node's logs say it did about the disk (so a case that never met its fault shows)."""
    text = "".join(p.read_text(errors="replace") for p in workdir.glob("node-*.log"))
    return {
        "reserve released": text.count("released the"),
        "times the disk refused writes": text.count("REFUSES WRITES"),
        "memory written out": text.count("events written from memory"),
        "moved aside": text.count("moved aside"),
    }


def run_node_cases(quick: bool) -> list[CaseResult]:
    cases = [(n, network(f), False) for n, f in NETWORK_FAULTS.items()]
    cases += [(n, s, True) for n, s in DISK_FAULTS.items()]
    results = []
    for name, scenario, disk in cases:
        print(f"[bench] faults: {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
            try:
                results.append(run_node_case(name, scenario, Path(tmp), quick, disk))
            except CannotMount as exc:
                results.append(CaseResult(name, 0, 0, 0, 0, float("nan"), 0.0, notes={"skipped": str(exc)}))
    return results


# ------------------------------------------------------------------------------------------ the table
def print_fault_table(results: list[CaseResult]) -> None:
    header = ("case", "events in", "delivered", "lost", "duplicated", "recover s", "node RSS MB", "central RSS MB")
    rows = [
        (
            r.case,
            f"{r.events_in:,}",
            f"{r.delivered:,}",
            str(r.lost),
            str(r.duplicated),
            "-" if r.recover_s != r.recover_s else f"{r.recover_s:.2f}",
            "-" if r.node_peak_rss_mb is None else f"{r.node_peak_rss_mb:.1f}",
            f"{r.central_peak_rss_mb:.1f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for r in results:
        if r.notes:
            print(f"  {r.case}: " + "; ".join(f"{k} {v}" for k, v in r.notes.items()))


def run(quick: bool) -> list[Figure]:
    """Every node case, then the central's (bench/faults_central.py); the table printed, figures returned."""
    results = run_node_cases(quick) + faults_central.run_cases(quick)
    print_fault_table(results)
    lost = sum(r.lost for r in results)
    duplicated = sum(r.duplicated for r in results)
    figures: list[Any] = [
        Figure("faults: cases run", len(results), "cases"),
        Figure("faults: events lost, all cases", lost, "events", "0"),
        Figure("faults: events stored twice, all cases", duplicated, "events", "0"),
    ]
    node_rss = [r.node_peak_rss_mb for r in results if r.node_peak_rss_mb]
    if node_rss:
        figures.append(Figure("faults: highest node peak RSS", max(node_rss), "MB"))
    figures.append(
        Figure("faults: highest central peak RSS", max(r.central_peak_rss_mb for r in results), "MB", "<= 150 MB")
    )
    return figures
