"""`provision init`: write a validated node config for a role, from flags, prompts, or both.

The role's flags and questions come from the role's own config dataclass (``common.config.role_section_class``)
and the result is checked with ``common.config.parse_config`` before a byte is written: the node will accept
exactly what init accepts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

from common import tomlwrite
from common.config import (
    CentralSection,
    ConfigError,
    GpioSection,
    NodeSection,
    UpdateSection,
    default_config_path,
    parse_config,
    role_section_class,
)
from meter_node.profiles import profile_files
from provisioning import prompt, update_units, wiring
from provisioning.configfile import command_parser
from provisioning.errors import EXIT_BAD_INPUT, EXIT_OK, ProvisionError
from provisioning.files import atomic_write, service_user_ids
from provisioning.schema import BadValue, Knob, TableArray, knobs_of, table_arrays_of, unwrap_optional

ROLES = ("elevator", "meter", "kiosk")
MAX_TRIES = 3


def _common_knob(cls: type, name: str, section: str, flag: str, *, ask: bool) -> Knob:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    tp = typing.get_type_hints(cls)[name]
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    return Knob(
        path=(section, name),
        flag=flag,
        tp=tp,
        field=field,
        required=required,
        ask=ask,
        group=(section,),
        group_optional=False,
    )


def common_knobs() -> list[Knob]:
    """Identity and central: asked first, in this order."""
    return [
        _common_knob(NodeSection, "id", "node", "--node-id", ask=True),
        _common_knob(NodeSection, "site", "node", "--site", ask=True),
        _common_knob(NodeSection, "area", "node", "--area", ask=True),
        _common_knob(NodeSection, "location", "node", "--location", ask=True),
        _common_knob(CentralSection, "url", "central", "--central-url", ask=True),
        _common_knob(CentralSection, "token_file", "central", "--token-file", ask=False),
        _common_knob(CentralSection, "ca_bundle", "central", "--ca-bundle", ask=False),
        _common_knob(NodeSection, "data_dir", "node", "--data-dir", ask=False),
        _common_knob(NodeSection, "timezone", "node", "--timezone", ask=False),
        _common_knob(GpioSection, "pin_factory", "gpio", "--pin-factory", ask=False),
    ]


def role_knobs(role: str) -> tuple[list[Knob], list[TableArray]]:
    """The role section's leaves and arrays of tables; a flag that clashes with a common one gets a prefix."""
    cls = role_section_class(role)
    taken = {k.flag for k in common_knobs()} | {"--role", "--config", "--force", "--set", "--non-interactive"}
    knobs = []
    for knob in knobs_of(cls, (role,), ""):
        if knob.flag in taken:
            knob = dataclasses.replace(knob, flag=f"--{role}-{knob.flag[2:]}")
        knobs.append(knob)
    arrays = table_arrays_of(cls, (role,))
    return knobs, arrays


def _dest(knob: Knob) -> str:
    return "k_" + "__".join(knob.path)


def _metavar(knob: Knob) -> str:
    inner, _ = unwrap_optional(knob.tp)
    if typing.get_origin(inner) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(inner) if a != "") or "VALUE"
    return {bool: "yes|no", int: "N", float: "NUM", Path: "PATH"}.get(inner, "TEXT")


def build_parser(role: str | None, *, add_help: bool = True) -> argparse.ArgumentParser:
    """The init parser; with a role it also has that role's flags."""
    parser = command_parser(
        "init",
        "Write a validated node config for a role. A flag that is not given is asked for "
        "(prompts on stderr, answers on stdin) unless --non-interactive.",
        before="Role flags: provision init --role ROLE --help\n\n" if role is None else "",
        config=False,  # its own --config: the file to write
        add_help=add_help,
    )
    parser.add_argument("--role", choices=ROLES, help="the node's role")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"config file to write (default {default_config_path()}; $CHANGBAI_CONFIG overrides)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing config")
    parser.add_argument(
        "--release-key",
        type=Path,
        metavar="FILE",
        help="the release public key (release.pub from the release engineer, never the private key): checked and "
        "installed beside the config, where [update] public_key points (docs/updates.md)",
    )
    parser.add_argument("--non-interactive", action="store_true", help="never ask; a missing setting is an error")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting, VALUE in TOML syntax, e.g. --set outbox.max_mb=128 --set audio.voice='\"en\"'",
    )
    common = parser.add_argument_group("node and central")
    for knob in common_knobs():
        common.add_argument(knob.flag, dest=_dest(knob), metavar=_metavar(knob), help=f"{knob.key}: {knob.help}")
    if role is not None:
        knobs, arrays = role_knobs(role)
        group = parser.add_argument_group(f"[{role}] settings")
        for knob in knobs:
            needed = " (required)" if knob.required else ""
            group.add_argument(
                knob.flag, dest=_dest(knob), metavar=_metavar(knob), help=f"{knob.key}{needed}: {knob.help}"
            )
        for array in arrays:
            keys = ",".join(f"{k.path[-1]}=..." for k in array.knobs())
            group.add_argument(
                array.flag,
                dest="a_" + "__".join(array.path),
                action="append",
                default=[],
                metavar=keys,
                help=f"one entry of {'.'.join(array.path)} (repeat for more): {array.help}",
            )
    return parser


# ---------------------------------------------------------------------------------------------- collecting
class _Doc:
    """The TOML document being built: nested dicts, and which keys the technician set explicitly."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def put(self, path: tuple[str, ...], value: Any) -> None:
        table = self.data
        for name in path[:-1]:
            table = table.setdefault(name, {})
            if not isinstance(table, dict):
                raise ProvisionError(EXIT_BAD_INPUT, f"{'.'.join(path)}: {name} is a value, not a table")
        table[path[-1]] = value

    def get(self, path: tuple[str, ...]) -> Any:
        table: Any = self.data
        for name in path:
            if not isinstance(table, dict) or name not in table:
                return None
            table = table[name]
        return table


def _from_flag(knob: Knob, text: str) -> Any:
    try:
        return knob.parse(text)
    except BadValue as exc:
        raise ProvisionError(EXIT_BAD_INPUT, f"{knob.flag} ({knob.key}): {exc}") from None


def _question(knob: Knob) -> str:
    help_text = knob.help
    if knob.group_optional and knob.path[-1] == "pin":
        standard = wiring.suggestion(knob.path)
        hint = f"standard wiring: {standard}; " if standard is not None else ""
        help_text = (help_text + "; " if help_text else "") + hint + "blank if not fitted"
    if knob.path[-1] == "profile" and knob.path[0] == "meter":
        help_text += f"; shipped: {', '.join(sorted(profile_files()))}; provision scan finds the right one"
    return f"{knob.key}" + (f" ({help_text})" if help_text else "")


def _prompt_knob(knob: Knob, default: Any) -> Any:
    default_text = None if default is None else _as_text(default)
    for attempt in range(MAX_TRIES):
        answer = prompt.ask(_question(knob), default_text, what=f"{knob.key} ({knob.flag})")
        try:
            value = knob.parse(answer)
        except BadValue as exc:
            if attempt == MAX_TRIES - 1:
                raise ProvisionError(EXIT_BAD_INPUT, f"{knob.key}: {exc}") from None
            prompt.say(f"  {knob.key}: {exc}; try again")
            continue
        if value is None and knob.required:
            prompt.say(f"  {knob.key} is required")
            continue
        known = _known_names(knob)
        if known is not None and value not in known:
            prompt.say(f"  {knob.key}: {value!r} is not known; known: {', '.join(sorted(known))}")
            continue
        return value
    raise ProvisionError(EXIT_BAD_INPUT, f"{knob.key}: no valid answer")


def _known_names(knob: Knob) -> set[str] | None:
    """Names a setting must be one of, checked at once when asked (the node checks them again at the end)."""
    if knob.path[0] == "meter" and knob.path[-1] == "profile":
        return set(profile_files())
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _parse_set(item: str) -> tuple[tuple[str, ...], Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ProvisionError(EXIT_BAD_INPUT, f"--set {item!r}: expected KEY=VALUE, e.g. outbox.max_mb=128")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # plain words need no quotes: --set audio.voice=en
    return tuple(key.split(".")), value


def _item_key(knob: Knob) -> str:
    return ".".join(knob.path)


def _put(table: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        table = table.setdefault(name, {})
    table[path[-1]] = value


def _parse_entry(array: TableArray, spec: str) -> dict[str, Any]:
    knobs = {_item_key(k): k for k in array.knobs()}
    entry: dict[str, Any] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, sep, text = part.partition("=")
        name = name.strip()
        if not sep or name not in knobs:
            raise ProvisionError(
                EXIT_BAD_INPUT,
                f"{array.flag} {spec!r}: {name!r} is not a key of {'.'.join(array.path)}; "
                f"allowed keys: {', '.join(knobs)}",
            )
        try:
            value = knobs[name].parse(text)
        except BadValue as exc:
            raise ProvisionError(EXIT_BAD_INPUT, f"{array.flag} ({'.'.join(array.path)}.{name}): {exc}") from None
        if value is not None:
            _put(entry, knobs[name].path, value)
    return entry


def _prompt_entries(array: TableArray) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    item_knobs = [k for k in array.knobs() if k.ask or k.required]
    while True:
        first = not entries
        if not prompt.confirm(f"add {'an' if first else 'another'} entry to {'.'.join(array.path)}?", first):
            return entries
        entry: dict[str, Any] = {}
        skipped: set[tuple[str, ...]] = set()
        for knob in item_knobs:
            if knob.group in skipped:
                continue
            qualified = dataclasses.replace(knob, path=(*array.path, f"[{len(entries)}]", *knob.path))
            default = None if knob.group_optional else wiring.suggestion(qualified.path)
            value = _prompt_knob(qualified, default if default is not None else knob.default)
            if value is None:
                if knob.group_optional and knob.path[-1] == "pin":
                    skipped.add(knob.group)
                continue
            if knob.required or value != knob.default or knob.path[-1] == "pin":
                _put(entry, knob.path, value)
        entries.append(entry)


def collect(args: argparse.Namespace, role: str, config_path: Path, interactive: bool) -> dict[str, Any]:
    """The config document from flags, --set and answers; lists every missing setting at once."""
    doc = _Doc()
    doc.put(("node", "role"), role)
    knobs, arrays = role_knobs(role)
    missing: list[Knob] = []
    skipped_groups: set[tuple[str, ...]] = set()
    for knob in common_knobs() + knobs:
        text = getattr(args, _dest(knob))
        if text is not None:
            value = _from_flag(knob, text)
            if value is not None:
                doc.put(knob.path, value)
            continue
        if knob.group in skipped_groups:
            continue
        if interactive and knob.ask:
            # an optional sensor is only suggested in the question: Enter must mean "not fitted"
            default = None if knob.group_optional else wiring.suggestion(knob.path)
            if default is None:
                default = knob.default
            value = _prompt_knob(knob, default)
            if value is None:
                if knob.group_optional and knob.path[-1] == "pin":
                    skipped_groups.add(knob.group)  # sensor not fitted: leave its table out
                continue
            if knob.required or value != knob.default or knob.path[-1] == "pin":
                doc.put(knob.path, value)
            continue
        if knob.required:
            missing.append(knob)
    for array in arrays:
        specs = getattr(args, "a_" + "__".join(array.path))
        entries = [_parse_entry(array, spec) for spec in specs]
        if not entries and interactive:
            entries = _prompt_entries(array)
        if entries:
            doc.put(array.path, entries)
        elif array.required:
            missing.append(
                Knob(
                    path=array.path,
                    flag=array.flag,
                    tp=list,
                    field=dataclasses.field(),
                    required=True,
                    ask=True,
                    group=array.path[:-1],
                    group_optional=False,
                )
            )
    if missing:
        lines = [f"missing {k.flag} ({k.key})" + (f": {k.help}" if k.help else "") for k in missing]
        raise ProvisionError(EXIT_BAD_INPUT, "; ".join(lines))
    if doc.get(("central", "token_file")) is None:
        # the token lives beside the config it belongs to, so a test or second config never shares one
        doc.put(("central", "token_file"), str(config_path.parent / "token"))
    for item in args.set:
        path, value = _parse_set(item)
        doc.put(path, value)
    return doc.data


def render(data: dict[str, Any], config_path: Path) -> str:
    """TOML text of a validated document; raises ProvisionError(2) listing every problem the node would see."""
    try:
        config = parse_config(data, config_path)
    except ConfigError as exc:
        raise ProvisionError(EXIT_BAD_INPUT, "the config would not be accepted by the node", exc.problems) from None
    header = (
        f"{config.node.role} node {config.node.id}, written by provision init.\n"
        "Every key: docs/configuration.md. Check with: provision selftest"
    )
    text = tomlwrite.dumps(_ordered(data), header=header)
    # the writer is ours: read the text back and check it means exactly what was validated
    if tomllib.loads(text) != _plain(data):
        raise ProvisionError(EXIT_BAD_INPUT, "internal error: TOML text does not read back as written")
    parse_config(tomllib.loads(text), config_path)
    return text


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    order = ["node", "central", "outbox", "gpio", "audio"]
    return {k: data[k] for k in sorted(data, key=lambda k: (order.index(k) if k in order else len(order), k))}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def main(argv: list[str]) -> int:
    pre = build_parser(None, add_help=False)
    known, _ = pre.parse_known_args(argv)
    role = known.role
    interactive = not known.non_interactive
    if role is None and ("-h" in argv or "--help" in argv):
        build_parser(None).parse_args(["--help"])
    config_path = known.config or default_config_path()
    if config_path.exists() and not known.force:
        raise ProvisionError(EXIT_BAD_INPUT, f"{config_path} already exists (use --force to replace it)")
    if role is None:
        if not interactive:
            raise ProvisionError(EXIT_BAD_INPUT, f"missing --role (one of {', '.join(ROLES)})")
        for _ in range(MAX_TRIES):
            answer = prompt.ask(f"role ({'/'.join(ROLES)})", None, what="role (--role)").strip().lower()
            if answer in ROLES:
                role = answer
                break
            prompt.say(f"  role must be one of {', '.join(ROLES)}")
        else:
            raise ProvisionError(EXIT_BAD_INPUT, f"role: no valid answer; allowed: {', '.join(ROLES)}")
        argv = [*argv, "--role", role]
    args = build_parser(role).parse_args(argv)
    data = collect(args, role, config_path, interactive)
    key_dest = None
    if args.release_key is not None:
        key_dest = Path(data.get("update", {}).get("public_key") or config_path.parent / "release.pub")
        if key_dest != UpdateSection().public_key:
            data.setdefault("update", {})["public_key"] = str(key_dest)
    text = render(data, config_path)
    if key_dest is not None:
        fingerprint = update_units.install_release_key(args.release_key, key_dest)
        print(f"installed the release public key at {key_dest} (key id {fingerprint}: compare with the release's)")
    owner = _config_owner()
    atomic_write(config_path, text.encode("utf-8"), mode=0o640, owner=owner, overwrite=args.force)
    print(f"wrote {config_path} (role {role}, node {data['node']['id']})")
    print(f"next: provision register --config {config_path} --claim-key-file FILE")
    return EXIT_OK


def _config_owner() -> tuple[int, int] | None:
    # root:changbai 0640 lets the service read its config without being able to change it
    if os.geteuid() != 0:
        return None
    ids = service_user_ids(wiring.SERVICE_USER)
    return (0, ids[1]) if ids else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
