"""The central's app factory: ``create_app(config, database, clock)`` wires the store, limits and routers.

Each concern is a router module under ``central/routes/``; routes get the store, config and clock from
``app.state`` through ``central.deps``. The clock is injectable so tests can move time (alert escalation, the
simulated fleet) without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import FastAPI

from central import releases
from central.accounts.store import CONSOLE, ConsoleStore
from central.admission import ALERT, INGEST, INTERACTIVE, Admission, AdmissionGate, AdmissionSlot
from central.asgi_limits import BodyLimit, MemoryBudget, SecurityHeaders
from central.changes import ChangeHub
from central.config import CentralConfig
from central.deps import Central
from central.dispatch.store import DISPATCH, DispatchStore
from central.errors import install_handlers
from central.notify.store import NOTIFY, NotifyStore
from central.notify.worker import Notifier
from central.ratelimit import FailureLimiter
from central.recent import Recent
from central.release_store import RELEASES, ReleaseStore, files_root
from central.routes import ack, alerts, changes, console, events, nodes, people, residents, rides, site, stream
from central.storage import Component, open_store
from central.storage.maintenance import MaintenanceThread
from central.views import alert_views
from common.clock import Clock, SystemClock

ROUTERS = (
    nodes.router,
    events.router,
    alerts.router,
    rides.router,
    changes.router,
    people.router,
    residents.router,
    site.router,
    site.pages,
    ack.pages,
    stream.pages,
    console.pages,
)
# tables of other parts of the central, migrated after the core's (central.storage.migrations): add yours here
STORAGE_COMPONENTS: tuple[Component, ...] = (RELEASES, NOTIFY, CONSOLE, DISPATCH)

__all__ = ["close_app", "create_app"]


def _version() -> str:
    try:
        return version("changbai-nodes")
    except PackageNotFoundError:
        return "unknown"


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Background jobs run while the app is served: the notifier and the storage's maintenance."""
    app.state.notifier.start()
    app.state.maintenance.start()
    try:
        yield
    finally:
        await asyncio.to_thread(app.state.maintenance.stop)
        await asyncio.to_thread(app.state.notifier.stop)


def _notifier(app: FastAPI) -> Notifier:
    state = app.state
    return Notifier(
        state.store,
        state.notify,
        state.config,
        state.clock,
        views=lambda found, now: alert_views(found, state.central, now),
        public_url=lambda: state.public_url,
    )


def create_app(config: CentralConfig, database: Path | str, clock: Clock | None = None) -> FastAPI:
    """The central as an ASGI app over ``database``: a SQLite file (created, mode 0600, when missing) or a
    ``postgresql://`` URL (``central.storage.open_store``). Raises StorageError when it cannot be opened."""
    server = config.server
    app = FastAPI(
        title="changbai-nodes central",
        version=_version(),
        description="Reference central endpoint of changbai-nodes: the v1 node and operator contract. Every "
        'refusal is `{"schema": "changbai-error/1", "error", "message", "fields"}` (docs/api.md#errors).',
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store = open_store(
        database,
        STORAGE_COMPONENTS,
        retention=config.retention,
        stale_after_s=server.node_stale_after_s,
        pool_size=config.database.pool_size,
    )
    app.state.config = config
    app.state.clock = clock or SystemClock()
    app.state.notify = NotifyStore(app.state.store.db)
    app.state.public_url = ""  # the address the central is served at, set by whoever serves it (ack links)
    app.state.changes = ChangeHub()
    app.state.notifier = _notifier(app)
    app.state.changes.subscribe(app.state.notifier.wake)
    app.state.console = ConsoleStore(app.state.store.db)
    app.state.dispatch = DispatchStore(app.state.store.db)
    app.state.central = Central(
        app.state.store, app.state.notify, config, app.state.clock, app.state.changes, app.state.console
    )
    app.state.maintenance = MaintenanceThread(
        app.state.store.maintenance, app.state.clock, config.retention.maintenance_interval_s
    )
    app.state.claim_limiter = FailureLimiter(server.register_failures_per_min, server.register_failures_per_min)
    app.state.memory_budget = MemoryBudget(server.max_buffered_bytes)
    app.state.stream_slots = changes.StreamSlots(server.max_streams)
    app.state.node_summary = Recent(
        lambda now: app.state.store.nodes.summary(now - server.node_stale_after_s), server.summary_max_age_s, "summary"
    )
    limits = {
        INGEST: server.max_ingest_in_flight,
        INTERACTIVE: server.max_interactive_in_flight,
        ALERT: server.max_alert_in_flight,
    }
    app.state.admission = AdmissionGate(
        limits, server.admission_line, server.overload_retry_after_s, interactive_first_s=server.interactive_first_s
    )
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    files = files_root(database, config.database.files_dir)
    releases.install(app, ReleaseStore(app.state.store.db, files))  # software updates: central/releases.py
    app.add_middleware(AdmissionSlot, gate=app.state.admission)  # a slot once the body is read
    app.add_middleware(
        BodyLimit, max_bytes=server.max_body_bytes, timeout_s=server.body_timeout_s, budget=app.state.memory_budget
    )
    # outside BodyLimit: a request over its class's bound is refused before any of its body is read
    app.add_middleware(Admission, gate=app.state.admission)
    app.add_middleware(SecurityHeaders)
    return app


def close_app(app: FastAPI) -> None:
    """Stop the app's maintenance thread and close its databases (after the server stopped)."""
    app.state.maintenance.stop()
    app.state.store.close()
