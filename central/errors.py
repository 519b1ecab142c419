"""The central's typed refusal (/work/team/ERROR-CONTRACT.md, docs/api.md#errors): one body for every non-2xx.

``{"schema": "changbai-error/1", "error": code, "message": text, "fields": [json paths]}``. The ``schema`` marker
lets a node tell our refusals from a proxy's error page. ``install_handlers(app)`` answers every exception with
it; ``refusals(401, 403, ...)`` documents the statuses of a path in the OpenAPI with the same body.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from central.storage.errors import Conflict, NotFound, StorageError, StorageIntegrityError
from common.contract import API_PREFIX

log = logging.getLogger("central")

ERROR_SCHEMA = "changbai-error/1"
STORAGE_RETRY_S = 30

# status -> (default code, what it means; the OpenAPI description)
STATUSES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the request is not valid HTTP"),
    401: ("unauthorized", "no credential, or an unknown or rotated token or key"),
    403: ("forbidden", "the credential may not do this (role, another node's data, wrong claim key)"),
    404: ("not_found", "no such node, alert, ride or path"),
    405: ("method_not_allowed", "the path does not take this method"),
    408: ("request_timeout", "the request head or body took too long to arrive"),
    409: ("conflict", "the current state forbids it"),
    413: ("body_too_large", "the body (or the number of events) is over the limit"),
    416: ("range_not_satisfiable", "the Range starts at or past the end of the file; Content-Range names its size"),
    422: ("invalid_body", "the body or a parameter does not validate; `fields` names each"),
    429: ("rate_limited", "too many attempts from this address; retry after Retry-After seconds"),
    500: ("server_error", "a bug in the central; nothing was acknowledged"),
    503: ("overloaded", "the central cannot take this now (connections, memory, storage); retry after Retry-After"),
}
RETRY_AFTER_HEADER = {
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "string"}}
}


class ErrorBody(BaseModel):
    """Every refusal of the central (documentation model for the OpenAPI)."""

    model_config = ConfigDict(extra="forbid")
    schema_: Literal["changbai-error/1"] = Field(alias="schema")
    error: str
    message: str
    fields: list[str]


class ApiError(Exception):
    """A refusal with ``status``, ``code`` and ``message``; ``fields`` names the JSON paths at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.headers = headers


def error_body(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    """The refusal body (a dict, for JSONResponse and for raw ASGI answers)."""
    return {"schema": ERROR_SCHEMA, "error": code, "message": message, "fields": fields or []}


def error_bytes(code: str, message: str) -> bytes:
    return json.dumps(error_body(code, message), ensure_ascii=False).encode()


def refusal(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    code = STATUSES.get(status, ("http_error", ""))[0]
    return JSONResponse(error_body(code, message), status, headers=headers)


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these statuses, each with the error body's schema."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": f"`{STATUSES[status][0]}`: {STATUSES[status][1]}"}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER_HEADER
        out[status] = entry
    return out


# ------------------------------------------------------------------------------------------ field names
# pydantic puts the member type of a union or the dict-key marker in ``loc``; they are not field names
_PYDANTIC_MARKERS = ("function-", "literal[", "list[", "dict[", "json-", "constrained-")
_PYDANTIC_TYPES = {"[key]", "str", "int", "float", "bool", "none", "Contact"}


def field_name(loc: tuple | list) -> str:
    """``events[0].severity`` from a pydantic ``loc``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part in _PYDANTIC_TYPES or part.startswith(_PYDANTIC_MARKERS):
            continue
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """(one message naming each bad field and why, the fields)."""
    fields = list(dict.fromkeys(field_name(e.get("loc", ())) for e in errors))
    parts = []
    for e in errors[:10]:
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{field_name(e.get('loc', ()))}: {msg}")
    return "; ".join(parts), fields


# ---------------------------------------------------------------------------------------------- handlers
async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.code, exc.message, exc.fields), exc.status, headers=exc.headers)


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, fields = validation_message(list(exc.errors()))
    return JSONResponse(error_body("invalid_body", message, fields), 422)


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """The methods the OpenAPI document lists for ``path``."""
    paths = app.openapi()["paths"]
    if path in paths:  # a literal path wins over a template it also fits (/nodes/register, /nodes/{node_id})
        return {method.upper() for method in paths[path]}
    methods: set[str] = set()
    for template, operations in paths.items():
        if re.fullmatch(re.sub(r"\{[^/}]+\}", "[^/]+", template), path):
            methods |= {method.upper() for method in operations}
    return methods


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        # Starlette names the methods of the first route matching the path; a path served by two routers
        # (POST and GET /events) must name both: take them from the contract
        methods = allowed_methods(request.app, request.url.path)
        if methods:
            headers = {**(headers or {}), "Allow": ", ".join(sorted(methods))}
    return refusal(exc.status_code, str(exc.detail), headers)


async def _storage(request: Request, exc: Exception) -> JSONResponse:
    # a 5xx: nodes keep their events and retry later; nothing was acknowledged. The storage's health logs an
    # engine's failure (the first, then once a minute: a full disk refuses every node every 30 s) and counts a
    # node's refused upload (what makes the central "failing"); a refused constraint is a bug or a race, logged
    if isinstance(exc, StorageIntegrityError):
        log.error("storage error: %s: %s", type(exc).__name__, exc)
    elif request.url.path in UPLOAD_PATHS and isinstance(exc, StorageError):
        request.app.state.store.health.refused(exc)
    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else type(exc).__name__
    body = error_body("storage_error", f"the central cannot store or read data now ({cause})")
    return JSONResponse(body, 503, headers={"Retry-After": str(STORAGE_RETRY_S)})


UPLOAD_PATHS = frozenset({f"{API_PREFIX}/events", f"{API_PREFIX}/heartbeat"})  # a node's uploads


async def _bug(_: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback and re-raises after this answer; the client still gets our body
    return refusal(500, f"unexpected {type(exc).__name__} at the central; nothing was acknowledged")


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return refusal(404, str(exc))


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return refusal(409, str(exc))


def install_handlers(app: FastAPI) -> None:
    """Answer every exception with the refusal body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(StorageError, _storage)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(Exception, _bug)
