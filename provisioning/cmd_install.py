"""`provision install`: the node as a systemd service: a dedicated user, its directories, the unit, started.

Every step is an ``Action`` with a sentence saying what it does, so ``--dry-run`` prints exactly the steps a
real run takes. ``--root DIR`` stages everything into DIR (an image or a test) and never calls systemctl,
useradd or chown.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import grp
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from common.config import NodeConfig, SerialPort
from hal import backlight
from provisioning import prompt, update_units, wiring
from provisioning.configfile import command_parser, load_node_config
from provisioning.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    EXIT_PERMISSION,
    ProvisionError,
)
from provisioning.files import atomic_write, service_user_ids
from provisioning.schema import PIN_TYPES

UNIT_DIR = Path("/etc/systemd/system")
ETC_DIR = Path("/etc/changbai")
ROLE_PROGRAMS = {"elevator": "elevator-node", "meter": "meter-node", "kiosk": "kiosk"}
KIOSK_GROUPS = ("video", "render", "input")  # KMS/DRM display, GPU, touch screen


def unit_name(role: str) -> str:
    return f"changbai-{role}.service"


def _walk(value: Any) -> Iterator[Any]:
    """Every nested value of a config section (dataclasses and tuples), depth first."""
    yield value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _walk(getattr(value, f.name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _walk(item)


def needed_groups(config: NodeConfig) -> list[str]:
    """The supplementary groups this node needs, and no others."""
    found = list(_walk(config.role_config))
    groups = []
    if any(isinstance(v, PIN_TYPES) for v in found):
        groups.append("gpio")
    if any(isinstance(v, SerialPort) for v in found):
        groups.append("dialout")
    if config.audio.backend != "none":
        groups.append("audio")
    if config.node.role == "kiosk":
        groups += KIOSK_GROUPS
    return groups


def primary_group(user: str) -> str:
    """The service user's own group: its primary group when it exists, else the group useradd will make."""
    ids = service_user_ids(user)
    if ids is None:
        return user  # useradd --user-group makes a group of the same name
    try:
        return grp.getgrgid(ids[1]).gr_name
    except KeyError:
        return str(ids[1])


def backlight_device(config: NodeConfig) -> Path | None:
    """A kiosk's display backlight as the kernel's device folder (``/sys/class/backlight/X`` is a link into
    ``/sys/devices``): the configured one or the first listed, as the kiosk takes it; None when there is none."""
    if config.node.role != "kiosk":
        return None
    found = backlight.open_backlight(config.role_config.screen.backlight)
    return found.folder.resolve() if found is not None else None


def with_backlight(unit: str, device: Path) -> str:
    """Let the kiosk dim its display: ``ProtectKernelTunables`` makes /sys read-only and ``ProtectSystem=strict``
    everything but the data directory, so the device folder is made writable for the service, and its
    ``brightness`` file (root's, 0644, from the kernel at each boot) is given to the video group before each
    start, as root (``+``) and without failing the start when the display is gone (``-``)."""
    brightness = device / "brightness"
    pre = f"ExecStartPre=+-/bin/chgrp video {brightness}\nExecStartPre=+-/bin/chmod g+w {brightness}\n"
    unit = re.sub(r"^ExecStart=", lambda _: pre + "ExecStart=", unit, count=1, flags=re.MULTILINE)
    return re.sub(r"^(ReadWritePaths=.*)$", lambda m: f"{m.group(1)} {device}", unit, count=1, flags=re.MULTILINE)


def render_unit(
    config: NodeConfig,
    *,
    user: str,
    groups: list[str],
    bin_dir: Path,
    watchdog_s: int,
    backlight_at: Path | None = None,
) -> str:
    """The unit file text for the config's role (``backlight_at``: a kiosk's backlight device, made writable)."""
    template = resources.files("provisioning.units").joinpath(unit_name(config.node.role)).read_text("utf-8")
    values = {
        "NODE_ID": config.node.id,
        "BIN_DIR": str(bin_dir),
        "CONFIG": str(config.path.absolute()),
        "USER": user,
        "GROUP": primary_group(user),
        "GROUPS": " ".join(groups),
        "DATA_DIR": str(config.node.data_dir),
        "WATCHDOG_S": str(watchdog_s),
    }
    for key, value in values.items():
        if re.search(r"\s", value) and key not in ("GROUPS",):
            raise ProvisionError(EXIT_BAD_INPUT, f"{key.lower()} {value!r}: a path in a unit file cannot hold spaces")
        template = template.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", template)
    if left:
        raise ProvisionError(EXIT_BAD_INPUT, f"unit template has unfilled placeholders: {', '.join(left)}")
    if not groups:
        template = template.replace("SupplementaryGroups=\n", "")
    if backlight_at is not None:
        if re.search(r"\s", str(backlight_at)):
            raise ProvisionError(EXIT_BAD_INPUT, f"backlight {backlight_at}: a path in a unit file cannot hold spaces")
        template = with_backlight(template, backlight_at)
    return template


@dataclass
class Action:
    """One step of the install: what it does, in words, and the code that does it."""

    text: str
    run: Callable[[], None]


def _run(cmd: list[str]) -> None:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ProvisionError(EXIT_PERMISSION, f"{cmd[0]} not found on this system") from None
    except subprocess.TimeoutExpired:
        raise ProvisionError(EXIT_CHECK_FAILED, f"{' '.join(cmd)}: no answer within 120 s") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ProvisionError(
            EXIT_CHECK_FAILED if cmd[0] == "systemctl" else EXIT_PERMISSION,
            f"{' '.join(cmd)} failed (exit {result.returncode})" + (f": {detail[-1]}" if detail else ""),
        )


def _fix(path: Path, mode: int, owner: tuple[int, int] | None, *, mkdir: bool = False) -> Callable[[], None]:
    """An action setting ``path``'s mode and owner (``mkdir``: making the directory first)."""

    def run() -> None:
        try:
            if mkdir:
                path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)
            if owner is not None:
                os.chown(path, *owner)
        except PermissionError as exc:
            what = "set up" if mkdir else "set owner/mode of"
            raise ProvisionError(EXIT_PERMISSION, f"cannot {what} {path}: {exc.strerror} (run as root?)") from None

    return run


def _copy(src: Path, dst: Path, mode: int) -> Callable[[], None]:
    def run() -> None:
        atomic_write(dst, src.read_bytes(), mode=mode)

    return run


def _owner_text(owner: tuple[int, int] | None, name: str, staged: bool) -> str:
    if staged:
        return f"{name} (not set: --root)"
    return name if owner is not None else f"{name} (user not there yet)"


# the unit hides these from the service (ProtectHome=yes, PrivateTmp=yes): a config, token or data dir there
# would be invisible or lost to the running node
HIDDEN_FROM_SERVICE = (Path("/home"), Path("/root"), Path("/run/user"), Path("/tmp"), Path("/var/tmp"))


def _paths_hidden_from_service(config: NodeConfig) -> list[str]:
    """One line per config, token or data path the hardened unit would hide from the node."""
    paths = {
        "--config": config.path.absolute(),
        "central.token_file": Path(config.central.token_file).absolute(),
        "node.data_dir": Path(config.node.data_dir).absolute(),
    }
    found = []
    for what, path in paths.items():
        for hidden in HIDDEN_FROM_SERVICE:
            if path == hidden or hidden in path.parents:
                found.append(f"{what} = {path}: the service cannot see {hidden} (ProtectHome/PrivateTmp)")
    return found


def systemd_running() -> bool:
    """True when systemd is PID 1 here (not in a plain container or chroot)."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def _unit_actions(
    config: NodeConfig,
    place: Callable[[Path], Path],
    user: str,
    groups: list[str],
    bin_dir: Path,
    watchdog_s: int,
    device: Path | None,
    warnings: list[str],
) -> tuple[list[Action], list[str]]:
    """Writing the role unit (and, on a node the updater manages, the updater's units); the units to enable."""
    role, managed = config.node.role, update_units.managed(config)
    actions = []
    unit_text = render_unit(
        config, user=user, groups=groups, bin_dir=bin_dir, watchdog_s=watchdog_s, backlight_at=device
    )
    unit_path = place(UNIT_DIR / unit_name(role))
    units = [unit_name(role)]
    if managed:
        unit_text = update_units.with_recover(unit_text, config)
    actions.append(
        Action(
            f"write {unit_path} (Type=notify, WatchdogSec={watchdog_s}, Restart=always, User={user}, "
            f"SupplementaryGroups={' '.join(groups) or '(none)'}"
            + (", ExecStartPre changbai-update recover" if managed else "")
            + (f", backlight {device} writable by the video group)" if device else ")"),
            lambda: atomic_write(unit_path, unit_text.encode("utf-8"), mode=0o644),
        )
    )
    if managed:
        for name, text in update_units.render_update_units(config).items():
            path = place(UNIT_DIR / name)
            actions.append(Action(f"write {path}", functools.partial(atomic_write, path, text.encode(), mode=0o644)))
        units.append("changbai-update.timer")
    else:
        warnings.append(f"software updates: not managed by the updater; see docs/updates.md ({update_units.FIRST})")
    return actions, units


def plan(args: argparse.Namespace, config: NodeConfig) -> tuple[list[Action], list[str]]:
    """The actions of this install, and warnings for the technician."""
    user = args.user
    root = Path(args.root) if args.root else None
    staged = root is not None

    def place(path: Path) -> Path:
        absolute = path.absolute()
        return root / absolute.relative_to("/") if root is not None else absolute

    warnings: list[str] = []
    actions: list[Action] = []
    bin_dir = _bin_dir(args, config, staged, warnings)
    groups = needed_groups(config) if staged else _groups_here(needed_groups(config), warnings)
    ids = None if staged else service_user_ids(user)
    if not staged and ids is None:
        actions.append(_create_user(config, user))
    actions += _file_actions(config, place, user, staged, ids)
    token_file = Path(config.central.token_file).absolute()
    if not token_file.exists():
        warnings.append(f"no token at {token_file}: run provision register, or the node cannot upload")
    device = None if staged else backlight_device(config)  # --root: the display is on the kiosk, not here
    if config.node.role == "kiosk" and device is None and not staged:
        warnings.append("kiosk: no display backlight found here: the screen will not be dimmed at night")
    unit_actions, units = _unit_actions(config, place, user, groups, bin_dir, args.watchdog_sec, device, warnings)
    actions += unit_actions
    if staged:
        warnings.append("--root: systemctl, useradd and chown skipped; run provision install on the node itself")
    elif not systemd_running():
        warnings.append("systemd is not running here: unit written but not enabled or started")
    else:
        actions += _systemctl_actions(config.node.role, units, start=not args.no_start)
    return actions, warnings


def _bin_dir(args: argparse.Namespace, config: NodeConfig, staged: bool, warnings: list[str]) -> Path:
    """Where the role's program is (checked), after refusing paths the hardened service could not see."""
    program = ROLE_PROGRAMS[config.node.role]
    managed = update_units.managed(config)  # installed by the updater: run through ROOT/current
    default_bin = update_units.bin_dir(config) if managed else Path(sys.executable).parent
    bin_dir = Path(args.bin_dir) if args.bin_dir else default_bin
    if not (bin_dir / program).exists():
        raise ProvisionError(
            EXIT_BAD_INPUT,
            f"{bin_dir / program} not found",
            ["install the package first (pip install changbai-nodes), or give --bin-dir DIR"],
        )
    hidden = _paths_hidden_from_service(config)
    if hidden and not staged and not args.dry_run:
        raise ProvisionError(
            EXIT_BAD_INPUT,
            hidden[0],
            ["keep the config and token in /etc/changbai and data in /var/lib/changbai (the defaults)"],
        )
    warnings += [f"{line} (a real install refuses this)" for line in hidden]
    return bin_dir


def _groups_here(groups: list[str], warnings: list[str]) -> list[str]:
    """The needed groups that exist on this machine; a warning for each that does not."""
    present = []
    for group in groups:
        try:
            grp.getgrnam(group)
            present.append(group)
        except KeyError:
            warnings.append(f"group {group!r} does not exist here; left out of the unit (is this Raspberry Pi OS?)")
    return present


def _create_user(config: NodeConfig, user: str) -> Action:
    cmd = [
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        str(config.node.data_dir),
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Changbai node service",
        user,
    ]
    return Action(f"create system user {user} (no login, no home, own group): {' '.join(cmd)}", lambda: _run(cmd))


def _file_actions(
    config: NodeConfig, place: Callable[[Path], Path], user: str, staged: bool, ids: tuple[int, int] | None
) -> list[Action]:
    """/etc/changbai and the data folder made with their owners; the config and token set (or, staged, copied)."""

    # ids of a user created by an earlier step are only known once it exists: look them up when the step runs
    def user_ids() -> tuple[int, int] | None:
        return None if staged else service_user_ids(user)

    def root_and_group() -> tuple[int, int] | None:
        ids = user_ids()
        return (0, ids[1]) if ids else None

    etc_dir, data_dir = place(ETC_DIR), place(config.node.data_dir)
    owner = _owner_text(ids, user, staged)
    actions = [
        Action(
            f"create {etc_dir} owner root:{owner} mode 0750",
            lambda: _fix(etc_dir, 0o750, root_and_group(), mkdir=True)(),
        ),
        Action(f"create {data_dir} owner {owner} mode 0750", lambda: _fix(data_dir, 0o750, user_ids(), mkdir=True)()),
    ]
    config_file = config.path.absolute()
    token_file = Path(config.central.token_file).absolute()
    if staged:
        actions.append(
            Action(
                f"copy {config_file} to {place(config_file)} mode 0640", _copy(config_file, place(config_file), 0o640)
            )
        )
        if token_file.exists():
            actions.append(
                Action(f"copy the token to {place(token_file)} mode 0600", _copy(token_file, place(token_file), 0o600))
            )
        return actions
    actions.append(
        Action(f"set {config_file} owner root:{user} mode 0640", lambda: _fix(config_file, 0o640, root_and_group())())
    )
    if token_file.exists():
        actions.append(
            Action(f"set {token_file} owner {user} mode 0600", lambda: _fix(token_file, 0o600, user_ids())())
        )
    return actions


def _systemctl_actions(role: str, units: list[str], *, start: bool) -> list[Action]:
    """Reload systemd, enable the units, and (unless ``start`` is false) restart the service and the update timer."""
    actions = [
        Action(" ".join(cmd), functools.partial(_run, cmd))
        for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", *units])
    ]
    if start:
        cmd = ["systemctl", "restart", unit_name(role)]
        actions.append(Action(" ".join(cmd) + " (waits for the node's READY)", functools.partial(_run, cmd)))
        if len(units) > 1:
            timer = ["systemctl", "start", "changbai-update.timer"]
            actions.append(Action(" ".join(timer), functools.partial(_run, timer)))
    return actions


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "install",
        "Install the node's systemd unit (Type=notify, watchdog, Restart=always, a dedicated "
        "unprivileged user with only the groups it needs, hardening), create /etc/changbai and the data "
        "directory with the right owners and modes, then enable and start the service.",
    )
    parser.add_argument("--dry-run", action="store_true", help="print every action, do nothing")
    parser.add_argument("--root", type=Path, metavar="DIR", help="install into DIR (an image, a test); no systemctl")
    parser.add_argument("--user", default=wiring.SERVICE_USER, help="service user (default %(default)s)")
    parser.add_argument("--bin-dir", type=Path, metavar="DIR", help="where the node programs are (default: this venv)")
    parser.add_argument("--watchdog-sec", type=int, default=30, metavar="S", help="WatchdogSec (default %(default)s)")
    parser.add_argument("--no-start", action="store_true", help="install and enable, but do not start now")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", args.user):
        raise ProvisionError(EXIT_BAD_INPUT, f"--user {args.user!r}: not a valid user name")
    if not 5 <= args.watchdog_sec <= 3600:
        raise ProvisionError(EXIT_BAD_INPUT, f"--watchdog-sec {args.watchdog_sec}: allowed 5..3600")
    if args.root is None and not args.dry_run and os.geteuid() != 0:
        raise ProvisionError(EXIT_PERMISSION, "install changes the system: run it as root (sudo provision install)")
    config = load_node_config(args.config)
    actions, warnings = plan(args, config)
    for warning in warnings:
        prompt.say(f"warning: {warning}")
    if args.dry_run:
        for action in actions:
            print(f"would: {action.text}")
        return EXIT_OK
    for action in actions:
        print(action.text)
        try:
            action.run()
        except ProvisionError as exc:
            if "systemctl restart" in action.text:
                exc.hints.append(f"see why: journalctl -u {unit_name(config.node.role)} -n 50 --no-pager")
            raise
    started = any(a.text.startswith("systemctl restart") for a in actions)
    print(f"installed {unit_name(config.node.role)}" + (" and started" if started else ""))
    if not started and args.root is None and not args.no_start:
        return EXIT_CHECK_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
