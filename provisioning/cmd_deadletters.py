"""`provision dead-letters`: the events the central refused as invalid, with its reasons; ``--resend`` queues
them again. Works beside the running node (SQLite lets a second connection read and write the outbox; the node
notices and sends them at its next upload) and on a stopped one (sent when it starts)."""

from __future__ import annotations

import argparse
import datetime
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from common.outbox import list_dead_letters, requeue_dead_letters
from common.service import outbox_path
from provisioning.configfile import command_parser, load_node_config
from provisioning.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, ProvisionError

BUSY_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "dead-letters",
        "List the events the central refused as invalid (dead letters), with the central's reasons; "
        "--resend queues them again. A running node sends them within a minute, a stopped node when it starts. "
        "The central keeps each event once, so resending one that arrived after all does no harm.",
    )
    parser.add_argument("--resend", action="store_true", help="queue the dead letters again (all, or those of --id)")
    parser.add_argument("--id", action="append", default=[], metavar="EVENT_ID", help="only this event (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.add_argument("--limit", type=int, default=200, metavar="N", help="list at most N (default 200)")
    return parser


def _connect(path: Path, write: bool) -> sqlite3.Connection:
    if not path.exists():
        raise ProvisionError(EXIT_BAD_INPUT, f"no outbox at {path}: has this node ever run? (check node.data_dir)")
    mode = "rw" if write else "ro"
    try:
        conn = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
            raise ProvisionError(
                EXIT_CHECK_FAILED,
                f"the outbox {path} is held exclusively by the running node (it started on a full or read-only disk)",
                ["stop the node first: systemctl stop changbai-<role>, then run this again and start it"],
            ) from None
        raise ProvisionError(EXIT_BAD_INPUT, f"cannot open the outbox {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise ProvisionError(EXIT_BAD_INPUT, f"{path} is not a readable outbox: {exc}") from None
    return conn


def _when(wall: Any) -> str:
    if not isinstance(wall, int | float):
        return "?"
    return datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S")


def print_table(letters: list[dict[str, Any]]) -> None:
    rows = [
        (str(d["seq"]), _when(d["wall_time"]), _when(d["at_wall"]), str(d["kind"]), d["priority"], d["id"], d["reason"])
        for d in letters
    ]
    header = ("seq", "made (local)", "refused (local)", "kind", "priority", "id", "reason")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    config = load_node_config(args.config)
    path = outbox_path(config)
    conn = _connect(path, write=args.resend)
    try:
        letters = list_dead_letters(conn, max(1, args.limit) if not args.resend else 1_000_000)
        if args.id:
            unknown = set(args.id) - {d["id"] for d in letters}
            if unknown:
                raise ProvisionError(EXIT_BAD_INPUT, f"not a dead letter in {path}: {', '.join(sorted(unknown))}")
            letters = [d for d in letters if d["id"] in set(args.id)]
        if not args.resend:
            if args.json:
                json.dump(letters, sys.stdout, ensure_ascii=False, indent=2)
                print()
            elif letters:
                print(f"{len(letters)} dead letter(s) in {path} (newest first):")
                print_table(letters)
                print("send them again: provision dead-letters --resend [--id EVENT_ID]")
            else:
                print(f"no dead letters in {path}")
            return EXIT_OK
        moved = requeue_dead_letters(conn, args.id or None)
    finally:
        conn.close()
    print(f"{moved} dead letter(s) queued again in {path}")
    print("a running node sends them within a minute, a stopped one when it starts")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
