"""Outbox: durability, drain order, ack by id, dead letters, seq that only grows, the disk bound, corruption."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.catalogue import Priority, State
from common.clock import ManualClock
from common.config import OutboxSection
from common.events import Event, make_event
from common.outbox import Outbox

NODE = "test-node-1"


def event(kind: str = "flow", priority: Priority = "reading", **payload: object) -> Event:
    state: State = "raised" if priority == "alert" else "observed"
    return make_event(
        NODE,
        kind,
        wall_time=1.7e9,
        clock_synced=True,
        priority=priority,
        state=state,
        payload=payload,
    )


def seq(stored: Event) -> int:
    """The seq of an event the outbox stored (it always has one)."""
    assert stored.seq is not None
    return stored.seq


def stored_ids(path: Path) -> dict[str, set[str]]:
    """What another process would see in the file right now (a separate connection)."""
    conn = sqlite3.connect(path)
    try:
        return {
            prio: {row[0] for row in conn.execute(f"SELECT id FROM q_{prio}")} for prio in ("alert", "state", "reading")
        }
    finally:
        conn.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / NODE / "outbox.sqlite"


_opened: list[Outbox] = []


def open_outbox(path: Path, clock: ManualClock, **section: Any) -> Outbox:
    """An outbox the test may close itself (a restart); every one still open is closed after the test, also
    when an assertion failed half-way."""
    box = Outbox(path, OutboxSection(**section), clock)
    _opened.append(box)
    return box


@pytest.fixture(autouse=True)
def _close_every_outbox() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def test_drain_order_is_alert_then_state_then_reading_in_creation_order(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    made = [
        box.put(event("flow", "reading", n=1)),
        box.put(event("door", "state", n=2)),
        box.put(event("trapped", "alert", n=3)),
        box.put(event("flow", "reading", n=4)),
        box.put(event("trapped", "alert", n=5)),
        box.put(event("door", "state", n=6)),
    ]
    assert [seq(e) for e in made] == sorted(seq(e) for e in made)
    assert len({e.seq for e in made}) == 6
    drained = box.batch(100)
    assert [e.payload["n"] for e in drained] == [3, 5, 2, 6, 1, 4]
    assert [e.priority for e in box.batch(3)] == ["alert", "alert", "state"]
    assert drained[0] == made[2]  # the stored event is exactly what put returned


def test_alerts_and_state_are_on_disk_when_put_returns(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=5.0)
    alert = box.put(event("trapped", "alert"))
    state = box.put(event("door", "state"))
    on_disk = stored_ids(path)
    assert alert.id in on_disk["alert"]
    assert state.id in on_disk["state"]


def test_readings_are_group_committed_by_time(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=5.0, reading_commit_max=100)
    readings = [box.put(event(n=i)) for i in range(3)]
    assert stored_ids(path)["reading"] == set()  # waiting in memory: the documented window
    assert box.depth()["reading"] == 3
    assert box.next_flush_at() == pytest.approx(clock.monotonic() + 5.0)
    clock.advance(4.9)
    assert box.flush_due() == 0
    clock.advance(0.2)
    assert box.flush_due() == 3
    assert stored_ids(path)["reading"] == {r.id for r in readings}


def test_readings_are_group_committed_by_count(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=60.0, reading_commit_max=4)
    readings = [box.put(event(n=i)) for i in range(5)]
    assert stored_ids(path)["reading"] == {r.id for r in readings[:4]}


def test_an_alert_commits_waiting_readings_with_it(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=60.0)
    reading = box.put(event(n=1))
    box.put(event("trapped", "alert"))
    assert reading.id in stored_ids(path)["reading"]


def test_window_zero_makes_readings_durable_at_put(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    reading = box.put(event(n=1))
    assert reading.id in stored_ids(path)["reading"]


def test_put_many_is_durable_and_ordered(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock)
    stored = box.put_many([event(n=i) for i in range(50)] + [event("trapped", "alert")])
    assert [e.seq for e in stored] == list(range(seq(stored[0]), seq(stored[0]) + 51))
    assert len(stored_ids(path)["reading"]) == 50
    assert box.batch(1)[0].priority == "alert"


def test_ack_deletes_exactly_the_acknowledged_ids(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    made = [box.put(event(n=i)) for i in range(10)]
    sent = box.batch(6)
    acked = [sent[0].id, sent[2].id, sent[5].id]
    assert box.ack([*acked, "not-an-id-we-have", acked[0]]) == 3
    left = {e.id for e in box.batch(100)}
    assert left == {e.id for e in made} - set(acked)
    assert box.ack(acked) == 0  # acknowledging again deletes nothing more


def test_ack_of_ids_never_handed_out_and_after_restart(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    made = [box.put(event(n=i)) for i in range(4)]
    box.close()
    box = open_outbox(path, clock)
    assert box.ack([made[1].id, made[3].id]) == 2
    assert [e.id for e in box.batch(10)] == [made[0].id, made[2].id]


def test_waiting_readings_can_be_sent_and_acked_without_touching_disk(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=5.0)
    reading = box.put(event(n=1))
    assert [e.id for e in box.batch(10)] == [reading.id]
    assert box.ack([reading.id]) == 1
    assert box.depth() == {"alert": 0, "state": 0, "reading": 0}
    clock.advance(10)
    assert box.flush_due() == 0
    assert stored_ids(path)["reading"] == set()


def test_dead_letter_is_kept_and_reported(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=5.0)
    bad = box.put(event("weird", "state"))
    waiting = box.put(event(n=2))  # still in the group-commit window
    assert box.dead_letter(bad.id, "HTTP 422: kind not allowed")
    assert box.dead_letter(waiting.id, "rejected: too large")
    assert not box.dead_letter("unknown-id", "x")
    assert box.depth() == {"alert": 0, "state": 0, "reading": 0}
    box.close()
    box = open_outbox(path, clock)
    assert box.stats()["dead_letters"] == 2
    letters = {d["id"]: d for d in box.dead_letters()}
    assert letters[bad.id]["reason"] == "HTTP 422: kind not allowed"
    assert letters[bad.id]["kind"] == "weird"
    assert box.batch(10) == []


def test_seq_only_grows_across_clean_restart_without_a_gap(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    first = [seq(box.put(event(n=i))) for i in range(3)]
    box.ack([e.id for e in box.batch(10)])  # the queue is empty: seq must not restart
    box.close()
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    nxt = box.put(event(n=9)).seq
    assert nxt == first[-1] + 1
    assert [e.kind for e in box.batch(10)] == ["flow"]  # no resume note after a clean stop


def test_unclean_stop_leaves_an_explained_gap_and_never_reuses_a_number(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=30.0, reading_commit_max=50)
    alert = box.put(event("trapped", "alert"))
    lost = [box.put(event(n=i)) for i in range(5)]  # in memory when the "power goes"
    box._abandon()  # noqa: SLF001 - a crash: no flush, no clean close
    box = open_outbox(path, clock, reading_commit_window_s=30.0, reading_commit_max=50)
    after = box.put(event("trapped", "alert"))
    assert seq(after) > max(seq(e) for e in lost)
    notes = [e for e in box.batch(100) if e.kind == "outbox_resumed"]
    assert len(notes) == 1
    payload = notes[0].payload
    assert payload["seq_not_stored_from"] == seq(alert) + 1
    assert payload["seq_not_stored_from"] <= min(seq(e) for e in lost)
    assert payload["seq_not_stored_to"] >= max(seq(e) for e in lost)
    assert payload["seq_not_stored_to"] < after.seq


def test_disk_bound_drops_oldest_readings_never_alerts(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, max_mb=1.0, reading_commit_window_s=0.0)
    alerts = []
    readings = []
    for i in range(2000):  # about 1.5 MB of readings, one transaction each (fewer, larger ones: a faster suite)
        readings.append(box.put(event(n=i, text="x" * 600)))
        if i % 170 == 0:
            alerts.append(box.put(event("trapped", "alert", n=i)))
    stats = box.stats()
    assert stats["db_bytes"] <= stats["db_limit_bytes"]
    assert path.stat().st_size <= 1024 * 1024
    assert stats["dropped"]["reading"] > 0
    assert stats["dropped"]["alert"] == 0
    left = box.batch(100_000)
    kept_alerts = [e.id for e in left if e.priority == "alert"]
    assert kept_alerts == [a.id for a in alerts]
    kept_readings = [e.id for e in left if e.priority == "reading"]
    # the newest survive: what is left is a suffix of what was put
    assert kept_readings == [r.id for r in readings[-len(kept_readings) :]]
    assert stats["dropped"]["reading"] + len(kept_readings) == len(readings)
    notes = [e for e in left if e.kind == "outbox_dropped"]
    assert sum(n.payload["count"] for n in notes) == stats["dropped"]["reading"]
    box.close()
    assert open_outbox(path, clock).stats()["dropped"]["reading"] == stats["dropped"]["reading"]


def test_alerts_are_kept_even_over_the_bound(path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    box = open_outbox(path, clock, max_mb=1.0)
    with caplog.at_level(logging.ERROR, logger="common.outbox"):
        made = [box.put(event("trapped", "alert", text="y" * 1500)) for _ in range(1000)]  # about 1.6 MB
    assert box.depth()["alert"] == len(made)
    assert box.stats()["dropped"]["alert"] == 0
    assert "alerts are never dropped" in caplog.text


def test_corrupt_file_is_moved_aside_and_a_fresh_outbox_reports_it(
    path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    before = [seq(box.put(event(n=i))) for i in range(1200)]  # passes a reservation block: the seq mark is written
    box.close()
    path.write_bytes(b"this is not an sqlite database" * 100)
    with caplog.at_level(logging.CRITICAL, logger="common.outbox"):
        box = open_outbox(path, clock)
    assert "CORRUPT" in caplog.text
    aside = [p for p in path.parent.iterdir() if ".corrupt-" in p.name]
    assert aside and aside[0].read_bytes().startswith(b"this is not")
    events = box.batch(10)
    assert [e.kind for e in events] == ["outbox_corrupt"]
    assert seq(events[0]) > max(before)
    assert box.stats()["corrupt_recoveries"] == 1
    after = box.put(event("trapped", "alert"))
    assert seq(after) > seq(events[0])


def test_corruption_found_while_running_is_recovered(
    path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    box.put(event(n=1))
    # damage every page after the header while the outbox is open (an SD card going bad); SQLite's page cache
    # hides it from this connection, so the next write fails the way SQLite reports it
    db = box._store.db  # noqa: SLF001
    assert db is not None
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)
    path.write_bytes(bytes(data))
    real_write = db.write
    calls = []

    def failing_write(*args: Any, **kwargs: Any) -> dict:
        calls.append(1)
        if len(calls) == 1:
            error = sqlite3.DatabaseError("database disk image is malformed")
            error.sqlite_errorcode = 11
            raise error
        return real_write(*args, **kwargs)

    monkeypatch.setattr(box._store.db, "write", failing_write)  # noqa: SLF001
    alert = box.put(event("trapped", "alert"))
    kinds = [e.kind for e in box.batch(10)]
    assert "trapped" in kinds and "outbox_corrupt" in kinds
    assert alert.id in {e.id for e in box.batch(10)}


def test_unreadable_payload_value_does_not_lose_an_alert(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock)
    stored = box.put(event("trapped", "alert", where=Path("/dev/ttyUSB0")))
    assert box.batch(1)[0].payload["where"] == "/dev/ttyUSB0"
    assert stored.id == box.batch(1)[0].id


def test_node_state_is_written_with_the_event(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock)
    box.put(event("trapped", "alert"), state={"alerts.open": '["a"]'})
    box.close()
    box = open_outbox(path, clock)
    assert box.read_state("alerts.open") == '["a"]'
    box.put(event("trapped", "alert"), state={"alerts.open": None})
    assert box.read_state("alerts.open") is None


def test_concurrent_put_batch_ack_loses_nothing(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=1.0, reading_commit_max=7)
    made: list[Event] = []
    acked: set[str] = set()
    lock = threading.Lock()
    done = threading.Event()

    def producer(priority: Priority) -> None:
        for i in range(300):
            stored = box.put(event("p", priority, n=i))
            with lock:
                made.append(stored)

    def consumer() -> None:
        while not done.is_set() or sum(box.depth().values()) > 0:
            batch = box.batch(25)
            box.ack([e.id for e in batch])
            with lock:
                acked.update(e.id for e in batch)

    threads = [threading.Thread(target=producer, args=(p,)) for p in ("alert", "state", "reading")]
    drain = threading.Thread(target=consumer)
    drain.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    drain.join(30)
    assert not drain.is_alive()
    assert len({e.seq for e in made}) == 900
    assert acked == {e.id for e in made}
    assert box.depth() == {"alert": 0, "state": 0, "reading": 0}


def test_put_refuses_an_unknown_priority(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock)
    with pytest.raises(ValueError, match="priority"):
        box.put(event("x", "urgent"))  # type: ignore[arg-type]  # the wrong value is the test


def test_stored_json_is_the_wire_form() -> None:
    import json

    from common.outbox import event_json

    made = event("trapped", "alert", floor=3, nested={"a": [1, 2]})
    made = Event(**{**made.__dict__, "seq": 42, "recipients": ("family",), "alert_id": "a-1"})
    assert json.loads(event_json(made)) == json.loads(json.dumps(made.to_wire()))
    assert Event.from_wire(json.loads(event_json(made))) == made


def test_database_is_readable_by_its_owner_only(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock)
    box.put(event("trapped", "alert"))
    assert path.stat().st_mode & 0o077 == 0
    assert Path(str(path) + "-wal").stat().st_mode & 0o077 == 0


def test_what_still_reads_from_a_damaged_file_is_carried_over(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    alerts = [box.put(event("trapped", "alert", n=i)) for i in range(3)]
    box.put_many([event(n=i, text="r" * 300) for i in range(3000)])  # the readings fill the pages after them
    box.close()
    data = bytearray(path.read_bytes())
    cut = len(data) // 2
    data[cut:] = b"\xa5" * (len(data) - cut)  # the second half of the card is garbage
    path.write_bytes(bytes(data))
    box = open_outbox(path, clock)
    assert box.corrupt_recoveries == 1
    kept = box.batch(10)
    assert [e.id for e in kept[:3]] == [a.id for a in alerts]  # same ids and numbers as before
    assert [e.seq for e in kept[:3]] == [a.seq for a in alerts]
    [note] = [e for e in box.batch(10_000) if e.kind == "outbox_corrupt"]
    assert note.payload["salvaged_events"] >= 3
    assert seq(note) > 3000


def test_the_resume_gap_starts_near_the_last_acknowledged_number(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0, reading_commit_max=10)  # blocks of 64
    sent = []
    for chunk in range(20):  # a node that delivers as it goes, passing a few reservations
        sent += [box.put(event("door", "state", n=chunk * 10 + i)) for i in range(10)]
        assert box.ack([e.id for e in box.batch(1000)]) == 10
    box._abandon()  # noqa: SLF001 - crash
    box = open_outbox(path, clock)
    [note] = [e for e in box.batch(10) if e.kind == "outbox_resumed"]
    # the floor is written with each reservation: at most a block behind, never past what was acknowledged
    assert seq(sent[-1]) - 64 - 10 < note.payload["seq_not_stored_from"] <= seq(sent[-1]) + 1
    assert note.payload["seq_not_stored_from"] > 1


def test_check_reports_ok_and_damage(path: Path, clock: ManualClock) -> None:
    box = open_outbox(path, clock, reading_commit_window_s=0.0)
    box.put_many([event(n=i, text="c" * 300) for i in range(2000)])
    assert box.check() == "ok"
    db = box._store.db  # noqa: SLF001
    assert db is not None
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages are in the main file now
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = b"\x5a" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    assert box.check() != "ok"  # the self-test sees a card going bad
    box._abandon()  # noqa: SLF001


def test_a_full_disk_drops_readings_to_store_the_alert(
    path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without a reserve file to release, a full disk costs the oldest quarter of the readings
    box = open_outbox(path, clock, reading_commit_window_s=0.0, reserve_mb=0.0)
    readings = [box.put(event(n=i)) for i in range(40)]
    db = box._store.db  # noqa: SLF001
    assert db is not None
    real_write = db.write
    calls = []

    def full_once(*args: Any, **kwargs: Any) -> dict:
        calls.append(1)
        if len(calls) == 1:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13
            raise error
        return real_write(*args, **kwargs)

    monkeypatch.setattr(box._store.db, "write", full_once)  # noqa: SLF001
    alert = box.put(event("trapped", "alert"))
    kept = box.batch(100)
    assert kept[0].id == alert.id
    assert box.stats()["dropped"]["reading"] == 10  # a quarter of the readings, the oldest
    assert [e.id for e in kept if e.kind == "flow"] == [r.id for r in readings[10:]]
