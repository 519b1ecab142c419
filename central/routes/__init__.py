"""The API's routers, one module per concern; ``central.app.create_app`` includes each ``ROUTERS`` entry.

A new concern (e.g. software releases) is a new module here with its own ``router = api_router("tag")``,
added to ``ROUTERS``.
"""

from __future__ import annotations

from fastapi import APIRouter

from central.asgi_limits import JsonRoute
from common.contract import API_PREFIX

API = API_PREFIX


def api_router(tag: str) -> APIRouter:
    """A router under /api/v1 whose bodies are parsed safely (``JsonRoute``)."""
    return APIRouter(prefix=API, tags=[tag], route_class=JsonRoute)
