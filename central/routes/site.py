"""What anyone may read: liveness, the contract under /api/v1, and the strict page policy of the HTML pages."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from central.deps import ClockDep, StoreDep
from central.errors import refusals
from central.routes import API, api_router

router = api_router("anyone")
pages = APIRouter(include_in_schema=False)


@router.get("/health", responses=refusals(503))
def health(request: Request, clock: ClockDep, store: StoreDep) -> dict[str, Any]:
    """Liveness for technicians and load balancers; no auth, no data. ``status`` is ``ok`` while the process
    answers; ``storage`` says whether it can store what nodes send (``failing``: a full disk, the database away),
    for a monitoring probe: nodes keep their events meanwhile, but nothing new reaches the console."""
    storage = store.health.to_json()
    return {"status": "ok", "server_time": clock.wall(), "version": request.app.version, "storage": storage}


@pages.get(f"{API}/openapi.json")
def openapi_under_api(request: Request) -> JSONResponse:
    """The same document as /openapi.json, for clients that keep every call under /api/v1."""
    return JSONResponse(request.app.openapi())


def _hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


@functools.cache
def page_headers(html: str) -> dict[str, str]:
    """A page's own script and style by hash and nothing else: no inline injection, no framing."""
    policy = (
        f"default-src 'none'; script-src {_hashes(html, 'script')}; style-src {_hashes(html, 'style')};"
        " connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {"Cache-Control": "no-store", "Content-Security-Policy": policy}
