"""The ``GET /events`` cursor with several writer processes (issue 15): positions are taken in one order, but
transactions commit in another; a reader following ``after`` must never pass a position that commits later
(PostgreSQL: the change feed's advisory lock, ``central.storage.changes``; SQLite: one writer at a time)."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

import psycopg
import pytest

from central.storage import open_store

WRITERS, BATCHES, PER_BATCH = 4, 12, 20


def _write(target: str, node_id: str, done) -> None:
    store = open_store(target)
    try:
        for b in range(BATCHES):
            events = []
            for i in range(PER_BATCH):
                seq = b * PER_BATCH + i + 1
                reading = i % 2 == 0
                events.append({
                    "id": str(uuid.uuid4()), "seq": seq, "kind": "meter_reading" if reading else "meter_health",
                    "severity": "info", "state": "observed", "priority": "reading" if reading else "state",
                    "wall_time": 1e9 + seq, "clock_synced": True, "alert_id": None, "recipients": [],
                    "payload": {"meter_id": "m1", "resident": "B1", "total_litres": float(seq)} if reading else {},
                })  # fmt: skip
            store.events.ingest(node_id, events, 1e9 + b, 1e9 + b)
    finally:
        store.close()
        done.set()


@pytest.mark.both_engines
def test_a_reader_following_the_cursor_misses_nothing_with_several_writer_processes(store_target):
    nodes = [f"cbxc-w{i}-meters" for i in range(WRITERS)]
    store = open_store(store_target)
    for n in nodes:
        store.nodes.register({"node_id": n, "role": "meter", "site": "changbai-xincun"}, f"tok-{n}", 1.0)
    store.close()  # no pool thread or connection of this process crosses the fork
    fork = multiprocessing.get_context("fork")
    flags = [fork.Event() for _ in nodes]
    writers = [fork.Process(target=_write, args=(store_target, n, f)) for n, f in zip(nodes, flags, strict=True)]
    for w in writers:
        w.start()
    store = open_store(store_target)
    try:
        seen: list[int] = []
        after = 0
        while True:
            writing = not all(f.is_set() for f in flags)
            page = store.events.page(after=after, limit=37)
            seen += [e["row"] for e in page]
            after = page[-1]["row"] if page else after
            if not writing and len(page) < 37:
                break
        for w in writers:
            w.join(30)
            assert w.exitcode == 0
        every = [e["row"] for e in store.events.page(limit=10_000)]
        assert len(every) == WRITERS * BATCHES * PER_BATCH
        assert seen == every  # nothing skipped, nothing twice, in order
    finally:
        for w in writers:
            if w.is_alive():
                w.kill()
        store.close()


def _reading(node_id: str, seq: int) -> dict:
    payload = {"meter_id": "m1", "resident": "B1", "total_litres": float(seq)}
    return {"id": str(uuid.uuid4()), "seq": seq, "kind": "meter_reading", "severity": "info", "state": "observed",
            "priority": "reading", "wall_time": 1e9 + seq, "clock_synced": True, "alert_id": None, "recipients": [],
            "payload": payload}  # fmt: skip


def test_a_batch_that_commits_late_is_not_skipped_by_a_reader(postgres_cluster):
    """Made to happen, not hoped for: batch A takes its positions and then waits (a row it must update is locked
    from outside); batch B takes later positions and commits; a reader asks for events meanwhile. It must not
    be answered B without A (its cursor would then be past A's positions for good)."""
    url = postgres_cluster.create_database("cursor")
    store = open_store(url)
    a, b = "cbxc-a-meters", "cbxc-b-meters"
    try:
        for n in (a, b):
            store.nodes.register({"node_id": n, "role": "meter", "site": "changbai-xincun"}, f"tok-{n}", 1.0)
        store.events.ingest(a, [_reading(a, 1)], 1e9, 1e9)  # A's meter now has its day row
        with psycopg.connect(url) as blocker:
            blocker.execute("SELECT * FROM water_days FOR UPDATE")  # A's next batch waits at its day row
            late = threading.Thread(target=store.events.ingest, args=(a, [_reading(a, 2)], 1e9, 1e9 + 1))
            late.start()
            _wait_for_lock_wait(url)
            store.events.ingest(b, [_reading(b, 1)], 1e9, 1e9 + 2)  # later positions, committed first
            answer: list[list[dict]] = []
            reader = threading.Thread(target=lambda: answer.append(store.events.page(after=1, limit=100)))
            reader.start()
            reader.join(1.0)  # time to be answered wrongly: B's reading without A's
            blocker.rollback()  # A goes on and commits
        late.join(10)
        reader.join(10)
        assert [e["node_id"] for e in answer[0]] in ([], [a, b])  # never B alone: the cursor would pass A's
    finally:
        store.close()


def _wait_for_lock_wait(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(500):
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.01)
    raise AssertionError("batch A never waited for its row")
