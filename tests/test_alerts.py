"""AlertBook: one incident = one alert id, stored before record returns, survives restart, re-notifies."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from common.alerts import LEGACY_COPY, AlertBook, adopt_legacy_copy, read_open
from common.catalogue import State
from common.clock import ManualClock
from common.config import OutboxSection
from common.events import Detection
from common.outbox import Outbox

NODE = "cbxc-b7-u2-lift1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


class Node:
    """An outbox + alert book on a directory, re-openable like a restarted node."""

    def __init__(self, directory: Path, clock: ManualClock, renotify_s: float = 300.0) -> None:
        self.directory = directory
        self.clock = clock
        self.outbox = Outbox(directory / "outbox.sqlite", OutboxSection(), clock, node_id=NODE)
        adopt_legacy_copy(directory, self.outbox)  # what NodeRuntime does on every start
        self.book = AlertBook(NODE, clock, self.outbox, renotify_s=renotify_s)

    def restart(self, clean: bool = True) -> Node:
        if clean:
            self.outbox.close()
        else:
            self.outbox._abandon()  # noqa: SLF001 - kill -9: nothing flushed, nothing closed
        return Node(self.directory, self.clock, self.book.renotify_s)


@pytest.fixture
def node(tmp_path: Path, clock: ManualClock) -> Node:
    return Node(tmp_path / NODE, clock)


def trapped(state: State, at: float = 0.0, key: str = "", **payload: object) -> Detection:
    return Detection("trapped_passenger", state, at, "urgent", payload, key)


def test_one_incident_is_one_alert(node: Node) -> None:
    raised = node.book.record(trapped("raised", floor=3), ("maintenance", "property_management"))
    again = node.book.record(trapped("raised", floor=3))
    update = node.book.record(trapped("updated", seconds=120))
    cleared = node.book.record(trapped("cleared"))
    assert raised.state == "raised" and raised.priority == "alert" and raised.alert_id
    assert again.state == "updated"  # a raise while open is an update, not a second alert
    assert update.state == "updated"
    assert cleared.state == "cleared"
    assert {e.alert_id for e in (raised, again, update, cleared)} == {raised.alert_id}
    assert cleared.recipients == ("maintenance", "property_management")  # kept from the raise
    assert node.book.open_alerts() == []
    next_one = node.book.record(trapped("raised"))
    assert next_one.state == "raised" and next_one.alert_id != raised.alert_id


def test_incidents_with_different_keys_are_different_alerts(node: Node) -> None:
    lift1 = node.book.record(trapped("raised", key="car-1"))
    lift2 = node.book.record(trapped("raised", key="car-2"))
    assert lift1.alert_id != lift2.alert_id
    assert lift1.payload["key"] == "car-1"
    assert node.book.record(trapped("cleared", key="car-1")).alert_id == lift1.alert_id
    assert [a.key for a in node.book.open_alerts()] == ["car-2"]


def test_observed_is_a_plain_state_event(node: Node) -> None:
    event = node.book.record(Detection("inspection_mode", "observed", 0.0, "info", {"active": True}))
    assert (event.priority, event.state, event.alert_id) == ("state", "observed", None)
    assert node.book.open_alerts() == []


def test_clear_without_open_alert_is_a_state_event(node: Node) -> None:
    event = node.book.record(trapped("cleared"))
    assert (event.priority, event.state, event.alert_id) == ("state", "cleared", None)


def test_update_without_open_alert_opens_it(node: Node) -> None:
    event = node.book.record(trapped("updated"))
    assert event.state == "raised" and event.alert_id
    assert node.book.is_open("trapped_passenger")


def test_the_event_is_durable_when_record_returns(node: Node) -> None:
    event = node.book.record(trapped("raised"))
    conn = sqlite3.connect(node.directory / "outbox.sqlite")  # another reader, as after a power cut
    try:
        ids = {row[0] for row in conn.execute("SELECT id FROM q_alert")}
        state = conn.execute("SELECT value FROM node_state WHERE key = 'alerts.open'").fetchone()[0]
    finally:
        conn.close()
    assert event.id in ids
    assert event.alert_id in state


@pytest.mark.parametrize("clean", [True, False], ids=["clean-restart", "kill-9"])
def test_open_alerts_survive_restart(node: Node, clean: bool) -> None:
    raised = node.book.record(trapped("raised", floor=2), ("maintenance",))
    node = node.restart(clean)
    [alert] = node.book.open_alerts()
    assert alert.alert_id == raised.alert_id and alert.recipients == ("maintenance",)
    assert node.book.record(trapped("raised")).state == "updated"
    cleared = node.book.record(trapped("cleared"))
    assert cleared.alert_id == raised.alert_id
    node = node.restart(clean)
    assert node.book.open_alerts() == []


def test_renotify_until_cleared(node: Node, clock: ManualClock) -> None:
    raised = node.book.record(trapped("raised", floor=5), ("maintenance",))
    assert node.book.due_renotify(clock.monotonic()) == []
    clock.advance(299)
    assert node.book.due_renotify(clock.monotonic()) == []
    clock.advance(2)
    [again] = node.book.due_renotify(clock.monotonic())
    assert (again.state, again.alert_id, again.priority) == ("updated", raised.alert_id, "alert")
    assert again.payload["renotify"] is True and again.payload["floor"] == 5
    assert again.payload["open_for_s"] == pytest.approx(301, abs=1)
    assert again.recipients == ("maintenance",)
    assert again.id in {e.id for e in node.outbox.batch(10)}
    assert node.book.due_renotify(clock.monotonic()) == []  # not again until another interval
    clock.advance(300)
    assert len(node.book.due_renotify(clock.monotonic())) == 1
    node.book.record(trapped("cleared"))
    clock.advance(1000)
    assert node.book.due_renotify(clock.monotonic()) == []


def test_an_update_resets_the_renotify_timer(node: Node, clock: ManualClock) -> None:
    node.book.record(trapped("raised"))
    clock.advance(200)
    node.book.record(trapped("updated"))
    clock.advance(200)
    assert node.book.due_renotify(clock.monotonic()) == []
    clock.advance(100)
    assert len(node.book.due_renotify(clock.monotonic())) == 1


def test_alert_open_before_restart_is_resent_at_once(node: Node, clock: ManualClock) -> None:
    raised = node.book.record(trapped("raised"))
    node = node.restart(clean=False)
    [again] = node.book.due_renotify(clock.monotonic())
    assert again.alert_id == raised.alert_id


def legacy_copy(alert_id: str, kind: str = "trapped_passenger") -> str:
    """An alerts.json as versions up to 2026-12 wrote it beside the outbox (OpenAlert.to_json of each)."""
    alert = {"alert_id": alert_id, "kind": kind, "key": "", "severity": "urgent", "raised_wall": 1000.0}
    return json.dumps([{**alert, "recipients": ["family"], "payload": {"floor": 3}, "updates": 2}])


def test_no_copy_beside_the_outbox(node: Node) -> None:
    node.book.record(trapped("raised"))
    node.book.record(trapped("cleared"))
    node.book.record(trapped("raised", key="car-2"))
    assert sorted(p.name for p in node.directory.iterdir() if not p.name.startswith("outbox.sqlite")) == []


def test_an_old_copy_is_taken_over_once_when_the_outbox_has_no_book(tmp_path: Path, clock: ManualClock) -> None:
    # an older version lost its database to corruption and kept its open alert in alerts.json; then upgraded
    directory = tmp_path / NODE
    directory.mkdir()
    (directory / LEGACY_COPY).write_text(legacy_copy("a-17"), encoding="utf-8")
    node = Node(directory, clock)
    assert not (directory / LEGACY_COPY).exists()  # read once, then the outbox is the only owner
    [alert] = node.book.open_alerts()
    assert (alert.alert_id, alert.recipients, alert.payload, alert.updates) == ("a-17", ("family",), {"floor": 3}, 2)
    assert node.book.record(trapped("updated")).alert_id == "a-17"  # the same incident goes on
    node = node.restart(clean=False)  # kill -9: the taken-over book is in the outbox, not in the gone file
    assert [a.alert_id for a in node.book.open_alerts()] == ["a-17"]
    assert node.book.record(trapped("cleared")).alert_id == "a-17"
    assert node.restart().book.open_alerts() == []


def test_an_old_copy_gives_way_to_the_outboxs_book(node: Node) -> None:
    raised = node.book.record(trapped("raised"))
    node.outbox.close()
    # the old version wrote the copy at the raise and the book at every event: the outbox's book is newer
    (node.directory / LEGACY_COPY).write_text(legacy_copy("stale"), encoding="utf-8")
    node = Node(node.directory, node.clock)
    assert [a.alert_id for a in node.book.open_alerts()] == [raised.alert_id]
    assert not (node.directory / LEGACY_COPY).exists()


def test_an_old_copy_stays_while_the_disk_refuses_writes(tmp_path: Path, clock: ManualClock) -> None:
    directory = tmp_path / NODE
    directory.mkdir()
    (directory / LEGACY_COPY).write_text(legacy_copy("a-17"), encoding="utf-8")
    outbox = Outbox(directory / "outbox.sqlite", OutboxSection(), clock, node_id=NODE)
    try:
        outbox._store.refuse(OSError(28, "No space left on device"))  # noqa: SLF001 - a full card at start
        assert outbox.volatile
        assert adopt_legacy_copy(directory, outbox) == 1
        assert "a-17" in (outbox.read_state("alerts.open") or "")  # in memory until the disk takes it
        assert (directory / LEGACY_COPY).exists()  # so the copy stays for the next start
    finally:
        outbox._abandon()  # noqa: SLF001


def test_an_unreadable_old_copy_is_dropped_and_the_node_starts(tmp_path: Path, clock: ManualClock) -> None:
    directory = tmp_path / NODE
    directory.mkdir()
    (directory / LEGACY_COPY).write_text("[{not json", encoding="utf-8")
    node = Node(directory, clock)
    assert node.book.open_alerts() == [] and not (directory / LEGACY_COPY).exists()


def test_another_process_reads_the_open_alerts_from_the_outbox(node: Node) -> None:
    path = node.directory / "outbox.sqlite"
    raised = node.book.record(trapped("raised"), ("maintenance",))
    # what the updater sees, while the node keeps its outbox open
    code = (
        "import json, sys; from pathlib import Path; from common.alerts import read_open;"
        "print(json.dumps(read_open(Path(sys.argv[1]))))"
    )
    seen = json.loads(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, check=True).stdout)
    assert [(a["alert_id"], a["severity"], a["kind"]) for a in seen] == [
        (raised.alert_id, "urgent", "trapped_passenger")
    ]
    node.book.record(trapped("cleared"))
    assert read_open(path) == []
    assert read_open(node.directory / "nothing.sqlite") == []
    assert not (node.directory / "nothing.sqlite").exists()  # a look never creates a file


def test_a_failed_store_leaves_the_book_unchanged(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    from common.outbox import OutboxError

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OutboxError("disk gone")

    monkeypatch.setattr(node.outbox, "put_many", broken)
    with pytest.raises(OutboxError):
        node.book.record(trapped("raised"))
    assert node.book.open_alerts() == []  # no alert believed sent that is not stored


def test_alerts_and_a_cores_state_are_stored_together_or_not_at_all(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.outbox import OutboxError

    detections = [(trapped("raised", key="a"), ()), (trapped("raised", key="b"), ())]
    real = node.outbox._store.commit  # noqa: SLF001

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OutboxError("disk gone")

    monkeypatch.setattr(node.outbox._store, "commit", broken)  # noqa: SLF001
    with pytest.raises(OutboxError):
        node.book.record_many(detections, state={"core": '{"open": ["a", "b"]}'})
    assert node.book.open_alerts() == [] and node.outbox.read_state("core") is None
    monkeypatch.setattr(node.outbox._store, "commit", real)  # noqa: SLF001
    events = node.book.record_many(detections, state={"core": '{"open": ["a", "b"]}'})
    assert [(e.state, e.payload["key"]) for e in events] == [("raised", "a"), ("raised", "b")]
    again = node.restart(clean=False)  # a crash right after: both alerts and the core's state are back
    assert sorted(a.key for a in again.book.open_alerts()) == ["a", "b"]
    assert again.outbox.read_state("core") == '{"open": ["a", "b"]}'


def test_open_alerts_survive_corruption_found_while_running_and_a_restart(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised = node.book.record(trapped("raised"), ("maintenance",))
    # the database goes bad while the node runs (nothing in it reads any more): the outbox moves it aside
    # and starts a fresh one
    db = node.outbox._store.db  # noqa: SLF001
    assert db is not None
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (node.directory / "outbox.sqlite").write_bytes(b"\x00garbage" * 512)
    node.outbox._store._recover(RuntimeError("simulated: database disk image is malformed"))  # noqa: SLF001
    # nothing of the old file reads: the outbox writes the book it knows into the fresh file itself
    assert (raised.alert_id or "-") in (node.outbox.read_state("alerts.open") or "")
    node = node.restart(clean=False)  # killed before any further alert event
    [alert] = node.book.open_alerts()
    assert alert.alert_id == raised.alert_id


def test_a_book_only_read_in_this_run_survives_corruption_found_while_running(node: Node) -> None:
    raised = node.book.record(trapped("raised"))
    node = node.restart()  # this run reads the book at start and writes nothing before the damage
    db = node.outbox._store.db  # noqa: SLF001
    assert db is not None
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (node.directory / "outbox.sqlite").write_bytes(b"\x00garbage" * 512)
    node.outbox._store._recover(RuntimeError("simulated: database disk image is malformed"))  # noqa: SLF001
    node = node.restart(clean=False)
    assert [a.alert_id for a in node.book.open_alerts()] == [raised.alert_id]


def test_open_alerts_carried_over_when_the_old_database_still_reads(node: Node) -> None:
    raised = node.book.record(trapped("raised"))
    node.outbox._store._recover(RuntimeError("simulated: a page of the queue is damaged"))  # noqa: SLF001
    assert (raised.alert_id or "-") in (node.outbox.read_state("alerts.open") or "")
    node = node.restart(clean=True)
    assert [a.alert_id for a in node.book.open_alerts()] == [raised.alert_id]


KILLED_AFTER_RECORD = """
import os, signal, sys
from pathlib import Path
from common.alerts import AlertBook, adopt_legacy_copy
from common.clock import SystemClock
from common.config import OutboxSection
from common.events import Detection
from common.outbox import Outbox
directory = Path(sys.argv[1])
outbox = Outbox(directory / "outbox.sqlite", OutboxSection(), SystemClock(), node_id=sys.argv[2])
adopt_legacy_copy(directory, outbox)
book = AlertBook(sys.argv[2], SystemClock(), outbox)
event = book.record(Detection("entrapment", "raised", 0.0, "urgent", {"seconds_trapped": 90.0}))
print(event.alert_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # nothing closed, nothing flushed
"""


def test_sigkill_right_after_an_alert_keeps_it_and_the_taken_over_one(tmp_path: Path, clock: ManualClock) -> None:
    directory = tmp_path / NODE
    directory.mkdir()
    (directory / LEGACY_COPY).write_text(legacy_copy("a-old"), encoding="utf-8")  # from before the upgrade
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_RECORD, str(directory), NODE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    raised = done.stdout.strip()
    node = Node(directory, clock)  # the restarted node
    assert sorted(a.alert_id for a in node.book.open_alerts()) == sorted(["a-old", raised])
    assert not (directory / LEGACY_COPY).exists()
