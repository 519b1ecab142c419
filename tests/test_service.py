"""NodeRuntime: the run loop, sd_notify (a real unix datagram socket), the watchdog, tick errors, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.clock import ManualClock
from common.events import Detection
from common.service import STORM_CLEAR_S, STORM_COUNT, NodeRuntime, systemd_notify, watchdog_interval_s
from tests.fixtures.central import CentralHandle
from tests.sync_helpers import FakeCentral, fake_central, node_config

REPO = Path(__file__).resolve().parent.parent


class NotifySocket:
    """What systemd listens on: a unix datagram socket; ``messages`` are what the node sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.01)

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.close()


@pytest.fixture
def fake() -> Iterator[FakeCentral]:
    with fake_central() as central:
        yield central


@pytest.fixture
def runtime(tmp_path: Path, fake: FakeCentral) -> Iterator[NodeRuntime]:
    node = NodeRuntime(node_config(tmp_path, fake.url, fake.token), ManualClock())
    yield node
    node.stop()


def test_systemd_notify_sends_a_datagram(notify: NotifySocket) -> None:
    assert systemd_notify("READY=1")
    assert notify.messages() == ["READY=1"]


def test_systemd_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"changbai-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd_notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"


def test_systemd_notify_without_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd_notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not systemd_notify("READY=1")


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None  # meant for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 15.0


def test_run_loop_notifies_ticks_and_stops(
    notify: NotifySocket, runtime: NodeRuntime, fake: FakeCentral, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    seen: list[float] = []

    def tick(now: float) -> None:
        seen.append(now)
        runtime.record_reading("flow", {"litres": len(seen)})
        clock.advance(10)  # the tick moves the simulated time on
        if len(seen) == 5:
            runtime.request_stop()

    runtime.run(tick, 10.0)
    assert len(seen) == 5
    assert seen == sorted(seen) and seen[1] - seen[0] >= 10
    messages = notify.messages()
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"
    assert messages.count("WATCHDOG=1") >= 4
    # graceful stop: every reading was delivered by the uploader thread or is on disk (group commit flushed)
    conn = sqlite3.connect(runtime.state_dir / "outbox.sqlite")
    try:
        on_disk = {row[0] for row in conn.execute("SELECT id FROM q_reading")}
    finally:
        conn.close()
    delivered = {i for i, e in fake.events.items() if e["kind"] == "flow"}
    assert len(on_disk | delivered) == 5


def test_watchdog_is_not_pinged_while_a_tick_hangs(
    notify: NotifySocket, tmp_path: Path, fake: FakeCentral, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.clock import SystemClock

    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 0.05 s while alive
    node = NodeRuntime(node_config(tmp_path, fake.url, fake.token), SystemClock())
    release = threading.Event()
    entered = threading.Event()
    calls = []

    def tick(_now: float) -> None:
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            release.wait(10)
        else:
            node.request_stop()

    loop = threading.Thread(target=node.run, args=(tick, 0.01))
    loop.start()
    assert entered.wait(10)
    hung = [m for m in notify.messages() if m == "WATCHDOG=1"]
    threading.Event().wait(0.3)  # six ping intervals with the tick stuck
    hung += [m for m in notify.messages() if m == "WATCHDOG=1"]
    release.set()
    loop.join(10)
    assert not loop.is_alive()
    assert hung == []
    assert "WATCHDOG=1" in notify.messages() or len(calls) >= 2


def test_a_failing_tick_is_counted_and_the_node_keeps_running(
    runtime: NodeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    calls = []

    def tick(now: float) -> None:
        calls.append(now)
        clock.advance(1)
        if len(calls) == 3:
            raise KeyError("register 40001")
        if len(calls) == 6:
            runtime.request_stop()

    runtime.run(tick, 1.0)
    assert len(calls) == 6
    health = runtime.health()
    assert health["tick_errors"] == 1 and health["ticks"] == 6
    assert "KeyError" in health["last_tick_error"]
    assert "Traceback" in caplog.text and "register 40001" in caplog.text
    assert health["exception_storm"] is False


def test_an_exception_storm_raises_a_node_fault_alert_and_clears(runtime: NodeRuntime) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)

    def broken(_now: float) -> None:
        raise OSError("serial port gone")

    for _ in range(STORM_COUNT):
        runtime.run_tick(broken, clock.monotonic())
        runtime.housekeeping(clock.monotonic())
        clock.advance(1)
    assert runtime.health()["exception_storm"] is True
    [alert] = runtime.alerts.open_alerts()
    assert alert.kind == "node_fault" and alert.recipients == ("maintenance",)
    clock.advance(STORM_CLEAR_S + 1)
    assert runtime.run_tick(lambda _now: None, clock.monotonic())
    runtime.housekeeping(clock.monotonic())
    assert runtime.health()["exception_storm"] is False
    assert runtime.alerts.open_alerts() == []
    states = [e.state for e in runtime.outbox.batch(50) if e.kind == "node_fault"]
    assert states[0] == "raised" and states[-1] == "cleared"
    assert set(states[1:-1]) <= {"updated"}  # re-sent while open, if the quiet time passed a re-notify


def test_emit_and_readings_reach_the_outbox(runtime: NodeRuntime) -> None:
    alert = runtime.emit(Detection("trapped_passenger", "raised", 0.0, "urgent", {"floor": 1}), ("maintenance",))
    value = runtime.record_reading("flow", {"litres": 12.5})
    runtime.set_health(last_sensor_read=123.0)
    runtime.set_health(bus_errors=2)
    assert [e.id for e in runtime.outbox.batch(10)] == [alert.id, value.id]
    assert value.priority == "reading" and value.node_id == runtime.node_id
    health = runtime.health()
    assert health["last_sensor_read"] == 123.0 and health["bus_errors"] == 2 and health["open_alerts"] == 1


def test_housekeeping_renotifies_open_alerts(runtime: NodeRuntime) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    raised = runtime.emit(Detection("trapped_passenger", "raised", 0.0, "urgent"))
    clock.advance(runtime.alerts.renotify_s + 1)
    runtime.housekeeping(clock.monotonic())
    again = [e for e in runtime.outbox.batch(10) if e.state == "updated"]
    assert [e.alert_id for e in again] == [raised.alert_id]


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from common.service import NodeRuntime
    from tests.sync_helpers import node_config

    node = NodeRuntime(node_config(Path(sys.argv[1]), "http://127.0.0.1:9", "t"))
    count = 0

    def tick(now):
        global count
        count += 1
        node.record_reading("flow", {"n": count})
        if count == 3:
            print("ticking", flush=True)

    node.run(tick, 0.02)
    print(f"stopped after {count}", flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully(tmp_path: Path, signum: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NOTIFY_SOCKET", None)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ticking"
        child.send_signal(signum)
        out, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    count = int(out.strip().rsplit(" ", 1)[1])
    conn = sqlite3.connect(tmp_path / "data" / "test-node-1" / "outbox.sqlite")
    try:
        stored = conn.execute("SELECT count(*) FROM q_reading").fetchone()[0]
        clean = conn.execute("SELECT value FROM meta WHERE key = 'clean_close'").fetchone()[0]
    finally:
        conn.close()
    assert stored == count  # every reading, including the group-commit window, flushed on the way out
    assert clean == "1"


def test_an_incident_end_to_end_on_a_fast_clock_is_one_alert_at_the_central(
    central: CentralHandle, tmp_path: Path
) -> None:
    """A lift incident through the whole node runtime on a fast clock: raised, re-sent while open, cleared,
    delivered to the real central as one alert."""
    from common.clock import FastClock

    token = central.register("cbxc-b7-u2-lift1", "elevator")
    config = node_config(tmp_path, central.url, token, node_id="cbxc-b7-u2-lift1", role="elevator")
    clock = FastClock(speed=200.0)
    node = NodeRuntime(config, clock, renotify_s=60.0)
    start = clock.monotonic()
    sent: list = []

    def tick(now: float) -> None:
        elapsed = now - start
        if elapsed >= 10 and not sent:
            sent.append(
                node.emit(Detection("trapped_passenger", "raised", now, "urgent", {"floor": 4}), ("maintenance",))
            )
        elif elapsed >= 200 and len(sent) == 1:
            sent.append(node.emit(Detection("trapped_passenger", "cleared", now, "info")))
        elif len(sent) == 2 and sum(node.outbox.depth().values()) == 0 or elapsed > 3000:
            node.request_stop()

    node.run(tick, 1.0)
    assert len(sent) == 2
    [alert] = [a for a in central.alerts() if a["kind"] == "trapped_passenger"]
    assert alert["alert_id"] == sent[0].alert_id
    assert alert["on_site"] == "cleared"
    assert alert["count"] >= 4  # raised, re-sent at least twice in 190 s with a 60 s interval, cleared
    states = [e["state"] for e in central.events("cbxc-b7-u2-lift1", kind="trapped_passenger")]
    assert states[0] == "raised" and states[-1] == "cleared" and set(states[1:-1]) == {"updated"}


def test_an_outbox_failure_in_housekeeping_does_not_stop_the_loop(
    runtime: NodeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.outbox import OutboxError

    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    real_renotify = runtime.alerts.due_renotify
    failures: list[int] = []

    def flaky_renotify(now: float) -> list:
        if not failures:
            failures.append(1)
            raise OutboxError("disk I/O error")
        return real_renotify(now)

    monkeypatch.setattr(runtime.alerts, "due_renotify", flaky_renotify)
    ticks = []

    def tick(now: float) -> None:
        ticks.append(now)
        clock.advance(1)
        if len(ticks) == 3:
            runtime.request_stop()

    runtime.run(tick, 1.0)
    assert len(ticks) == 3
    assert runtime.health()["tick_errors"] == 1 and "OutboxError" in runtime.health()["last_tick_error"]
