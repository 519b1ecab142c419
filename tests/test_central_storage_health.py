"""The central's storage health on its own (``central.storage.health``): when a run of errors becomes "failing",
what an upload stored does, which errors count, the reason codes, and a log line a minute rather than a request."""

from __future__ import annotations

import logging

import pytest

from central.notify import outage
from central.notify.config import ChannelSection
from central.notify.outage import OutageNotice
from central.notify.retry import Outcome
from central.storage import health as health_module
from central.storage.errors import StorageError, StorageIntegrityError, StorageUnavailable
from central.storage.health import StorageHealth, reason


class Now:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.t = 1_000_000.0
        monkeypatch.setattr(health_module.time, "time", lambda: self.t)
        monkeypatch.setattr(health_module.time, "monotonic", lambda: self.t)


def refuse(health: StorageHealth, exc: StorageError) -> None:
    """A node's upload that the engine refuses with ``exc``, answered 503 (central/errors.py)."""
    health.refused(health.failed(exc))


def test_refused_uploads_become_failing_only_when_they_go_on_and_an_upload_stored_ends_it(monkeypatch, caplog):
    now, health = Now(monkeypatch), StorageHealth()
    full = StorageUnavailable("OperationalError: database or disk is full")
    refuse(health, full)
    assert health.to_json()["state"] == "ok"  # one refusal (a lock held too long) is not news
    now.t += 9.0
    refuse(health, full)
    assert health.to_json()["state"] == "ok"
    now.t += 1.0
    refuse(health, full)
    said = health.to_json()
    assert said == {
        "state": "failing",
        "since": 1_000_000.0,
        "reason": "disk_full",
        "error": str(full),
        "last_stored": None,
    }
    for _ in range(100):  # a thousand nodes retrying: one line a minute
        now.t += 1.0
        refuse(health, full)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert (
        len(lines) == 2
        and lines[0].startswith("storage error: StorageUnavailable")
        and lines[1].startswith(
            "storage errors: 52 in the last 60 s (nodes keep their events); the last: StorageUnavailable"
        )
    )
    health.stored()
    assert health.to_json() == {"state": "ok", "last_stored": now.t}
    assert "stored after 103 refused in 110 s" in caplog.records[-1].getMessage()
    refuse(health, full)
    now.t += 20.0
    health.stored()  # an upload stored between two refusals: not failing
    refuse(health, full)
    assert health.to_json()["state"] == "ok"


def test_only_refused_uploads_make_it_failing_not_a_constraint_or_a_background_jobs_trouble(monkeypatch, caplog):
    now, health = Now(monkeypatch), StorageHealth()
    for _ in range(3):
        refuse(health, StorageIntegrityError("IntegrityError: UNIQUE constraint failed"))
        health.failed(StorageUnavailable("OperationalError: no such table: deliveries"))  # the notifier's, say
        now.t += 10.0
    assert health.to_json()["state"] == "ok"
    assert [r.getMessage() for r in caplog.records] == [
        "storage error: StorageUnavailable: OperationalError: no such table: deliveries"
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("OperationalError: database or disk is full", "disk_full"),
        ('postgresql://c: DiskFull: could not extend file "base/16384/16419": No space left on device', "disk_full"),
        ("OperationalError: attempt to write a readonly database", "read_only"),
        ("DatabaseError: database disk image is malformed", "damaged"),
        ("postgresql://c: OperationalError: connection is bad: server closed the connection", "unreachable"),
        ("postgresql://c: PoolTimeout: couldn't get a connection after 30.00 sec", "unreachable"),
        ("OperationalError: database is locked", "other"),
    ],
)
def test_the_reason_code_of_each_engines_words(error, code):
    assert reason(error) == code


def test_the_desk_is_told_once_a_spell_retried_a_minute_later_and_told_it_is_over(monkeypatch):
    now = Now(monkeypatch)
    monkeypatch.setattr(outage.time, "monotonic", lambda: now.t)
    health, sent = StorageHealth(), []
    answers = {"robot": [False, True, True], "hook": [True, True]}  # the robot is down at first

    def send(channel, message):
        sent.append((channel.id, message.reason))
        return Outcome(answers[channel.id].pop(0), detail="refused")

    channels = (
        ChannelSection(id="robot", type="wecom", roles=("operator",), url="http://127.0.0.1:9/r"),
        ChannelSection(id="hook", type="webhook", roles=("operator", "family"), url="http://127.0.0.1:9/h"),
        ChannelSection(id="sms", type="sms", roles=("operator",), url="http://127.0.0.1:9/s"),  # no numbers known
        ChannelSection(id="mail", type="email", roles=("operator",), smtp_host="127.0.0.1", from_addr="c@x.test"),
        ChannelSection(id="family", type="webhook", roles=("family",), url="http://127.0.0.1:9/f"),
    )
    notice = OutageNotice(health.to_json, channels, send)
    mailed = ChannelSection(
        id="mail", type="email", roles=("operator",), smtp_host="h", from_addr="c@x.test", to=("d@x.test",)
    )
    assert [c.id for c in OutageNotice(health.to_json, (*channels, mailed), send).channels] == ["robot", "hook", "mail"]
    assert [c.id for c in notice.channels] == ["robot", "hook"]  # no numbers for SMS, no address for that e-mail
    full = StorageUnavailable("OperationalError: database or disk is full")
    notice.check()
    refuse(health, full)
    now.t += 10.0
    refuse(health, full)
    notice.check()
    assert sent == [("robot", "storage_failing"), ("hook", "storage_failing")]
    now.t += 30.0
    notice.check()  # the robot's retry is not due yet
    now.t += 30.0
    notice.check()
    assert sent[2:] == [("robot", "storage_failing")]
    notice.check()
    assert len(sent) == 3  # once a spell
    health.stored()
    notice.check()
    assert sorted(sent[3:]) == [("hook", "storage_back"), ("robot", "storage_back")]


def test_the_room_beside_a_sqlite_file_is_low_below_a_gibibyte_or_a_twentieth(monkeypatch, tmp_path):
    usage = {"total": 16 * 1024**3, "used": 0, "free": 2 * 1024**3}
    monkeypatch.setattr(health_module.shutil, "disk_usage", lambda _: type("Usage", (), usage)())
    health = StorageHealth(tmp_path)
    assert health.to_json()["disk"] == {"free_bytes": 2 * 1024**3, "size_bytes": 16 * 1024**3, "low": False}
    usage["free"] = 1024**3 - 1
    assert health.room()["low"]
    usage.update(total=1024**4, free=50 * 1024**3)  # a 1 TiB disk: 5% is 51.2 GiB
    assert health.room()["low"]
    assert "disk" not in StorageHealth().to_json()  # PostgreSQL: the server's disk is not seen


def test_the_desk_hears_the_room_is_low_once_a_day_while_it_stays_low(monkeypatch, tmp_path):
    now, sent = Now(monkeypatch), []
    monkeypatch.setattr(outage.time, "monotonic", lambda: now.t)
    usage = {"total": 16 * 1024**3, "used": 0, "free": 800 * 1024**2}
    monkeypatch.setattr(health_module.shutil, "disk_usage", lambda _: type("Usage", (), usage)())
    robot = ChannelSection(id="robot", type="wecom", roles=("operator",), url="http://127.0.0.1:9/r")
    notice = OutageNotice(StorageHealth(tmp_path).to_json, (robot,), lambda c, m: sent.append(m) or Outcome(True))
    notice.check()
    (told,) = sent
    assert told.reason == "storage_low" and told.severity == "warning" and told.title == "【中心磁盘空间不足】"
    assert told.lines[0] == "中心数据库所在的磁盘只剩 0.8 GB（共 16.0 GB）。"
    now.t += 3600.0
    notice.check()
    assert len(sent) == 1
    now.t += 86_400.0
    notice.check()
    assert len(sent) == 2  # still low a day later
    usage["free"] = 4 * 1024**3  # cleared
    notice.check()
    usage["free"] = 900 * 1024**2  # low again: said at once
    notice.check()
    assert len(sent) == 3


def test_a_message_a_channel_can_never_carry_is_not_tried_again(monkeypatch):
    now, sent = Now(monkeypatch), []
    monkeypatch.setattr(outage.time, "monotonic", lambda: now.t)
    health = StorageHealth()
    robot = ChannelSection(id="robot", type="wecom", roles=("operator",), url="http://127.0.0.1:9/r")
    notice = OutageNotice(
        health.to_json, (robot,), lambda c, m: sent.append(m) or Outcome(False, 400, "refused", permanent=True)
    )
    full = StorageUnavailable("OperationalError: database or disk is full")
    refuse(health, full)
    now.t += 10.0
    refuse(health, full)
    for _ in range(3):
        notice.check()
        now.t += 120.0
    assert len(sent) == 1 and notice.told == []


def test_a_low_room_message_waiting_for_its_retry_is_kept_through_a_failing_spell(monkeypatch, tmp_path):
    now, sent = Now(monkeypatch), []
    monkeypatch.setattr(outage.time, "monotonic", lambda: now.t)
    usage = {"total": 16 * 1024**3, "used": 0, "free": 800 * 1024**2}
    monkeypatch.setattr(health_module.shutil, "disk_usage", lambda _: type("Usage", (), usage)())
    health, answers = StorageHealth(tmp_path), [False, True, True, True]  # the robot is down at first
    robot = ChannelSection(id="robot", type="wecom", roles=("operator",), url="http://127.0.0.1:9/r")
    notice = OutageNotice(health.to_json, (robot,), lambda c, m: sent.append(m.reason) or Outcome(answers.pop(0)))
    notice.check()  # the room is low; the robot refuses: again in a minute
    full = StorageUnavailable("OperationalError: database or disk is full")
    refuse(health, full)
    now.t += 10.0
    refuse(health, full)
    notice.check()  # failing: told at once; the low message still waits for its minute
    now.t += 60.0
    notice.check()
    health.stored()
    notice.check()
    assert sent == ["storage_low", "storage_failing", "storage_low", "storage_back"]
