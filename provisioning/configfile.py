"""What every provision subcommand shares: its parser (``command_parser``: exit codes, --config) and loading the
node config with the node's own loader, problems as exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.config import ConfigError, NodeConfig, default_config_path, load_config
from provisioning.errors import EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_PERMISSION, ProvisionError


def command_parser(
    name: str, description: str, *, exits: str = "", config: bool = True, before: str = "", add_help: bool = True
) -> argparse.ArgumentParser:
    """The parser of ``provision NAME``: its description, the exit codes (``exits``: what this command adds to
    them, ``before``: text above them) and, with ``config``, the --config flag."""
    parser = argparse.ArgumentParser(
        prog=f"provision {name}",
        description=description,
        epilog=before + EXIT_CODES_HELP + (f"  ({name}: {exits})\n" if exits else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=add_help,
        allow_abbrev=False,
    )
    if config:
        add_config_flag(parser)
    return parser


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"node config (default {default_config_path()}; $CHANGBAI_CONFIG overrides)",
    )


def load_node_config(path: Path | None) -> NodeConfig:
    """The validated config, or ProvisionError(2) with one hint line per problem."""
    file = path or default_config_path()
    try:
        return load_config(file)
    except ConfigError as exc:
        if len(exc.problems) == 1 and "not readable" in exc.problems[0]:
            raise ProvisionError(EXIT_PERMISSION, exc.problems[0]) from None
        if len(exc.problems) == 1 and "file not found" in exc.problems[0]:
            raise ProvisionError(
                EXIT_BAD_INPUT, f"{file}: no config yet", ["write one first: provision init --role ROLE"]
            ) from None
        raise ProvisionError(EXIT_BAD_INPUT, f"{file}: the config is not valid", exc.problems) from None
