"""The acknowledgement link's page: a family member or social worker answers an alert from a phone.

``GET /ack/{token}`` shows what happened (with its reasons, and whether it is over on site) and two buttons,
"我已知晓" (I know) and "我去看看" (I'm going to look), or, once a person closed it, who did, when and the words
they wrote for the people told;
``POST`` records the answer once per choice, in the alert's timeline with the name the link was sent to, and
acknowledges the alert when it is still open (which stops the escalation to the social worker). A GET never
changes anything: messaging apps open links to preview them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from central.deps import Central, get_central
from central.kinds import clock_text, kind_zh, role_zh
from central.notify.links import CHOICES, LINK_VIA, LinkClaim, LinkError, read_token
from central.notify.worker import LINK_SECRET
from central.reasons import closed, reasons
from central.storage import Conflict, NotFound

log = logging.getLogger("central")
pages = APIRouter(include_in_schema=False)

STYLE = (
    "body{font-family:'Noto Sans CJK SC',sans-serif;margin:0;background:#f4f4f0;color:#111;font-size:20px;"
    "line-height:1.5}main{max-width:560px;margin:0 auto;padding:20px}h1{font-size:26px;margin:0 0 12px}"
    ".card{background:#fff;border:2px solid #555;border-radius:10px;padding:16px;margin-bottom:16px}"
    "button{display:block;width:100%;min-height:64px;font-size:24px;margin:12px 0;border-radius:10px;"
    "border:3px solid #111;background:#0b4f8a;color:#fff}button.second{background:#fff;color:#111}"
    ".done{background:#dff0d8;border-color:#2d6a2d}.over{color:#1d5c1d;font-weight:bold}ul{padding-left:24px}"
)
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token must not leak to anything the page links to
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self';"
    " base-uri 'none'; frame-ancestors 'none'",
}


def _page(title: str, body: str) -> HTMLResponse:
    doc = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>"
    )
    return HTMLResponse(doc, headers=HEADERS)


def _claim(central: Central, token: str) -> LinkClaim:
    return read_token(central.notify.secret(LINK_SECRET), token, central.clock.wall())


def _state(alert: dict[str, Any]) -> str:
    """Where the alert stands, in words; a resolved one as its message to the people told of it says it."""
    if alert["state"] == "resolved":
        return "。".join(closed(alert))
    return f"{alert.get('acknowledged_by') or ''} 已确认" if alert["state"] == "acknowledged" else "尚无人确认"


def _summary(central: Central, claim: LinkClaim, alert: dict[str, Any]) -> str:
    node = central.store.nodes.by_id([alert["node_id"]]).get(alert["node_id"], {})
    resident = alert["payload"].get("resident") if isinstance(alert["payload"], dict) else None
    where = " ".join(str(x) for x in (node.get("location"), resident and f"住户 {resident}") if x)
    over = f'<div class="over">现场已解除 {clock_text(alert["cleared_at"])}</div>' if alert["cleared_on_site"] else ""
    why = "".join(
        f"<li>{html.escape(line)}</li>" for line in reasons(alert["kind"], alert["payload"], alert["cleared_on_site"])
    )
    return (
        f'<div class="card"><h1>{html.escape(kind_zh(alert["kind"]))}</h1>'
        f"<div>{html.escape(where)}</div><div>发生于 {clock_text(alert['raised_at'])}</div>{over}"
        f"<ul>{why}</ul>"
        f"<div>状态：{html.escape(_state(alert))}</div>"
        f"<div>发给：{html.escape(claim.name)}（{html.escape(role_zh(claim.role))}）</div></div>"
    )


@pages.get("/ack/{token}")
def ack_page(token: str, request: Request) -> HTMLResponse:
    central = get_central(request)
    try:
        claim = _claim(central, token)
        alert = central.store.alerts.get(claim.alert)
    except (LinkError, NotFound) as exc:
        return _page("链接无法使用", f'<div class="card"><h1>链接无法使用</h1><p>{html.escape(str(exc))}</p></div>')
    summary = _summary(central, claim, alert)
    if alert["state"] == "resolved":  # nothing left to answer: no buttons that look as if someone should go
        return _page("告警已处理", '<div class="card done"><p>这条告警已处理完毕，不需要您再回复。</p></div>' + summary)
    buttons = "".join(
        f'<form method="post"><button name="choice" value="{k}" class="{"" if k == "known" else "second"}">'
        f"{html.escape(v)}</button></form>"
        for k, v in CHOICES.items()
    )
    return _page("告警确认", summary + buttons)


def _answer(central: Central, token: str, choice: str) -> HTMLResponse:
    try:
        claim = _claim(central, token)
    except LinkError as exc:
        return _page("链接无法使用", f'<div class="card"><h1>链接无法使用</h1><p>{html.escape(str(exc))}</p></div>')
    if choice not in CHOICES:
        return _page("请选择", '<div class="card"><p>请返回并点按“我已知晓”或“我去看看”。</p></div>')
    now = central.clock.wall()
    who = f"{claim.name}（{role_zh(claim.role)}，短信链接）"
    new = central.notify.answer(claim.alert, claim.role, claim.name, claim.delivery, choice, now)
    if new:
        try:
            central.store.alerts.acknowledge(claim.alert, who, LINK_VIA + claim.role, CHOICES[choice], now)
        except Conflict:
            pass  # already acknowledged or resolved: the answer is in the timeline all the same
        except NotFound:
            return _page("链接无法使用", '<div class="card"><p>这条告警已不存在。</p></div>')
        log.info("alert %d: %s answered %s by link", claim.alert, claim.role, choice)
        central.changes.changed()
    said = "已记录，谢谢。" if new else "您之前已经回复过，已记录。"
    body = f'<div class="card done"><h1>{html.escape(CHOICES[choice])}</h1><p>{said}值班人员能看到您的回复。</p></div>'
    return _page("已记录", body + _summary(central, claim, central.store.alerts.get(claim.alert)))


@pages.post("/ack/{token}")
async def ack_answer(token: str, request: Request) -> HTMLResponse:
    form = urllib.parse.parse_qs((await request.body()).decode("utf-8", errors="replace"))
    choice = (form.get("choice") or [""])[0]
    return await run_in_threadpool(_answer, get_central(request), token, choice)
