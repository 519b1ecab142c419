"""The node's files as the updater reads and restores them: the config (in either version's schema during a
switch), its backup put back (also on a full disk), and one line saying why a disk error stopped an update."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
from pathlib import Path

from common.config import ConfigError, NodeConfig, UpdateSection, load_config, read_toml
from common.files import fsync_path, write_atomic
from updates.journal import Journal
from updates.layout import Layout

log = logging.getLogger(__name__)
DEFAULT_ROOT = UpdateSection().root


def load_updater_config(path: Path) -> NodeConfig:
    """The node config as this (committed) version's updater can read it. During a switch or a trial the file
    may already be in the new version's schema; then the copy saved before the switch is used for the
    updater's own settings (paths, central, [update]), with ``path`` still naming the real file."""
    try:
        return load_config(path)
    except ConfigError as first:
        try:
            root = Path(read_toml(path).get("update", {}).get("root", DEFAULT_ROOT))
        except (ConfigError, AttributeError):
            raise first from None
        layout = Layout(root)
        journal = Journal.load(layout.journal)
        for version in (journal.from_version, layout.committed()):
            backup = layout.backup(version) if version else None
            if backup and backup.is_file():
                try:
                    return dataclasses.replace(load_config(backup), path=Path(path))
                except ConfigError:
                    continue
        raise first from None


def sha256_of(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""


def refusal(exc: BaseException) -> str:
    """One line for a refusal; a disk error names the file and says what it was."""
    if isinstance(exc, OSError):
        what = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "disk error"
        return f"{what}: {exc.strerror or exc} ({exc.filename or 'a write'}); what it had written is removed"
    return str(exc)


def restore_config(backup: Path, config: Path) -> None:
    """Put the config backup back in place; on a full disk (no room for a copy) the backup itself is renamed
    over the config, with the config's owner and mode, which needs no free block."""
    info = config.stat()
    try:
        write_atomic(config, backup.read_bytes(), mode=info.st_mode & 0o777)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        os.chown(backup, info.st_uid, info.st_gid)
        os.chmod(backup, info.st_mode & 0o777)
        os.replace(backup, config)
        fsync_path(config.parent)
        log.warning("disk full: the config backup %s was moved back over %s", backup, config)
