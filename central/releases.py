"""Software updates at the central: nodes ask for their release and fetch its files (HTTP Range), report how it
went; operators start, pause, resume and abort staged rollouts and watch them (``/operator/updates``).

An APIRouter on ``app.state.releases`` (a ``ReleaseStore``), ``app.state.store``, ``.config`` and ``.clock``;
auth and refusals are the rest of the API's (``central.deps``, ``central.errors``).
A rollout moves on only when something looks at it (a node's check or report, an operator's read), so no
background thread is needed: ``progress()`` applies every verdict that is due.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import ConfigDict, Field, StringConstraints, field_validator

from central import rollout as rules
from central.accounts.roles import Actor
from central.asgi_limits import JsonRoute
from central.bodies import MAX_SAFE_INT, JsonInteger
from central.deps import NodeAuth, OperatorAuth, client_address, require_everywhere
from central.errors import ApiError, refusals
from central.files import TypedFileResponse
from central.jsonvalues import StoredBody
from central.release_store import ReleaseStore
from central.routes import API
from central.routes.site import page_headers
from central.storage.errors import Conflict, NotFound
from common.files import fsync_path, sync_tree
from updates.bundle import MANIFEST, SIGNATURE, extract_bundle, read_verified_manifest
from updates.manifest import FILE_NAME_PATTERN, TARGET_PATTERN, VERSION_PATTERN, Manifest, load_public_key

ReportState = Literal[
    "downloading",
    "staged",
    "refused",
    "switched",
    "committed",
    "rolled_back",
    "failed",
    "deferred",
    "interrupted",
]
RolloutId = Annotated[int, Field(strict=False, ge=1, le=MAX_SAFE_INT), JsonInteger]
router = APIRouter(route_class=JsonRoute)
Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
RolloutNumber = Annotated[int, PathParam(ge=1, le=MAX_SAFE_INT, description="the rollout's id")]


def install(app: FastAPI, releases: ReleaseStore) -> None:
    """Add the update routes to the central's app, over its release tables (``app.state.releases``)."""
    app.state.releases = releases
    app.include_router(router)


def _releases(request: Request) -> ReleaseStore:
    return request.app.state.releases


def _now(request: Request) -> float:
    return request.app.state.clock.wall()


def _audit(request: Request, actor: Actor, now: float, action: str, rollout: int, detail: str) -> None:
    """A rollout started or moved is in the console's audit log, by whom and from where."""
    address = client_address(request)
    request.app.state.console.audit(now, actor.name, actor.via, action, f"rollout {rollout}", detail, address)


def plan_of(rollout: dict[str, Any]) -> rules.Plan:
    return rules.Plan(tuple(rollout["shares"]), rollout["max_failure_rate"], rollout["soak_s"])


def progress(releases: ReleaseStore, rollout: dict[str, Any], now: float) -> dict[str, Any]:
    """Apply every verdict that is due (advance, halt, complete) and return the rollout as it is now."""
    for _ in range(len(rollout["shares"]) + 2):
        if rollout["state"] != "running":
            return rollout
        plan = plan_of(rollout)
        every = rules.stages(rollout["id"], plan, releases.channels(rollout["role"]))
        outcomes = releases.outcomes(rollout["id"])
        earlier = rules.failed_earlier(plan, every[: rollout["stage"]], outcomes)
        if earlier:
            releases.set_rollout(rollout["id"], now, "halted", earlier, state="halted", reason=earlier)
            return releases.rollout(rollout["id"])
        verdict = rules.judge(
            plan, rollout["stage"], every[rollout["stage"]], outcomes, now - rollout["stage_started_at"]
        )
        name = plan.stage_names[rollout["stage"]]
        if verdict.action == "halt":
            releases.set_rollout(
                rollout["id"], now, "halted", f"stage {name}: {verdict.reason}", state="halted", reason=verdict.reason
            )
        elif verdict.action == "complete":
            releases.set_rollout(rollout["id"], now, "completed", f"stage {name}: {verdict.reason}", state="completed")
        elif verdict.action == "advance":
            following = plan.stage_names[rollout["stage"] + 1]
            detail = f"stage {name} done ({verdict.reason}); stage {following} starts"
            releases.set_rollout(
                rollout["id"], now, "advanced", detail, stage=rollout["stage"] + 1, stage_started_at=now
            )
        else:
            return rollout
        rollout = releases.rollout(rollout["id"])
    return rollout


def rollout_view(releases: ReleaseStore, rollout: dict[str, Any], now: float, with_timeline: bool) -> dict[str, Any]:
    """A rollout with its stages: each stage's nodes and how many succeeded, failed or are still going."""
    rollout = progress(releases, rollout, now)
    plan = plan_of(rollout)
    outcomes = releases.outcomes(rollout["id"])
    view = dict(rollout)
    view["stages"] = []
    for index, members in enumerate(rules.stages(rollout["id"], plan, releases.channels(rollout["role"]))):
        size, ok, bad = rules.count(members, outcomes)
        going = sum(1 for n in members if n in outcomes and outcomes[n] not in (rules.SUCCEEDED, *rules.FAILED))
        status = "done" if index < rollout["stage"] else "current" if index == rollout["stage"] else "waiting"
        view["stages"].append(
            {
                "name": plan.stage_names[index],
                "status": status,
                "nodes": size,
                "succeeded": ok,
                "failed": bad,
                "in_progress": going,
                "not_started": size - ok - bad - going,
            }
        )
    view["targets"] = releases.targets_of(rollout["role"], rollout["version"])
    if with_timeline:
        view["timeline"] = releases.timeline(rollout["id"])
    view["server_time"] = now
    return view


def publish_bundle(releases: ReleaseStore, bundle: Path, public_key: Path, now: float) -> Manifest:
    """Verify a bundle with the release public key and add it: files under ``release_dir``, a row in releases.
    Raises ReleaseError (bad bundle) or Conflict (already added); nothing is left half-added."""
    key = load_public_key(public_key)
    manifest, _raw, _sig = read_verified_manifest(bundle, key)
    final = releases.release_dir(manifest.role, manifest.target, manifest.version)
    if final.exists() or releases.release(manifest.role, manifest.target, manifest.version):
        raise Conflict(f"release {manifest.version} for {manifest.role}/{manifest.target} was already added")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".adding-", dir=final.parent))
    try:
        extract_bundle(bundle, key, staging / "files")
        for name in (MANIFEST, SIGNATURE):
            (staging / "files" / name).replace(staging / name)
        raw = (staging / MANIFEST).read_text(encoding="utf-8")
        signature = (staging / SIGNATURE).read_text(encoding="utf-8")
        sync_tree(staging)  # the row below is durable at commit: the files it names must be on disk before it
        staging.replace(final)
        fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        releases.add_release(json.loads(raw), raw, signature, now)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    return manifest


# ------------------------------------------------------------------------------------------------- nodes
@router.get(f"{API}/updates/check", tags=["nodes"], responses=refusals(401, 403, 422, 503))
def check_update(
    request: Request,
    node: NodeAuth,
    target: Annotated[str, StringConstraints(pattern=TARGET_PATTERN)],
    version: Version,
    channel: Literal["pilot", "stable"] = "stable",
    force: bool = False,
) -> dict[str, Any]:
    """The release this node should run now, or ``update: null`` with the reason. ``force`` (a technician's
    ``provision update now``) skips the stage order of a running or paused rollout."""
    releases, now = _releases(request), _now(request)
    releases.node_checked(node["node_id"], channel, target, version, now)
    rollout = releases.active_rollout(node["role"])
    if rollout is None:
        return {"update": None, "reason": f"no rollout for {node['role']} nodes"}
    rollout = progress(releases, rollout, now)
    if rollout["state"] not in (("running", "paused") if force else ("running",)):
        return {"update": None, "reason": f"rollout {rollout['id']} is {rollout['state']} {rollout['reason']}".strip()}
    if version == rollout["version"]:
        return {"update": None, "reason": f"already on {version}"}
    plan = plan_of(rollout)
    allowed = rules.admitted(rollout["id"], plan, releases.channels(node["role"]), rollout["stage"])
    if node["node_id"] not in allowed and not force:
        stage = plan.stage_names[rollout["stage"]]
        return {"update": None, "reason": f"not in rollout {rollout['id']}'s stages up to {stage} yet"}
    release = releases.release(node["role"], target, rollout["version"])
    if release is None:
        return {"update": None, "reason": f"release {rollout['version']} has no build for {target}"}
    files = f"{API}/releases/{node['role']}/{target}/{rollout['version']}/files/"
    return {
        "update": {
            "rollout": rollout["id"],
            "version": rollout["version"],
            "manifest": release["manifest"],
            "signature": release["signature"],
            "files_url": files,
        }
    }


@router.get(
    f"{API}/releases/{{role}}/{{target}}/{{version}}/files/{{name}}",
    tags=["nodes"],
    responses=refusals(400, 401, 403, 404, 416, 422, 503),
)
def release_file(
    request: Request, role: str, target: str, version: Version, name: str, _: NodeAuth
) -> TypedFileResponse:
    """One file of a release; HTTP Range requests resume a cut download."""
    if not re.fullmatch(FILE_NAME_PATTERN, name) or _releases(request).release(role, target, version) is None:
        raise NotFound(f"no file {name!r} in release {version} for {role}/{target}")
    path = _releases(request).release_dir(role, target, version) / "files" / name
    if not path.is_file():
        raise NotFound(f"no file {name!r} in release {version} for {role}/{target}")
    return TypedFileResponse(path, media_type="application/octet-stream")


class ReportBody(StoredBody):
    """POST /updates/report: how an update went on the node."""

    model_config = ConfigDict(extra="forbid")
    rollout: RolloutId | None = None
    version: Version
    state: ReportState
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""
    from_version: Annotated[str, StringConstraints(max_length=64)] = ""


@router.post(f"{API}/updates/report", tags=["nodes"], responses=refusals(401, 403, 413, 422, 503))
def report_update(request: Request, body: ReportBody, node: NodeAuth) -> dict[str, Any]:
    """Record a step or the outcome of a node's update; a failure may halt its rollout at once."""
    releases, now = _releases(request), _now(request)
    releases.report(node["node_id"], body.rollout, body.version, body.state, body.reason, now)
    if body.rollout is not None:
        try:
            progress(releases, releases.rollout(body.rollout), now)
        except NotFound:
            pass
    return {"ok": True, "server_time": now}


# ---------------------------------------------------------------------------------------------- operator
class RolloutBody(StoredBody):
    """POST /rollouts: start a staged rollout of a published release to every node of a role."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["elevator", "meter", "kiosk"]
    version: Version
    shares: Annotated[list[Annotated[float, Field(gt=0, le=100)]], Field(min_length=1, max_length=20)] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0]
    )
    max_failure_rate: Annotated[float, Field(ge=0, lt=1)] = 0.1
    soak_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 3600.0

    @field_validator("shares")
    @classmethod
    def _cumulative(cls, shares: list[float]) -> list[float]:
        """Shares are cumulative percentages of the stable nodes: in any order, the last stage always 100 %."""
        out = sorted(set(shares))
        return out if out[-1] == 100 else [*out, 100.0]


class RolloutAction(StoredBody):
    """POST /rollouts/{id}/{action}: an optional note."""

    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, StringConstraints(max_length=500)] = ""


@router.get(f"{API}/releases", tags=["operator"], responses=refusals(401, 403, 422, 503))
def list_releases(request: Request, actor: OperatorAuth, role: str | None = None) -> dict[str, Any]:
    require_everywhere(actor, "updates")
    return {"releases": _releases(request).releases(role), "server_time": _now(request)}


@router.post(
    f"{API}/rollouts", status_code=201, tags=["operator"], responses=refusals(401, 403, 404, 409, 413, 422, 503)
)
def start_rollout(request: Request, body: RolloutBody, operator: OperatorAuth) -> dict[str, Any]:
    """Start: the pilot nodes first, then each share of the stable nodes; halts itself on failures."""
    require_everywhere(operator, "updates")
    releases, now = _releases(request), _now(request)
    plan = rules.Plan(tuple(body.shares), body.max_failure_rate, body.soak_s)
    if plan.problems():
        raise ApiError(422, "invalid_body", "; ".join(plan.problems()), ["shares"])
    if not releases.targets_of(body.role, body.version):
        raise NotFound(f"release {body.version} for {body.role} nodes was never added (central release add)")
    fields = {"shares": list(plan.shares), "max_failure_rate": plan.max_failure_rate, "soak_s": plan.soak_s}
    rollout = releases.start_rollout(body.role, body.version, fields, operator.name, now)
    _audit(request, operator, now, "rollout_started", rollout, f"{body.role} {body.version}")
    return rollout_view(releases, releases.rollout(rollout), now, with_timeline=True)


@router.get(f"{API}/rollouts", tags=["operator"], responses=refusals(401, 403, 503))
def list_rollouts(request: Request, actor: OperatorAuth) -> dict[str, Any]:
    require_everywhere(actor, "updates")
    releases, now = _releases(request), _now(request)
    return {"rollouts": [rollout_view(releases, r, now, False) for r in releases.rollouts()], "server_time": now}


@router.get(f"{API}/rollouts/{{rollout}}", tags=["operator"], responses=refusals(401, 403, 404, 422, 503))
def get_rollout(request: Request, rollout: RolloutNumber, actor: OperatorAuth) -> dict[str, Any]:
    require_everywhere(actor, "updates")
    releases = _releases(request)
    return rollout_view(releases, releases.rollout(rollout), _now(request), with_timeline=True)


_MOVES = {"pause": ("running",), "resume": ("paused", "halted"), "abort": ("running", "paused", "halted")}
_TO = {"pause": "paused", "resume": "running", "abort": "aborted"}


@router.post(
    f"{API}/rollouts/{{rollout}}/{{action}}", tags=["operator"], responses=refusals(401, 403, 404, 409, 413, 422, 503)
)
def move_rollout(
    request: Request,
    rollout: RolloutNumber,
    action: Literal["pause", "resume", "abort"],
    operator: OperatorAuth,
    body: RolloutAction | None = None,
) -> dict[str, Any]:
    """pause (no new node starts), resume (also after a halt: the stage is judged afresh), abort."""
    require_everywhere(operator, "updates")
    releases, now = _releases(request), _now(request)
    current = releases.rollout(rollout)
    if current["state"] not in _MOVES[action]:
        raise Conflict(f"rollout {rollout} is {current['state']}; cannot {action}")
    note = (body.note if body else "") or ""
    fields: dict[str, Any] = {"state": _TO[action], "reason": note}
    if action == "resume":
        fields["stage_started_at"] = now
    releases.set_rollout(rollout, now, _TO[action], f"by {operator.name}" + (f": {note}" if note else ""), **fields)
    _audit(request, operator, now, f"rollout_{_TO[action]}", rollout, note)
    return rollout_view(releases, releases.rollout(rollout), now, with_timeline=True)


@router.get(f"{API}/updates/nodes", tags=["operator"], responses=refusals(401, 403, 503))
def update_nodes(request: Request, actor: OperatorAuth) -> dict[str, Any]:
    require_everywhere(actor, "updates")
    """Every node: the version it runs (last heartbeat), its channel and its update state."""
    return {"nodes": _releases(request).node_states(), "server_time": _now(request)}


@router.get("/operator/updates", include_in_schema=False, response_class=HTMLResponse)
def updates_page() -> HTMLResponse:
    html = resources.files("central").joinpath("updates.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers=page_headers(html))
