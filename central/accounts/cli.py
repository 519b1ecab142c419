"""`central user ...` and `central flat ...`: console accounts and the flats' contacts, straight on the database.

Passwords are read from the terminal (twice) or one line of stdin (``--password-stdin``), never from the command
line, where other users could see them in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from central.accounts.passwords import hash_password, weakness
from central.accounts.roles import ROLES, grants_json, parse_grant
from central.accounts.store import ConsoleStore
from central.app import STORAGE_COMPONENTS
from central.storage import Conflict, NotFound, StorageError, Store, open_store


def _open(db: str | Path) -> tuple[ConsoleStore, Store]:
    store = open_store(db, STORAGE_COMPONENTS)  # the whole central's tables, as `central serve` makes them
    return ConsoleStore(store.db), store


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _grants(texts: list[str]) -> list[dict]:
    return grants_json(parse_grant(t) for t in texts)


def cmd_user(args: argparse.Namespace) -> int:
    try:
        console, store = _open(args.db)
    except StorageError as exc:
        print(f"central user: cannot open {args.db}: {exc}", file=sys.stderr)
        return 1
    try:
        return _user_action(args, console)
    except (ValueError, Conflict, NotFound) as exc:
        print(f"central user {args.user_command}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


def _user_action(args: argparse.Namespace, console: ConsoleStore) -> int:
    now = time.time()
    if args.user_command == "list":
        for u in console.users():
            roles = ", ".join(f"{g['role']}:{','.join(g['sites'])}" for g in u["grants"])
            print(f"{u['username']:16} {u['name']:20} {roles}{'  (disabled)' if u['disabled'] else ''}")
        return 0
    if args.user_command in ("add", "passwd"):
        password = _password(args)
        if problem := weakness(password):
            raise ValueError(f"password refused: {problem}")
        if args.user_command == "add":
            console.add_user(args.username, args.name or args.username, hash_password(password),
                             _grants(args.role), args.phone, now)  # fmt: skip
            console.audit(now, "central user add", "cli", "user_added", args.username, " ".join(args.role))
        else:
            console.update_user(args.username, password_hash=hash_password(password))
            console.audit(now, "central user passwd", "cli", "password_changed", args.username)
    elif args.user_command == "roles":
        console.update_user(args.username, grants=_grants(args.role))
        console.audit(now, "central user roles", "cli", "roles_changed", args.username, " ".join(args.role))
    elif args.user_command == "disable":
        console.update_user(args.username, disabled=True)
        console.audit(now, "central user disable", "cli", "user_disabled", args.username)
    print(f"{args.user_command}: {args.username}: done")
    return 0


def cmd_flat(args: argparse.Namespace) -> int:
    contacts: dict[str, list[dict[str, str]]] = {}
    for text in args.contact:
        role, _, rest = text.partition("=")
        name, phone, email = ([*rest.split(","), "", ""])[:3]
        if not role or not name:
            print(f"central flat set: --contact {text!r}: use ROLE=NAME,PHONE[,EMAIL]", file=sys.stderr)
            return 2
        contacts.setdefault(role, []).append(
            {k: v for k, v in (("name", name), ("phone", phone), ("email", email)) if v}
        )
    console, store = _open(args.db)
    try:
        console.set_flat(args.site, args.flat, args.name, contacts, args.note, "central flat set", time.time())
    finally:
        store.close()
    print(f"flat {args.flat} at {args.site}: {sum(len(v) for v in contacts.values())} contact(s)")
    return 0


def add_parsers(sub: argparse._SubParsersAction, default_db: Path) -> None:
    user = sub.add_parser("user", help="console accounts: add, list, passwd, roles, disable")
    actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    role_help = f"ROLE or ROLE:SITE,SITE (roles: {', '.join(ROLES)}); repeat for several"
    for name, text in (("add", "add a person"), ("passwd", "set a new password"), ("roles", "replace the roles"),
                       ("disable", "end every session and refuse logins"), ("list", "list the users")):  # fmt: skip
        p = actions.add_parser(name, help=text)
        p.add_argument("--db", default=str(default_db), help="SQLite file or postgresql:// URL")
        if name != "list":
            p.add_argument("username")
        if name == "add":
            p.add_argument("--name", default="", help="shown in the header and the audit log, e.g. 李敏")
            p.add_argument("--phone", default="")
        if name in ("add", "roles"):
            p.add_argument("--role", action="append", required=True, help=role_help)
        if name in ("add", "passwd"):
            p.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    user.set_defaults(func=cmd_user)

    flat = sub.add_parser("flat", help="a flat's name and contacts (who is told of its alerts)")
    flat_actions = flat.add_subparsers(dest="flat_command", metavar="ACTION", required=True)
    set_flat = flat_actions.add_parser("set", help="create or replace a flat's contacts")
    set_flat.add_argument("--db", default=str(default_db), help="SQLite file or postgresql:// URL")
    set_flat.add_argument("--site", required=True)
    set_flat.add_argument("--flat", required=True, help="as the meter node's household.resident, e.g. B12-301")
    set_flat.add_argument("--name", default="", help="how the social worker names the household")
    set_flat.add_argument("--note", default="")
    set_flat.add_argument("--contact", action="append", default=[], help="ROLE=NAME,PHONE[,EMAIL]; repeat")
    set_flat.set_defaults(func=cmd_flat)
