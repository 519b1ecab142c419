"""A district's central for ``bench_central_scale``: tens of thousands of registered nodes (meters, lifts,
kiosks over many sites) and a million stored events with open alerts, made through the central's own Store
(``nodes.register``, ``events.ingest``: the same bookkeeping as live uploads) in a SQLite file; PostgreSQL gets
the same data through ``central migrate-db``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.central_load import SimNode, event_id, reading_event
from central.app import STORAGE_COMPONENTS
from central.storage import open_store

SITES = 50
OPERATOR_KEY = "bench-operator-key-scale-000001"
CLAIM_KEY = "bench-claim-key-scale-00000001"


def site_of(index: int) -> str:
    return f"bench-site-{index % SITES:02d}"


def token_of(node_id: str) -> str:
    return f"bench-token-{node_id}-0123456789abcdef"


@dataclass(frozen=True)
class Seeded:
    """What the database holds: nodes, events, open alerts; and the meters that will upload live."""

    nodes: int
    events: int
    open_alerts: int
    live: list[SimNode]
    seconds: float


def _fleet(nodes: int) -> list[tuple[str, str]]:
    """(node_id, role): a district's mix, about 92.6% meters, 6% lifts, 1.4% kiosks."""
    lifts, kiosks = max(1, nodes * 6 // 100), max(1, nodes * 14 // 1000)
    meters = nodes - lifts - kiosks
    return (
        [(f"bench-m{i:05d}", "meter") for i in range(meters)]
        + [(f"bench-l{i:05d}", "elevator") for i in range(lifts)]
        + [(f"bench-k{i:05d}", "kiosk") for i in range(kiosks)]
    )


def _meter_events(node_id: str, index: int, count: int, now: float) -> list[dict[str, Any]]:
    return [json.loads(reading_event(node_id, index, seq, now - 86_400 + seq * 60)) for seq in range(1, count + 1)]


def _lift_events(node_id: str, index: int, count: int, now: float, alert: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"id": event_id(index, seq), "kind": "door_state", "severity": "info", "state": "observed", "priority": "state",
         "wall_time": now - 86_400 + seq * 60, "clock_synced": True, "payload": {"open": seq % 2 == 0},
         "alert_id": None, "recipients": [], "seq": seq}
        for seq in range(1, count + 1)
    ]  # fmt: skip
    if alert:
        out[-1] = {**out[-1], "kind": "entrapment", "severity": "urgent", "state": "raised", "priority": "alert",
                   "payload": {"seconds_trapped": 95.0}, "alert_id": f"trap-{index}", "recipients": ["maintenance"]}  # fmt: skip
    return out


def seed(database: Path, nodes: int, events: int, live: int, open_alerts: int, say: Any = print) -> Seeded:
    """Make ``database`` (a SQLite file; built on tmpfs, then copied): ``nodes`` nodes, about ``events`` events,
    ``open_alerts`` lifts with an urgent alert raised; the first ``live`` meters are returned for live uploads."""
    start = time.monotonic()
    fleet = _fleet(nodes)
    per_node = max(1, events // nodes)
    now = time.time()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        built = Path(tmp) / "central.sqlite3"
        store = open_store(built, STORAGE_COMPONENTS)
        stored, alerts = 0, 0
        try:
            for index, (node_id, role) in enumerate(fleet):
                fields = {"node_id": node_id, "role": role, "site": site_of(index), "location": f"building {index}"}
                store.nodes.register(fields, token_of(node_id), now - 90_000)
                if role == "kiosk":
                    continue
                if role == "meter":
                    batch = _meter_events(node_id, index, per_node, now)
                else:
                    alert = alerts < open_alerts
                    alerts += alert
                    batch = _lift_events(node_id, index, per_node, now, alert)
                store.events.ingest(node_id, batch, now, now)
                stored += len(batch)
                if index % 5000 == 4999:
                    say(f"  seeded {index + 1:,} of {len(fleet):,} nodes, {stored:,} events")
        finally:
            store.close()
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, database)
    sims = [SimNode(i, node_id, token_of(node_id), per_node + 1) for i, (node_id, role) in enumerate(fleet[:live])]
    return Seeded(len(fleet), stored, alerts, sims, time.monotonic() - start)


def config_toml(retry_after_s: int) -> str:
    """The bench central's config: the sites, one operator key, room for a thousand connections."""
    sites = "".join(f'[[sites]]\nid = "bench-site-{i:02d}"\nclaim_key = "{CLAIM_KEY}"\n\n' for i in range(SITES))
    server = f"[server]\nmax_connections = 4000\noverload_retry_after_s = {retry_after_s}\n\n"
    return f'{server}{sites}[[operators]]\nname = "bench"\nkey = "{OPERATOR_KEY}"\n'
