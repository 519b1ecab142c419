"""The notifier's settings (``[notify]`` and its ``[[notify.channels]]``), validated with the rest of the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.catalogue import RECIPIENTS
from common.config import setting

ChannelType = Literal["webhook", "wecom", "dingtalk", "email", "sms"]
CHANNEL_TYPES: tuple[str, ...] = ("webhook", "wecom", "dingtalk", "email", "sms")
ROBOT_PER_MINUTE = 20  # WeCom and DingTalk group robots take about 20 messages a minute each (REFERENCE.md)


@dataclass(frozen=True, kw_only=True)
class ChannelSection:
    """One way out: a webhook, a WeCom or DingTalk group robot, SMTP e-mail or an SMS gateway (a webhook)."""

    id: str = setting(pattern=r"^[a-z0-9][a-z0-9._-]{0,39}$", help="names the channel in the delivery log")
    type: ChannelType = setting(help="webhook | wecom | dingtalk | email | sms")
    roles: tuple[str, ...] = setting(help="the roles this channel tells (family, social_worker, ...)")
    sites: tuple[str, ...] = setting((), help="the sites it serves; empty: every site")
    url: str = setting("", pattern=r"^(https?://\S+)?$", help="webhook, robot or SMS gateway URL")
    secret: str = setting(
        "", help="webhook/sms: HMAC-SHA256 key of the signature header; dingtalk: the robot's signing secret"
    )
    mention: bool = setting(True, help="wecom/dingtalk: @ the contacts' mobile numbers in the group")
    smtp_host: str = setting("", help="email: SMTP server")
    smtp_port: int = setting(25, min=1, max=65535)
    smtp_starttls: bool = setting(False, help="email: STARTTLS before logging in")
    smtp_user: str = setting("", help="email: login (empty: none)")
    smtp_password: str = setting("")
    from_addr: str = setting("", help="email: From address")
    to: tuple[str, ...] = setting((), help="email: addresses always written to, besides the contacts' e-mail")
    per_minute: int = setting(0, min=0, max=100_000, help="messages a minute at most; 0: 20 for robots, else none")

    def problems(self) -> list[str]:
        out = []
        bad = [r for r in self.roles if r not in RECIPIENTS]
        if bad:
            out.append(f"roles: unknown role(s) {bad}; allowed: {', '.join(RECIPIENTS)}")
        if not self.roles:
            out.append("roles: name at least one role this channel tells")
        if self.type == "email" and not (self.smtp_host and self.from_addr):
            out.append("an email channel needs smtp_host and from_addr")
        if self.type != "email" and not self.url:
            out.append(f"a {self.type} channel needs url")
        return out

    @property
    def rate_per_minute(self) -> int:
        if self.per_minute:
            return self.per_minute
        return ROBOT_PER_MINUTE if self.type in ("wecom", "dingtalk") else 0


@dataclass(frozen=True, kw_only=True)
class NotifySection:
    """How alerts reach people: channels per role and site, retries, the acknowledgement link."""

    public_url: str = setting(
        "", pattern=r"^(https?://\S+)?$", help="the central's address as phones reach it, for the acknowledgement link"
    )
    link_ttl_h: float = setting(24.0, min=0.1, max=720.0, help="an acknowledgement link works this long")
    timeout_s: float = setting(5.0, min=0.5, max=60.0, help="one attempt's time limit")
    retry_min_s: float = setting(1.0, min=0.1, max=600.0, help="first retry after a failed attempt")
    retry_max_s: float = setting(120.0, min=1.0, max=3600.0, help="longest wait between attempts (never gives up)")
    tick_s: float = setting(0.25, min=0.05, max=10.0, help="how often the notifier looks for work")
    group_silent_min: int = setting(
        5, min=0, max=10_000, help="this many silent nodes of one site told together go as one message (0: never)"
    )
    tell_acknowledged: bool = setting(
        True, help="when a person acknowledges an alert, the others told of it are told who took it in"
    )
    channels: tuple[ChannelSection, ...] = setting((), help="[[notify.channels]] tables")

    def problems(self) -> list[str]:
        ids = [c.id for c in self.channels]
        out = [f"channels: channel id {d!r} given twice" for d in sorted({i for i in ids if ids.count(i) > 1})]
        if self.retry_min_s > self.retry_max_s:
            out.append("retry_min_s > retry_max_s")
        return out

    def channels_for(self, role: str, site: str | None) -> list[ChannelSection]:
        return [c for c in self.channels if role in c.roles and (not c.sites or site in c.sites)]
