"""`changbai-release`: the release engineer's tool. keygen (once, offline), build (a signed bundle for a role and a
target), verify and show (what a bundle holds, checked against the public key)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
from pathlib import Path

from common.files import write_atomic
from updates.build import PI_TARGETS, ROLE_EXTRAS, Builder, local_target
from updates.bundle import extract_bundle, read_verified_manifest
from updates.manifest import (
    ReleaseError,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
)

PASSPHRASE_ENV = "CHANGBAI_RELEASE_PASSPHRASE"
EXIT_FAILED = 1
EXIT_USAGE = 2


def _passphrase(confirm: bool) -> bytes | None:
    """From $CHANGBAI_RELEASE_PASSPHRASE, else asked on the terminal; None when neither is available."""
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV].encode("utf-8")
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("release key passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise ReleaseError("the two passphrases differ")
    return first.encode("utf-8") or None


def cmd_keygen(args: argparse.Namespace) -> int:
    private, public = args.out / "release.key", args.out / "release.pub"
    for path in (private, public):
        if path.exists() and not args.force:
            raise ReleaseError(f"{path} exists; a new key would orphan every node that trusts the old one (--force)")
    passphrase = None if args.no_passphrase else _passphrase(confirm=True)
    if passphrase is None and not args.no_passphrase:
        raise ReleaseError(f"no passphrase: run on a terminal, set {PASSPHRASE_ENV}, or give --no-passphrase")
    key = generate_key()
    write_atomic(private, private_key_pem(key, passphrase), mode=0o600)
    write_atomic(public, public_key_pem(key.public_key()), mode=0o644)
    print(f"private key: {private} (mode 0600{', passphrase-protected' if passphrase else ', NOT encrypted'})")
    print(f"public key:  {public} (key id {key_id(key.public_key())}); give it to provision init --release-key")
    print("keep the private key offline (see docs/updates.md); it never goes to the central or a node")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    key = load_private_key(args.key, _passphrase(confirm=False))
    index_args: tuple[str, ...] = ()
    for url in args.extra_index_url or ():
        index_args += ("--extra-index-url", url)
    builder = Builder(
        source=args.source,
        role=args.role,
        target=args.target or local_target(),
        key=key,
        out_dir=args.out,
        version=args.version,
        index_args=index_args,
        allow_sdist=not args.no_sdist,
        notes=args.notes,
        progress=lambda line: print(line, flush=True),
    )
    result = builder.run()
    if result.manifest.no_binary:
        print(f"no binary wheel for {result.manifest.target}: {', '.join(result.manifest.no_binary)}")
    print(result.bundle)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    key = load_public_key(args.public_key)
    with tempfile.TemporaryDirectory(prefix="changbai-verify-") as tmp:
        manifest = extract_bundle(args.bundle, key, Path(tmp))
    print(f"OK: {manifest.label}, {len(manifest.files)} files, signed by release key {key_id(key)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    manifest, _raw, _sig = read_verified_manifest(args.bundle, load_public_key(args.public_key))
    print(f"{manifest.label}: python {manifest.python}, config schema {manifest.config_schema}")
    print(f"installs {manifest.requirement}")
    for entry in manifest.files:
        print(f"  {entry.kind:9} {entry.size:>12,}  {entry.sha256[:16]}  {entry.name}")
    if manifest.no_binary:
        print(f"no binary wheel (built on the node): {', '.join(manifest.no_binary)}")
    if manifest.notes:
        print(f"notes: {manifest.notes}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="changbai-release", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    keygen = sub.add_parser("keygen", help="make the Ed25519 release key pair (once, on an offline machine)")
    keygen.add_argument("--out", type=Path, default=Path("."), help="folder for release.key and release.pub")
    keygen.add_argument("--no-passphrase", action="store_true", help="store the private key unencrypted (tests)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(func=cmd_keygen)

    build = sub.add_parser("build", help="build a signed bundle for a role and a target")
    build.add_argument("--role", required=True, choices=sorted(ROLE_EXTRAS))
    build.add_argument(
        "--target", help=f"{', '.join(PI_TARGETS)} (the Pis) or {local_target()} (this machine, the default)"
    )
    build.add_argument("--key", type=Path, required=True, help="the private release key (release.key)")
    build.add_argument("--source", type=Path, default=Path("."), help="the project tree (default: here)")
    build.add_argument("--version", help="release version (default: setup.cfg's)")
    build.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default dist/)")
    build.add_argument("--extra-index-url", action="append", help="another package index (e.g. piwheels)")
    build.add_argument("--no-sdist", action="store_true", help="fail when a dependency has no binary wheel")
    build.add_argument("--notes", default="", help="release notes shown to operators and technicians")
    build.set_defaults(func=cmd_build)

    for name, func, text in (("verify", cmd_verify, "check signature and every hash"), ("show", cmd_show, "list")):
        cmd = sub.add_parser(name, help=f"{text} of a bundle")
        cmd.add_argument("bundle", type=Path)
        cmd.add_argument("--public-key", type=Path, default=Path("/etc/changbai/release.pub"))
        cmd.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ReleaseError as exc:
        print(f"changbai-release {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"changbai-release {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
