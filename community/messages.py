"""The messages of the simulated community: the notifier's channels pointed at real receivers on loopback.

The family and the social worker have phones behind an SMS gateway (a webhook), the property desk a WeCom group,
the lift maintenance company a DingTalk group (signed mode), the social worker also e-mail (an SMTP server). Each
message that arrives is printed on the timeline; the social worker answers hers through the acknowledgement link
("我去看看"), as she would from her phone. At the end, every delivery the central logged must have reached its
receiver, and none twice.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from email.message import EmailMessage
from typing import Any

import requests

from community.receivers import MailReceiver, Received, WebhookReceiver
from community.timeline import Timeline

log = logging.getLogger(__name__)
SMS_SECRET = "community-sms-gateway-secret-01"
DINGTALK_SECRET = "SECcommunity-dingtalk-robot-secret"
SOCIAL_WORKER_MAIL = "wang.sw@changbai.test"
PHONE_OWNERS = {"13900000301": "daughter", "02165000003": "social worker Wang"}


class Messages:
    """Receivers for every channel, the ``[notify]`` config that points at them, and what arrived."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.hooks = WebhookReceiver()
        self.mail = MailReceiver()
        self.answered: list[str] = []
        self.closed: list[str] = []  # who was told by SMS that a person closed an alert (with the note)
        self._answering: list[threading.Thread] = []

    def start(self) -> None:
        self.hooks.on_receive = self._on_request
        self.mail.on_receive = self._on_mail
        self.hooks.start()
        self.mail.start()

    def stop(self) -> None:
        for thread in self._answering:
            thread.join(10)
        self.hooks.stop()
        self.mail.stop()

    def notify_section(self) -> dict[str, Any]:
        url = self.hooks.url
        return {
            "retry_min_s": 5.0,  # central-clock seconds; the community's clock runs fast
            "retry_max_s": 120.0,
            "tick_s": 0.05,
            "channels": [
                {"id": "family-sms", "type": "sms", "roles": ["family"], "url": url("/sms"), "secret": SMS_SECRET},
                {"id": "social-worker-sms", "type": "sms", "roles": ["social_worker"], "url": url("/sms"),
                 "secret": SMS_SECRET},
                {"id": "social-worker-mail", "type": "email", "roles": ["social_worker"], "smtp_host": "127.0.0.1",
                 "smtp_port": self.mail.port, "from_addr": "alerts@changbai.test", "to": [SOCIAL_WORKER_MAIL]},
                {"id": "property-wecom", "type": "wecom", "roles": ["property_management"],
                 "url": url("/wecom/send?key=property-desk")},
                {"id": "maintenance-dingtalk", "type": "dingtalk", "roles": ["maintenance"],
                 "url": url("/dingtalk/robot/send?access_token=maint"), "secret": DINGTALK_SECRET},
            ],
        }  # fmt: skip

    # ----------------------------------------------------------------------------------------- arrivals
    def _on_request(self, got: Received) -> None:
        body = got.json()
        if got.path.startswith("/sms"):
            for number in body["to"]:
                who = PHONE_OWNERS.get(number, number)
                lines = body["text"].splitlines()
                note = next(
                    (line for line in lines if line.startswith("处理说明：") or line.endswith("已确认收到")), None
                )
                said = f'"{note}"' if note else ("with a link" if "http" in body["text"] else "no link")
                self.timeline.add(f"phone of {who}", f'SMS: "{lines[0]}" ({len(body["text"])} characters, {said})')
                if note and note.startswith("处理说明："):
                    self.closed.append(who)
                if who == "social worker Wang" and "ack" not in self.answered:
                    self._answer_link(body["text"])
        elif got.path.startswith("/wecom"):
            text = body["text"]["content"].splitlines()
            detail = next((line for line in text if line.endswith("已确认收到")), text[2] if len(text) > 2 else "")
            self.timeline.add("WeCom property group", f'robot: "{text[0]}" / "{detail}"')
        elif got.path.startswith("/dingtalk"):
            text = body["text"]["content"].splitlines()
            mentions = ", ".join(body["at"]["atMobiles"])
            self.timeline.add("DingTalk maintenance", f'robot: "{text[0]}" (@ {mentions})')

    def _on_mail(self, mail: EmailMessage) -> None:
        self.timeline.add("e-mail of Wang", f'"{mail["Subject"]}" to {mail["To"]}')

    def _answer_link(self, text: str) -> None:
        link = next((w for line in text.splitlines() for w in line.split("：") if w.startswith("http")), None)
        if link is None:
            return
        self.answered.append("ack")

        def answer() -> None:  # she reads it and taps "我去看看" (not on the receiver's own thread)
            try:
                requests.get(link, timeout=10)
                reply = requests.post(link, data={"choice": "going"}, timeout=10)
                self.timeline.add("phone of social worker Wang", "taps 我去看看 in the SMS link: " + (
                    "recorded" if "已记录" in reply.text else f"answer {reply.status_code}"))  # fmt: skip
                self.answered.append("going")
            except requests.RequestException as exc:
                log.warning("the social worker's link answer failed: %s", exc)

        thread = threading.Thread(target=answer, name="social-worker-phone", daemon=True)
        self._answering.append(thread)
        thread.start()

    # ------------------------------------------------------------------------------------------ checking
    def check(self, deliveries: list[dict[str, Any]]) -> tuple[bool, str]:
        """Every delivery the central logged as sent reached a receiver, and no message was accepted twice."""
        sent = [d for d in deliveries if d["state"] == "sent"]
        pending = [d for d in deliveries if d["state"] == "pending"]
        keys = Counter(r.json()["id"] if r.path.startswith("/sms") else None for r in self.hooks.delivered())
        sms_sent = [d for d in sent if d["channel"].endswith("-sms")]
        twice = [k for k, n in keys.items() if k is not None and n > 1]
        arrived = all(keys[d["key"]] == 1 for d in sms_sent)
        robots = len([r for r in self.hooks.delivered() if not r.path.startswith("/sms")])
        robot_sent = len([d for d in sent if d["channel"] in ("property-wecom", "maintenance-dingtalk")])
        mails = len(self.mail.messages)
        mail_sent = len([d for d in sent if d["channel"] == "social-worker-mail"])
        ok = arrived and not twice and not pending and robots == robot_sent and mails == mail_sent and bool(sent)
        note = (
            f"{len(sent)} delivered ({len(sms_sent)} SMS, {robot_sent} robot, {mail_sent} e-mail), "
            f"{len(pending)} still pending, {len(twice)} accepted twice"
        )
        return ok, note
