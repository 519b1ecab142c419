"""Per-person accounts: `central user add`, scrypt, the session cookie, roles scoped to sites, the audit log."""

from __future__ import annotations

import base64
import hashlib
import io

import requests

from central.__main__ import main as central_main
from central.accounts.passwords import hash_password, verify
from tests.console_helpers import PASSWORD, add_user
from tests.fixtures.central import OTHER_SITE, wire_event


def login(central, username: str, password: str = PASSWORD) -> requests.Session:
    s = requests.Session()
    r = s.post(f"{central.url}/api/v1/session", json={"username": username, "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    s.headers["X-Changbai-Console"] = "1"
    return s


def raise_alert(central, token: str, node: str, kind: str, **payload) -> None:
    event = wire_event(node, kind=kind, severity="urgent", state="raised", priority="alert", alert_id=f"{kind}-1",
                       recipients=["family"], payload=payload)  # fmt: skip
    assert central.post_events(token, [event]).status_code == 200


def test_scrypt_hash_is_salted_checks_and_refuses_a_wrong_password() -> None:
    a, b = hash_password(PASSWORD, n=2**14), hash_password(PASSWORD, n=2**14)
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert verify(a, PASSWORD) and not verify(a, PASSWORD + "x") and not verify("md5$x", PASSWORD)
    # the stored digest is what hashlib.scrypt gives for the stored salt (an independent recomputation)
    _, n, r, p, salt, digest = a.split("$")
    raw = hashlib.scrypt(PASSWORD.encode(), salt=base64.urlsafe_b64decode(salt + "=="), n=int(n), r=int(r), p=int(p),
                         maxmem=2**26, dklen=32)  # fmt: skip
    assert base64.urlsafe_b64encode(raw).decode().rstrip("=") == digest


def test_login_sets_a_strict_httponly_expiring_cookie_and_names_the_person(central, monkeypatch) -> None:
    add_user(central, "limin", "duty_desk", name="李敏", monkeypatch=monkeypatch)
    r = requests.post(f"{central.url}/api/v1/session", json={"username": "limin", "password": PASSWORD}, timeout=10)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; "auto" sets it over HTTPS
    assert r.json()["name"] == "李敏" and r.json()["roles"][0]["role_zh"] == "社区值班"
    s = login(central, "limin")
    assert s.get(f"{central.url}/api/v1/session", timeout=10).json()["username"] == "limin"
    assert s.delete(f"{central.url}/api/v1/session", timeout=10).status_code == 200
    assert s.get(f"{central.url}/api/v1/session", timeout=10).status_code == 401
    entries = central.get("/audit")["entries"]
    assert [e["action"] for e in entries[:2]] == ["logout", "login"] and entries[0]["actor"] == "李敏"


def test_wrong_passwords_are_refused_recorded_and_limited(make_central, monkeypatch) -> None:
    central = make_central(accounts={"login_failures_per_min": 3})
    add_user(central, "limin", "duty_desk", monkeypatch=monkeypatch)
    url = f"{central.url}/api/v1/session"
    answers = [requests.post(url, json={"username": "limin", "password": "nope"}, timeout=10) for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert "用户名或密码错误" in answers[0].json()["message"] and int(answers[3].headers["Retry-After"]) > 0
    assert sum(e["action"] == "login_refused" for e in central.get("/audit")["entries"]) == 3


def test_a_session_ends_after_its_hours_and_when_the_user_is_disabled(central, monkeypatch) -> None:
    add_user(central, "limin", "duty_desk", monkeypatch=monkeypatch)
    s = login(central, "limin")
    central.clock.advance(11 * 3600)
    assert s.get(f"{central.url}/api/v1/alerts", timeout=10).status_code == 200
    central.clock.advance(3600 + 1)
    r = s.get(f"{central.url}/api/v1/alerts", timeout=10)
    assert r.status_code == 401 and "登录已过期" in r.json()["message"]
    s = login(central, "limin")
    assert central_main(["user", "disable", "limin", "--db", str(central.db_path)]) == 0
    assert s.get(f"{central.url}/api/v1/alerts", timeout=10).status_code == 401


def test_roles_see_their_own_alerts_at_their_sites_and_every_action_is_audited(central, monkeypatch) -> None:
    add_user(central, "wang", f"social_worker:{central.site}", name="王社工", monkeypatch=monkeypatch)
    add_user(central, "zhao", "maintenance", name="赵师傅", monkeypatch=monkeypatch)
    meter = central.register("cbxc-b12-meters", "meter")
    lift = central.register("cbxc-b7-u2-lift1", "elevator")
    far = central.register("siping-meters", "meter", site=OTHER_SITE)
    raise_alert(central, meter, "cbxc-b12-meters", "inactivity", resident="B12-301")
    raise_alert(central, lift, "cbxc-b7-u2-lift1", "entrapment")
    raise_alert(central, far, "siping-meters", "inactivity", resident="S1-101")
    wang, zhao = login(central, "wang"), login(central, "zhao")
    seen = {k: [a["kind"] + "@" + a["site"] for a in s.get(f"{central.url}/api/v1/alerts", timeout=10).json()["alerts"]]
            for k, s in (("wang", wang), ("zhao", zhao))}  # fmt: skip
    assert seen == {"wang": [f"inactivity@{central.site}"], "zhao": [f"entrapment@{central.site}"]}
    lift_alert = next(a for a in central.alerts() if a["kind"] == "entrapment")
    assert wang.post(f"{central.url}/api/v1/alerts/{lift_alert['id']}/ack", json={}, timeout=10).status_code == 403
    assert wang.get(f"{central.url}/api/v1/rides", timeout=10).status_code == 403
    # a change by cookie without the console's header is refused (a form on another site cannot add it)
    bare = requests.Session()
    bare.cookies.update(zhao.cookies)
    assert bare.post(f"{central.url}/api/v1/alerts/{lift_alert['id']}/ack", json={}, timeout=10).status_code == 403
    r = zhao.post(
        f"{central.url}/api/v1/alerts/{lift_alert['id']}/ack", json={"by": "someone else", "note": "到了"}, timeout=10
    )
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "赵师傅"  # a person cannot sign as another
    entry = central.get("/audit")["entries"][0]
    assert (entry["actor"], entry["action"], entry["target"], entry["detail"]) == (
        "赵师傅",
        "acknowledged",
        f"alert {lift_alert['id']}",
        "到了",
    )
    assert zhao.get(f"{central.url}/api/v1/audit", timeout=10).status_code == 403


def test_the_flats_contacts_replace_the_nodes_for_its_alerts(central, monkeypatch) -> None:
    token = central.register("cbxc-b12-meters", "meter", contacts={"family": [{"name": "node-level", "phone": "1"}]})
    assert central_main(["flat", "set", "--db", str(central.db_path), "--site", central.site, "--flat", "B12-301",
                         "--contact", "family=王丽,13800000001,wangli@example.org"]) == 0  # fmt: skip
    raise_alert(central, token, "cbxc-b12-meters", "inactivity", resident="B12-301")
    (alert,) = central.alerts()
    assert alert["flat"] == "B12-301"
    assert alert["contacts"]["family"] == [{"name": "王丽", "phone": "13800000001", "email": "wangli@example.org"}]


def test_user_add_refuses_a_weak_password_and_an_unknown_role(central, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert (
        central_main(["user", "add", "x", "--db", str(central.db_path), "--role", "duty_desk", "--password-stdin"]) == 2
    )
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert central_main(["user", "add", "x", "--db", str(central.db_path), "--role", "boss", "--password-stdin"]) == 2
    assert "unknown role 'boss'" in capsys.readouterr().err
