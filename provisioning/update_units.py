"""What `provision install` adds for a node the updater manages (docs/updates.md): the role unit runs
``ROOT/current/venv/bin/PROGRAM`` with ``changbai-update recover`` before each start (a power cut in the middle
of a switch is repaired before the node reads its config), and changbai-update.service and .timer are written
and enabled. The release public key is installed by `provision init --release-key FILE`."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from common.config import NodeConfig
from provisioning.errors import EXIT_BAD_INPUT, ProvisionError
from provisioning.files import atomic_write
from updates.layout import Layout
from updates.manifest import ReleaseError, key_id, load_public_key

UPDATE_UNITS = ("changbai-update.service", "changbai-update.timer")
FIRST = "its first version: sudo provision update now --bundle FILE, then provision install again"


def managed(config: NodeConfig) -> bool:
    """True when the updater installed this node's software (``ROOT/current`` exists)."""
    return Layout(config.update.root).current() is not None


def bin_dir(config: NodeConfig) -> Path:
    """Where a managed node's programs are: through the ``current`` link, so a switch needs no unit change."""
    return Path(config.update.root).absolute() / "current" / "venv" / "bin"


def recover_line(config: NodeConfig) -> str:
    """The role unit's ExecStartPre: as root (+), and its failure never keeps the node from starting (-)."""
    exe = Path(config.update.root).absolute() / "committed" / "venv" / "bin" / "changbai-update"
    return f"ExecStartPre=-+{exe} --config {config.path.absolute()} recover"


def with_recover(unit_text: str, config: NodeConfig) -> str:
    """The role unit's text with the recover step before ExecStart."""
    return re.sub(r"^ExecStart=", recover_line(config) + "\nExecStart=", unit_text, count=1, flags=re.M)


def render_update_units(config: NodeConfig) -> dict[str, str]:
    """changbai-update.service and .timer for this node."""
    values = {
        "UPDATE_ROOT": str(Path(config.update.root).absolute()),
        "CONFIG": str(config.path.absolute()),
        "NODE_ID": config.node.id,
    }
    out = {}
    for name in UPDATE_UNITS:
        text = resources.files("provisioning.units").joinpath(name).read_text("utf-8")
        for key, value in values.items():
            if re.search(r"\s", value):
                raise ProvisionError(
                    EXIT_BAD_INPUT, f"{key.lower()} {value!r}: a path in a unit file cannot hold spaces"
                )
            text = text.replace(f"@{key}@", value)
        out[name] = text
    return out


def install_release_key(source: Path, dest: Path) -> str:
    """Copy the release public key to ``dest`` (0644) after checking it is one; its fingerprint."""
    try:
        key = load_public_key(source)
    except (OSError, ReleaseError) as exc:
        raise ProvisionError(EXIT_BAD_INPUT, f"--release-key {source}: {exc}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, Path(source).read_bytes(), mode=0o644)
    return key_id(key)
