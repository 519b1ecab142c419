"""FastAPI dependencies: the store, config and clock from ``app.state``, and who is calling.

Routes never close over the app: they ask for what they need here (``Store``, ``Config``, ``Clock``,
``NodeAuth``, ``OperatorAuth``, ``NodeOrOperator``), so each router module stands alone and a test can build an
app with any store or clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from central.changes import ChangeHub
from central.config import CentralConfig, OperatorSection
from central.errors import ApiError
from central.notify.store import NotifyStore
from central.storage import Store
from common.clock import Clock

bearer = HTTPBearer(auto_error=False, description="node token or operator key")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@dataclass(frozen=True)
class Central:
    """What the newer routes need at once: storage, the delivery log, config, clock and the change hub."""

    store: Store
    notify: NotifyStore
    config: CentralConfig
    clock: Clock
    changes: ChangeHub


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
    node = store.node_for_token(creds.credentials)
    if node is not None:
        return node
    if config.operator_for(creds.credentials) is not None:
        raise ApiError(403, "forbidden", "an operator key cannot be used for node calls")
    raise unauthorized("unknown node or wrong token (re-register to get a new one)")


def operator_auth(creds: Credentials, store: StoreDep, config: ConfigDep) -> OperatorSection:
    """The calling operator (from the key); 401 without a valid key, 403 for a node token."""
    if creds is None:
        raise unauthorized("an operator key is required (Authorization: Bearer KEY)")
    operator = config.operator_for(creds.credentials)
    if operator is not None:
        return operator
    if store.node_for_token(creds.credentials) is not None:
        raise ApiError(403, "forbidden", "a node token cannot be used for operator calls")
    raise unauthorized("unknown operator key")


def node_or_operator(creds: Credentials, store: StoreDep, config: ConfigDep) -> dict[str, Any] | OperatorSection:
    """A node (a dict) or an operator; 401 otherwise."""
    if creds is None:
        raise unauthorized("a node token or operator key is required")
    operator = config.operator_for(creds.credentials)
    if operator is not None:
        return operator
    node = store.node_for_token(creds.credentials)
    if node is None:
        raise unauthorized("unknown node or wrong token")
    return node


NodeAuth = Annotated[dict[str, Any], Depends(node_auth)]
OperatorAuth = Annotated[OperatorSection, Depends(operator_auth)]
NodeOrOperator = Annotated[dict[str, Any] | OperatorSection, Depends(node_or_operator)]
