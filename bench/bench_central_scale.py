"""The central at district scale (issue 15), SQLite and PostgreSQL side by side in one run: 50,000 registered
nodes and 1M stored events, 1,000 simulated nodes uploading at once (batches of 20 and of 200) with and without
an operator page open, each central a real ``central serve`` process on loopback.

The simulated meters upload ``meter_reading`` events, as meter nodes do (most of a district's traffic), which the
central stores in its narrow ``readings`` table. Prints per engine: events/s, p50/p99 of a post, 503s (admission
control), timeouts, the operator refresh time (alone and under load), the central's peak RSS, and whether every
acknowledged event is stored exactly once; raw PostgreSQL COPY of the same rows into the same table as the floor;
and ceilings between the two (the central's storage alone; a bare app on the same uvicorn that only reads and
parses; the same app COPYing each batch and committing before it answers, alone or in groups: bench.bare_ingest).
Targets: PostgreSQL ingest at batch 200 >= 50% of COPY per event; p99 of a batch-20 post <= 1 s; an operator
refresh <= 200 ms; ingest with the page open within 10% of ingest without. The SQLite central is one process;
the PostgreSQL one runs ``--workers 2`` (one per core).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.central_load import LoadResult, SimNode, drive, median_ms, refresh_alone
from bench.central_seed import OPERATOR_KEY, Seeded, config_toml, seed
from bench.figures import Figure
from bench.harness import children, tree_cpu_s
from bench.pgcluster import ThrowawayCluster


@dataclass(frozen=True)
class Size:
    nodes: int
    events: int
    live: int  # simulated nodes uploading at once
    open_alerts: int
    seconds: float  # per measured run
    retry_after_s: int  # the central's overload_retry_after_s (the quick runs are shorter than its default)
    warmup_s: float = 0.0  # uploads before the measured runs, not counted (the connection storm, cold caches)


FULL = Size(nodes=50_000, events=1_000_000, live=1_000, open_alerts=500, seconds=20.0, retry_after_s=5, warmup_s=5.0)
QUICK = Size(nodes=400, events=8_000, live=40, open_alerts=10, seconds=1.5, retry_after_s=1, warmup_s=0.5)
# PostgreSQL as a production primary would run it: every commit flushed (the test clusters switch fsync off)
PG_SETTINGS = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on", "shared_buffers": "256MB"}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _load() -> str:
    return " ".join(os.getloadavg().__repr__().strip("()").split(", ")[:1])


class ServerProcess:
    """A server on a free loopback port in its own process (and its workers), with its peak RSS read from /proc:
    ``command`` is given the port; the server is up when ``GET /api/v1/health`` answers 200."""

    def __init__(self, command: Callable[[int], list[str]]) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen(command(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{command(self.port)[2]} did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            time.sleep(0.2)

    def peak_rss_mb(self) -> float:
        """VmHWM of the process and its children (the workers), summed."""
        total = 0
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _books(port: int, live: list[SimNode]) -> dict[str, tuple[int, int, int]]:
    """Per live node, the central's own books: (highest seq, seqs missing, events stored)."""
    headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    out = {}
    with requests.Session() as http:
        for node in live:
            got = http.get(f"http://127.0.0.1:{port}/api/v1/nodes/{node.node_id}", headers=headers, timeout=30).json()
            out[node.node_id] = (got["max_seq"], got["seq_missing"], got["events_received"])
    return out


def _lost_and_doubled(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]],
                      live: list[SimNode], first_seq: dict[str, int]) -> tuple[int, int]:  # fmt: skip
    """Every acknowledged event must be stored once: the node's highest seq is its last acknowledged one, none
    missing, and its count of stored events grew by exactly the number acknowledged."""
    lost = doubled = 0
    for node in live:
        acked = node.next_seq - first_seq[node.node_id]
        top, missing, stored = after[node.node_id]
        grown = stored - before[node.node_id][2]
        lost += max(0, node.next_seq - 1 - top) + missing + max(0, acked - grown)
        doubled += max(0, grown - acked)
    return lost, doubled


def _figures_of_run(engine: str, label: str, run: LoadResult, size: Size) -> list[Figure]:
    p50, p99 = LoadResult.pct(run.latencies, 0.5), LoadResult.pct(run.latencies, 0.99)
    out = [
        Figure(f"{engine}: {label}: ingest", round(run.rate()), "events/s", f"{size.live:,} nodes, load {_load()}"),
        Figure(f"{engine}: {label}: post p50 / p99", f"{1000 * p50:.0f} / {1000 * p99:.0f}", "ms", "p99 <= 1,000 ms"),
        Figure(f"{engine}: {label}: 503s / timeouts", f"{run.refused:,} / {run.timeouts:,}", "", "timeouts 0"),
        Figure(
            f"{engine}: {label}: held at the end, acked after",
            f"{run.drained:,} in {run.drain_s:.1f} s",
            "events",
            "not in the rate",
        ),
    ]
    if run.refreshes:
        worst = max(run.refreshes)
        out.append(Figure(f"{engine}: {label}: operator refresh median / worst",
                          f"{median_ms(run.refreshes)} / {1000 * worst:.0f}", "ms", "<= 200 ms"))  # fmt: skip
    if run.unacknowledged:
        out.append(Figure(f"{engine}: {label}: nodes still unacknowledged", run.unacknowledged, "", "0"))
    if run.errors:
        out.append(Figure(f"{engine}: {label}: errors", str(run.errors)))
    return out


BATCHES = (20, 200)
# the page closed and open in turn over one batch size's four slices, A B B A: a drift across them (a server warming
# up, a neighbour's load) falls on both alike. When the page-open run always came second, PostgreSQL's batch-20
# ingest with the page open came out at 106-243% of the rate without it (runs 1-7 of docs/central.md).
SLICES = (False, True, True, False)


def measure_engine(
    engine: str,
    database: str,
    workers: int,
    seeded: Seeded,
    size: Size,
    tmp: Path,
    batches: tuple[int, ...] = BATCHES,
    database_pid: int | None = None,
) -> tuple[list[Figure], dict[str, LoadResult]]:
    """Each of ``batches`` against one engine's central, with the operator page closed and open in turn
    (``SLICES``); returns the figures and the runs by label. Each run also gives the cores used by the central,
    the database server (``database_pid``'s process tree) and this process, the load generator: a central that
    does not use its cores is waiting on something."""
    config = tmp / "central.toml"
    config.write_text(config_toml(size.retry_after_s), encoding="utf-8")
    config.chmod(0o600)
    central = ServerProcess(
        lambda port: [sys.executable, "-m", "central", "serve", "--config", str(config), "--db", database,
                      "--port", str(port), "--log-level", "ERROR", "--workers", str(workers)]
    )  # fmt: skip
    figures: list[Figure] = []
    runs: dict[str, LoadResult] = {}
    try:
        before, first_seq = _books(central.port, seeded.live), {n.node_id: n.next_seq for n in seeded.live}
        alone = refresh_alone(central.port, OPERATOR_KEY, 6)[1:]
        figures.append(Figure(f"{engine}: operator refresh, idle", median_ms(alone), "ms",
                              f"{seeded.nodes:,} nodes, {seeded.events:,} events; <= 200 ms"))  # fmt: skip
        if size.warmup_s:  # else the first run pays alone for a fresh server's connection storm and cold caches
            say(f"[central_scale] {engine}: warm-up, batch 20 for {size.warmup_s:g} s (not counted)")
            drive(central.port, seeded.live, 20, size.warmup_s)
        for batch in batches:
            say(f"[central_scale] {engine}: batch {batch}, the page closed / open / open / closed, "
                f"{size.seconds / 2:g} s each (load {_load()})")  # fmt: skip
            halves = {page: LoadResult() for page in (False, True)}
            spent = {page: [0.0, 0.0, 0.0, 0.0] for page in (False, True)}  # CPU s of the three, then wall s
            for page in SLICES:
                begun = _sample(central, database_pid)
                ended: list[tuple[float, ...]] = []  # the same at the end of the timed run, before the nodes drain

                def mark(into: list[tuple[float, ...]] = ended) -> None:
                    into.append(_sample(central, database_pid))

                key = OPERATOR_KEY if page else None
                halves[page].add(drive(central.port, seeded.live, batch, size.seconds / 2, key, at_end=mark))
                spent[page] = [t + b - a for t, a, b in zip(spent[page], begun, ended[0], strict=True)]
            for page, run in halves.items():
                label = f"batch {batch}" + (", page open" if page else "")
                runs[label] = run
                cores = [f"{cpu / spent[page][3]:.2f}" for cpu in spent[page][:3]]
                cores[1] = cores[1] if database_pid else "-"  # SQLite works inside the central's process
                figures += _figures_of_run(engine, label, run, size)
                figures.append(
                    Figure(
                        f"{engine}: {label}: cores central / database / load generator", " / ".join(cores), "", "of 2"
                    )
                )
            if halves[False].rate():
                ratio = round(100 * halves[True].rate() / halves[False].rate(), 1)
                figures.append(Figure(f"{engine}: batch {batch}: ingest with page / without", ratio, "%", ">= 90%"))
        lost, doubled = _lost_and_doubled(before, _books(central.port, seeded.live), seeded.live, first_seq)
        figures.append(Figure(f"{engine}: acknowledged events lost / doubled", f"{lost} / {doubled}", "", "0 / 0"))
        figures.append(
            Figure(f"{engine}: central peak RSS", round(central.peak_rss_mb()), "MB", f"{workers} process(es)")
        )
    finally:
        central.stop()
    return figures, runs


def _sample(central: ServerProcess, database_pid: int | None) -> tuple[float, float, float, float]:
    """CPU seconds so far of the central's processes, the database server's and this process (the load), then
    the monotonic clock."""
    database = tree_cpu_s(database_pid) if database_pid else 0.0
    return tree_cpu_s(central.proc.pid), database, time.process_time(), time.monotonic()


def storage_alone_rate(url: str, live: list[SimNode], batches: int) -> float:
    """Events/s of the central's own storage (``Store.events.ingest``, one connection, no HTTP) taking
    ``batches`` batches of 200 from each live node in turn: the central's path less the request."""
    from bench.central_load import reading_event
    from central.app import STORAGE_COMPONENTS
    from central.storage import open_store

    store = open_store(url, STORAGE_COMPONENTS, pool_size=1)
    try:
        stored, took = 0, 0.0
        for _ in range(batches):
            for node in live:
                wall = time.time()
                events = [
                    json.loads(reading_event(node.node_id, node.index, node.next_seq + i, wall)) for i in range(200)
                ]
                start = time.perf_counter()
                stored += store.events.ingest(node.node_id, events, wall, wall)[0]
                took += time.perf_counter() - start
                node.next_seq += 200
        return stored / took
    finally:
        store.close()


def _bare_command(extra: list[str]) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, "-m", "bench.bare_ingest", str(port), "2", *extra]


CEILINGS = {  # label: (COPY each batch, group commit)
    "bare uvicorn, read + parse + answer": (False, False),
    "bare uvicorn + COPY per batch": (True, False),
    "bare uvicorn + COPY, group commit": (True, True),
}


def ceilings(url: str, live: list[SimNode], seconds: float) -> dict[str, LoadResult]:
    """Batch-200 uploads for ``seconds`` against three bare apps on the central's uvicorn (bench.bare_ingest,
    2 processes): one that only reads, parses and answers; one that also COPYs each batch and commits before it
    answers; one that COPYs and commits the batches waiting in one transaction (group commit)."""
    runs: dict[str, LoadResult] = {}
    for label, (copy, group) in CEILINGS.items():
        say(f"[central_scale] {label}: batch 200 for {seconds:g} s (load {_load()})")
        server = ServerProcess(_bare_command([url] * copy + ["group"] * group))
        try:
            runs[label] = drive(server.port, live, 200, seconds)
        finally:
            server.stop()
    return runs


def raw_copy_rate(url: str, rows: int) -> float:
    """Events/s of PostgreSQL COPY of the rows a batch-200 upload's readings become, into the central's
    ``readings`` table (its indexes and partitions), in one transaction: the floor the central's ingest is
    compared with."""
    import psycopg

    from bench.bare_ingest import copy_rows, reading_row
    from bench.central_load import reading_event

    now = time.time()
    values = [
        reading_row(json.loads(reading_event(f"bench-m{i // 200:05d}", 60_000 + i // 200, i, now)), 2 * 10**15 + i,
                    now, now)
        for i in range(rows)
    ]  # fmt: skip
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        copy_rows(conn, values)
        conn.commit()
        return rows / (time.perf_counter() - start)


def run(quick: bool) -> list[Figure]:
    size = QUICK if quick else FULL
    figures = [Figure("central_scale: load average at start", _load(), "", "2 cores shared")]
    with tempfile.TemporaryDirectory(prefix="bench-central-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        say(f"[central_scale] seeding {size.nodes:,} nodes and {size.events:,} events (SQLite)")
        seeded = seed(tmp / "sqlite" / "central.sqlite3", size.nodes, size.events, size.live, size.open_alerts, say)
        figures.append(
            Figure(
                "central_scale: seeded",
                f"{seeded.nodes:,} nodes, {seeded.events:,} events",
                "",
                f"{seeded.seconds:.0f} s",
            )
        )
        cluster = ThrowawayCluster(settings=PG_SETTINGS, port=56_000 + os.getpid() % 4000).start()
        try:
            url = cluster.create_database("scale")
            from central.transfer.copy import move

            start = time.monotonic()
            moved = sum(move(str(tmp / "sqlite" / "central.sqlite3"), url).values())
            rate = moved / (time.monotonic() - start)
            figures.append(Figure("central migrate-db SQLite -> PostgreSQL", round(rate), "rows/s", f"{moved:,} rows"))
            live_seq = [node.next_seq for node in seeded.live]
            figures += measure_engine(
                "SQLite", str(tmp / "sqlite" / "central.sqlite3"), 1, seeded, size, tmp / "sqlite"
            )[0]
            for node, seq in zip(seeded.live, live_seq, strict=True):
                node.next_seq = seq  # PostgreSQL has the seeded data only: the same uploads again
            (tmp / "pg").mkdir()
            try:
                pg_figures, runs = measure_engine(
                    "PostgreSQL", url, 2, seeded, size, tmp / "pg", database_pid=cluster.pid()
                )
            except Exception:  # noqa: BLE001 - the SQLite figures are kept; the traceback says what failed
                traceback.print_exc()
                return [*figures, Figure("PostgreSQL runs", "FAILED", "", "see traceback above")]
            figures += pg_figures
            bare = ceilings(url, seeded.live, size.seconds)
            alone = storage_alone_rate(url, seeded.live, 1)
            # the floor: COPY of as many rows into the same table, after the central's runs (same indexes, same size)
            floor = raw_copy_rate(url, 200 * size.live * (1 if quick else 2))
            ingest = runs["batch 200"].rate()
            figures.append(Figure("PostgreSQL raw COPY of the same rows (floor)", round(floor), "events/s"))
            figures.append(
                Figure("PostgreSQL ingest batch 200 / raw COPY", round(100 * ingest / floor, 1), "%", ">= 50%")
            )
            for label, rate in [("central's storage alone, no HTTP", alone)] + [(k, r.rate()) for k, r in bare.items()]:
                share = f"{100 * rate / floor:.1f}% of raw COPY"
                figures.append(Figure(f"ceiling: {label}", round(rate), "events/s", share))
        finally:
            cluster.stop()
    figures.append(Figure("central_scale: load average at end", _load(), "", "2 cores shared"))
    return figures
