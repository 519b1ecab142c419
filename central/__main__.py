"""`central` command line: serve the reference central, and small admin commands for the technician."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import secrets
import sys
import time
from pathlib import Path

from central.accounts import cli as accounts_cli
from central.transfer import copy as transfer
from common.cli import setup_logging
from common.config import EXIT_CONFIG, ConfigError
from common.contract import SITE_PATTERN

DEFAULT_CONFIG = Path("/etc/changbai/central.toml")
DEFAULT_DB = Path("/var/lib/changbai/central.sqlite3")
SITE_RE = re.compile(SITE_PATTERN)


def _load(path: Path):  # -> CentralConfig; imported lazily so --help works without fastapi
    from central.config import load_central_config

    try:
        return load_central_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _database(args: argparse.Namespace, config) -> str:  # config: CentralConfig
    """--db if given, else the config's [database] url, else the default SQLite file."""
    return str(args.db or config.database.url or DEFAULT_DB)


def cmd_serve(args: argparse.Namespace) -> int:
    from central.app import STORAGE_COMPONENTS, close_app, create_app
    from central.notify.channels import send
    from central.notify.outage import wait_for_room
    from central.server import make_server
    from central.storage import StorageError, describe_target, is_postgres, open_store, sqlite_path
    from central.storage.health import full_disk_hint
    from central.workers import Supervisor, bind

    setup_logging(args.log_level)
    config = _load(args.config)
    database = _database(args, config)
    shown = describe_target(database)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("central serve: give both --ssl-certfile and --ssl-keyfile, or neither", file=sys.stderr)
        return EXIT_CONFIG
    if args.workers > 1 and not is_postgres(database):
        print(
            f'central serve: --workers {args.workers} needs PostgreSQL ([database] url = "postgresql://..."):'
            " SQLite has one writer, so a SQLite central is one process (--workers 1)",
            file=sys.stderr,
        )
        return EXIT_CONFIG

    def migrated() -> None:  # migrations once, before any worker starts; a damaged database stops here with one line
        open_store(database, STORAGE_COMPONENTS, pool_size=1).close()

    try:
        if not is_postgres(database):
            sqlite_path(database).parent.mkdir(parents=True, exist_ok=True)
        migrated()
    except StorageError as exc:
        # never start on a fresh database beside a damaged one: the operator must look at it
        hint = "" if is_postgres(database) else full_disk_hint(sqlite_path(database).parent)
        print(f"central serve: cannot open the database {shown}: {exc}{hint}", file=sys.stderr)
        if not hint or not config.notify.channels:
            return 1
        print("central serve: the duty desk is told; trying again every 10 s", file=sys.stderr, flush=True)
        wait_for_room(migrated, exc, config.notify.channels, lambda c, m: send(c, m, config.notify.timeout_s))
    except OSError as exc:
        print(f"central serve: cannot open the database {shown}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not args.ssl_certfile and args.host not in LOOPBACK:
        logging.getLogger("central").warning(
            "serving plain HTTP on %s: tokens and keys cross the network in clear text; put a TLS front"
            " (docs/central.md) or give --ssl-certfile/--ssl-keyfile",
            args.host,
        )

    def serve(sock) -> int:
        app = create_app(config, database)
        server = make_server(
            app,
            config.server,
            log_level=args.log_level.lower(),
            access_log=args.access_log,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
        )
        try:
            server.run(sockets=[sock])
        finally:
            close_app(app)
        return 0

    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"central serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("central").info(
        "central on %s:%d, database %s, %d process(es)", args.host, args.port, shown, args.workers
    )
    if args.workers == 1:
        return serve(sock)
    return Supervisor(serve, sock, args.workers).run()


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    sites = ", ".join(s.id for s in config.sites)
    print(f"{args.config}: OK ({len(config.sites)} site(s): {sites}; {len(config.operators)} operator(s))")
    return 0


def cmd_new_key(args: argparse.Namespace) -> int:
    key = secrets.token_urlsafe(24)
    print(f"key        = {key}")
    print(f"key_sha256 = {hashlib.sha256(key.encode()).hexdigest()}")
    return 0


def cmd_add_site(args: argparse.Namespace) -> int:
    if not SITE_RE.fullmatch(args.site):
        print(f"central add-site: site id {args.site!r} must match {SITE_RE.pattern}", file=sys.stderr)
        return EXIT_CONFIG
    if args.config.exists():
        config = _load(args.config)
        if config.site(args.site):
            print(f"central add-site: site {args.site!r} is already in {args.config}", file=sys.stderr)
            return 1
    key = secrets.token_urlsafe(24)
    name = args.name.replace("\\", "\\\\").replace('"', '\\"')
    block = f'\n[[sites]]\nid = "{args.site}"\nname = "{name}"\nclaim_key = "{key}"\n'
    with args.config.open("a", encoding="utf-8") as f:
        f.write(block)
        f.flush()
        os.fsync(f.fileno())  # the key printed below is handed to a technician: it must not vanish with the power
    args.config.chmod(0o600)  # the file holds claim keys
    print(f"site {args.site} added to {args.config}; claim key (give it to the technician): {key}")
    print("restart the central to use it")
    return 0


def cmd_show_claim_key(args: argparse.Namespace) -> int:
    config = _load(args.config)
    site = config.site(args.site)
    if site is None:
        known = ", ".join(s.id for s in config.sites)
        print(f"central show-claim-key: no site {args.site!r} in {args.config}; sites: {known}", file=sys.stderr)
        return 1
    print(site.claim_key)
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    from central.storage import StorageError, is_postgres, open_store, sqlite_path
    from central.storage.nodes import NodeFilter

    if not is_postgres(args.db) and not sqlite_path(args.db).exists():
        print(f"central nodes: no database at {args.db}", file=sys.stderr)
        return 1

    try:
        store = open_store(args.db, read_only=True)
        try:
            nodes = list(store.nodes.every(NodeFilter()))
        finally:
            store.close()
    except StorageError as exc:
        print(f"central nodes: cannot read {args.db}: {exc}", file=sys.stderr)
        return 1
    now = time.time()
    print(f"{'node':32} {'role':9} {'site':18} {'last seen':>12} {'lost seq':>8}  location")
    for node in nodes:
        seen = node["last_seen_at"]
        ago = "never" if seen is None else f"{now - seen:,.0f} s ago"
        print(
            f"{node['node_id']:32} {node['role']:9} {node['site']:18} {ago:>12} {node['seq_missing']:>8}"
            f"  {node['location']}"
        )
    return 0


def _release_store(args: argparse.Namespace):  # -> (Store, ReleaseStore); imported lazily like the rest
    from central.app import STORAGE_COMPONENTS
    from central.release_store import ReleaseStore, files_root
    from central.storage import is_postgres, open_store

    if not is_postgres(args.db):
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = open_store(args.db, STORAGE_COMPONENTS)
    return store, ReleaseStore(store.db, files_root(args.db, args.files_dir))


def cmd_release_add(args: argparse.Namespace) -> int:
    from central.releases import publish_bundle
    from central.storage import Conflict
    from updates.manifest import ReleaseError

    store, releases = _release_store(args)
    try:
        manifest = publish_bundle(releases, args.bundle, args.public_key, time.time())
    except (ReleaseError, Conflict) as exc:
        print(f"central release add: {args.bundle}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(
        f"added {manifest.label}: {len(manifest.files)} files; start a rollout on /operator/updates or POST /api/v1/rollouts"
    )
    return 0


def cmd_release_list(args: argparse.Namespace) -> int:
    store, releases = _release_store(args)
    try:
        rows, rollouts = releases.releases(), releases.rollouts()
    finally:
        store.close()
    for r in rows:
        print(f"{r['role']:9} {r['target']:16} {r['version']:20} {r['bytes'] / 1e6:6.1f} MB  {r['notes']}")
    for r in rollouts:
        print(
            f"rollout {r['id']}: {r['version']} to {r['role']} nodes, {r['state']} at stage {r['stage']} {r['reason']}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="central", description="Reference central endpoint of changbai-nodes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the central (HTTP API, operator page)")
    serve.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"TOML config (default {DEFAULT_CONFIG})")
    serve.add_argument("--db", help=f"SQLite file or postgresql:// URL (default: [database] url, else {DEFAULT_DB})")
    serve.add_argument("--workers", type=int, default=1, help="processes serving (PostgreSQL only; default 1)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument("--access-log", action="store_true", help="log every request (never the tokens)")
    serve.add_argument("--ssl-certfile", type=Path, help="serve HTTPS with this certificate (PEM, full chain)")
    serve.add_argument("--ssl-keyfile", type=Path, help="and this private key (PEM)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file and exit (2 on problems)")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check_config)

    new_key = sub.add_parser("new-key", help="print a fresh random key and its sha256 (for operator keys)")
    new_key.set_defaults(func=cmd_new_key)

    add_site = sub.add_parser("add-site", help="append a site with a fresh claim key to the config file")
    add_site.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    add_site.add_argument("--site", required=True, help="site id, e.g. changbai-xincun")
    add_site.add_argument("--name", default="", help="display name, e.g. '长白新村 Changbai Xincun'")
    add_site.set_defaults(func=cmd_add_site)

    show = sub.add_parser("show-claim-key", help="print a site's claim key (for the technician)")
    show.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    show.add_argument("--site", required=True)
    show.set_defaults(func=cmd_show_claim_key)

    nodes = sub.add_parser("nodes", help="list registered nodes from the database (read-only)")
    nodes.add_argument("--db", default=str(DEFAULT_DB), help="SQLite file or postgresql:// URL")
    nodes.set_defaults(func=cmd_nodes)

    release = sub.add_parser("release", help="software releases: add a signed bundle, list releases and rollouts")
    release_sub = release.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    add = release_sub.add_parser("add", help="verify a bundle with the release public key and publish it")
    add.add_argument("bundle", type=Path)
    add.add_argument("--db", default=str(DEFAULT_DB), help="the central's database: a SQLite file or postgresql:// URL")
    add.add_argument("--files-dir", type=Path, default=Path("/var/lib/changbai"), help="bundles' files (PostgreSQL)")
    add.add_argument("--public-key", type=Path, default=Path("/etc/changbai/release.pub"))
    add.set_defaults(func=cmd_release_add)
    listing = release_sub.add_parser("list", help="releases and rollouts")
    listing.add_argument("--db", default=str(DEFAULT_DB))
    listing.add_argument("--files-dir", type=Path, default=Path("/var/lib/changbai"))
    listing.set_defaults(func=cmd_release_list)
    accounts_cli.add_parsers(sub, DEFAULT_DB)
    transfer.add_parser(sub)  # migrate-db
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
