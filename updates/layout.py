"""Where versions live on a node, and the two links that say which one runs (``current``) and which one last
proved healthy (``committed``). A link is switched by renaming a new symlink over it: atomic, so after a power
cut or kill -9 it points to the old version or the new one, never to nothing.

    ROOT/versions/VERSION/venv/...      one virtualenv per version, installed offline from the bundle
    ROOT/versions/VERSION/manifest.json the signed manifest it was installed from (and manifest.sig)
    ROOT/versions/VERSION/READY         written last: installed, config checked, self-test passed
    ROOT/current -> versions/VERSION    what the unit runs (ExecStart=ROOT/current/venv/bin/PROGRAM)
    ROOT/committed -> versions/VERSION  the last version that proved healthy; its updater runs the timer
    ROOT/downloads/VERSION/             files being fetched (resumed after a cut)
    ROOT/config-backups/VERSION.toml    the node config as it was under VERSION, before a migration
    ROOT/state.json                     the updater's journal (updates/journal.py)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from common.files import fsync_path, sync_tree, write_atomic

PROGRAMS = {"elevator": "elevator-node", "meter": "meter-node", "kiosk": "kiosk"}
READY = "READY"


class Layout:
    """The folders and links under one root (default /opt/changbai)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.downloads = self.root / "downloads"
        self.backups = self.root / "config-backups"
        self.journal = self.root / "state.json"

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def venv(self, version: str) -> Path:
        return self.version_dir(version) / "venv"

    def program(self, version: str, role: str) -> Path:
        return self.venv(version) / "bin" / PROGRAMS[role]

    def backup(self, version: str) -> Path:
        return self.backups / f"{version}.toml"

    # ------------------------------------------------------------------------------------------- links
    def link(self, name: str) -> str | None:
        """The version a link points to, or None when it is missing or points elsewhere."""
        try:
            target = os.readlink(self.root / name)
        except (FileNotFoundError, OSError):
            return None
        parts = Path(target).parts
        return parts[-1] if len(parts) == 2 and parts[0] == "versions" else None

    def current(self) -> str | None:
        return self.link("current")

    def committed(self) -> str | None:
        return self.link("committed")

    def point(self, name: str, version: str) -> None:
        """Switch link ``name`` to ``version``: a temp symlink renamed over the old one, then the folder fsynced."""
        tmp = self.root / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(f"versions/{version}", tmp)
        os.replace(tmp, self.root / name)
        fsync_path(self.root)

    def clean_temp_links(self) -> None:
        for leftover in self.root.glob(".*.tmp"):
            if leftover.is_symlink():
                leftover.unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------------- versions
    def problem(self, version: str | None, role: str) -> str | None:
        """Why ``version`` cannot run, or None when it can (installed completely, program present)."""
        if not version:
            return "no version"
        if not (self.version_dir(version) / READY).is_file():
            return f"{version} was not installed completely"
        if not (self.venv(version) / "bin" / "python").exists():
            return f"{version} has no Python in its venv"
        if not self.program(version, role).is_file():
            return f"{version} has no {PROGRAMS[role]} program"
        return None

    def mark_ready(self, version: str, details: dict) -> None:
        """READY promises a whole version: pip and the self-test never fsync what they write, so the version's
        tree is made durable first (under LazyFS, a power cut 2 s after an install left 1,770 of its 1,834 files empty)."""
        sync_tree(self.version_dir(version))
        write_atomic(self.version_dir(version) / READY, json.dumps(details, sort_keys=True), mode=0o644)

    def installed(self) -> list[str]:
        """Every version folder, oldest first (by when its folder was made)."""
        if not self.versions.is_dir():
            return []
        found = [p for p in self.versions.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]

    def config_schema(self, version: str | None) -> int:
        """The config schema a version reads (from its manifest); 1 for a version installed without one."""
        try:
            data = json.loads((self.version_dir(version or "") / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 1
        return int(data.get("config_schema", 1))

    def prune(self, keep: int, protect: set[str]) -> list[str]:
        """Delete the oldest versions beyond ``keep`` (never a protected one) and half-installed leftovers."""
        removed = []
        versions = self.installed()
        ready = [v for v in versions if (self.version_dir(v) / READY).is_file()]
        for version in versions:
            incomplete = version not in ready
            surplus = version in ready[: max(0, len(ready) - keep)]
            if version not in protect and (incomplete or surplus):
                shutil.rmtree(self.version_dir(version), ignore_errors=True)
                shutil.rmtree(self.downloads / version, ignore_errors=True)
                removed.append(version)
        return removed
