"""Loading the node config for provision's subcommands: the node's own loader, problems as exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.config import ConfigError, NodeConfig, default_config_path, load_config
from provisioning.errors import EXIT_BAD_INPUT, EXIT_PERMISSION, ProvisionError


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
