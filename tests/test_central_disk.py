"""The central's own disk fills: a real small ext4 filesystem (a loop device) under the central's SQLite file, or
under a throwaway PostgreSQL cluster of its own, filled to the last byte while a lift node uploads.

Each upload is refused 503 ``storage_error`` with Retry-After and nothing is acknowledged, so the node keeps every
alert; ``/health`` and the console's banner say the central cannot store (a full disk) while reads still answer;
once the file that filled the disk is deleted, every event arrives exactly once and both say so no more.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.pgcluster import ThrowawayCluster
from bench.small_disk import CannotMount, SmallDisk
from common.clock import ManualClock
from community.receivers import WebhookReceiver, free_port
from tests.conftest import eventually
from tests.console_helpers import add_user, alert_event, axe_violations, login, shot, wait_js
from tests.fault_helpers import NODE, assert_delivered_once, drain, fault_node, put_mix, step
from tests.fixtures.central import CentralHandle, config_document
from tests.test_central_service import serve_refuses

FAILING_AFTER_S = 0.5
LOW, FAILING = (
    "【中心磁盘空间不足】",
    "【中心故障】中心无法保存数据",
)  # the central's wait before it calls its storage failing (10 s), shortened for the tests


@pytest.fixture
def card(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    """96 MiB of ext4, in a folder PostgreSQL's own user can reach (pytest's are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="changbai-central-disk-"))
    base.chmod(0o755)
    try:
        disk = SmallDisk(base / "card", 98_304, "ext4")
    except CannotMount as exc:
        shutil.rmtree(base)
        pytest.skip(f"no small filesystem to fill: {exc}")
    monkeypatch.setattr("central.storage.health.FAILING_AFTER_S", FAILING_AFTER_S)
    try:
        yield disk
    finally:
        disk.unmount()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def on_card(card: SmallDisk, central_engine: str, tmp_path: Path) -> Iterator[Callable[..., CentralHandle]]:
    """``on_card(**sections)``: a central whose database lives on the card (its SQLite file, or its PostgreSQL
    cluster's data), started."""
    made: list[CentralHandle] = []
    clusters: list[ThrowawayCluster] = []

    def start(**sections: Any) -> CentralHandle:
        if central_engine == "postgresql":
            clusters.append(ThrowawayCluster(port=50_000 + os.getpid() % 5000, parent=card.root).start())
            handle = CentralHandle(tmp_path, config_document(**sections), clusters[-1].create_database("full"))
        else:
            handle = CentralHandle(card.root, config_document(**sections))
        made.append(handle)
        handle.start()
        return handle

    yield start
    for handle in made:
        handle.close()
    for cluster in clusters:
        cluster.stop()


def storage(central: CentralHandle) -> dict[str, Any]:
    answer = requests.get(f"{central.url}/api/v1/health", timeout=30)
    assert answer.status_code == 200  # the process answers: liveness is not storage
    return answer.json()["storage"]


@pytest.mark.both_engines
def test_a_full_disk_under_the_central_keeps_every_alert_on_the_node_and_the_desk_is_told(
    on_card: Callable[..., CentralHandle],
    card: SmallDisk,
    hooks: WebhookReceiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channels = [
        {"id": "desk-robot", "type": "wecom", "roles": ["operator"], "url": hooks.url("/wecom/desk")},
        {"id": "desk-hook", "type": "webhook", "roles": ["operator"], "url": hooks.url("/desk")},
        {"id": "desk-sms", "type": "sms", "roles": ["operator"], "url": hooks.url("/sms")},
        {"id": "family-hook", "type": "webhook", "roles": ["family"], "url": hooks.url("/family")},
    ]
    central, clock = on_card(notify={"channels": channels}), ManualClock()
    runtime = fault_node(tmp_path / "node", central.url, central.register(NODE, "elevator"), clock)
    before = put_mix(runtime, alerts=1, states=2, readings=5)
    drain(runtime, clock)
    assert storage(central)["state"] == "ok"
    # 96 MiB is below 1 GiB: beside a SQLite file the room is low from the start (PostgreSQL's disk is not seen)
    low = [] if central.engine == "postgresql" else [("/wecom/desk", LOW, 200), ("/desk", LOW, 200)]
    assert hooks.wait_for(lambda _: len(desk(hooks)) == len(low), 10.0) and desk(hooks) == low, hooks.received

    card.fill()
    made = put_mix(runtime)
    refused = step(runtime, clock)
    assert refused.acked == 0 and refused.retry_in_s is not None and refused.retry_in_s >= 30
    assert storage(central)["state"] == "ok"  # one refusal is not yet news
    clock.advance(30.0)
    time.sleep(FAILING_AFTER_S)
    assert step(runtime, clock).acked == 0
    said = storage(central)
    assert said["state"] == "failing" and said["reason"] == "disk_full", said
    assert "space" in said["error"] or "full" in said["error"]
    hooks.fail_next(1, 500, path="/desk")  # the desk's webhook is down at first: tried again a minute later
    assert hooks.wait_for(lambda _: len(desk(hooks)) == len(low) + 2, 10.0), hooks.received
    assert sorted(desk(hooks)[len(low) :]) == [("/desk", FAILING, 500), ("/wecom/desk", FAILING, 200)]
    (robot,) = [r.json()["text"]["content"] for r in hooks.received if FAILING in r.body.decode() and r.answered == 200]
    assert robot.startswith(FAILING + "\n自 ") and "（磁盘已满）" in robot and "请立即联系系统管理员" in robot
    (hook,) = [r.json() for r in hooks.received if r.path == "/desk" and r.answered == 500]
    assert (hook["alert_id"], hook["kind"], hook["kind_zh"], hook["reason"]) == (
        0,
        "central_storage",
        "中心存储",
        "storage_failing",
    )
    assert not {e.id for e in made} & {e["id"] for e in central.events(NODE)}  # reads answer; nothing half-stored
    assert sum(runtime.outbox.depth().values()) == len(made)

    card.free()
    drain(runtime, clock)
    assert_delivered_once(central, runtime, before + made)
    assert storage(central)["state"] == "ok"
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("central")]
    assert len([s for s in logged if s.startswith("storage error")]) == 1, logged  # not a line per refusal
    assert len([s for s in logged if s.startswith("storage works again")]) == 1, logged
    # the robot that was told hears it is over; the webhook that was never reached is not told either, and the
    # room, still low, is not said again the same day
    assert hooks.wait_for(lambda _: len(desk(hooks)) == len(low) + 3, 10.0), hooks.received
    assert desk(hooks)[-1] == ("/wecom/desk", "【中心已恢复】中心又能保存数据了", 200)
    assert "正在补传" in hooks.received[-1].json()["text"]["content"]
    time.sleep(1.0)  # the notifier's loops go on (a tick is 0.25 s)
    assert len(desk(hooks)) == len(low) + 3


def desk(hooks: WebhookReceiver) -> list[tuple[str, str, int]]:
    """What reached the desk's robot and webhook: (path, the message's title, the answer's status)."""
    titles = {"/desk": lambda r: r.json()["title"], "/wecom/desk": lambda r: r.json()["text"]["content"].split("\n")[0]}
    return [(r.path, titles[r.path](r), r.answered) for r in hooks.received if r.path in titles]


def test_the_console_says_the_central_cannot_store_while_its_disk_is_full(
    browser: Any, on_card: Callable[..., CentralHandle], card: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    central = on_card()
    add_user(central, "limin", "duty_desk", name="李敏", monkeypatch=monkeypatch)
    lift = central.register(NODE, "elevator", location="7号楼2单元 1号梯")
    page = login(browser, central, "limin")
    wait_js(page, "document.body.dataset.storage === 'low'")  # 96 MiB: below 1 GiB
    banner = page.inner_text("#banner")
    assert re.match(r"⚠ 中心磁盘空间不足：只剩 \d+ MB（共 \d+ MB）。.*请通知系统管理员", banner), banner
    assert axe_violations(page) == []  # its own colour, contrast included
    shot(page, "storage-low")

    card.fill()
    trapped = alert_event(NODE, "entrapment", recipients=["maintenance"], seconds_trapped=95.0)
    assert central.post_events(lift, [trapped]).json()["error"] == "storage_error"
    time.sleep(FAILING_AFTER_S)
    assert central.post_events(lift, [trapped]).status_code == 503
    wait_js(page, "document.body.dataset.storage === 'failing'", timeout_s=15)  # the next ping, within 5 s
    banner = page.inner_text("#banner")
    assert "中心无法保存数据（磁盘已满" in banner and "请立即通知系统管理员" in banner, banner
    assert page.is_visible("#banner") and axe_violations(page) == []
    shot(page, "storage-failing")

    card.free()
    assert central.post_events(lift, [trapped]).status_code == 200
    wait_js(page, "document.body.dataset.storage === 'low'", timeout_s=15)  # stored again; the room still low
    assert page.inner_text("#banner").startswith("⚠ 中心磁盘空间不足")
    page.wait_for_selector("article[data-severity=urgent]")  # the alarm the node kept is on the board


def test_a_central_started_on_a_full_disk_says_so_and_what_to_do(card: SmallDisk, tmp_path: Path) -> None:
    """SQLite alone says "disk I/O error" when it cannot make its WAL index: the line names the full disk."""
    central = CentralHandle(card.root, config_document())
    central.start()
    central.register(NODE, "elevator")
    central.close()
    card.fill()
    said = serve_refuses(central.config_path, central.db_path)
    assert f"The disk holding {card.root} is full (0 bytes free of" in said and "start again" in said


def test_a_central_started_on_a_full_disk_tells_the_desk_and_serves_once_there_is_room(
    card: SmallDisk, hooks: WebhookReceiver
) -> None:
    """With a channel for the desk, it waits instead of exiting: the desk hears it cannot store, and once the disk
    has room the central opens its database, tells the desk it is back and serves."""
    central = CentralHandle(card.root, config_document())
    central.start()
    central.register(NODE, "elevator")
    central.close()
    desk_hook = {"id": "desk-hook", "type": "webhook", "roles": ["operator"], "url": hooks.url("/desk")}
    central = CentralHandle(card.root, config_document(notify={"channels": [desk_hook]}))  # its config, not started
    card.fill()
    port = free_port()
    argv = [sys.executable, "-m", "central", "serve", "--config", str(central.config_path), "--db"]
    serve = subprocess.Popen([*argv, str(central.db_path), "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        assert hooks.wait_for(lambda got: len(got) == 1, 30.0), "the desk was not told"
        told = hooks.received[0].json()
        assert told["title"] == FAILING and "（磁盘已满）" in told["lines"][0] and told["reason"] == "storage_failing"
        assert serve.poll() is None  # waiting, not exited
        card.free()
        assert hooks.wait_for(lambda got: len(got) == 2, 30.0), "the desk was not told it is back"
        assert hooks.received[1].json()["title"] == "【中心已恢复】中心又能保存数据了"
        answer = eventually(lambda: _health(port), 30.0, 0.2, "the central serving")
        assert answer is not None and answer["storage"]["state"] == "ok"
    finally:
        serve.terminate()
        _, err = serve.communicate(timeout=30)
    assert "full (0 bytes free of" in err and "the duty desk is told; trying again every 10 s" in err, err


def _health(port: int) -> dict[str, Any] | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).json()
    except requests.RequestException:
        return None
