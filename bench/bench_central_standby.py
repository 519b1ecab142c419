"""An acknowledgement survives the loss of one database host (issue 15, docs/central.md#production-layout): a
central on a real PostgreSQL primary with ``synchronous_commit = on`` and streaming standbys made by
``pg_basebackup``. With one synchronous standby, an upload is not answered while that standby is down (the node
keeps its events) and is answered once it is back; with ``ANY 1 (standby_b, standby_c)`` the loss of either
standby does not stop the uploads. Checks PostgreSQL's own behaviour with the settings the docs give.

Failover: a second central on the multi-host URL the docs give (``host=a,b ... target_session_attrs=read-write``)
uploads while the primary is killed (``pg_ctl stop -m immediate``) and its synchronous standby promoted. The node
keeps each batch until it is answered 200, so every acknowledged event must be on the promoted host, once.
"""

from __future__ import annotations

import os
import random
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.figures import Figure
from bench.pgcluster import ThrowawayCluster, _bin_dir
from central.config import parse_central_config
from central.server import CentralServer
from common.clock import SystemClock
from common.config import AudioSection, CentralSection, GpioSection, NodeConfig, NodeSection, OutboxSection
from common.events import make_event
from common.outbox import Outbox
from common.sync import Uploader

WAIT_S = 5.0  # how long an upload is given while its standby is down
# synchronous_standby_names is set by ALTER SYSTEM (a -c option on the command line would override it for good)
PRIMARY = {"wal_level": "replica", "max_wal_senders": "10", "fsync": "on", "synchronous_commit": "on"}
CLAIM, OPERATOR = "claim-key-standby-bench-0001", "operator-key-standby-bench-01"


class Standby:
    """A streaming standby of ``primary``, made by pg_basebackup, named ``name`` on the primary."""

    def __init__(self, primary: ThrowawayCluster, name: str, port: int) -> None:
        assert primary.dir is not None
        self.primary, self.name, self.port = primary, name, port
        self.data = primary.dir / name
        made = primary._run(  # noqa: SLF001 - as the cluster's owner (postgres when run as root)
            str(_bin_dir() / "pg_basebackup"), "-h", str(primary.dir), "-p", str(primary.port), "-U", "postgres",
            "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"pg_basebackup: {made.stderr[-300:]}")
        conninfo = f"host={primary.dir} port={primary.port} user=postgres application_name={name}"
        primary._run("sh", "-c", f"echo \"primary_conninfo = '{conninfo}'\" >> {self.data}/postgresql.auto.conf")  # noqa: SLF001

    def pg_ctl(self, action: str) -> None:
        options = f"-k {self.primary.dir} -p {self.port} -c listen_addresses='' -c max_connections=400"
        done = self.primary._run(  # noqa: SLF001
            str(_bin_dir() / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", f"{self.data}.log", "-w",
            "-m", "immediate", action,
        )  # fmt: skip
        if done.returncode != 0 and action == "start":
            raise RuntimeError(f"standby {self.name} did not start: {done.stderr[-300:]}")


def _upload(api: str, token: str) -> requests.Response:
    event = {"id": str(uuid.uuid4()), "node_id": "standby-lift", "kind": "door_state", "severity": "info",
             "state": "observed", "priority": "state", "wall_time": time.time(), "clock_synced": True,
             "payload": {}, "alert_id": None, "recipients": [], "seq": None}  # fmt: skip
    body = {"node_wall_time": time.time(), "events": [event]}
    return requests.post(f"{api}/events", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _timed(api: str, token: str) -> dict[str, Any]:
    """An upload in a thread: ``done`` is set when it is answered (status, seconds)."""
    out: dict[str, Any] = {"done": threading.Event()}

    def go() -> None:
        start = time.monotonic()
        out["status"] = _upload(api, token).status_code
        out["seconds"] = time.monotonic() - start
        out["done"].set()

    threading.Thread(target=go, daemon=True).start()
    return out


def _standby_names(primary: ThrowawayCluster, names: str) -> None:
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        conn.execute("SELECT pg_reload_conf()")


def _sync_states(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT application_name, sync_state FROM pg_stat_replication ORDER BY 1").fetchall()
    return ", ".join(f"{n} {s}" for n, s in rows)


def _send_until_stored(api: str, token: str, event: dict[str, Any], give_up: float) -> list[str]:
    """Send one event as a node does (the same event again after any failure) until a 200; returns what each
    failed try was answered ("503 storage_error", "ReadTimeout", ...). Raises when ``give_up`` (monotonic) passes."""
    failed: list[str] = []
    while True:
        try:
            answer = requests.post(f"{api}/events", json={"node_wall_time": time.time(), "events": [event]},
                                   headers={"Authorization": f"Bearer {token}"}, timeout=15)  # fmt: skip
            if answer.status_code == 200 and event["id"] in answer.json()["accepted"]:
                return failed
            failed.append(f"{answer.status_code} {answer.json().get('error', '') if answer.content else ''}".strip())
        except (requests.RequestException, ValueError) as exc:
            failed.append(type(exc).__name__)
        if time.monotonic() > give_up:
            raise RuntimeError(f"event {event['id']} not stored after {len(failed)} tries: {failed[-3:]}")
        time.sleep(0.5)


def _node(directory: Path, url: str, token: str) -> tuple[Uploader, Outbox]:
    """A real node uploader and its outbox (the failover lift), as a node runs them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "token").chmod(0o600)
    config = NodeConfig(
        path=directory / "node.toml",
        node=NodeSection(id="failover-lift", role="elevator", site="standby-site", data_dir=directory / "data"),
        central=CentralSection(url=url, token_file=directory / "token", backoff_max_s=1.0),
        outbox=OutboxSection(),
        gpio=GpioSection(),
        audio=AudioSection(),
        role_config=None,
    )
    box = Outbox(config.state_dir / "outbox.sqlite", config.outbox, SystemClock(), node_id="failover-lift")
    return Uploader(config, box, SystemClock(), rng=random.Random(1)), box


def _uploaded(uploader: Uploader, box: Outbox, count: int, give_up: float) -> tuple[list[str], list[str]]:
    """Put ``count`` state events in the node's outbox and run its uploader until the outbox is empty; returns the
    events' ids and what each failed round was answered."""
    events = [make_event("failover-lift", "door_state", wall_time=time.time(), clock_synced=True, priority="state",
                         payload={"door": "closed"}) for _ in range(count)]  # fmt: skip
    box.put_many(events)
    failed: list[str] = []
    while sum(box.depth().values()):
        result = uploader.run_once()
        if result.status not in ("sent", "idle"):
            failed.append(result.error or result.status)
        if time.monotonic() > give_up:
            raise RuntimeError(f"the node's outbox did not drain: {failed[-3:]}")
        time.sleep(min(result.retry_in_s or 0.0, 1.0))
    return [e.id for e in events], failed


def _failover(primary: ThrowawayCluster, standby: Standby, document: dict, url: str) -> list[Figure]:
    """Kill the primary under a central on the multi-host URL, promote the synchronous standby, keep uploading."""
    assert primary.dir is not None
    _standby_names(primary, standby.name)
    standby.pg_ctl("start")
    deadline = time.monotonic() + 60
    while f"{standby.name} sync" not in _sync_states(primary.url()) and time.monotonic() < deadline:
        time.sleep(0.2)
    dbname = urllib.parse.urlsplit(url).path.lstrip("/")
    both = (f"postgresql://postgres@/{dbname}?host={primary.dir},{primary.dir}&port={primary.port},{standby.port}"
            "&target_session_attrs=read-write")  # fmt: skip
    server = CentralServer(parse_central_config(document, Path(primary.dir) / "failover.toml"), both)
    server.start()
    figures = [Figure("failover: replication before", _sync_states(primary.url()))]
    try:
        api = f"{server.url}/api/v1"
        claim = {"claim_key": CLAIM, "node_id": "failover-lift", "role": "elevator", "site": "standby-site"}
        token = requests.post(f"{api}/nodes/register", json=claim, timeout=30).json()["token"]
        uploader, box = _node(Path(primary.dir) / "failover-node", server.url, token)
        node_ids, _ = _uploaded(uploader, box, 10, time.monotonic() + 120)
        acked: list[str] = []
        for seq in range(1, 21):
            event_id = str(uuid.uuid4())
            event = {"id": event_id, "node_id": "failover-lift", "kind": "door_state", "severity": "info",
                     "state": "observed", "priority": "state", "wall_time": time.time(), "clock_synced": True,
                     "payload": {}, "alert_id": None, "recipients": [], "seq": seq}  # fmt: skip
            if seq == 11:  # half way: the primary dies, the standby is promoted
                primary._run(str(_bin_dir() / "pg_ctl"), "-D", str(primary.dir / "data"), "-m", "immediate", "stop")  # noqa: SLF001
                killed = time.monotonic()
                standby.pg_ctl("promote")
                more, node_failed = _uploaded(uploader, box, 10, time.monotonic() + 120)
                node_ids += more
                drained = time.monotonic() - killed
            failed = _send_until_stored(api, token, event, time.monotonic() + 120)
            acked.append(event_id)
            if seq == 11:
                figures.append(Figure("failover: a raw upload after the node's drain, stored after the kill",
                                      round(time.monotonic() - killed, 1), "s",
                                      f"tries before: {', '.join(sorted(set(failed))) or 'none'} x {len(failed)}"))  # fmt: skip
        with psycopg.connect(both) as conn:
            rows = conn.execute(
                "SELECT id, COUNT(*) AS n FROM events WHERE id = ANY(%s) GROUP BY id", (acked + node_ids,)
            ).fetchall()
        found = {str(r[0]): r[1] for r in rows}
        mine = [found[i] for i in node_ids if i in found]
        figures.append(Figure("failover: a real node uploader's events on the promoted host",
                              f"{len(mine)} / {len(node_ids)}", "",
                              f"all; each once; dead letters {len(box.dead_letters())}; rounds failed after the kill "
                              f"{len(node_failed)}, drained {drained:.1f} s after the kill" if set(mine) <= {1} else "DOUBLED"))  # fmt: skip
        uploader.stop()
        box.close()
        found = {i: n for i, n in found.items() if i in acked}
        figures.append(Figure("failover: acknowledged events on the promoted host", f"{len(found)} / {len(acked)}",
                              "", "all; each once" if set(found.values()) <= {1} else "DOUBLED"))  # fmt: skip
    finally:
        server.stop()
    return figures


def run(quick: bool) -> list[Figure]:
    base = 57_000 + os.getpid() % 900 * 3
    primary = ThrowawayCluster(settings=PRIMARY, port=base).start()
    standbys = [Standby(primary, "standby_b", base + 1), Standby(primary, "standby_c", base + 2)]
    server: CentralServer | None = None
    figures: list[Figure] = []
    try:
        _standby_names(primary, "standby_b")
        standbys[0].pg_ctl("start")
        url = primary.create_database("standby")
        document = {
            "sites": [{"id": "standby-site", "claim_key": CLAIM}],
            "operators": [{"name": "op", "key": OPERATOR}],
        }
        assert primary.dir is not None
        server = CentralServer(parse_central_config(document, Path(primary.dir) / "central.toml"), url)
        server.start()
        api = f"{server.url}/api/v1"
        claim = {"claim_key": CLAIM, "node_id": "standby-lift", "role": "elevator", "site": "standby-site"}
        token = requests.post(f"{api}/nodes/register", json=claim, timeout=30).json()["token"]
        figures.append(Figure("replication (one synchronous standby)", _sync_states(primary.url())))
        up = _timed(api, token)
        up["done"].wait(30)
        figures.append(Figure("  upload, standby up", round(1000 * up["seconds"]), "ms", f"HTTP {up['status']}"))
        standbys[0].pg_ctl("stop")
        down = _timed(api, token)
        answered = down["done"].wait(WAIT_S)
        figures.append(Figure(f"  upload answered within {WAIT_S:g} s, standby down", "yes" if answered else "no",
                              "", "no: nothing acknowledged on one host"))  # fmt: skip
        standbys[0].pg_ctl("start")
        down["done"].wait(60)
        figures.append(Figure("  the same upload once the standby is back", round(down.get("seconds", -1), 1), "s",
                              f"HTTP {down.get('status')}"))  # fmt: skip
        _standby_names(primary, "ANY 1 (standby_b, standby_c)")
        standbys[1].pg_ctl("start")
        deadline = time.monotonic() + 60
        while _sync_states(primary.url()).count("quorum") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # until both standbys stream as quorum members
        figures.append(Figure("replication (ANY 1 of two)", _sync_states(primary.url())))
        standbys[0].pg_ctl("stop")
        one_down = _timed(api, token)
        answered = one_down["done"].wait(WAIT_S)
        figures.append(Figure("  upload with standby_b down", round(1000 * one_down.get("seconds", WAIT_S)) if answered else "no answer",
                              "ms", f"HTTP {one_down.get('status')}, answered"))  # fmt: skip
        figures += _failover(primary, standbys[0], document, url)
    finally:
        if server is not None:
            server.stop()
        for standby in standbys:
            standby.pg_ctl("stop")
        primary.stop()
    return figures
