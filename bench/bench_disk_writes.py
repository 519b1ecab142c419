"""Bytes written to disk per hour by a meter node polling every 10 s (SD card wear), one simulated hour on a
ManualClock, measured from /proc/thread-self/io (``write_bytes``: what this thread sent towards the block
device; ``wchar``: what it passed to write()). The central runs in another thread, so its own database writes
are not counted; the node's HTTP traffic goes through send(), which neither counter includes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import common.outbox as outbox_module
from bench.bench_crash_safety import LocalCentral
from bench.figures import Figure
from common.clock import ManualClock
from common.config import AudioSection, CentralSection, GpioSection, NodeConfig, NodeSection, OutboxSection
from common.service import NodeRuntime
from community.receivers import free_port

POLL_S = 10.0
NODE_ID = "disk-meter-node"


def _io() -> dict[str, int]:
    out = {}
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = int(value)
    return out


def _hour(directory: Path, url: str, token: str, window_s: float, hours: float) -> tuple[int, int, int]:
    """One simulated meter node; returns (write_bytes, wchar, final files bytes)."""
    (directory / "token").write_text(token)
    (directory / "token").chmod(0o600)
    config = NodeConfig(
        path=directory / "node.toml",
        node=NodeSection(id=NODE_ID, role="meter", site="bench-site", data_dir=directory / "data"),
        central=CentralSection(url=url, token_file=directory / "token", connect_timeout_s=0.5, read_timeout_s=5.0),
        outbox=OutboxSection(reading_commit_window_s=window_s),
        gpio=GpioSection(),
        audio=AudioSection(),
        role_config=None,
    )
    clock = ManualClock()
    runtime = NodeRuntime(config, clock)
    runtime.uploader.run_once()  # start-up (self-test, first heartbeat) is not part of the steady hour
    litres = 1000.0
    before = _io()
    for step in range(int(hours * 3600 / POLL_S)):
        litres += 0.4 if step % 30 < 3 else 0.0
        runtime.record_reading("meter_reading", {"meter": "b12-u3-101", "total_litres": round(litres, 3)})
        runtime.set_health(last_sensor_read=clock.wall())
        for _ in range(int(POLL_S)):
            runtime.uploader.run_once()
            runtime.housekeeping(clock.monotonic())
            clock.advance(1.0)
    after = _io()
    files = sum(p.stat().st_size for p in (directory / "data").rglob("*") if p.is_file())
    runtime.stop()
    return after["write_bytes"] - before["write_bytes"], after["wchar"] - before["wchar"], files


def run(quick: bool) -> list[Figure]:
    hours = 0.25 if quick else 1.0
    figures: list[Figure] = []
    scenarios = [
        ("central up, defaults (5 s commit window, 1 KiB pages)", True, 5.0, 1024),
        ("central up, commit every reading (window 0)", True, 0.0, 1024),
        ("central down all hour, 1 KiB pages", False, 5.0, 1024),
        ("central down all hour, 4 KiB pages (SQLite default)", False, 5.0, 4096),
        ("central down all hour, 60 s commit window", False, 60.0, 1024),
    ]
    default_page = outbox_module.PAGE_SIZE
    try:
        for name, up, window, page in scenarios:
            outbox_module.PAGE_SIZE = page
            with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
                directory = Path(tmp)
                central = LocalCentral(directory, NODE_ID) if up else None
                try:
                    url = central.url if central else f"http://127.0.0.1:{free_port()}"
                    token = central.token if central else "unreachable"
                    write_bytes, wchar, files = _hour(directory, url, token, window, hours)
                finally:
                    if central:
                        central.close()
            per_hour = 1 / hours
            figures += [
                Figure(f"{name}: write_bytes", round(write_bytes * per_hour / 1024, 1), "KiB/hour"),
                Figure(f"{name}: wchar", round(wchar * per_hour / 1024, 1), "KiB/hour"),
                Figure(f"{name}: files at the end", round(files / 1024, 1), "KiB"),
            ]
    finally:
        outbox_module.PAGE_SIZE = default_page
    figures.append(Figure("readings per hour (10 s polling)", int(3600 / POLL_S), "readings"))
    return figures
