"""The duty console's files: ``/`` (and ``/operator``) is the console, ``/console/NAME`` its scripts, style and icons.

Everything is served from the package (no build step, nothing from elsewhere); the policy allows this origin's
own scripts and styles only, so nothing injected into the page can run.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from central.errors import ApiError

pages = APIRouter(include_in_schema=False)
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}
FILES = ("index.html", "app.js", "api.js", "board.js", "pages.js", "console.css", "icon-ok.svg", "icon-alarm.svg")
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
    " media-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@functools.cache
def console_file(name: str) -> bytes:
    return resources.files("central").joinpath("console", name).read_bytes()


@pages.get("/", response_class=HTMLResponse)
@pages.get("/operator", response_class=HTMLResponse)
def console_page() -> HTMLResponse:
    return HTMLResponse(
        console_file("index.html"), headers={"Cache-Control": "no-store", "Content-Security-Policy": POLICY}
    )


@pages.get("/console/{name}")
def console_asset(name: str) -> Response:
    if name not in FILES:
        raise ApiError(404, "not_found", f"no console file {name!r}")
    suffix = name[name.rfind(".") :]
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": POLICY}
    return Response(console_file(name), media_type=TYPES[suffix], headers=headers)
