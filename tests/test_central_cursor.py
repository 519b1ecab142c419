"""The ``GET /events`` cursor with several writer processes (issue 15): positions are taken in one order, but
transactions commit in another; a reader following ``after`` must never pass a position that commits later
(PostgreSQL: the change feed's advisory lock, ``central.storage.changes``; SQLite: one writer at a time)."""

from __future__ import annotations

import multiprocessing
import uuid

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
