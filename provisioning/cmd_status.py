"""`provision status`: is the node's service running, and when did the central last hear from it."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common.config import NodeConfig
from common.sync import package_version
from provisioning import central_client
from provisioning.cmd_install import systemd_running, unit_name
from provisioning.configfile import command_parser, load_node_config
from provisioning.errors import (
    EXIT_BAD_INPUT,
    EXIT_CENTRAL,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    EXIT_PERMISSION,
    ProvisionError,
)
from updates.journal import Journal
from updates.layout import Layout

UNIT_PROPERTIES = ("ActiveState", "SubState", "NRestarts", "ExecMainStartTimestamp", "UnitFileState", "Result")


def unit_state(role: str) -> dict[str, Any]:
    """systemctl show of the role's unit, or {"available": False} without systemd."""
    if not systemd_running():
        return {"available": False, "detail": "systemd not available"}
    exe = shutil.which("systemctl")
    assert exe is not None  # systemd_running() checked it
    try:
        out = subprocess.run(
            [exe, "show", unit_name(role), "--property", ",".join(UNIT_PROPERTIES)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": False, "detail": f"systemctl: {exc}"}
    state: dict[str, Any] = {"available": True, "unit": unit_name(role)}
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        state[key] = value
    return state


def node_record(config: NodeConfig, operator_key_file: Path | None, timeout_s: float) -> dict[str, Any]:
    """GET /api/v1/nodes/{id} with the node's token (or an operator key when given)."""
    if operator_key_file is not None:
        try:
            token = operator_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ProvisionError(EXIT_BAD_INPUT, f"--operator-key-file: {exc}") from None
    else:
        token = central_client.read_token(config)
    response = central_client.call(config, "GET", f"/nodes/{config.node.id}", token=token, timeout_s=timeout_s)
    if response.status == 404:
        raise ProvisionError(EXIT_BAD_INPUT, f"the central does not know node {config.node.id}: provision register")
    if central_client.refused(response):
        raise ProvisionError(
            EXIT_PERMISSION,
            f"the central refused to show node {config.node.id} ({central_client.error_text(response)})",
            [
                "re-register if the token was rotated, or give --operator-key-file on a central that allows only operators"
            ],
        )
    if response.status != 200:
        raise central_client.central_error(response, "node status")
    return central_client.answer(response)


def last_heartbeat(node: dict[str, Any]) -> tuple[float | None, dict[str, Any] | None]:
    """(seconds since the node's last heartbeat reached the central, that heartbeat) from a node record."""
    beat = node.get("health")
    seen_ago, seen_at, beat_at = node.get("seen_ago_s"), node.get("last_seen_at"), node.get("last_heartbeat_at")
    if beat_at is None:
        return None, None
    if seen_ago is not None and seen_at is not None:
        # the central says how long ago it last saw the node at all; the heartbeat is that much older again
        return float(seen_ago) + max(0.0, float(seen_at) - float(beat_at)), beat if isinstance(beat, dict) else None
    return max(0.0, time.time() - float(beat_at)), beat if isinstance(beat, dict) else None


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "status",
        "Show the node service's state (systemctl) and when the central last heard from the node.",
        exits="1 when the service is not active or the node is stale at the central",
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds to wait for the central")
    parser.add_argument("--operator-key-file", type=Path, help="ask the central with an operator key instead")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    config = load_node_config(args.config)
    unit = unit_state(config.node.role)
    report: dict[str, Any] = {"node_id": config.node.id, "role": config.node.role, "unit": unit}
    report["update"] = update_state(config)
    exit_code = EXIT_OK
    if unit.get("available") and unit.get("ActiveState") != "active":
        exit_code = EXIT_CHECK_FAILED
    try:
        node = node_record(config, args.operator_key_file, args.timeout)
    except ProvisionError as exc:
        report["central"] = {"error": exc.message}
        exit_code = exc.exit_code if exc.exit_code in (EXIT_CENTRAL, EXIT_PERMISSION) else EXIT_BAD_INPUT
        node = None
    if node is not None:
        ago, beat = last_heartbeat(node)
        report["central"] = {"seen_ago_s": ago, "stale": node.get("stale"), "heartbeat": beat}
        if node.get("stale") or ago is None:
            exit_code = max(exit_code, EXIT_CHECK_FAILED)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        print(_text(report))
    return exit_code


def _text(report: dict[str, Any]) -> str:
    unit = report["unit"]
    lines = [f"node      {report['node_id']} ({report['role']})"]
    if unit.get("available"):
        lines.append(
            f"service   {unit.get('unit')}: {unit.get('ActiveState')} ({unit.get('SubState')}), "
            f"{unit.get('UnitFileState')}, restarts {unit.get('NRestarts')}, since {unit.get('ExecMainStartTimestamp')}"
        )
    else:
        lines.append(f"service   {unit.get('detail')}")
    central = report.get("central", {})
    if "error" in central:
        lines.append(f"central   {central['error']}")
    else:
        ago = central.get("seen_ago_s")
        seen = "never" if ago is None else f"{ago:.0f} s ago"
        lines.append(f"central   last heartbeat {seen}" + (" (STALE)" if central.get("stale") else ""))
        beat = central.get("heartbeat") or {}
        for key in ("version", "uptime_s", "outbox_depth", "clock_synced", "last_sensor_read"):
            if key in beat:
                lines.append(f"          {key}: {beat[key]}")
    update = report["update"]
    last = update.get("last_result") or {}
    lines.append(
        f"software  {update.get('current') or package_version() + ' (not managed by the updater)'}, "
        f"update {update.get('phase', 'idle')}"
        + (f"; last: {last.get('state')} {last.get('version')}: {last.get('reason', '')}" if last else "")
    )
    return "\n".join(lines)


def update_state(config: NodeConfig) -> dict[str, Any]:
    """The updater's view (versions, phase, last result) from ROOT; {} when the node is not managed by it."""
    layout = Layout(config.update.root)
    journal = Journal.load(layout.journal)
    return {
        "current": layout.current(),
        "committed": layout.committed(),
        "phase": journal.phase,
        "last_result": journal.last_result,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
