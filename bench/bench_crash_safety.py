"""Crash safety: a child node enqueues and syncs under load, is killed with SIGKILL at random moments and
restarted, again and again; at the end the central must hold every event whose ``put`` returned, once.

``crash_rounds()`` is shared with tests/test_crash_safety.py (50 rounds); the bench runs 200. The child records
an event id in a side file only after ``put`` (or ``flush`` for readings) returned, i.e. after the outbox said
it was durable; a kill between the two only makes the check stricter than needed, never looser.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.figures import Figure

if TYPE_CHECKING:
    from common.catalogue import Priority, State

NODE_ID = "crash-test-node"
REPO = Path(__file__).resolve().parent.parent


def _config(workdir: Path, url: str) -> Any:
    from common.config import AudioSection, CentralSection, GpioSection, NodeConfig, NodeSection, OutboxSection

    return NodeConfig(
        path=workdir / "node.toml",
        node=NodeSection(id=NODE_ID, role="meter", site="crash-site", data_dir=workdir / "data"),
        central=CentralSection(
            url=url,
            token_file=workdir / "token",
            connect_timeout_s=1.0,
            read_timeout_s=5.0,
            batch_size=100,
            batch_max_age_s=0.05,
            backoff_max_s=1.0,
        ),
        outbox=OutboxSection(reading_commit_window_s=0.2, reading_commit_max=20),
        gpio=GpioSection(),
        audio=AudioSection(),
        role_config=None,
    )


def child(workdir: Path, url: str, seed: int) -> None:
    """The node under test: puts events as fast as a busy node would while its uploader drains them."""
    from common.clock import SystemClock
    from common.events import make_event
    from common.outbox import Outbox
    from common.sync import Uploader

    config = _config(workdir, url)
    clock = SystemClock()
    box = Outbox(config.state_dir / "outbox.sqlite", config.outbox, clock, node_id=NODE_ID)
    uploader = Uploader(config, box, clock, rng=random.Random(seed))
    uploader.start()
    rng = random.Random(seed)
    side = open(workdir / "durable.txt", "a", encoding="ascii")  # noqa: SIM115 - open for the child's whole life
    print("ready", flush=True)
    waiting: list[str] = []
    n = 0
    while True:
        n += 1
        roll = rng.random()

        def make(priority: Priority, kind: str, n: int = n) -> Any:
            state: State = "raised" if priority == "alert" else "observed"
            return make_event(
                NODE_ID,
                kind,
                wall_time=clock.wall(),
                clock_synced=True,
                priority=priority,
                state=state,
                payload={"n": n},
            )

        if roll < 0.1:
            event = box.put(make("alert", "trapped_passenger"))
            side.write(event.id + "\n")
        elif roll < 0.4:
            event = box.put(make("state", "door_state"))
            side.write(event.id + "\n")
        elif roll < 0.45:
            burst = box.put_many([make("reading", "flow") for _ in range(20)])
            side.write("".join(e.id + "\n" for e in burst))
        else:
            waiting.append(box.put(make("reading", "flow")).id)
            if rng.random() < 0.2:
                box.flush()
                side.write("".join(i + "\n" for i in waiting))
                waiting.clear()
        side.flush()  # the page cache outlives a SIGKILL; only a power cut would need fsync here
        time.sleep(0.0005)


@dataclass
class CrashReport:
    rounds: int
    durable: int  # ids the child recorded as durable
    delivered: int  # events of the node at the central
    missing: list[str] = field(default_factory=list)  # durable ids the central does not hold
    duplicates: int = 0  # ids stored more than once
    seq_conflicts: int = 0  # one seq number used by two different events
    gaps: int = 0  # seq numbers never seen at the central
    unexplained_gaps: list[int] = field(default_factory=list)  # gaps no outbox_resumed/dropped event explains
    seconds: float = 0.0


def crash_rounds(
    url: str,
    token: str,
    workdir: Path,
    rounds: int,
    fetch_events: Callable[[], list[dict[str, Any]]],
    seed: int = 1,
    max_kill_delay_s: float = 0.25,
    kill: Callable[[subprocess.Popen], None] | None = None,
) -> CrashReport:
    """Run ``rounds`` start/kill cycles of the child (SIGKILL, or ``kill``: bench/bench_power_cut.py cuts the
    power), then drain what is left and check the central."""
    from common.clock import SystemClock
    from common.outbox import Outbox
    from common.sync import Uploader

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "token").write_text(token)
    (workdir / "token").chmod(0o600)
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for round_no in range(rounds):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_crash_safety",
                "--child",
                str(workdir),
                url,
                str(seed * 1000 + round_no),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            cwd=REPO,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"crash child did not start (round {round_no}): {line!r}, rc={proc.poll()}")
            time.sleep(rng.uniform(0.0, max_kill_delay_s))
            if kill is None:
                proc.send_signal(signal.SIGKILL)
            else:
                kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    # a last, clean run delivers whatever the killed children left behind
    config = _config(workdir, url)
    clock = SystemClock()
    box = Outbox(config.state_dir / "outbox.sqlite", config.outbox, clock, node_id=NODE_ID)
    uploader = Uploader(config, box, clock, rng=random.Random(seed))
    deadline = time.monotonic() + 120
    while sum(box.depth().values()) and time.monotonic() < deadline:
        result = uploader.run_once()
        if result.retry_in_s:
            time.sleep(min(result.retry_in_s, 0.5))
        elif result.status == "waiting":
            time.sleep(0.05)
    left = sum(box.depth().values())
    dead = box.stats()["dead_letters"]
    uploader.stop()
    box.close()
    if left or dead:
        raise RuntimeError(f"final drain left {left} events and {dead} dead letters")
    return check(workdir, fetch_events(), rounds, time.monotonic() - started)


def check(workdir: Path, events: list[dict[str, Any]], rounds: int, seconds: float) -> CrashReport:
    durable = set((workdir / "durable.txt").read_text().split())
    ids = [e["id"] for e in events]
    stored = set(ids)
    by_seq: dict[int, set[str]] = {}
    for event in events:
        if event.get("seq") is not None:
            by_seq.setdefault(event["seq"], set()).add(event["id"])
    explained: list[tuple[int, int]] = []
    for event in events:
        payload = event.get("payload") or {}
        if event["kind"] == "outbox_resumed":
            explained.append((payload["seq_not_stored_from"], payload["seq_not_stored_to"]))
        elif event["kind"] == "outbox_dropped":
            explained.append((payload["first_seq"], payload["last_seq"]))
    top = max(by_seq, default=0)
    gaps = [s for s in range(1, top + 1) if s not in by_seq]
    unexplained = [s for s in gaps if not any(a <= s <= b for a, b in explained)]
    return CrashReport(
        rounds=rounds,
        durable=len(durable),
        delivered=len(stored),
        missing=sorted(durable - stored),
        duplicates=len(ids) - len(stored),
        seq_conflicts=sum(1 for v in by_seq.values() if len(v) > 1),
        gaps=len(gaps),
        unexplained_gaps=unexplained,
        seconds=seconds,
    )


class LocalCentral:
    """The real central in a thread of this process on a free loopback port, with a node registered."""

    CLAIM = "bench-claim-key-0000000001"
    OPERATOR = "bench-operator-key-000000001"

    def __init__(self, directory: Path, node_id: str, role: str = "meter") -> None:
        import requests

        from central.config import parse_central_config
        from central.server import CentralServer

        document = {
            "sites": [{"id": "bench-site", "name": "bench", "claim_key": self.CLAIM}],
            "operators": [{"name": "bench", "key": self.OPERATOR}],
        }
        config = parse_central_config(document, directory / "central.toml")
        self.node_id = node_id
        self.server = CentralServer(config, directory / "central.sqlite3")
        self.server.start()
        self.url = self.server.url
        self._http = requests.Session()
        answer = self._http.post(
            f"{self.url}/api/v1/nodes/register",
            json={"claim_key": self.CLAIM, "node_id": node_id, "role": role, "site": "bench-site"},
            timeout=10,
        )
        answer.raise_for_status()
        self.token: str = answer.json()["token"]

    def events(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self._http.get(
                f"{self.url}/api/v1/events",
                params={"node_id": self.node_id, "after": str(after), "limit": "10000"},
                headers={"Authorization": f"Bearer {self.OPERATOR}"},
                timeout=60,
            ).json()
            if not page["events"]:
                return found
            found += page["events"]
            after = page["next_after"]

    def close(self) -> None:
        self._http.close()
        self.server.stop()


def run(quick: bool) -> list[Figure]:
    rounds = 20 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        central = LocalCentral(directory, NODE_ID)
        try:
            report = crash_rounds(central.url, central.token, directory / "node", rounds, central.events)
        finally:
            central.close()
    return [
        Figure("crash rounds (SIGKILL at random moments)", report.rounds, "rounds", "issue: 200 in a bench run"),
        Figure("events put and recorded durable", report.durable, "events"),
        Figure("durable events missing at the central", len(report.missing), "events", "0"),
        Figure("events stored twice at the central", report.duplicates, "events", "0"),
        Figure("seq numbers used twice", report.seq_conflicts, "", "0"),
        Figure("seq gaps (never-stored numbers)", report.gaps, "numbers", "all explained"),
        Figure("seq gaps not explained by outbox_resumed", len(report.unexplained_gaps), "numbers", "0"),
        Figure("crash bench wall time", round(report.seconds, 1), "s"),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
