"""FastAPI dependencies: the store, config and clock from ``app.state``, and who is calling.

Routes never close over the app: they ask for what they need here (``Store``, ``Config``, ``Clock``,
``NodeAuth``, ``OperatorAuth``, ``NodeOrOperator``), so each router module stands alone and a test can build an
app with any store or clock. An operator is an ``Actor``: a person logged in to the console (the session
cookie) or a machine client with a key from the config (``Authorization: Bearer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from central.accounts.roles import ALL_SITES, Actor, Grant, grants_from_json
from central.accounts.store import ConsoleStore
from central.changes import ChangeHub
from central.config import CentralConfig, OperatorSection
from central.errors import ApiError
from central.notify.store import NotifyStore
from central.storage import Store
from common.clock import Clock

bearer = HTTPBearer(auto_error=False, description="node token or operator key")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
SESSION_COOKIE = "changbai_session"
session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="a person's console session")
SessionCookie = Annotated[str | None, Depends(session_cookie)]
CSRF_HEADER = "X-Changbai-Console"  # a cookie-authenticated change must carry it (no other site can set it)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Central:
    """What the newer routes need at once: storage, the delivery log, config, clock and the change hub."""

    store: Store
    notify: NotifyStore
    config: CentralConfig
    clock: Clock
    changes: ChangeHub
    console: ConsoleStore


def get_central(request: Request) -> Central:
    return request.app.state.central


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_config(request: Request) -> CentralConfig:
    return request.app.state.config


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


def get_notify(request: Request) -> NotifyStore:
    return request.app.state.notify


def get_changes(request: Request) -> ChangeHub:
    return request.app.state.changes


StoreDep = Annotated[Store, Depends(get_store)]
NotifyDep = Annotated[NotifyStore, Depends(get_notify)]
ChangesDep = Annotated[ChangeHub, Depends(get_changes)]
CentralDep = Annotated[Central, Depends(get_central)]
ConfigDep = Annotated[CentralConfig, Depends(get_config)]
ClockDep = Annotated[Clock, Depends(get_clock)]


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def node_auth(creds: Credentials, store: StoreDep, config: ConfigDep) -> dict[str, Any]:
    """The calling node (from its token); 401 without a valid token, 403 for an operator key."""
    if creds is None:
        raise unauthorized("a node token is required (Authorization: Bearer TOKEN)")
    node = store.nodes.for_token(creds.credentials)
    if node is not None:
        return node
    if config.operator_for(creds.credentials) is not None:
        raise ApiError(403, "forbidden", "an operator key cannot be used for node calls")
    raise unauthorized("unknown node or wrong token (re-register to get a new one)")


def key_actor(operator: OperatorSection) -> Actor:
    """A machine client's key from the config: an admin of every site, named as in the config."""
    return Actor(operator.name, "key", (Grant("admin", (ALL_SITES,)),))


def session_actor(request: Request, token: str, central: Central) -> Actor:
    """The person of a live session; 401 when it expired or was closed, 403 for a change without the header."""
    user = central.console.session_user(token, central.clock.wall())
    if user is None:
        raise unauthorized("your session has ended; log in again (登录已过期，请重新登录)")
    if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(403, "forbidden", f"a change made with a session cookie needs the {CSRF_HEADER}: 1 header")
    grants = grants_from_json(user["grants"])
    return Actor(user["name"], "session", grants, user["username"], token)


def operator_auth(
    request: Request, creds: Credentials, cookie: SessionCookie, store: StoreDep, config: ConfigDep
) -> Actor:
    """The calling operator (a key, or a person's session); 401 without either, 403 for a node token."""
    central = get_central(request)
    if creds is None:
        if cookie:
            return session_actor(request, cookie, central)
        raise unauthorized("log in, or give an operator key (Authorization: Bearer KEY)")
    operator = config.operator_for(creds.credentials)
    if operator is not None:
        return key_actor(operator)
    if store.nodes.for_token(creds.credentials) is not None:
        raise ApiError(403, "forbidden", "a node token cannot be used for operator calls")
    raise unauthorized("unknown operator key")


def node_or_operator(
    request: Request, creds: Credentials, cookie: SessionCookie, store: StoreDep, config: ConfigDep
) -> dict[str, Any] | Actor:
    """A node (a dict) or an operator; 401 otherwise."""
    if creds is None:
        if cookie:
            return session_actor(request, cookie, get_central(request))
        raise unauthorized("a node token or operator key is required")
    operator = config.operator_for(creds.credentials)
    if operator is not None:
        return key_actor(operator)
    node = store.nodes.for_token(creds.credentials)
    if node is None:
        raise unauthorized("unknown node or wrong token")
    return node


NodeAuth = Annotated[dict[str, Any], Depends(node_auth)]
OperatorAuth = Annotated[Actor, Depends(operator_auth)]
NodeOrOperator = Annotated[dict[str, Any] | Actor, Depends(node_or_operator)]


def require(actor: Actor, power: str, site: str | None = None) -> None:
    """403 unless ``actor`` may use ``power`` (at ``site``)."""
    if not actor.may(power, site):
        where = f" at {site}" if site else ""
        raise ApiError(403, "forbidden", f"{actor.name} may not do this{where} (needs {power}); ask an administrator")


def require_everywhere(actor: Actor, power: str) -> None:
    """403 unless ``actor`` may use ``power`` at every site: the central-wide lists (users, the audit log) name
    people and notes of every site, so an administrator of one site does not read them."""
    require(actor, power)
    if actor.sites() is not None:
        raise ApiError(403, "forbidden", f"{actor.name} is an administrator of some sites only; this needs every site")


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""
