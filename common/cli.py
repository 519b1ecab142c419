"""Small helpers shared by the console scripts: logging set-up and the role stub used until a role lands."""

from __future__ import annotations

import argparse
import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """stdlib logging to stderr (journald collects it)."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=LOG_FORMAT, stream=sys.stderr)


def not_built_yet(prog: str, description: str, issue: int, argv: list[str] | None = None) -> int:
    """Entry point of a role that is not built yet: --help works and says so; anything else exits 3."""
    parser = argparse.ArgumentParser(prog=prog, description=f"{description} (not built yet: see issue {issue})")
    parser.parse_known_args(argv)
    print(f"{prog}: not built yet (issue {issue})", file=sys.stderr)
    return 3
