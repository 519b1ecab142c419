"""Real SMS gateways' and robots' documented answers, replayed by a loopback receiver to the real central: what
counts as delivered, what is tried again (and how soon), what fails for good (central/notify/replies.py).

The bodies are the providers' documented shapes (Aliyun SMS API error codes, help.aliyun.com/document_detail/
101346; Tencent Cloud SMS SendSms 2021-01-11 and its error codes, cloud.tencent.com/document/api/382/55981 and
/59177; Twilio's API responses and error dictionary, twilio.com/docs/usage/twilios-response; the WeCom and
DingTalk robots' errcode). Several come with HTTP 200: the status alone would call them delivered."""

from __future__ import annotations

import json

import pytest
import requests

from central.notify.replies import FIX_PAUSE_S, RATE_PAUSE_S, robot_outcome, sms_outcome
from community.receivers import WebhookReceiver
from tests.test_notify_delivery import CONTACTS, METER, delivery_states, eventually, only_alert, raise_silence


def j(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


ALIYUN_OK = j({"Message": "OK", "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990", "Code": "OK",
               "BizId": "900619746936498440^0"})  # fmt: skip
ALIYUN_LIMIT = j({"Message": "触发分钟级流控Permits:1", "RequestId": "C0A0BE93-B44F-4350-BCC8-B677F78C3802",
                  "Code": "isv.BUSINESS_LIMIT_CONTROL"})  # fmt: skip
ALIYUN_BAD_NUMBER = j({"Message": "非法手机号", "RequestId": "1F0B5D0B-7C3A-4B3C-9A2E-0B1C2D3E4F50",
                       "Code": "isv.MOBILE_NUMBER_ILLEGAL"})  # fmt: skip
ALIYUN_BROKE = j({"Message": "业务停机", "RequestId": "2A1C6E1C-8D4B-4C4D-AB3F-1C2D3E4F5061",
                  "Code": "isv.OUT_OF_SERVICE"})  # fmt: skip
ALIYUN_SDK_TEMPLATE = j({"code": "isv.SMS_TEMPLATE_ILLEGAL", "message": "请检查模板内容与模板参数是否匹配",
                         "requestId": "BA0BABF7-3251-574D-BBE3-58EECD26595D"})  # fmt: skip


def tencent(*statuses: tuple[str, str, str]) -> bytes:
    return j({"Response": {"SendStatusSet": [
        {"SerialNo": "5000:1045710669157053657849499619", "PhoneNumber": number, "Fee": 1, "SessionContext": "",
         "Code": code, "Message": message, "IsoCode": "CN"} for number, code, message in statuses],
        "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}})  # fmt: skip


TENCENT_OK = tencent(("+8613900000002", "Ok", "send success"))
TENCENT_LIMIT = tencent(("+8613900000002", "LimitExceeded.PhoneNumberThirtySecondLimit",
                         "the number of SMS messages sent from a single mobile number within 30 seconds exceeds the upper limit"))  # fmt: skip
TENCENT_BAD_NUMBER = tencent(("+8613900000002", "InvalidParameterValue.IncorrectPhoneNumber", "手机号格式错误"))
TENCENT_AUTH = j({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure",
                  "Message": "The provided credentials could not be validated. Please check your signature is correct."},
                  "RequestId": "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"}})  # fmt: skip
TWILIO_QUEUED = j({"sid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "status": "queued", "error_code": None,
                   "error_message": None, "to": "+8613900000002", "body": "…"})  # fmt: skip
TWILIO_BAD_TO = j({"code": 21211, "message": "The 'To' number +86139000 is not a valid phone number.",
                   "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})  # fmt: skip
TWILIO_TOO_MANY = j({"code": 20429, "message": "Too Many Requests",
                     "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429})  # fmt: skip

# (status, body, Retry-After) -> delivered, permanent, pause at least
CASES = {
    "aliyun OK": (200, ALIYUN_OK, None, (True, False, None)),
    "aliyun flow control on HTTP 200": (200, ALIYUN_LIMIT, None, (False, False, RATE_PAUSE_S)),
    "aliyun invalid number": (200, ALIYUN_BAD_NUMBER, None, (False, True, None)),
    "aliyun out of credit": (200, ALIYUN_BROKE, None, (False, False, FIX_PAUSE_S)),
    "aliyun SDK's lower-case body": (200, ALIYUN_SDK_TEMPLATE, None, (False, False, FIX_PAUSE_S)),
    "tencent Ok": (200, TENCENT_OK, None, (True, False, None)),
    "tencent per-number rate limit": (200, TENCENT_LIMIT, None, (False, False, RATE_PAUSE_S)),
    "tencent invalid number": (200, TENCENT_BAD_NUMBER, None, (False, True, None)),
    "tencent signature failure": (200, TENCENT_AUTH, None, (False, False, FIX_PAUSE_S)),
    "twilio queued": (201, TWILIO_QUEUED, None, (True, False, None)),
    "twilio invalid To": (400, TWILIO_BAD_TO, None, (False, True, None)),
    "twilio 429 with Retry-After": (429, TWILIO_TOO_MANY, "90", (False, False, 90.0)),
    "plain gateway 200": (200, b'{"ok":true}', None, (True, False, None)),
    "plain gateway's code 0": (200, b'{"code":0,"msg":"success"}', None, (True, False, None)),
    "plain gateway 503": (503, b"Service Unavailable", "7", (False, False, 7.0)),
    "a portal's page on 200": (
        200,
        b"<!DOCTYPE html><html><body>Wi-Fi login</body></html>",
        None,
        (False, False, None),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_each_documented_answer_means_delivered_retry_or_permanent(name: str) -> None:
    status, body, retry_after, (ok, permanent, pause) = CASES[name]
    outcome = sms_outcome(status, body, retry_after)
    assert (outcome.ok, outcome.permanent) == (ok, permanent), outcome
    if pause is not None:
        assert outcome.retry_after is not None and outcome.retry_after >= pause, outcome
    if not ok:
        assert outcome.detail  # says what the gateway said


def test_a_partly_refused_send_is_delivered_and_names_who_did_not_get_it() -> None:
    body = tencent(("+8613800000001", "Ok", "send success"),
                   ("+8613900000002", "FailedOperation.PhoneNumberInBlacklist", "手机号在免打扰名单库中"))  # fmt: skip
    outcome = sms_outcome(200, body, None)
    assert outcome.ok and "+8613900000002 FailedOperation.PhoneNumberInBlacklist" in outcome.detail
    everyone_limited = tencent(("+8613800000001", "LimitExceeded.PhoneNumberDailyLimit", "daily limit"),
                               ("+8613900000002", "InvalidParameterValue.IncorrectPhoneNumber", "bad"))  # fmt: skip
    worst = sms_outcome(200, everyone_limited, None)
    assert not worst.ok and not worst.permanent  # one of them may still get it later: tried again


def test_robot_errcodes_rate_limit_config_and_permanent() -> None:
    assert robot_outcome(200, {"errcode": 0, "errmsg": "ok"}, "wecom").ok
    limited = robot_outcome(200, {"errcode": 45009, "errmsg": "api freq out of limit"}, "wecom")
    assert not limited.ok and limited.retry_after == RATE_PAUSE_S
    ding_limited = robot_outcome(200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"},
                                 "dingtalk")  # fmt: skip
    assert ding_limited.retry_after == RATE_PAUSE_S
    keywords = robot_outcome(200, {"errcode": 310000, "errmsg": "keywords not in content"}, "dingtalk")
    assert not keywords.ok and not keywords.permanent and keywords.retry_after == FIX_PAUSE_S
    bad_type = robot_outcome(200, {"errcode": 40008, "errmsg": "invalid message type"}, "wecom")
    assert bad_type.permanent


def sms_section(gateway: WebhookReceiver) -> dict:
    return {"retry_min_s": 0.1, "retry_max_s": 1.0, "timeout_s": 2.0, "tick_s": 0.05,
            "channels": [{"id": "sw-sms", "type": "sms", "roles": ["family"], "url": gateway.url("/sms"),
                          "secret": "sms-signing-secret-000001"}]}  # fmt: skip


@pytest.fixture
def gateway():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def the_delivery(central) -> dict:
    (d,) = only_alert(central)["deliveries"]
    return d


def test_a_gateway_flow_control_on_200_is_retried_until_its_ok(make_central, gateway) -> None:
    gateway.reply_with("/sms", (200, ALIYUN_LIMIT), (200, TENCENT_LIMIT), (200, ALIYUN_OK))
    central = make_central(notify=sms_section(gateway))
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_silence(central, token, severity="warning")
    assert eventually(lambda: delivery_states(central) == ["sent"], 10.0)
    d = the_delivery(central)
    log = only_alert(central)["deliveries"][0]["attempt_log"]
    assert [a["ok"] for a in log] == [False, False, True] and d["attempts"] == 3
    assert "isv.BUSINESS_LIMIT_CONTROL" in log[0]["detail"] and "LimitExceeded" in log[1]["detail"]
    assert {a["status"] for a in log} == {200}  # every answer was HTTP 200: only the body told them apart
    assert len({r.headers["Idempotency-Key"] for r in gateway.received}) == 1 and len(gateway.received) == 3
    assert only_alert(central)["told"]["family"]["at"] == pytest.approx(d["sent_at"])


def test_an_invalid_number_fails_for_good_once_until_the_number_is_corrected(make_central, gateway) -> None:
    gateway.reply_with("/sms", (200, TENCENT_BAD_NUMBER))
    central = make_central(notify=sms_section(gateway))
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_silence(central, token, severity="warning")
    assert eventually(lambda: delivery_states(central) == ["failed"], 10.0)
    d = the_delivery(central)
    # the state and its one attempt were written together; a failed delivery is never claimed again
    assert d["attempts"] == 1 and len(gateway.received) == 1 and d["ended_at"] >= d["created_at"]
    assert "IncorrectPhoneNumber" in d["last_error"] and "permanent" in d["last_error"]
    alert = only_alert(central)
    assert "family" not in alert["told"]  # nobody was told: the board must not say so
    # the desk corrects the number: the open alert's message goes to it (the failed attempt stays in the log)
    fixed = {"contacts": {"family": [{"name": "王丽", "phone": "13800000009"}]}}
    put = requests.put(f"{central.url}/api/v1/residents/{central.site}/B12-301", json=fixed,
                       headers=central.operator_headers, timeout=10)  # fmt: skip
    assert put.status_code == 200, put.text
    assert eventually(lambda: delivery_states(central) == ["sent"], 5.0)
    d = the_delivery(central)
    assert d["attempts"] == 2 and d["recipients"] == [{"name": "王丽", "phone": "13800000009"}]
    assert gateway.received[-1].json()["to"] == ["13800000009"]
    assert [a["ok"] for a in only_alert(central)["deliveries"][0]["attempt_log"]] == [False, True]
