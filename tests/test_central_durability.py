"""Central: acknowledged means stored (SIGKILL of `central serve` mid-upload), concurrent replays, HTTPS."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bench.pgcluster import ThrowawayCluster
from central.storage import open_store
from tests.conftest import eventually
from tests.fixtures.central import CLAIM_KEY, SITE, CentralHandle, config_document, wire_event

ROOT = Path(__file__).resolve().parents[1]
LIFT = "cbxc-b7-u2-lift1"
METER = "cbxc-b12-meters"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(central, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "central",
            "serve",
            "--config",
            str(central.config_path),
            "--db",
            str(central.database),
            "--port",
            str(port),
            "--log-level",
            "WARNING",
            *extra,
        ],
        cwd=ROOT,
        start_new_session=True,  # its own process group: a kill takes the workers with it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_up(url: str, proc: subprocess.Popen, **kwargs) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/api/v1/health", timeout=2, **kwargs)
            return
        except requests.ConnectionError:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "central serve did not answer"
            time.sleep(0.05)


class Uploader(threading.Thread):
    """Posts batches of 50 new events as fast as the central takes them; records what was acknowledged."""

    def __init__(self, url: str, token: str, first_seq: int, sent: dict, acked: list) -> None:
        super().__init__(name="uploader")
        self.url, self.token, self.seq, self.sent, self.acked = url, token, first_seq, sent, acked
        self.stop = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            batch = []
            for _ in range(50):
                self.seq += 1
                batch.append(_reading(self.seq) if self.seq % 2 else wire_event(METER, self.seq, kind="meter_health"))
            self.sent.update((e["id"], e) for e in batch)
            try:
                answer = session.post(
                    f"{self.url}/api/v1/events",
                    json={"node_wall_time": time.time(), "events": batch},
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=5,
                )
            except requests.RequestException:
                return  # the central died under us: this batch was never acknowledged
            if answer.status_code == 200:
                self.acked.extend(answer.json()["accepted"])


def _reading(seq: int) -> dict:
    payload = {"meter_id": "b12-301", "resident": "B12-301", "total_litres": float(seq), "raw_litres": None}
    return wire_event(METER, seq, kind="meter_reading", priority="reading", payload=payload)


@pytest.mark.both_engines
def test_every_acknowledged_event_survives_sigkill_of_the_central(make_central, central_engine):
    """Batches of readings and state events while ``central serve`` is killed three times: every acknowledged
    event is stored, none twice, and resending everything (what the node does with unacknowledged batches)
    stores each exactly once. On PostgreSQL with two worker processes."""
    workers = ("--workers", "2") if central_engine == "postgresql" else ()
    # a stopped fixture central only provides the config file and a database path for `central serve`
    central = make_central(start=False)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    sent: dict[str, dict] = {}
    token, seq = None, 0
    for round_ in range(3):
        proc = _serve(central, port, *workers)
        try:
            _wait_up(url, proc)
            if token is None:
                body = {"claim_key": CLAIM_KEY, "node_id": METER, "role": "meter", "site": SITE}
                token = requests.post(f"{url}/api/v1/nodes/register", json=body, timeout=5).json()["token"]
            uploader = Uploader(url, token, seq, sent, acked)
            uploader.start()
            deadline = time.monotonic() + 10
            while len(acked) < 200 * (round_ + 1) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)  # mid-upload, every process: no shutdown, no checkpoint
            proc.wait(timeout=10)
            uploader.stop.set()
            uploader.join(timeout=10)
            seq = uploader.seq
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            proc.stderr.close()
    assert len(acked) >= 600
    stored = _stored_ids(central.database)
    assert len(stored) == len(set(stored))  # each at most once
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert set(stored) <= set(sent)
    central.start()  # the node resends what it was not told was stored: each is then stored exactly once
    events = list(sent.values())
    for start in range(0, len(events), 200):
        assert central.post_events(token, events[start : start + 200]).status_code == 200
    stored = _stored_ids(central.database)
    assert sorted(stored) == sorted(sent)


def _stored_ids(database) -> list[str]:
    store = open_store(database)
    try:
        return [e["id"] for e in store.events.page(limit=1_000_000)]
    finally:
        store.close()


@pytest.mark.both_engines
def test_concurrent_replays_of_one_batch_store_it_once(central):
    token = central.register(LIFT)
    batch = [wire_event(LIFT, seq) for seq in range(1, 101)]
    answers: list[requests.Response] = []

    def post() -> None:
        answers.append(central.post_events(token, batch))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [a.status_code for a in answers] == [200] * 8
    assert all(a.json()["accepted"] == [e["id"] for e in batch] for a in answers)
    assert len(central.events(LIFT)) == 100
    node = central.node(LIFT)
    assert node["events_received"] == 100 and node["replays"] == 700 and node["seq_missing"] == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_serves_https_that_a_node_verifies_with_its_ca_bundle(make_central, tmp_path):
    central = make_central(start=False)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    port = _free_port()
    url = f"https://127.0.0.1:{port}"
    proc = _serve(central, port, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    try:
        _wait_up(url, proc, verify=str(cert))
        assert requests.get(f"{url}/api/v1/health", verify=str(cert), timeout=5).json()["status"] == "ok"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/api/v1/health", timeout=5)  # not in the system trust store
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()


def test_a_postgresql_restart_under_the_central_costs_no_upload(tmp_path):
    """Every pooled connection dies with a restart (an upgrade, a config change); each is tried before use, so no
    upload is answered 503 (before, the first three after the restart were, and their nodes waited 30 s)."""
    cluster = ThrowawayCluster(port=50_000 + (os.getpid() + 7) % 5000).start()
    central = CentralHandle(tmp_path, config_document(), cluster.create_database("restart"))
    try:
        central.start()
        token = central.register(LIFT, "elevator")
        with ThreadPoolExecutor(6) as pool:  # several connections in the pool
            first = list(
                pool.map(lambda s: central.post_events(token, [wire_event(LIFT, s)]).status_code, range(1, 13))
            )
        assert first == [200] * 12
        cluster.restart()
        after = [central.post_events(token, [wire_event(LIFT, s)]).status_code for s in range(13, 25)]
        assert after == [200] * 12
        assert len(central.events(LIFT)) == 24
    finally:
        central.close()
        cluster.stop()


def test_postgresql_gone_under_the_central_makes_it_failing_until_it_is_back(tmp_path, monkeypatch):
    """The database stopped: a node's upload fails at its token's read, before the upload's own, and still counts as
    refused, so /health (and with it the console's banner and the desk) says the central cannot store, as
    ``unreachable``; once the server is back the uploads are stored and it says so no more."""
    monkeypatch.setattr("central.storage.postgres.POOL_WAIT_S", 1.0)
    monkeypatch.setattr("central.storage.health.FAILING_AFTER_S", 0.5)
    cluster = ThrowawayCluster(port=50_000 + (os.getpid() + 11) % 5000).start()
    central = CentralHandle(tmp_path, config_document(), cluster.create_database("gone"))
    try:
        central.start()
        token = central.register(LIFT, "elevator")
        assert central.post_events(token, [wire_event(LIFT, 1)]).status_code == 200
        cluster.halt()
        for seq in (2, 3):
            answer = central.post_events(token, [wire_event(LIFT, seq)])
            assert (answer.status_code, answer.json()["error"]) == (503, "storage_error")
            time.sleep(0.6)
        said = requests.get(f"{central.url}/api/v1/health", timeout=30).json()["storage"]
        assert (said["state"], said["reason"]) == ("failing", "unreachable"), said
        cluster.resume()
        eventually(lambda: central.post_events(token, [wire_event(LIFT, 4)]).status_code == 200, 30.0, 0.5)
        assert requests.get(f"{central.url}/api/v1/health", timeout=30).json()["storage"]["state"] == "ok"
    finally:
        central.close()
        cluster.stop()
