"""`provision update status|check|now|rollback`: the technician's view of and hand on the node's updater
(the same code as `changbai-update`, run by changbai-update.timer; see docs/updates.md)."""

from __future__ import annotations

from updates.node_cli import main as updater_main


def main(argv: list[str]) -> int:
    """Pass ``--config`` and the action to the updater; its exit codes: 0 ok, 1 failed or rolled back,
    2 config, 3 central unreachable, 4 another update is running."""
    return updater_main(argv, prog="provision update")
