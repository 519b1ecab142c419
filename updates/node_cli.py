"""`changbai-update` (run as root by changbai-update.timer, and as `provision update` by the technician).

tick      what the timer runs every 2 minutes: repair, finish a trial, check when the interval is up
status    versions installed, current and committed, the last update and the node's health
check     ask the central what this node should run, change nothing
now       update now (skips the check interval, the stage order and the kiosk's window; --bundle FILE
          installs from a bundle file instead, e.g. from a USB stick)
rollback  end a trial now, or go back to the version before the current one
recover   repair only, never waits (the node unit's ExecStartPre)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from common.config import ConfigError, default_config_path
from updates.fetch import CentralUnavailable
from updates.manifest import ReleaseError
from updates.nodefiles import load_updater_config
from updates.updater import UpdateBusy, Updater

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_CENTRAL, EXIT_BUSY, EXIT_PERMISSION = 0, 1, 2, 3, 4, 5
EXIT_CODES = """\
exit codes:
  0  ok (also: no update, or an update deferred)
  1  the update failed, was refused or was rolled back (the reason is printed)
  2  the node config is invalid
  3  the central could not be asked (network, TLS, token)
  4  another update run is in progress on this node
  5  permission: run as root
"""
FAILED_STATES = ("failed", "refused", "rolled_back")


def _when(wall: float | None) -> str:
    return dt.datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S") if wall else "never"


def print_status(status: dict[str, Any]) -> None:
    print(f"running version:   {status['current'] or '(not installed by the updater)'}")
    print(f"committed version: {status['committed'] or '-'} (last proved healthy; its updater runs the timer)")
    print(f"installed:         {', '.join(status['installed']) or '-'}")
    print(f"channel:           {status['channel']}")
    phase = status["phase"] + (f" ({status['to_version']})" if status["to_version"] else "")
    print(f"update state:      {phase}")
    print(f"last check:        {_when(status['last_check_wall'])}: {status['last_check'] or '-'}")
    last = status["last_result"]
    if last:
        print(
            f"last update:       {last.get('state')} {last.get('version')} at {_when(last.get('at'))}: {last.get('reason', '')}"
        )
    if status["skipped"]:
        print(f"not retried:       {', '.join(status['skipped'])} (failed here; `now` retries)")
    if status["unreported"]:
        print(f"reports waiting:   {status['unreported']} (sent when the central answers)")
    health = status["health"] or {}
    if health:
        ok = {True: "passed", False: "FAILED", None: "not yet"}[health.get("selftest_ok")]
        beat = _when(health.get("heartbeat_ok_wall"))
        print(f"node health:       version {health.get('version')}, self-check {ok}, last heartbeat accepted {beat}")


def print_outcome(outcome: dict[str, Any]) -> int:
    state = outcome.get("state")
    version = f" {outcome['version']}" if outcome.get("version") else ""
    print(f"{state}{version}: {outcome.get('reason', '')}")
    return EXIT_FAILED if state in FAILED_STATES else EXIT_OK


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="node config (default $CHANGBAI_CONFIG or /etc/changbai/node.toml)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in ("tick", "status", "check", "now", "rollback", "recover"):
        cmd = sub.add_parser(name)
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="machine-readable")
        if name == "now":
            cmd.add_argument("--bundle", type=Path, help="install this bundle file (verified with the release key)")
        if name == "rollback":
            cmd.add_argument("--reason", default="rolled back by a technician")
    return parser


def run(args: argparse.Namespace, updater: Updater) -> int:
    if args.command == "status":
        status = updater.status()
        print(json.dumps(status, indent=1, default=str)) if args.json else print_status(status)
        return EXIT_OK
    if args.command == "recover":
        with updater.locked(wait=False):
            for line in updater.recover() or ["nothing to repair"]:
                print(line)
        return EXIT_OK
    if args.command == "check":
        answer = updater.client.check(updater.settings.channel, updater.target(), updater.running_version())
        offer = answer.get("update")
        print(
            f"the central offers {offer['version']} (rollout {offer['rollout']})"
            if offer
            else f"no update: {answer.get('reason')}"
        )
        for reason in updater.blockers(force=False):
            print(f"would wait: {reason}")
        return EXIT_OK
    if args.command == "now":
        with updater.locked(wait=False):
            updater.recover()
            return print_outcome(updater.update(force=True, bundle=args.bundle))
    if args.command == "rollback":
        return print_outcome(updater.rollback(args.reason))
    return print_outcome(updater.tick())


def main(argv: list[str] | None = None, prog: str = "changbai-update") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = args.config or default_config_path()
    try:
        config = load_updater_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    updater = Updater(config, say=lambda text: print(text, flush=True), on_step=None)
    try:
        return run(args, updater)
    except (UpdateBusy, CentralUnavailable) as exc:
        print(f"{prog} {args.command}: {exc}", file=sys.stderr)
        return EXIT_BUSY if isinstance(exc, UpdateBusy) else EXIT_CENTRAL
    except ReleaseError as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except PermissionError as exc:
        print(f"{prog} {args.command}: {exc.strerror}: {exc.filename} (run as root)", file=sys.stderr)
        return EXIT_PERMISSION
    except OSError as exc:  # a full or failing disk under the update root; the next run repairs (recover)
        print(f"{prog} {args.command}: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
