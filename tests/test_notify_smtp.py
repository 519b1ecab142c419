"""The e-mail channel against an SMTP server that misbehaves the ways real ones and their networks do
(bench/hostile_smtp.py, a raw-socket server on loopback): it stalls in the middle of DATA, drips its answer, drops
the connection, answers 4xx and then 2xx. Each attempt is cut off at the channel's time limit, retried with
backoff, recorded with what went wrong, and the message is delivered once (every copy the server took carries
the same Message-ID, so a mailbox can drop a repeat)."""

from __future__ import annotations

import pytest

from bench.hostile_smtp import HostileSmtp
from tests.test_notify_delivery import CONTACTS, METER, delivery_states, eventually, only_alert, raise_silence

TIMEOUT_S = 1.0


def mail_section(port: int) -> dict:
    return {"retry_min_s": 0.1, "retry_max_s": 1.0, "timeout_s": TIMEOUT_S, "tick_s": 0.05,
            "channels": [{"id": "family-mail", "type": "email", "roles": ["family"], "smtp_host": "127.0.0.1",
                          "smtp_port": port, "from_addr": "central@changbai.test", "to": ["wang@changbai.test"]}]}  # fmt: skip


@pytest.fixture
def smtp(request):
    server = HostileSmtp(request.param).start()
    yield server
    server.stop()


def delivery(central) -> dict:
    (d,) = only_alert(central)["deliveries"]
    return d


def mail_until(make_central, smtp: HostileSmtp, state: str, timeout_s: float):
    """A central mailing the family through ``smtp``; one alert; its delivery once it reached ``state``."""
    central = make_central(notify=mail_section(smtp.port))
    token = central.register(METER, "meter", contacts=CONTACTS)
    raise_silence(central, token, severity="warning")
    assert eventually(lambda: delivery_states(central) == [state], timeout_s)
    return central, delivery(central)


@pytest.mark.parametrize("smtp", [["stall", "drip", "drop", "451", "ok"]], indirect=True)
def test_a_stalling_dripping_dropping_refusing_server_gets_the_mail_once_every_attempt_recorded(make_central, smtp):
    central, d = mail_until(make_central, smtp, "sent", 60.0)
    log = d["attempt_log"]
    assert [a["ok"] for a in log] == [False, False, False, False, True] and d["attempts"] == 5
    stall, drip, drop, busy, _ = (a["detail"] for a in log)
    assert f"within {TIMEOUT_S:g} s" in stall and f"within {TIMEOUT_S:g} s" in drip, (stall, drip)
    assert "SMTPServerDisconnected" in drop and "451" in busy
    # each attempt ends within its limit, however the server stalls (smtplib's own timeout is per read only:
    # the drip would have held it for 7 s)
    assert all(a["took_ms"] <= TIMEOUT_S * 1000 + 500 for a in log), [a["took_ms"] for a in log]
    gaps = [b["at"] - a["at"] for a, b in zip(log, log[1:], strict=False)]
    assert all(g > 0 for g in gaps)  # one after another, with the backoff between
    assert [s.step for s in smtp.sessions] == ["stall", "drip", "drop", "451", "ok"]
    delivered = [s for s in smtp.sessions if s.delivered]
    assert [s.step for s in delivered] == ["ok"] or [s.step for s in delivered] == ["drip", "ok"]
    took = [s.mail() for s in smtp.sessions if s.data]  # every copy the server saw: the same Message-ID
    assert len({m["Message-ID"] for m in took}) == 1 and took[0]["Message-ID"].startswith(
        f"<{d['key'].replace(':', '.')}@"
    )
    assert "长时间未用水" in took[-1]["Subject"] and took[-1]["To"] == "wang@changbai.test"
    assert only_alert(central)["told"]["family"]["at"] == pytest.approx(d["sent_at"])


@pytest.mark.parametrize("smtp", [["550"]], indirect=True)
def test_a_recipient_refused_for_good_is_not_retried(make_central, smtp):
    _, d = mail_until(make_central, smtp, "failed", 60.0)
    assert (
        d["attempts"] == 1 and len(smtp.sessions) == 1 and "550" in d["last_error"] and "permanent" in d["last_error"]
    )
