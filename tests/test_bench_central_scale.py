"""A smoke run of ``changbai-bench --only central_scale`` at a tiny size: seeded SQLite moved to PostgreSQL with
migrate-db, simulated nodes uploading with an operator page open to a real ``central serve`` on each engine,
every acknowledged event stored once. The figures themselves come from the benchmark, not from here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.bench_central_scale import Size, ceilings, measure_engine, raw_copy_rate, storage_alone_rate
from bench.central_seed import seed
from central.transfer.copy import move

TINY = Size(nodes=60, events=600, live=12, open_alerts=2, seconds=1.0, retry_after_s=1)


@pytest.mark.slow
def test_the_scale_bench_runs_on_both_engines_and_loses_nothing(tmp_path: Path, postgres_cluster: Any) -> None:
    database = tmp_path / "sqlite" / "central.sqlite3"
    seeded = seed(database, TINY.nodes, TINY.events, TINY.live, TINY.open_alerts, say=lambda _: None)
    assert (seeded.nodes, seeded.open_alerts) == (60, 2)
    url = postgres_cluster.create_database("scale")
    assert sum(move(str(database), url).values()) >= seeded.events + seeded.nodes
    first = [node.next_seq for node in seeded.live]
    for engine, target, workers in (("SQLite", str(database), 1), ("PostgreSQL", url, 2)):
        for node, seq in zip(seeded.live, first, strict=True):
            node.next_seq = seq
        (tmp_path / engine).mkdir()
        pid = postgres_cluster.pid() if engine == "PostgreSQL" else None
        figures, runs = measure_engine(
            engine, target, workers, seeded, TINY, tmp_path / engine, (20,), database_pid=pid
        )
        shown = {f.name: f.value for f in figures}
        cores = str(shown[f"{engine}: batch 20, page open: cores central / database / load generator"])
        central, server, load = cores.split(" / ")
        assert float(central) > 0 and float(load) > 0, figures  # the processes were found and their time read
        assert (server == "-") == (pid is None) and (pid is None or float(server) > 0), figures
        assert shown[f"{engine}: acknowledged events lost / doubled"] == "0 / 0", figures
        assert not [f for f in figures if "errors" in f.name], figures
        run, closed = runs["batch 20, page open"], runs["batch 20"]
        assert run.acked > 0 and run.refreshes and closed.acked > 0 and not closed.refreshes, figures
        # each is two slices of half the run's time (SLICES: closed, open, open, closed), counted together; the rate
        # is over the timed run only, not the drain of the batches the nodes held at its end
        assert run.seconds == closed.seconds == pytest.approx(TINY.seconds)
        assert shown[f"{engine}: batch 20: ingest with page / without"] == round(100 * run.rate() / closed.rate(), 1)


@pytest.mark.slow
def test_the_ceilings_store_what_they_acknowledge_and_the_floor_is_the_same_rows(
    tmp_path: Path, postgres_cluster: Any
) -> None:
    """The bare apps with COPY answer only once their batch is committed in ``readings``; the central's storage
    alone stores every reading it is given; the floor's rows land in the same table."""
    import psycopg

    database = tmp_path / "central.sqlite3"
    seeded = seed(database, TINY.nodes, TINY.events, TINY.live, TINY.open_alerts, say=lambda _: None)
    url = postgres_cluster.create_database("ceilings")
    move(str(database), url)

    def readings(where: str) -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(f"SELECT count(*) FROM readings WHERE {where}").fetchone()  # noqa: S608
        assert row is not None
        return int(row[0])

    seeded_readings = readings("meter > 0")
    assert seeded_readings > 0  # the seeded meters' readings went to the narrow table, as a meter node's do
    runs = ceilings(url, seeded.live, 1.0)
    assert all(run.acked > 0 and not run.errors for run in runs.values()), runs
    copied = [runs["bare uvicorn + COPY per batch"], runs["bare uvicorn + COPY, group commit"]]
    acked = sum(run.acked + run.drained for run in copied)
    assert readings("meter = 0") == acked  # every acknowledged batch of the two COPY apps, stored once
    assert storage_alone_rate(url, seeded.live, 1) > 0
    assert readings("meter > 0") == seeded_readings + 200 * len(seeded.live)
    assert raw_copy_rate(url, 400) > 0
    assert readings("meter = 0") == acked + 400
