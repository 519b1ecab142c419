"""`provision`: the field technician's command, from a blank Pi to a registered, tested, running node.

Subcommands: init, register, scan, selftest, prompts, install, status, dead-letters, update. Every failure is one
clear line on stderr and an exit code from ``provisioning.errors``; secrets (claim key, token) never reach stdout,
stderr or a log.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from provisioning.errors import EXIT_CODES_HELP, EXIT_PERMISSION, ProvisionError

# subcommand -> (module, one-line summary); each module has main(argv: list[str]) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "init": ("provisioning.cmd_init", "write a validated node config for a role (prompts or flags)"),
    "register": ("provisioning.cmd_register", "exchange the site's claim key for this node's token"),
    "scan": ("provisioning.cmd_scan", "search an RS-485 bus for Modbus water meters"),
    "selftest": ("provisioning.cmd_selftest", "check inputs, LEDs, voice, meters, central, clock and disk"),
    "prompts": ("provisioning.cmd_prompts", "list every prompt a role can say; check it, a pack, or write a manifest"),
    "install": ("provisioning.cmd_install", "install, enable and start the systemd service"),
    "status": ("provisioning.cmd_status", "the service state and the node's last heartbeat"),
    "dead-letters": ("provisioning.cmd_deadletters", "events the central refused, with reasons; --resend"),
    "update": ("provisioning.cmd_update", "software update: status, check, now (or --bundle FILE), rollback"),
}


def top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provision",
        description="The field technician's tool: init -> register -> selftest -> install -> status.",
        epilog="Typical order:\n"
        "  provision init --role elevator\n"
        "  provision register --claim-key-file /root/claim.key\n"
        "  provision selftest\n"
        "  provision install\n"
        "  provision status\n\n"
        "Help on one command: provision COMMAND --help\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in SUBCOMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SUBCOMMANDS:
        # no or unknown subcommand: argparse prints usage and the list (exit 2), or help (exit 0)
        top_parser().parse_args(args or ["--help"])
        return 2
    module = importlib.import_module(SUBCOMMANDS[args[0]][0])
    try:
        return module.main(args[1:])
    except ProvisionError as exc:
        print(f"provision {args[0]}: error: {exc.message}", file=sys.stderr)
        for hint in exc.hints:
            print(f"  {hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"provision {args[0]}: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
    except PermissionError as exc:
        print(f"provision {args[0]}: error: {exc.strerror}: {exc.filename} (run as root?)", file=sys.stderr)
        return EXIT_PERMISSION


if __name__ == "__main__":
    sys.exit(main())
