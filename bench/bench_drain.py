"""Drain of a 100,000-event backlog to the real central on a loopback port: events/s and requests made, at the
default batch size (200) and at a larger one, side by side in one run."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from bench.bench_crash_safety import LocalCentral
from bench.figures import Figure
from common.clock import SystemClock
from common.config import AudioSection, CentralSection, GpioSection, NodeConfig, NodeSection, OutboxSection
from common.events import make_event
from common.outbox import Outbox
from common.sync import Uploader


def _drain(directory: Path, n: int, batch_size: int) -> tuple[float, int, int]:
    node_id = f"drain-node-{batch_size}"
    central = LocalCentral(directory, node_id)
    try:
        (directory / "token").write_text(central.token)
        (directory / "token").chmod(0o600)
        config = NodeConfig(
            path=directory / "node.toml",
            node=NodeSection(id=node_id, role="meter", site="bench-site", data_dir=directory / "data"),
            central=CentralSection(
                url=central.url, token_file=directory / "token", batch_size=batch_size, read_timeout_s=60.0
            ),
            outbox=OutboxSection(max_mb=1024),
            gpio=GpioSection(),
            audio=AudioSection(),
            role_config=None,
        )
        clock = SystemClock()
        box = Outbox(config.state_dir / "outbox.sqlite", config.outbox, clock, node_id=node_id)
        backlog = [
            make_event(
                node_id,
                "flow",
                wall_time=1.767e9 + i,
                clock_synced=True,
                priority="reading" if i % 50 else "state",
                payload={"meter": "b12-u3", "litres": 12345.6 + i},
            )
            for i in range(n)
        ]
        for i in range(0, n, 5000):
            box.put_many(backlog[i : i + 5000])
        uploader = Uploader(config, box, clock, rng=random.Random(1))
        uploader.run_once()  # self-test and first heartbeat out of the timed part
        start = time.perf_counter()
        requests_made = 0
        while sum(box.depth().values()):
            result = uploader.run_once()
            requests_made += result.requests
            if result.retry_in_s:
                raise RuntimeError(f"drain failed: {result}")
        elapsed = time.perf_counter() - start
        uploader.stop()
        box.close()
        delivered = len(central.events())
    finally:
        central.close()
    return n / elapsed, requests_made, delivered


def run(quick: bool) -> list[Figure]:
    n = 10_000 if quick else 100_000
    figures: list[Figure] = []
    for batch_size in (200, 1000):
        with tempfile.TemporaryDirectory() as tmp:
            rate, made, delivered = _drain(Path(tmp), n, batch_size)
        figures += [
            Figure(f"drain {n:,} backlog, batch {batch_size}", round(rate), "events/s", "target >= 2,000"),
            Figure(f"  requests made, batch {batch_size}", made, "requests"),
            Figure(f"  events at the central, batch {batch_size}", delivered, "events", f">= {n:,}"),
        ]
    return figures
