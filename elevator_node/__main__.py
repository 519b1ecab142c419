"""`elevator-node` command line: run the node on its sensors, or replay a trace through the detector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import setup_logging
from common.config import EXIT_CONFIG, default_config_path, load_config_or_exit
from elevator_node.config import default_section
from elevator_node.node import run_node
from elevator_node.replay import TraceError, replay_file

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = EXIT_CONFIG  # 2: a bad command line, config or trace
EPILOG = """\
commands:
  run      (default) run the node: read the lift's sensors, raise alerts, speak in the car
  replay   run a trace (CSV) through the detector and print its events as JSON lines on stdout

replay trace format: header t,door,occupied,moving,level,alarm_button (optionally also inspection, power,
restart); t in seconds from the trace start; door open/closed; the rest 1/0, empty when not fitted; each row
is a change and holds until the next; lines starting with # are comments. See docs/elevator.md.

exit codes:
  0  clean stop (run), trace replayed (replay)
  1  the node failed at run time (details in the log on stderr)
  2  bad command line, bad config (one line per problem) or bad trace (one line per bad row, naming it)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elevator-node",
        description="Elevator retrofit node: trapped-passenger alarm and lift faults from door/occupancy sensors.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"node config (default $CHANGBAI_CONFIG or {default_config_path()})",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,replay}")
    run = sub.add_parser("run", help="run the node (the default)")
    run.add_argument("--config", type=Path, default=None, dest="run_config", metavar="FILE", help="node config file")
    replay = sub.add_parser("replay", help="replay a trace through the detector; JSON lines on stdout")
    replay.add_argument("trace", type=Path, metavar="TRACE.csv", help="trace CSV file")
    replay.add_argument(
        "--config",
        type=Path,
        default=None,
        dest="replay_config",
        metavar="FILE",
        help="take thresholds and identity from here",
    )
    return parser


def _replay(trace: Path, config_path: Path | None) -> int:
    settings = default_section()
    if config_path is not None:
        settings = load_config_or_exit(config_path, "elevator").role_config
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")  # label_zh and voice texts are Chinese, whatever the locale
    try:
        replay_file(trace, settings, sys.stdout)
    except TraceError as exc:
        for line in exc.problems:
            print(f"bad trace: {line}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _run(config_path: Path) -> int:
    config = load_config_or_exit(config_path, "elevator")
    setup_logging(config.node.log_level)
    return run_node(config)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return _replay(args.trace, args.replay_config or args.config)
    config_path = getattr(args, "run_config", None) or args.config or default_config_path()
    return _run(config_path)


if __name__ == "__main__":
    sys.exit(main())
