"""The FastAPI application of the reference central: the v1 contract of docs/api.md under /api/v1.

``create_app(config, db_path, clock)`` builds it; the clock is injectable so tests can move time (alert
escalation, the simulated fleet) without sleeping.
"""

# no `from __future__ import annotations` here: FastAPI must see the real types of the routes and dependencies
# defined inside create_app(), and string annotations there cannot be resolved from the module's globals
import dataclasses
import json
import logging
import secrets
import sqlite3
import uuid
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from central import releases
from central.config import CentralConfig, OperatorSection
from central.fleet import DispatchPlan, plan_dispatch, ride_view
from central.routing import notifications
from central.store import Conflict, NotFound, Store
from common.clock import Clock, SystemClock
from common.events import RECIPIENT_ROLES

log = logging.getLogger("central")

API = "/api/v1"
NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"
SITE_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
CONTACT_ROLES = ("family", "social_worker", "property_management", "maintenance", "operator")

Role = Literal[tuple(RECIPIENT_ROLES)]  # type: ignore[valid-type]
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
ShortText = Annotated[str, StringConstraints(max_length=500)]


class ApiError(Exception):
    """An error answered as ``{"error": code, "message": ..., "fields": [...]}`` with ``status``."""

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
    return {"error": code, "message": message, "fields": fields or []}


# ------------------------------------------------------------------------------------------------ bodies
class Contact(BaseModel):
    """One person to reach: a name and a phone number (free text)."""

    model_config = ConfigDict(extra="forbid")
    name: ShortText
    phone: ShortText = ""
    note: ShortText = ""


class RegisterBody(BaseModel):
    """POST /nodes/register."""

    model_config = ConfigDict(extra="forbid")
    claim_key: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    node_id: Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN)]
    role: Literal["elevator", "meter", "kiosk"]
    site: Annotated[str, StringConstraints(pattern=SITE_PATTERN)]
    area: ShortText = ""
    location: ShortText = ""
    pickup_point: ShortText = ""
    contacts: dict[Literal[CONTACT_ROLES], list[Contact | ShortText]] = Field(default_factory=dict)  # type: ignore[valid-type]


class EventBatch(BaseModel):
    """POST /events: the node's wall time at upload and its events (each validated on its own)."""

    node_wall_time: FiniteFloat
    events: list[Any]


class WireEvent(BaseModel):
    """One event as ``common.events.Event.to_wire()`` makes it; unknown keys are ignored (newer nodes)."""

    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    node_id: str
    kind: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
    severity: Literal["info", "warning", "urgent"]
    state: Literal["raised", "updated", "cleared", "observed"]
    priority: Literal["alert", "state", "reading"]
    wall_time: FiniteFloat
    clock_synced: Annotated[bool, Field(strict=True)]
    payload: dict[str, Any] = Field(default_factory=dict)
    alert_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    recipients: list[Role] = Field(default_factory=list)  # type: ignore[valid-type]
    seq: Annotated[int, Field(strict=True, ge=0)] | None = None

    # null where an object or a list belongs carries no information: not worth dead-lettering an alert for
    @field_validator("payload", mode="before")
    @classmethod
    def _null_payload(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("recipients", mode="before")
    @classmethod
    def _null_recipients(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError("not a UUID") from None
        return value


WIRE_EVENT = TypeAdapter(WireEvent)


class HeartbeatBody(BaseModel):
    """POST /heartbeat: the node's health. Known keys are type-checked; other keys are kept as sent."""

    model_config = ConfigDict(extra="allow")
    node_wall_time: FiniteFloat | None = None
    uptime_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    version: ShortText | None = None
    outbox_depth: int | dict[str, int] | None = None
    dropped: int | dict[str, int] | None = None
    dead_letters: int | None = None
    last_sensor_read: FiniteFloat | None = None
    clock_synced: bool | None = None
    selftest: dict[str, Any] | None = None


class AlertAction(BaseModel):
    """POST /alerts/{id}/ack and /resolve: who (defaults to the operator key's name) and a note."""

    model_config = ConfigDict(extra="forbid")
    by: Annotated[str, StringConstraints(min_length=1, max_length=80)] | None = None
    note: ShortText = ""


class RideRequest(BaseModel):
    """POST /rides from a kiosk."""

    model_config = ConfigDict(extra="forbid")
    request_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
    pickup_point: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    phone_tail: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")] | None = None


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: ShortText = ""


# -------------------------------------------------------------------------------------------- middleware
class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: by Content-Length up front, else while streaming.

    The body is read here in full (it is small by construction) and replayed to the app.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _send_json(send, 400, error_body("bad_request", "Content-Length is not a number"))
                return
            if too_big:
                await self._refuse(receive, send, int(declared), more=True)
                return
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            more = message.get("more_body", False)
            if total > self.max_bytes:
                await self._refuse(receive, send, total, more)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, receive: Any, send: Any, seen: int, more: bool) -> None:
        log.warning("refused a request body of %d+ bytes (limit %d)", seen, self.max_bytes)
        # read (and drop) a bounded amount more so the client can finish sending and read the answer
        budget = 8 * self.max_bytes
        while more and budget > 0:
            message = await receive()
            more = message["type"] == "http.request" and message.get("more_body", False)
            budget -= len(message.get("body", b""))
        body = error_body("body_too_large", f"request body is larger than {self.max_bytes} bytes")
        await _send_json(send, 413, body, close=True)


async def _send_json(send: Any, status: int, body: dict, close: bool = False) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


# ----------------------------------------------------------------------------------------------- helpers
# pydantic puts the member type of a union or the dict-key marker in ``loc``; they are not field names
_PYDANTIC_MARKERS = ("function-", "literal[", "list[", "dict[", "json-", "constrained-")
_PYDANTIC_TYPES = {"[key]", "str", "int", "float", "bool", "none", "Contact"}


def _field_name(loc: tuple | list) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part in _PYDANTIC_TYPES or part.startswith(_PYDANTIC_MARKERS):
            continue  # pydantic's union-member markers, not a field
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def _validation_message(errors: list[dict]) -> tuple[str, list[str]]:
    fields = list(dict.fromkeys(_field_name(e.get("loc", ())) for e in errors))
    parts = [f"{_field_name(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:10]]
    return "; ".join(parts), fields


def _handled_at(alert: dict[str, Any]) -> float | None:
    times = [t for t in (alert.get("acknowledged_at"), alert.get("resolved_at")) if t is not None]
    return min(times) if times else None


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("changbai-nodes")
    except PackageNotFoundError:
        return "unknown"


def operator_page_html() -> str:
    return resources.files("central").joinpath("operator.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ the app
def create_app(config: CentralConfig, db_path: Path | str, clock: Clock | None = None) -> FastAPI:
    """The central as an ASGI app over the SQLite file ``db_path`` (created when missing)."""
    clock = clock or SystemClock()
    store = Store(db_path)
    bearer = HTTPBearer(auto_error=False, description="node token or operator key")
    app = FastAPI(
        title="changbai-nodes central",
        version=_version(),
        description="Reference central endpoint of changbai-nodes: the v1 node and operator contract.",
    )
    app.state.store = store
    app.state.config = config
    app.state.clock = clock
    app.add_middleware(BodyLimit, max_bytes=config.server.max_body_bytes)
    releases.install(app, db_path)  # software updates: central/releases.py

    # -------------------------------------------------------------------------------------- errors
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.fields), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, fields = _validation_message(list(exc.errors()))
        return JSONResponse(error_body("invalid", message, fields), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(sqlite3.Error)
    async def _storage(_: Request, exc: sqlite3.Error) -> JSONResponse:
        # a 5xx: nodes keep their events and retry later; nothing was acknowledged
        log.error("storage error: %s: %s", type(exc).__name__, exc)
        body = error_body("storage_error", f"the central cannot store or read data now ({type(exc).__name__})")
        return JSONResponse(body, 503, headers={"Retry-After": "30"})

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback and re-raises after this answer; the client still gets structured JSON
        body = error_body("internal", f"unexpected {type(exc).__name__} at the central; nothing was acknowledged")
        return JSONResponse(body, 500)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(error_body("not_found", str(exc)), 404)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(error_body("conflict", str(exc)), 409)

    # ---------------------------------------------------------------------------------------- auth
    def _unauthorized(message: str) -> ApiError:
        return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})

    def node_auth(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> dict[str, Any]:
        if creds is None:
            raise _unauthorized("a node token is required (Authorization: Bearer TOKEN)")
        node = store.node_for_token(creds.credentials)
        if node is None:
            raise _unauthorized("unknown node or wrong token (re-register to get a new one)")
        return node

    def operator_auth(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> OperatorSection:
        if creds is None:
            raise _unauthorized("an operator key is required (Authorization: Bearer KEY)")
        operator = config.operator_for(creds.credentials)
        if operator is not None:
            return operator
        if store.node_for_token(creds.credentials) is not None:
            raise ApiError(403, "forbidden", "a node token cannot be used for operator calls")
        raise _unauthorized("unknown operator key")

    def node_or_operator(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> dict[str, Any] | OperatorSection:
        if creds is None:
            raise _unauthorized("a node token or operator key is required")
        operator = config.operator_for(creds.credentials)
        if operator is not None:
            return operator
        node = store.node_for_token(creds.credentials)
        if node is None:
            raise _unauthorized("unknown node or wrong token")
        return node

    NodeAuth = Annotated[dict[str, Any], Depends(node_auth)]
    OperatorAuth = Annotated[OperatorSection, Depends(operator_auth)]

    # --------------------------------------------------------------------------------------- views
    def alert_view(alert: dict[str, Any], nodes: dict[str, dict[str, Any]], now: float) -> dict[str, Any]:
        node = nodes.get(alert["node_id"], {})
        schedule = notifications(
            severity=alert["severity"],
            recipients=alert["recipients"],
            payload=alert["payload"],
            opened_at=alert["opened_at"],
            handled_at=_handled_at(alert),
            now=now,
            escalation=config.escalation,
        )
        contacts = node.get("contacts", {})
        for entry in schedule["notified"]:
            entry["contacts"] = contacts.get(entry["role"], [])
        roles = list(alert["recipients"])
        if schedule["escalation"]:
            roles += [r for r in schedule["escalation"]["roles"] if r not in roles]
        alert.update(schedule)
        alert["contacts"] = {role: contacts.get(role, []) for role in roles}
        alert.update(site=node.get("site"), area=node.get("area"), location=node.get("location"), role=node.get("role"))
        return alert

    def ride_out(ride: dict[str, Any], now: float) -> dict[str, Any]:
        view = ride_view(
            DispatchPlan(**ride["plan"]), ride["requested_at"], now, config.fleet.time_scale, ride["cancelled_at"]
        )
        out = {k: ride[k] for k in ("ride_id", "request_id", "node_id", "pickup_point", "phone_tail")}
        out["requested_at"] = ride["requested_at"]
        out.update(view)
        out["server_time"] = now
        return out

    def node_view(node: dict[str, Any], now: float) -> dict[str, Any]:
        seen = node.get("last_seen_at")
        node["seen_ago_s"] = None if seen is None else max(0.0, now - seen)
        node["stale"] = seen is None or now - seen > config.server.node_stale_after_s
        return node

    # --------------------------------------------------------------------------------------- nodes
    @app.post(f"{API}/nodes/register", status_code=201, tags=["nodes"])
    def register(body: RegisterBody) -> dict[str, Any]:
        """Register a node with its site's claim key; answers its token once. Re-registering rotates it."""
        site = config.site(body.site)
        wanted = site.claim_key if site else secrets.token_urlsafe(32)  # compare anyway: same time either way
        if not secrets.compare_digest(body.claim_key.encode(), wanted.encode()) or site is None:
            log.warning("registration of %s at site %s refused: wrong claim key", body.node_id, body.site)
            raise ApiError(403, "forbidden", "claim key not valid for this site", ["claim_key"])
        token = secrets.token_urlsafe(32)
        fields = body.model_dump(exclude={"claim_key"}, exclude_unset=True)  # contacts as sent
        created = store.register_node(fields, token, clock.wall())
        log.info(
            "node %s (%s) %s at site %s",
            body.node_id,
            body.role,
            "registered" if created else "re-registered, token rotated",
            body.site,
        )
        return {"node_id": body.node_id, "token": token, "role": body.role, "site": body.site, "new": created}

    @app.get(f"{API}/nodes", tags=["operator"])
    def list_nodes(_: OperatorAuth) -> dict[str, Any]:
        """Every node with its latest health, last seen and how many seq numbers never arrived."""
        now = clock.wall()
        return {"nodes": [node_view(n, now) for n in store.nodes()], "server_time": now}

    @app.get(f"{API}/nodes/{{node_id}}", tags=["operator"])
    def get_node(node_id: str, who: Annotated[Any, Depends(node_or_operator)]) -> dict[str, Any]:
        """One node, with its seq gaps as [first, last] ranges of missing numbers. A node may read its own."""
        if isinstance(who, dict) and who["node_id"] != node_id:
            raise ApiError(403, "forbidden", "a node may only read its own record")
        return node_view(store.node(node_id), clock.wall())

    @app.post(f"{API}/heartbeat", tags=["nodes"])
    def heartbeat(body: HeartbeatBody, node: NodeAuth) -> dict[str, Any]:
        """Store the node's latest health."""
        now = clock.wall()
        store.store_heartbeat(node["node_id"], body.model_dump(exclude_unset=True), now)
        return {"ok": True, "server_time": now}

    # -------------------------------------------------------------------------------------- events
    @app.post(f"{API}/events", tags=["nodes"])
    def post_events(body: EventBatch, node: NodeAuth) -> dict[str, Any]:
        """A batch of the node's events; idempotent by event id. Invalid events are listed in ``rejected``."""
        node_id = node["node_id"]
        limit = config.server.max_events_per_batch
        if len(body.events) > limit:
            raise ApiError(413, "batch_too_large", f"{len(body.events)} events in one batch; at most {limit}")
        foreign = {e.get("node_id") for e in body.events if isinstance(e, dict)} - {node_id}
        if foreign:
            log.warning("node %s sent events of another node; batch refused", node_id)
            raise ApiError(403, "forbidden", f"a node may only write its own events (this token is {node_id!r})")
        valid: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(body.events):
            event_id = raw.get("id") if isinstance(raw, dict) else None
            event_id = event_id if isinstance(event_id, str) else None
            try:
                event = WIRE_EVENT.validate_python(raw).model_dump()
            except ValidationError as exc:
                message, _fields = _validation_message(list(exc.errors()))
                rejected.append({"id": event_id, "index": index, "reason": message})
                continue
            size = len(json.dumps(raw, ensure_ascii=False).encode())
            if size > config.server.max_event_bytes:
                reason = f"event is {size} bytes; at most {config.server.max_event_bytes}"
                rejected.append({"id": event_id, "index": index, "reason": reason})
                continue
            valid.append(event)
        now = clock.wall()
        _new, foreign_ids = store.ingest(node_id, valid, body.node_wall_time, now)
        taken = set(foreign_ids)
        for event_id in foreign_ids:
            rejected.append({"id": event_id, "index": None, "reason": "event id already used by another node"})
        for item in rejected:
            log.warning("node %s: event %s rejected: %s", node_id, item["id"], item["reason"])
        accepted = [e["id"] for e in valid if e["id"] not in taken]
        return {"accepted": accepted, "rejected": rejected, "server_time": now}

    @app.get(f"{API}/events", tags=["operator"])
    def get_events(
        _: OperatorAuth,
        node_id: str | None = None,
        kind: str | None = None,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> dict[str, Any]:
        """Stored events in the order received; page with ``after`` = the last ``row`` seen."""
        events = store.events(node_id, kind, after, limit)
        return {"events": events, "next_after": events[-1]["row"] if events else after}

    # -------------------------------------------------------------------------------------- alerts
    @app.get(f"{API}/alerts", tags=["operator"])
    def get_alerts(
        _: OperatorAuth,
        state: Literal["open", "acknowledged", "resolved", "active", "all"] = "open",
        node_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> dict[str, Any]:
        """Alerts newest first; ``active`` = open and acknowledged (not yet resolved)."""
        now = clock.wall()
        nodes = {n["node_id"]: n for n in store.nodes()}
        if state == "active":
            found = store.alerts("open", node_id, limit) + store.alerts("acknowledged", node_id, limit)
            found.sort(key=lambda a: -a["id"])
        else:
            found = store.alerts(state, node_id, limit)
        return {"alerts": [alert_view(a, nodes, now) for a in found], "server_time": now}

    @app.get(f"{API}/alerts/{{alert}}", tags=["operator"])
    def get_alert(alert: int, _: OperatorAuth) -> dict[str, Any]:
        """One alert with its log (every event and operator action)."""
        nodes = {n["node_id"]: n for n in store.nodes()}
        return alert_view(store.alert(alert, with_log=True), nodes, clock.wall())

    @app.post(f"{API}/alerts/{{alert}}/ack", tags=["operator"])
    def ack_alert(alert: int, operator: OperatorAuth, body: AlertAction | None = None) -> dict[str, Any]:
        """open -> acknowledged; 409 when it is not open."""
        body = body or AlertAction()
        now = clock.wall()
        done = store.acknowledge(alert, body.by or operator.name, operator.name, body.note, now)
        log.info("alert %d acknowledged by %s", alert, body.by or operator.name)
        return alert_view(done, {n["node_id"]: n for n in store.nodes()}, now)

    @app.post(f"{API}/alerts/{{alert}}/resolve", tags=["operator"])
    def resolve_alert(alert: int, operator: OperatorAuth, body: AlertAction | None = None) -> dict[str, Any]:
        """open or acknowledged -> resolved; 409 when already resolved."""
        body = body or AlertAction()
        now = clock.wall()
        done = store.resolve(alert, body.by or operator.name, operator.name, body.note, now)
        log.info("alert %d resolved by %s", alert, body.by or operator.name)
        return alert_view(done, {n["node_id"]: n for n in store.nodes()}, now)

    # --------------------------------------------------------------------------------------- rides
    @app.post(f"{API}/rides", status_code=201, tags=["rides"])
    def post_ride(body: RideRequest, node: NodeAuth, response: Response) -> dict[str, Any]:
        """Request a taxi to the kiosk's pickup point; the same request_id always answers the same ride."""
        if node["role"] != "kiosk":
            raise ApiError(403, "forbidden", f"only kiosks request rides; {node['node_id']} is {node['role']}")
        now = clock.wall()
        pickup = body.pickup_point or node["pickup_point"] or node["location"] or node["node_id"]
        plan = plan_dispatch(config.fleet, f"{node['node_id']}\x1f{body.request_id}")
        ride, created = store.create_ride(
            f"ride-{secrets.token_hex(8)}",
            node["node_id"],
            body.request_id,
            pickup,
            body.phone_tail,
            dataclasses.asdict(plan),
            now,
        )
        store.touch_node(node["node_id"], now)
        if created:
            log.info("ride %s requested by %s", ride["ride_id"], node["node_id"])
        else:
            response.status_code = 200
        return ride_out(ride, now)

    def _own_ride(ride_id: str, who: dict[str, Any] | OperatorSection) -> dict[str, Any]:
        ride = store.ride(ride_id)
        if isinstance(who, dict) and ride["node_id"] != who["node_id"]:
            raise ApiError(403, "forbidden", "this ride was requested by another node")
        return ride

    @app.get(f"{API}/rides/{{ride_id}}", tags=["rides"])
    def get_ride(ride_id: str, who: Annotated[Any, Depends(node_or_operator)]) -> dict[str, Any]:
        """The ride's status now: searching, assigned (car, eta_s), arrived, no_car or cancelled."""
        return ride_out(_own_ride(ride_id, who), clock.wall())

    @app.get(f"{API}/rides", tags=["operator"])
    def list_rides(_: OperatorAuth, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        now = clock.wall()
        return {"rides": [ride_out(r, now) for r in store.rides(limit)], "server_time": now}

    @app.post(f"{API}/rides/{{ride_id}}/cancel", tags=["rides"])
    def cancel_ride(
        ride_id: str, who: Annotated[Any, Depends(node_or_operator)], body: CancelBody | None = None
    ) -> dict[str, Any]:
        """Cancel while searching or assigned; cancelling again is a no-op; 409 once arrived or no car."""
        ride = _own_ride(ride_id, who)
        now = clock.wall()
        current = ride_out(ride, now)
        if current["status"] in ("arrived", "no_car"):
            raise ApiError(409, "conflict", f"ride {ride_id} is {current['status']}; nothing to cancel")
        if current["status"] != "cancelled":
            by = who["node_id"] if isinstance(who, dict) else who.name
            store.cancel_ride(ride_id, by, now)
            log.info("ride %s cancelled by %s", ride_id, by)
        return ride_out(store.ride(ride_id), now)

    # ------------------------------------------------------------------------------------ the rest
    @app.get(f"{API}/health", tags=["anyone"])
    def health() -> dict[str, Any]:
        """Liveness for technicians and load balancers; no auth, no data."""
        return {"status": "ok", "server_time": clock.wall(), "version": app.version}

    @app.get(f"{API}/openapi.json", include_in_schema=False)
    def openapi_under_api() -> JSONResponse:
        """The same document as /openapi.json, for clients that keep every call under /api/v1."""
        return JSONResponse(app.openapi())

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    @app.get("/operator", include_in_schema=False, response_class=HTMLResponse)
    def operator_page() -> HTMLResponse:
        return HTMLResponse(operator_page_html(), headers={"Cache-Control": "no-store"})

    return app
