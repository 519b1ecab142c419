"""`provision register`: exchange the site's claim key for this node's own token at the central.

The claim key comes from a file, an environment variable or a prompt without echo, never from the command
line (where ``ps`` shows it). The token goes straight into ``central.token_file`` (mode 0600, owned by the
service user) and is never printed or logged. Registering again rotates the token.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import Any

from common.catalogue import RECIPIENTS
from provisioning import central_client, prompt, wiring
from provisioning.configfile import command_parser, load_node_config
from provisioning.errors import (
    EXIT_BAD_INPUT,
    EXIT_CENTRAL,
    EXIT_OK,
    EXIT_PERMISSION,
    ProvisionError,
)
from provisioning.files import atomic_write, service_user_ids


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "register",
        "Register this node at the central with the site's claim key; the node's token is written "
        "to central.token_file (mode 0600) and never shown. Registering again rotates the token. "
        "Without --claim-key-file or --claim-key-env the key is asked for without echo.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--claim-key-file", type=Path, metavar="FILE", help="file holding the site's claim key")
    source.add_argument("--claim-key-env", metavar="VAR", help="environment variable holding the claim key")
    parser.add_argument(
        "--contact",
        action="append",
        default=[],
        metavar="ROLE=NAME[,PHONE[,NOTE]]",
        help=f"someone the central notifies for this node's alerts; ROLE one of {', '.join(RECIPIENTS)}",
    )
    parser.add_argument("--user", default=wiring.SERVICE_USER, help="service user who owns the token file")
    parser.add_argument("--non-interactive", action="store_true", help="never ask for the claim key")
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds to wait for the central")
    return parser


def read_claim_key(args: argparse.Namespace) -> str:
    """The claim key from the chosen source; stripped; never echoed."""
    if args.claim_key_file is not None:
        path: Path = args.claim_key_file
        try:
            info = path.stat()
            key = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ProvisionError(EXIT_BAD_INPUT, f"--claim-key-file {path}: no such file") from None
        except PermissionError:
            raise ProvisionError(EXIT_PERMISSION, f"--claim-key-file {path}: not readable (run as root?)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvisionError(EXIT_BAD_INPUT, f"--claim-key-file {path}: cannot read it ({exc})") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            prompt.say(f"warning: {path} is readable by others; delete it once the node is registered")
        source = f"--claim-key-file {path}"
    elif args.claim_key_env is not None:
        key = os.environ.get(args.claim_key_env, "").strip()
        source = f"${args.claim_key_env}"
        if not key:
            raise ProvisionError(EXIT_BAD_INPUT, f"--claim-key-env {args.claim_key_env}: variable is unset or empty")
    elif args.non_interactive:
        raise ProvisionError(EXIT_BAD_INPUT, "no claim key: give --claim-key-file FILE or --claim-key-env VAR")
    else:
        key = prompt.ask_secret("site claim key (not shown)").strip()
        source = "the prompt"
    if not key:
        raise ProvisionError(EXIT_BAD_INPUT, f"the claim key from {source} is empty")
    if any(ch.isspace() for ch in key):
        raise ProvisionError(EXIT_BAD_INPUT, f"the claim key from {source} contains spaces or line breaks")
    return key


def parse_contacts(items: list[str]) -> dict[str, list[dict[str, str]]]:
    """--contact family=Wang Li,13800000000 -> {"family": [{"name": "Wang Li", "phone": "13800000000"}]}."""
    contacts: dict[str, list[dict[str, str]]] = {}
    for item in items:
        role, sep, rest = item.partition("=")
        role = role.strip()
        if not sep or role not in RECIPIENTS or not rest.strip():
            raise ProvisionError(
                EXIT_BAD_INPUT,
                f"--contact {item!r}: expected ROLE=NAME[,PHONE[,NOTE]] with ROLE one of {', '.join(RECIPIENTS)}",
            )
        parts = [p.strip() for p in rest.split(",", 2)]
        contact = {"name": parts[0]}
        if len(parts) > 1:
            contact["phone"] = parts[1]
        if len(parts) > 2:
            contact["note"] = parts[2]
        contacts.setdefault(role, []).append(contact)
    return contacts


def token_owner(user: str) -> tuple[tuple[int, int] | None, str]:
    """Who owns the token file: the service user when we are root and it exists, else whoever runs this."""
    if os.geteuid() == 0:
        ids = service_user_ids(user)
        if ids is not None:
            return ids, user
        return None, f"root (user {user!r} does not exist yet: provision install creates it and hands it over)"
    return None, f"uid {os.geteuid()}"


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    config = load_node_config(args.config)
    contacts = parse_contacts(args.contact)
    claim_key = read_claim_key(args)
    body: dict[str, Any] = {
        "claim_key": claim_key,
        "node_id": config.node.id,
        "role": config.node.role,
        "site": config.node.site,
        "area": config.node.area,
        "location": config.node.location,
    }
    pickup_point = getattr(config.role_config, "pickup_point", None)
    if isinstance(pickup_point, str) and pickup_point:
        body["pickup_point"] = pickup_point
    if contacts:
        body["contacts"] = contacts
    prompt.say(f"registering {config.node.id} ({config.node.role}) at {config.central.url} ...")
    response = central_client.call(config, "POST", "/nodes/register", body=body, timeout_s=args.timeout)
    del claim_key, body  # nothing below needs the claim key
    if response.status == 403:
        raise ProvisionError(
            EXIT_PERMISSION,
            f"claim key refused for site {config.node.site!r} ({central_client.error_text(response)})",
            ["check node.site in the config and ask the site's operator for the current claim key"],
        )
    if response.status == 409:
        raise ProvisionError(
            EXIT_BAD_INPUT,
            f"node id {config.node.id!r} cannot be registered: {central_client.error_text(response)}",
            ["node ids are unique across sites: pick another node.id (provision init --force)"],
        )
    if response.status not in (200, 201):
        raise central_client.central_error(response, "registration")
    data = central_client.answer(response)
    token = data.get("token")
    if not isinstance(token, str) or not token or any(ch.isspace() for ch in token):
        raise ProvisionError(EXIT_CENTRAL, "registration answer holds no usable token (is central.url right?)")
    owner, owner_text = token_owner(args.user)
    token_file = Path(config.central.token_file)
    atomic_write(token_file, token.encode("ascii"), mode=0o600, owner=owner)
    del token
    rotated = data.get("new") is False
    print(
        f"registered {config.node.id} at site {config.node.site}"
        + (" (already known: token rotated; the old token no longer works)" if rotated else "")
    )
    print(f"token written to {token_file} (mode 0600, owner {owner_text})")
    if rotated:
        print(f"restart a running node so it reads the new token: systemctl restart changbai-{config.node.role}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
