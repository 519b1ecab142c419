"""Power cuts, under LazyFS (bench/lazyfs.py): every byte not fsynced is dropped at the cut, as a real power cut
drops the page cache. kill -9 (bench_crash_safety) keeps the page cache, so it cannot find a missing fsync.

- **node**: the crash-safety child (alerts, state events, group-committed readings, uploads) with its outbox on
  LazyFS, power cut at random moments; every event whose ``put`` returned must reach the central once.
- **central**: ``central serve`` with its SQLite file on LazyFS, power cut mid-upload while a node keeps sending;
  the node deletes what the central acknowledged, so every event it put must be stored once in the end.
- **update**: a signed bundle's first install (``changbai-update now --bundle``) with ROOT on LazyFS, power cut
  2 s after it finished, then at random moments during it; ``current`` must then be a whole version (each file
  as pip's own RECORD lists it) whose node program imports, or absent with a repeated install succeeding.
- **kiosk**: the kiosk's cached font face, power cut 1 s after its first start; the next start must draw.

Not run unless ``$LAZYFS`` names a built LazyFS binary; FUSE mounts need root (or user_allow_other). LazyFS
(its commit a47a5ba) has no statfs, so the file system reports 0 bytes free and the updater refuses to
install: the update part is then reported as not run (a one-line statfs that calls statvfs(path) lets it run).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.bench_crash_safety import NODE_ID, REPO, LocalCentral, _config, crash_rounds
from bench.figures import Figure
from bench.lazyfs import LazyFS

NOT_RUN = "not run"


def run(quick: bool) -> list[Figure]:
    binary = os.environ.get("LAZYFS")
    if not binary:
        return [Figure("power cuts (LazyFS)", NOT_RUN, "", "set LAZYFS to a built lazyfs binary (root, FUSE)")]
    node_rounds, central_rounds, update_rounds = (10, 4, 2) if quick else (100, 30, 6)
    with tempfile.TemporaryDirectory(prefix="powercut_", dir="/tmp") as tmp:
        base = Path(tmp)
        return [
            *_node(Path(binary), base / "node", node_rounds),
            *_central(Path(binary), base / "central", central_rounds),
            *_update(Path(binary), base / "update", update_rounds),
            *_kiosk_font(Path(binary), base / "kiosk"),
        ]


def _node(binary: Path, base: Path, rounds: int) -> list[Figure]:
    base.mkdir()
    central = LocalCentral(base, NODE_ID)  # on the ordinary disk: only the node loses power
    try:
        with LazyFS(binary, base / "lazy") as lazy:
            work = base / "work"
            work.mkdir()
            (work / "data").symlink_to(lazy.mnt)  # the outbox on LazyFS; the child's durable.txt beside it
            report = crash_rounds(
                central.url, central.token, work, rounds, central.events, seed=3, max_kill_delay_s=1.5, kill=lazy.cut
            )
    finally:
        central.close()
    return [
        Figure("node power cuts (outbox on LazyFS)", report.rounds, "cuts"),
        Figure("node: events put and recorded durable", report.durable, "events"),
        Figure("node: durable events missing at the central", len(report.missing), "events", "0"),
        Figure("node: events stored twice", report.duplicates, "events", "0"),
        Figure("node: seq gaps no outbox_resumed explains", len(report.unexplained_gaps), "numbers", "0"),
    ]


class _Putter(threading.Thread):
    """A node putting alerts, state events and readings into its outbox while its uploader sends them."""

    def __init__(self, box: Any) -> None:
        super().__init__(name="putter", daemon=True)
        self.box, self.stop = box, threading.Event()
        self.put: list[str] = []

    def run(self) -> None:
        from common.events import make_event

        rng = random.Random(5)
        while not self.stop.is_set():
            roll = rng.random()
            if roll < 0.25:
                event = make_event(
                    NODE_ID,
                    "trapped_passenger",
                    wall_time=time.time(),
                    clock_synced=True,
                    priority="alert",
                    state="raised",
                )
            elif roll < 0.5:
                event = make_event(
                    NODE_ID, "door_state", wall_time=time.time(), clock_synced=True, priority="state", state="observed"
                )
            else:
                event = make_event(
                    NODE_ID, "flow", wall_time=time.time(), clock_synced=True, priority="reading", state="observed"
                )
            self.put.append(self.box.put(event).id)
            time.sleep(0.002)
        self.box.flush()


def _central(binary: Path, base: Path, rounds: int) -> list[Figure]:
    from common.clock import SystemClock
    from common.outbox import Outbox
    from common.sync import Uploader

    base.mkdir()
    config = base / "central.toml"
    config.write_text(
        f'[[sites]]\nid = "bench-site"\nname = "bench"\nclaim_key = "{LocalCentral.CLAIM}"\n'
        f'[[operators]]\nname = "bench"\nkey = "{LocalCentral.OPERATOR}"\n'
    )
    config.chmod(0o600)
    with LazyFS(binary, base / "lazy") as lazy:
        db = lazy.mnt / "central.sqlite3"
        from community.receivers import free_port  # here: power_cut_vm's guest has the node's packages only

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        node = _config(base / "node", url)
        failed_starts = left = 0
        box: Any = None
        uploader: Any = None
        putter: _Putter | None = None
        try:
            for round_no in range(rounds + 1):
                proc = _serve(config, db, port, base / "central.err")
                if not _up(url, proc):
                    failed_starts += 1
                    proc.kill()
                    break
                if putter is None:  # the node registers at the first start, then never stops putting
                    (base / "node").mkdir()
                    body = {"claim_key": LocalCentral.CLAIM, "node_id": NODE_ID, "role": "meter", "site": "bench-site"}
                    token = requests.post(f"{url}/api/v1/nodes/register", json=body, timeout=10).json()["token"]
                    node.central.token_file.write_text(token)
                    node.central.token_file.chmod(0o600)
                    box = Outbox(node.state_dir / "outbox.sqlite", node.outbox, SystemClock(), node_id=NODE_ID)
                    uploader = Uploader(node, box, SystemClock(), rng=random.Random(1))
                    uploader.start()
                    putter = _Putter(box)
                    putter.start()
                if round_no == rounds:  # the last start stays up: the node drains, then the central stops cleanly
                    putter.stop.set()
                    putter.join(30)
                    deadline = time.monotonic() + 120
                    while sum(box.depth().values()) and time.monotonic() < deadline:
                        time.sleep(0.1)
                    proc.terminate()
                    proc.wait(30)
                    break
                time.sleep(random.Random(round_no).uniform(0.3, 2.0))
                lazy.cut(proc)
        finally:
            if putter is not None:
                putter.stop.set()
                putter.join(30)
            if uploader is not None:
                uploader.stop()
            if box is not None:
                left = sum(box.depth().values())
                box.close()
        stored = _stored_ids(db)
    put = set(putter.put) if putter else set()
    return [
        Figure("central power cuts (SQLite on LazyFS)", rounds, "cuts"),
        Figure("central: starts that failed after a cut", failed_starts, "", "0"),
        Figure("central: events the node put", len(put), "events"),
        Figure("central: put but not stored (acknowledged, then lost)", len(put - set(stored)) + left, "events", "0"),
        Figure("central: events stored twice", len(stored) - len(set(stored)), "events", "0"),
    ]


def _serve(config: Path, db: Path, port: int, err: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "central", "serve", "--config", str(config), "--db", str(db), "--port", str(port)]
    with open(err, "ab") as errors:
        return subprocess.Popen([*cmd, "--log-level", "WARNING"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors)


def _up(url: str, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return requests.get(f"{url}/api/v1/health", timeout=2).ok
        except requests.ConnectionError:
            time.sleep(0.05)
    return False


def _stored_ids(db: Path) -> list[str]:
    from central.storage import open_store

    store = open_store(db)
    try:
        return [e["id"] for e in store.events.page(limit=10_000_000)]
    finally:
        store.close()


def _update(binary: Path, base: Path, rounds: int) -> list[Figure]:
    from bench.update_rig import ManagedNode, ReleaseKit
    from updates.layout import Layout

    (base / "kit").mkdir(parents=True)
    kit = ReleaseKit.new(base / "kit")
    bundle = kit.bundle("0.1.0+pc1")
    whole = runnable = files = lost = 0
    with LazyFS(binary, base / "lazy") as lazy:
        if not lazy.reports_disk_size():
            return [Figure("update power cuts", NOT_RUN, "", "this LazyFS has no statfs (0 bytes free)")]
        took = 30.0
        for round_no in range(rounds):
            node = ManagedNode(lazy.mnt / f"n{round_no}", "http://127.0.0.1:9", "t", kit.public_key, "pc-lift", 20)
            cmd = [sys.executable, "-m", "updates.node_cli", "--config", str(node.config), "now", "--bundle"]
            started = time.monotonic()
            with open(base / "install.log", "ab") as log:
                proc = subprocess.Popen([*cmd, str(bundle)], cwd=REPO, stdout=log, stderr=log)
            if round_no == 0:  # the first cut comes 2 s after a finished install
                proc.wait(600)
                took = time.monotonic() - started
                time.sleep(2)
            else:
                time.sleep(random.Random(round_no).uniform(0.0, took + 2))
            lazy.cut(proc)
            if Layout(node.root).current() is None and node.first_install(bundle).returncode != 0:
                continue  # nothing runs and the install cannot be repeated
            checked, bad = _against_records(Layout(node.root).venv(Layout(node.root).current() or ""))
            files, lost = files + checked, lost + bad
            whole += bad == 0
            probe = [str(Layout(node.root).venv(Layout(node.root).current() or "") / "bin" / "python"), "-I", "-c"]
            runnable += subprocess.run([*probe, "from elevator_node.__main__ import main"], check=False).returncode == 0
    return [
        Figure("update power cuts (ROOT on LazyFS)", rounds, "cuts", f"the first 2 s after a {took:.0f} s install"),
        Figure("update: current a whole version afterwards", whole, "rounds", f"{rounds}"),
        Figure("update: current's node program imports", runnable, "rounds", f"{rounds}"),
        Figure("update: files unlike pip's RECORD in current", lost, "files", f"0 of {files:,}"),
    ]


def _against_records(venv: Path) -> tuple[int, int]:
    """(files checked, files whose size or sha256 differs from what pip recorded in the dist-info RECORDs)."""
    checked = bad = 0
    for record in venv.glob("lib/python*/site-packages/*.dist-info/RECORD"):
        site = record.parent.parent
        for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
            name, digest, size = (line.rsplit(",", 2) + ["", ""])[:3]
            if not digest.startswith("sha256="):
                continue
            checked += 1
            path = site / name
            data = path.read_bytes() if path.is_file() else b""
            want = digest.removeprefix("sha256=")
            got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            bad += got != want or str(len(data)) != size
    return checked, bad


KIOSK_FACE = (
    "import sys, time; from pathlib import Path; from kiosk.config import ScreenSection; "
    "from kiosk.fonts import kiosk_fonts; print(kiosk_fonts(ScreenSection(), Path(sys.argv[1]))[1], flush=True); "
    "time.sleep(float(sys.argv[2]))"
)


def _kiosk_font(binary: Path, base: Path) -> list[Figure]:
    from PIL import ImageFont

    with LazyFS(binary, base / "lazy") as lazy:
        cmd = [sys.executable, "-c", KIOSK_FACE, str(lazy.mnt / "fonts")]
        first = subprocess.Popen([*cmd, "60"], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert first.stdout is not None
        first.stdout.readline()
        time.sleep(1)
        lazy.cut(first)
        first.stdout.close()
        face = subprocess.run([*cmd, "0"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        try:
            ImageFont.truetype(face, 40)  # FreeType, as SDL_ttf opens it
            drawn = "yes"
        except OSError as exc:
            drawn = f"no: {exc}"
    return [Figure("kiosk: face readable at the start after a power cut", drawn, "", "yes")]
