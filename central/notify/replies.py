"""What a receiver's answer means: delivered, try again (soon, or slowly until a person fixes something), or a
permanent failure for this message. Pure functions of the status and the body; the table is docs/central.md's.

Gateways and robots often answer HTTP 200 with the error in the body, so the body decides whenever it has a
shape a provider documents:

- Aliyun SMS (``SendSms``): ``{"Code": "OK" | "isv.…" | "isp.…", "Message", "RequestId", "BizId"}``;
- Tencent Cloud SMS (``SendSms`` 2021-01-11): ``{"Response": {"SendStatusSet": [{"PhoneNumber", "Code": "Ok" |
  …, "Message"}], "RequestId"}}``, or ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``;
- Twilio: a message resource (``{"sid", "status", "error_code"}``) or an exception (``{"code", "message",
  "more_info", "status"}``);
- WeCom and DingTalk group robots: ``{"errcode": 0 | …, "errmsg"}``.

Anything else from an SMS gateway or a webhook: any 2xx is delivered, anything else is tried again.
"""

from __future__ import annotations

import json
from typing import Any

from central.notify.retry import Outcome, retry_after_seconds

RATE_PAUSE_S = 60.0  # a provider's rate limit (per number, per robot): wait at least a minute
FIX_PAUSE_S = 3600.0  # a person must fix the account or the config: tried again at the slowest pace
# (capped by ``retry_max_s``, so it goes out soon after the fix; never given up while the alert is open)

# Aliyun SMS API error codes (help.aliyun.com/document_detail/101346)
_ALIYUN_RATE = {"isv.BUSINESS_LIMIT_CONTROL", "Throttling.User", "Throttling.Api"}
_ALIYUN_FIX = {
    "isv.DAY_LIMIT_CONTROL", "isv.MONTH_LIMIT_CONTROL", "isv.OUT_OF_SERVICE", "isv.AMOUNT_NOT_ENOUGH",
    "isv.PRODUCT_UN_SUBSCRIPT", "isv.PRODUCT_UNSUBSCRIBE", "isv.ACCOUNT_NOT_EXISTS", "isv.ACCOUNT_ABNORMAL",
    "isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_SIGN_ILLEGAL", "isv.SIGN_STATE_ILLEGAL",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL", "isv.TEMPLATE_MISSING_PARAMETERS", "isv.INVALID_PARAMETERS",
    "isv.INVALID_JSON_PARAM", "isv.DENY_IP_RANGE", "isp.RAM_PERMISSION_DENY", "InvalidAccessKeyId.NotFound",
    "SignatureDoesNotMatch",
}  # fmt: skip
_ALIYUN_PERMANENT = {
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.SMS_CONTENT_ILLEGAL",
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED", "isv.PARAM_LENGTH_LIMIT",
}  # fmt: skip
# Tencent Cloud SMS error codes (cloud.tencent.com/document/api/382/55981, /59177): by prefix or in full
_TENCENT_RATE = ("LimitExceeded.", "RequestLimitExceeded")
_TENCENT_FIX = (
    "AuthFailure", "UnauthorizedOperation", "FailedOperation.InsufficientBalanceInSmsPackage",
    "FailedOperation.SignatureIncorrectOrUnapproved", "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.MissingSignature", "InvalidParameterValue.SdkAppIdNotExist", "MissingParameter",
    "InvalidParameterValue.TemplateParameterFormatError", "InvalidParameter.",
    "FailedOperation.FailResolvePacket", "FailedOperation.JsonParseFail", "IpNotInWhitelist", "IpInBlacklist",
)  # fmt: skip
_TENCENT_PERMANENT = (
    "InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.PhoneNumberParseFail", "FailedOperation.ContainSensitiveWord",
    "InvalidParameterValue.ContentLengthLimit", "UnsupportedOperation.UnsupportedRegion",
)  # fmt: skip
# Twilio error dictionary (twilio.com/docs/api/errors)
_TWILIO_RATE = {20429, 14107, 30001}
_TWILIO_FIX = {20003, 20005, 21408, 21606, 21608, 21659, 10001, 10002}
_TWILIO_PERMANENT = {21211, 21610, 21612, 21614, 21217, 30005, 30006}  # 30003 (handset off): retried
_TWILIO_QUEUED = {"accepted", "queued", "sending", "sent", "delivered", "scheduled"}
# WeCom (developer.work.weixin.qq.com/document/path/90313) and DingTalk robot errcodes
ROBOT_RATE = {45009, 130101, 410100}
ROBOT_FIX = {93000, 93004, 300001, 310000, 400013, 40014, 40035}
ROBOT_PERMANENT = {40008, 44004, 45002}


def classify(code: Any, rate: Any, fix: Any, permanent: Any) -> str:
    """``rate`` | ``fix`` | ``permanent`` | ``retry`` for a provider's code (sets, or tuples of prefixes)."""

    def hit(table: Any) -> bool:
        if isinstance(table, tuple):
            return isinstance(code, str) and any(code == p or code.startswith(p) for p in table)
        return code in table

    for name, table in (("permanent", permanent), ("fix", fix), ("rate", rate)):
        if hit(table):
            return name
    return "retry"


def failed(kind: str, status: int | None, detail: str) -> Outcome:
    """A failure of class ``kind`` (see ``classify``) as the worker acts on it."""
    if kind == "permanent":
        return Outcome(False, status, f"{detail} (permanent: not retried)", permanent=True)
    if kind == "fix":
        return Outcome(False, status, f"{detail} (needs the account or config fixed: retried slowly)", FIX_PAUSE_S)
    return Outcome(False, status, detail, RATE_PAUSE_S if kind == "rate" else None)


def robot_outcome(status: int, body: Any, channel: str) -> Outcome:
    """WeCom and DingTalk answer HTTP 200 with ``{"errcode": 0}`` on success; anything else failed."""
    if not 200 <= status < 300:
        return Outcome(False, status, f"HTTP {status}")
    if not isinstance(body, dict) or "errcode" not in body:
        return Outcome(False, status, f"{channel}: the answer is not a robot's JSON")
    code = body.get("errcode")
    if code == 0:
        return Outcome(True, status)
    detail = f"{channel} errcode {code}: {str(body.get('errmsg', ''))[:200]}"
    return failed(classify(code, ROBOT_RATE, ROBOT_FIX, ROBOT_PERMANENT), status, detail)


def _tencent(status: int, response: dict[str, Any]) -> Outcome:
    error = response.get("Error")
    if isinstance(error, dict):
        code = str(error.get("Code", ""))
        detail = f"tencent {code}: {str(error.get('Message', ''))[:160]}"
        return failed(classify(code, _TENCENT_RATE, _TENCENT_FIX, _TENCENT_PERMANENT), status, detail)
    sent = [s for s in response.get("SendStatusSet") or [] if isinstance(s, dict)]
    refused = [s for s in sent if s.get("Code") != "Ok"]
    why = "; ".join(f"{s.get('PhoneNumber')} {s.get('Code')}: {str(s.get('Message', ''))[:60]}" for s in refused)
    if sent and len(refused) < len(sent):  # a number took it: told; the others are named
        return Outcome(True, status, f"tencent: not to {why}" if refused else "")
    if not sent:
        return Outcome(False, status, "tencent: no SendStatusSet in the answer")
    kinds = {classify(s.get("Code"), _TENCENT_RATE, _TENCENT_FIX, _TENCENT_PERMANENT) for s in refused}
    kind = next(k for k in ("retry", "rate", "fix", "permanent") if k in kinds)  # the most hopeful one decides
    return failed(kind, status, f"tencent: {why}")


def _twilio(status: int, body: dict[str, Any]) -> Outcome:
    if "sid" in body:  # a message resource: accepted for sending unless it already failed
        if body.get("error_code") is None and str(body.get("status")) in _TWILIO_QUEUED:
            return Outcome(True, status)
        code = body.get("error_code")
        detail = f"twilio {code}: {body.get('status')} {str(body.get('error_message') or '')[:160]}"
    else:
        code = body.get("code")
        detail = f"twilio {code}: {str(body.get('message', ''))[:160]}"
    return failed(classify(code, _TWILIO_RATE, _TWILIO_FIX, _TWILIO_PERMANENT), status, detail)


def _aliyun(status: int, body: dict[str, Any]) -> Outcome:
    code = str(body.get("Code", body.get("code", "")))
    if code == "OK":
        return Outcome(True, status)
    detail = f"aliyun {code}: {str(body.get('Message', body.get('message', '')))[:160]}"
    return failed(classify(code, _ALIYUN_RATE, _ALIYUN_FIX, _ALIYUN_PERMANENT), status, detail)


def _is_aliyun(body: dict[str, Any]) -> bool:
    code = body.get("Code", body.get("code"))
    return isinstance(code, str) and (code == "OK" or code.startswith(("isv.", "isp.")) or "RequestId" in body)


def sms_outcome(status: int, body: bytes, retry_after: str | None) -> Outcome:
    """An SMS gateway's answer: the provider's documented body when it has one, else the HTTP status."""
    pause = retry_after_seconds(retry_after)
    if 300 <= status < 400:
        return Outcome(False, status, f"HTTP {status}")
    if body.lstrip()[:1] == b"<" and body.lstrip()[:14].lower().startswith((b"<!doctype html", b"<html")):
        return Outcome(False, status, f"HTTP {status}: a web page, not an SMS gateway's answer", pause)
    try:
        doc = json_object(body)
    except ValueError:
        doc = None
    outcome = None
    if doc is not None and isinstance(doc.get("Response"), dict):
        outcome = _tencent(status, doc["Response"])
    elif doc is not None and ("more_info" in doc or ("sid" in doc and "status" in doc)):
        outcome = _twilio(status, doc)
    elif doc is not None and _is_aliyun(doc):
        outcome = _aliyun(status, doc)
    if outcome is None:
        return http_outcome(status, retry_after)
    if not outcome.ok and pause is not None and (outcome.retry_after or 0) < pause:
        return Outcome(False, outcome.status, outcome.detail, pause, outcome.permanent)
    if outcome.ok and not 200 <= status < 300:
        return Outcome(False, status, f"HTTP {status} with a success body")
    return outcome


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, None for an empty body or another JSON value; ValueError when not JSON."""
    if not body.strip():
        return None
    value = json.loads(body)
    return value if isinstance(value, dict) else None


def http_outcome(status: int, retry_after: str | None) -> Outcome:
    """A webhook or SMS gateway without a provider's body: any 2xx is delivered; everything else is retried."""
    if 200 <= status < 300:
        return Outcome(True, status)
    return Outcome(False, status, f"HTTP {status}", retry_after=retry_after_seconds(retry_after))
