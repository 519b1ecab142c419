"""People at the console: logging in and out (the session cookie), who is on duty, the audit log, the users.

A login sets ``changbai_session`` (HttpOnly, SameSite=Strict, Secure over HTTPS, expiring after
``accounts.session_hours``); the central keeps only its sha256. Wrong passwords are limited per address (429 with
Retry-After). Every login, logout and refused login is in the audit log.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Annotated, Any

from fastapi import Query, Request, Response
from pydantic import ConfigDict, StringConstraints

from central.accounts.passwords import verify
from central.accounts.roles import Actor, grants_from_json
from central.deps import SESSION_COOKIE, CentralDep, OperatorAuth, client_address, require_everywhere
from central.errors import ApiError, refusals
from central.jsonvalues import StoredBody
from central.kinds import catalogue
from central.ratelimit import FailureLimiter
from central.routes import api_router
from central.storage import NotFound

log = logging.getLogger("central")
router = api_router("people")
DUMMY_HASH = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


class LoginBody(StoredBody):
    """POST /session."""

    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


def login_limiter(request: Request) -> FailureLimiter:
    state = request.app.state
    if not hasattr(state, "login_limiter"):
        rate = state.config.accounts.login_failures_per_min
        state.login_limiter = FailureLimiter(rate, rate)
    return state.login_limiter


def _refuse_if_limited(limiter: FailureLimiter, address: str) -> None:
    wait = limiter.retry_after(address)
    if wait is not None:
        raise ApiError(
            429, "rate_limited", f"too many wrong passwords; try again in {math.ceil(wait)} s (密码错误次数过多)",
            headers={"Retry-After": str(math.ceil(wait))},
        )  # fmt: skip


@router.post("/session", responses=refusals(401, 413, 422, 429, 503))
def login(body: LoginBody, request: Request, response: Response, central: CentralDep) -> dict[str, Any]:
    """Log a person in: sets the session cookie and answers who they are."""
    address, limiter, now = client_address(request), login_limiter(request), central.clock.wall()
    _refuse_if_limited(limiter, address)
    try:
        user = central.console.user(body.username)
    except NotFound:
        user = None
    # the same scrypt work whether or not the user exists: the answer's time tells nothing
    ok = verify(user["password_hash"] if user else DUMMY_HASH, body.password) and user is not None
    if not ok or user is None or user["disabled"]:
        limiter.failed(address)
        central.console.audit(now, body.username, "session", "login_refused", "", "", address)
        raise ApiError(401, "unauthorized", "wrong user name or password (用户名或密码错误)")
    token = secrets.token_urlsafe(32)
    ttl = central.config.accounts.session_hours * 3600
    central.console.open_session(user["id"], token, now, ttl, address)
    central.console.audit(now, user["name"], "session", "login", user["username"], "", address)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(ttl), httponly=True, samesite="strict", path="/", secure=_secure(request)
    )
    actor = Actor(user["name"], "session", grants_from_json(user["grants"]), user["username"])
    return {**actor.to_json(), "expires_at": now + ttl, "server_time": now}


def _secure(request: Request) -> bool:
    mode = request.app.state.config.accounts.cookie_secure
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


@router.get("/session", responses=refusals(401, 403, 503))
def whoami(actor: OperatorAuth, central: CentralDep) -> dict[str, Any]:
    """Who is on duty at this console (the header shows it), or the machine client's key name."""
    return {**actor.to_json(), "server_time": central.clock.wall()}


@router.delete("/session", responses=refusals(401, 403, 503))
def logout(actor: OperatorAuth, request: Request, response: Response, central: CentralDep) -> dict[str, Any]:
    """End this session (the cookie is cleared; the session is deleted at the central)."""
    if actor.session:
        central.console.close_session(actor.session)
    central.console.audit(central.clock.wall(), actor.name, actor.via, "logout", actor.username or "", "",
                          client_address(request))  # fmt: skip
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return {"ok": True}


@router.get("/audit", responses=refusals(401, 403, 422, 503))
def audit_log(
    actor: OperatorAuth,
    central: CentralDep,
    before: Annotated[int | None, Query(ge=1, le=2**53 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    who: Annotated[str | None, Query(max_length=80)] = None,
) -> dict[str, Any]:
    """Every action taken at the console, newest first (admin); page with ``before`` = the last ``id`` seen."""
    require_everywhere(actor, "audit")
    entries = central.console.audit_log(before, limit, who)
    return {"entries": entries, "next_before": entries[-1]["id"] if entries else None}


@router.get("/users", responses=refusals(401, 403, 503))
def list_users(actor: OperatorAuth, central: CentralDep) -> dict[str, Any]:
    """The console's users and their roles (admin); never their password hashes."""
    require_everywhere(actor, "users")
    return {"users": central.console.users()}


@router.get("/catalogue", responses=refusals(503))
def get_catalogue(central: CentralDep) -> dict[str, Any]:
    """Every kind, role, severity and state in words (Chinese and English), the sites' names, the response
    targets, and how many silent nodes of one site the console shows as one card."""
    sites = {s.id: s.name or s.id for s in central.config.sites}
    return catalogue(sites, central.config.notify.group_silent_min)
