"""`meter-node` command line."""

from __future__ import annotations

import sys

from common.cli import not_built_yet


def main(argv: list[str] | None = None) -> int:
    return not_built_yet("meter-node", "Meter node: water meters and wellbeing alerts", 5, argv)


if __name__ == "__main__":
    sys.exit(main())
