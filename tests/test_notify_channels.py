"""The channels' formats and signatures, checked against what the receivers document (REFERENCE.md) and against
an independent computation of each signature (hashlib/hmac by hand here, not the code under test's helpers)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
import urllib.parse
from typing import Any

import pytest

from central.config import parse_central_config
from central.notify.channels import render_email, render_http, verify
from central.notify.config import ChannelSection
from central.notify.links import LinkClaim, LinkError, make_token, read_token
from central.notify.message import clip_utf8, compose
from central.notify.plan import planned
from central.notify.replies import robot_outcome
from central.notify.retry import Outcome, delay_after, next_delay
from central.notify.worker import RateLimit
from common.config import ConfigError

ALERT: dict[str, Any] = {
    "id": 17,
    "kind": "inactivity",
    "severity": "urgent",
    "state": "open",
    "site": "changbai-xincun",
    "location": "12号楼",
    "opened_at": 1_767_225_600.0,
    "raised_at": 1_767_222_000.0,  # an hour before the central heard of it: the node was offline
    "payload": {"resident": "B12-301", "silence_h": 12.5, "last_use": "06:10", "warning_after_h": 8.0},
}
CONTACTS = [{"name": "王丽", "phone": "138-0000-0001"}, {"name": "李强", "phone": "13900000002"}]


def channel(**fields) -> ChannelSection:
    return ChannelSection(**{"id": "c1", "roles": ("family",), **fields})


def message(**over):
    return compose(ALERT, "family", "opened", CONTACTS, "a17:family:c1:opened", link=over.pop("link", ""))


def test_the_message_says_what_where_since_and_why_in_chinese() -> None:
    text = message(link="https://central.example/ack/x.y").text()
    assert text.splitlines()[0] == "【紧急】长时间未用水 · 12号楼 住户 B12-301"
    assert "12 小时 30 分 没有用水" in text
    assert "最后一次用水：06:10" in text
    assert "节点当时离线" in text  # the outage is not hidden
    assert "我已知晓 / 我去看看" in text and "https://central.example/ack/x.y" in text


def test_the_webhook_is_signed_over_timestamp_and_body_and_carries_its_idempotency_key() -> None:
    req = render_http(channel(type="webhook", url="http://127.0.0.1/h", secret="s3cret"), message(), 1_767_225_700.4)
    stamp = req.headers["X-Changbai-Timestamp"]
    assert stamp == "1767225700"
    expected = "sha256=" + hmac.new(b"s3cret", b"1767225700." + req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Changbai-Signature"] == expected
    assert req.headers["Idempotency-Key"] == "a17:family:c1:opened"
    body = json.loads(req.body)
    assert body["schema"] == "changbai-notification/1" and body["alert_id"] == 17 and body["kind_zh"] == "长时间未用水"
    assert verify("s3cret", stamp, req.body, expected, now=1_767_225_710)
    assert not verify("s3cret", stamp, req.body + b" ", expected, now=1_767_225_710)  # body changed
    assert not verify("s3cret", stamp, req.body, expected, now=1_767_226_100)  # a replay 400 s later


def test_wecom_text_mentions_the_contacts_and_stays_within_2048_bytes() -> None:
    long = compose({**ALERT, "payload": {**ALERT["payload"], "error": "长" * 2000}}, "family", "opened", CONTACTS, "k")
    req = render_http(channel(type="wecom", url="http://127.0.0.1/wecom?key=K"), long, 0)
    body = json.loads(req.body)
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == ["13800000001", "13900000002"]
    content = body["text"]["content"].encode()
    assert 1900 < len(content) <= 2048
    content.decode("utf-8")  # cut on a character boundary


def test_dingtalk_signed_mode_matches_the_documented_formula() -> None:
    req = render_http(
        channel(type="dingtalk", url="http://127.0.0.1/dingtalk?access_token=T", secret="SEC"),
        message(),
        1_767_225_600.123,
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.url).query)
    assert query["timestamp"] == ["1767225600123"]
    mac = hmac.new(b"SEC", b"1767225600123\nSEC", hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(mac).decode()]  # parse_qs undid the URL encoding
    body = json.loads(req.body)
    assert body["at"] == {"atMobiles": ["13800000001", "13900000002"], "isAtAll": False}
    assert body["text"]["content"].endswith("@13800000001 @13900000002")


def test_the_sms_gateway_gets_the_numbers_and_a_short_text() -> None:
    req = render_http(channel(type="sms", url="http://127.0.0.1/sms", secret="k"), message(), 0)
    body = json.loads(req.body)
    assert body["to"] == ["13800000001", "13900000002"] and len(body["text"].encode()) <= 600
    assert "X-Changbai-Signature" in req.headers


def test_email_goes_to_the_contacts_addresses_and_the_channel_list() -> None:
    msg = compose(ALERT, "social_worker", "escalated", [{"name": "张社工", "email": "zhang@example.org"}], "k1")
    mail = render_email(channel(type="email", smtp_host="127.0.0.1", from_addr="c@x.org", to=("desk@x.org",)), msg)
    assert mail["To"] == "zhang@example.org, desk@x.org"
    assert mail["Subject"].startswith("【紧急】长时间未用水")
    assert "无人确认，通知社工" in mail.get_content()


def test_a_long_message_is_cut_but_its_link_never() -> None:
    link = "https://central.example/ack/" + "x" * 120
    long = compose(
        {**ALERT, "payload": {**ALERT["payload"], "error": "长" * 900}}, "family", "opened", CONTACTS, "k", link
    )
    for req in (
        render_http(channel(type="sms", url="http://127.0.0.1/sms"), long, 0),
        render_http(channel(type="wecom", url="http://127.0.0.1/w"), long, 0),
    ):
        text = json.dumps(json.loads(req.body), ensure_ascii=False)
        assert link in text and "…" in text


def test_clip_utf8_never_splits_a_character() -> None:
    assert clip_utf8("你好世界", 9) == "你好…"
    assert clip_utf8("abc", 3) == "abc"


def test_backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [next_delay(n, 1.0, 30.0, rng) for n in range(1, 9)]
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 4.0 <= delays[3] <= 8.0
    assert all(15.0 <= d <= 30.0 for d in delays[5:])
    assert delay_after(Outcome(False, 429, retry_after=25.0), 1, 1.0, 30.0) == 25.0
    assert delay_after(Outcome(False, 429, retry_after=999.0), 1, 1.0, 30.0) == 30.0


def test_a_robot_error_code_is_a_failure_and_its_rate_limit_a_pause() -> None:
    assert robot_outcome(200, {"errcode": 0, "errmsg": "ok"}, "wecom").ok
    limited = robot_outcome(200, {"errcode": 45009, "errmsg": "api freq out of limit"}, "wecom")
    assert not limited.ok and limited.retry_after == 60.0
    assert not robot_outcome(200, "<html>proxy</html>", "dingtalk").ok
    assert not robot_outcome(502, {"errcode": 0}, "dingtalk").ok


def test_rate_limit_allows_twenty_a_minute() -> None:
    limit = RateLimit(20)
    for i in range(20):
        assert limit.take(i) == 0
    assert limit.take(20) == pytest.approx(40.0)
    assert limit.take(60.5) == 0


def test_rate_limit_gives_its_last_place_to_one_of_many_threads() -> None:
    # the notifier's 8 sending threads asked "may I?" and then counted their send: all of them got the last place
    limit, start = RateLimit(2), threading.Barrier(8)
    limit.take(0.0)
    took: list[float] = []

    def send() -> None:
        start.wait()
        took.append(limit.take(1.0))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(took) == [0.0] + [59.0] * 7


def test_an_ack_link_is_signed_and_expires() -> None:
    secret = b"x" * 32
    claim = LinkClaim(17, "family", "王丽", "a17:family:c1:opened", 2000.0)
    token = make_token(secret, claim)
    assert read_token(secret, token, 1000.0) == claim
    with pytest.raises(LinkError, match="过期"):
        read_token(secret, token, 2001.0)
    body, mac = token.split(".")
    forged = make_token(b"y" * 32, LinkClaim(18, "family", "王丽", "d", 2000.0)).split(".")[0]
    with pytest.raises(LinkError, match="签名"):
        read_token(secret, f"{forged}.{mac}", 1000.0)
    with pytest.raises(LinkError):
        read_token(secret, "garbage", 1000.0)


def test_plan_tells_first_roles_at_once_the_social_worker_on_escalation_and_again_when_urgent() -> None:
    chans = {
        "family": [channel(id="sms", type="sms", url="http://x")],
        "social_worker": [channel(id="mail", type="email")],
    }
    view: dict[str, Any] = {"id": 5, "site": "s", "opened_at": 100.0, "notified": [{"role": "family", "at": 100.0}],
            "escalation": {"state": "pending", "roles": ["social_worker"], "due_at": 700.0}}  # fmt: skip
    keys = [p.key for p in planned(view, None, lambda r, s: chans.get(r, []), 150.0)]
    assert keys == ["a5:family:sms:opened"]
    view["notified"].append({"role": "social_worker", "at": 700.0})
    view["escalation"]["state"] = "escalated"
    keys = [p.key for p in planned(view, 400.0, lambda r, s: chans.get(r, []), 700.0)]
    assert keys == ["a5:family:sms:opened", "a5:social_worker:mail:escalated", "a5:family:sms:urgent"]


def test_an_all_clear_goes_to_the_roles_really_told_and_never_before_their_alarm() -> None:
    sms = [channel(id="sms", type="sms", url="http://x")]
    view: dict[str, Any] = {"id": 5, "site": "s", "kind": "inactivity", "severity": "warning", "opened_at": 100.0,
                            "notified": [{"role": "family", "at": 100.0}], "cleared_on_site": True, "cleared_at": 200.0,
                            "payload": {"reason": "use"}, "told": {}}  # fmt: skip
    # the family's alarm still retrying (the gateway down) when she used water: the all-clear waits for it
    assert [p.key for p in planned(view, None, lambda r, s: sms, 250.0)] == ["a5:family:sms:opened"]
    view["told"] = {"family": {"at": 260.0, "channel": "sms"}}
    plans = planned(view, None, lambda r, s: sms, 265.0)
    assert [(p.key, p.urgency) for p in plans] == [("a5:family:sms:opened", 1), ("a5:family:sms:cleared", -1)]
    view["kind"] = "help_requested"  # the kiosk closes a help request on a timer: that says nothing is over
    assert [p.reason for p in planned(view, None, lambda r, s: sms, 265.0)] == ["opened"]


def test_an_acknowledgement_is_news_to_the_roles_told_before_it_but_not_to_one_who_answered_alone() -> None:
    sms = [channel(id="sms", type="sms", url="http://x")]
    view: dict[str, Any] = {
        "id": 7, "site": "s", "kind": "entrapment", "severity": "urgent", "opened_at": 100.0,
        "notified": [{"role": r, "at": 100.0} for r in ("maintenance", "property_management", "operator")],
        "told": {"maintenance": {"at": 101.0}, "property_management": {"at": 101.0}, "operator": {"at": 160.0}},
        "state": "acknowledged", "acknowledged_at": 150.0, "acknowledged_via": "ack-link:property_management",
        "contacts": {"property_management": [{"name": "物业值班"}]},
    }  # fmt: skip

    def news(now: float = 170.0, **settings: bool) -> list[tuple[str, int]]:
        return [(p.role, p.urgency) for p in planned(view, None, lambda r, s: sms, now, **settings)
                if p.reason == "acknowledged"]  # fmt: skip

    # the desk answered by its own link, alone: only maintenance needs to hear it; the operator's alarm, delivered
    # after the acknowledgement, said who had it already
    assert news() == [("maintenance", -1)]
    view["contacts"]["property_management"].append({"name": "物业经理"})  # two people share that link
    assert news() == [("maintenance", -1), ("property_management", -1)]
    view["acknowledged_via"] = "zhang"  # at the console: the desk's channel hears it too
    assert news() == [("maintenance", -1), ("property_management", -1)]
    assert news(tell_acknowledged=False) == [] and news(now=150.0 + 3601) == []
    view.update(cleared_on_site=True, cleared_at=200.0)  # once it is over, the all-clear says more
    assert news() == []


def test_a_channel_without_what_it_needs_is_a_config_error(tmp_path) -> None:
    doc = {
        "sites": [{"id": "s1", "claim_key": "k" * 24}],
        "operators": [{"name": "n", "key": "o" * 24}],
        "notify": {
            "channels": [
                {"id": "m", "type": "email", "roles": ["nobody"]},
                {"id": "m", "type": "fax", "roles": ["family"]},
            ]
        },
    }
    with pytest.raises(ConfigError) as err:
        parse_central_config(doc, tmp_path / "c.toml")
    text = "\n".join(err.value.problems)
    assert "unknown role(s) ['nobody']" in text and "smtp_host and from_addr" in text
    assert "'fax'" in text
    twice = {"id": "w", "type": "webhook", "url": "http://127.0.0.1/h", "roles": ["family"]}
    with pytest.raises(ConfigError, match="given twice"):
        parse_central_config({**doc, "notify": {"channels": [twice, twice]}}, tmp_path / "c.toml")
