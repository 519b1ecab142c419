"""`meter-node` command line: `run` the node from its config, or `replay` a CSV of readings through the rules.

Exit codes: 0 done, 2 bad config or bad input, 1 the node stopped on an error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common.cli import setup_logging
from common.config import default_config_path, load_config_or_exit
from meter_node.node import build_node
from meter_node.replay import main as replay_main

log = logging.getLogger("meter_node")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meter-node",
        description="Water-meter node: reads Modbus water meters and watches elderly residents living alone.",
        epilog="Exit codes: 0 done, 1 stopped on an error, 2 bad config or bad input.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser("run", help="run the node (what the systemd unit starts)")
    run.add_argument(
        "--config", type=Path, default=None, help="node config (default: $CHANGBAI_CONFIG or /etc/changbai/node.toml)"
    )
    sub.add_parser(
        "replay",
        help="replay READINGS.csv through the wellbeing rules, one JSON event per line",
        add_help=False,  # its own parser (meter_node.replay) answers --help
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "replay":
        return replay_main(args_list[1:])
    args = _parser().parse_args(args_list)
    if args.command == "run":
        return run(args.config or default_config_path())
    return 2


def run(config_path: Path) -> int:
    """Load the config (exit 2 on any problem), then poll, judge and sync until SIGTERM or SIGINT."""
    config = load_config_or_exit(config_path, expected_role="meter")
    setup_logging(config.node.log_level)
    node = build_node(config)
    node.run()  # the runtime handles SIGTERM/SIGINT, systemd notify and the watchdog
    return 0


if __name__ == "__main__":
    sys.exit(main())
