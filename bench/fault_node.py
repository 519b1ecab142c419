"""The node process of the fault bench: a lift node's runtime (outbox, alert book, uploader on its thread, the
run loop's housekeeping) putting a mix of alerts, state events and readings at a steady pace, and writing the
id of each event whose ``put`` returned to a side file (on the bench's own disk, not the faulty one).

``python -m bench.fault_node --data DIR --token FILE --url URL --events N --seconds S --side FILE --first N``
prints ``ready`` once it runs and ``done`` once every event is put; SIGTERM stops it cleanly."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from common.clock import SystemClock
from common.config import AudioSection, CentralSection, GpioSection, NodeConfig, NodeSection, OutboxSection
from common.events import Detection
from common.service import NodeRuntime

NODE = "bench-lift-0001"  # bench/faults_central.py registers this id


def config(data: Path, token: Path, url: str) -> NodeConfig:
    """Bounds tight enough for a bench: 3 s per request, 5 s at most between retries."""
    central = CentralSection(
        url=url,
        token_file=token,
        connect_timeout_s=1.0,
        read_timeout_s=2.0,
        request_limit_s=3.0,
        max_reply_kb=256,
        batch_size=200,
        batch_max_age_s=0.2,
        backoff_max_s=5.0,
        heartbeat_interval_s=30.0,
    )
    return NodeConfig(
        path=data / "node.toml",
        node=NodeSection(id=NODE, role="elevator", site="bench-site", data_dir=data),
        central=central,
        outbox=OutboxSection(reading_commit_window_s=0.5, reserve_mb=1.0),
        gpio=GpioSection(),
        audio=AudioSection(backend="none"),
        role_config=None,
    )


def put_one(runtime: NodeRuntime, n: int) -> tuple[str, str]:
    """Event number ``n`` of the mix: 1 in 10 an alert (its own incident), 2 in 10 state, the rest readings."""
    if n % 10 == 0:
        detection = Detection("entrapment", "raised", 0.0, "urgent", {"n": n}, key=f"car-{n}")
        event = runtime.emit(detection, ("property_management", "maintenance"))
    elif n % 10 in (1, 2):
        event = runtime.record_state("door_state", {"n": n, "open": n % 2 == 0})
    else:
        event = runtime.record_reading("car_position", {"n": n, "floor": n % 20})
    return event.id, event.priority


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_node")
    for flag in ("--data", "--token", "--side"):
        parser.add_argument(flag, type=Path, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="number of the first event (a restarted node)")
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime = NodeRuntime(config(args.data, args.token, args.url), SystemClock())
    runtime.start()
    print("ready", flush=True)
    pace = args.seconds / max(1, args.events)
    started = time.monotonic()
    with args.side.open("a", encoding="ascii") as side:
        for i in range(args.events):
            if stop.is_set():
                break
            event_id, priority = put_one(runtime, args.first + i)
            side.write(f"{event_id} {priority}\n")
            side.flush()
            runtime.housekeeping(time.monotonic())
            stop.wait(max(0.0, started + (i + 1) * pace - time.monotonic()))
    print("done", flush=True)
    while not stop.wait(0.1):
        runtime.housekeeping(time.monotonic())
    runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
