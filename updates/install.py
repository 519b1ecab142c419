"""Stage a release beside the running one: verify, fetch (or unpack a bundle), install a venv offline from the
release's own wheels with the release's own pip, then run the new version's checks on the node's config.
Nothing here touches the running version; a version is usable only once its READY file is written."""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updates.bundle import MANIFEST, SIGNATURE, extract_bundle
from updates.fetch import CentralClient
from updates.layout import READY, Layout
from updates.manifest import Manifest, ReleaseError, load_public_key, local_target, verify_manifest

INSTALL_TIMEOUT_S = 1800
PREFLIGHT_TIMEOUT_S = 300
MIGRATED = "node.toml.migrated"
UNPACKING = ".unpacking"
MB = 1024 * 1024
# a release's venv takes about 4.2 times its wheels (measured: 9.1 MB of wheels, 38 MB installed, lift role)
INSTALL_FACTOR = 5
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class PreflightFailed(ReleaseError):
    """The new version refused the node's config or failed its self-test; ``problems`` lists why."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass
class Staged:
    """A release ready to switch to: its manifest, and the migrated config when the config changes."""

    manifest: Manifest
    migrated_config: Path | None
    preflight: dict[str, Any] = field(default_factory=dict)


def base_python() -> str:
    """The interpreter new venvs are made from: the one under this venv (e.g. /usr/bin/python3.11)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem of ``path`` (or of its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


class NoRoom(ReleaseError):
    """Not enough disk for the release; nothing was written."""


class Stager:
    """Stages releases into ``layout`` for a node of ``role``."""

    def __init__(
        self, layout: Layout, role: str, public_key: Path, say: Callable[[str], None], min_free_mb: float = 0.0
    ) -> None:
        self.layout, self.role, self.public_key, self.say = layout, role, public_key, say
        self.reserve = int(min_free_mb * 1024 * 1024)

    def ensure_room(self, manifest: Manifest, to_download: int) -> None:
        """NoRoom unless downloading ``to_download`` more bytes and installing the release (INSTALL_FACTOR times
        its files) still leaves [update] min_free_mb free: the running node's outbox shares this disk."""
        need = to_download + INSTALL_FACTOR * sum(f.size for f in manifest.files) + self.reserve
        free = free_bytes(self.layout.root)
        if free < need:
            raise NoRoom(
                f"not enough disk for {manifest.version}: {free / MB:.0f} MB free on {self.layout.root}, it needs "
                f"{need / MB:.0f} MB (download {to_download / MB:.0f} MB, install about "
                f"{(need - to_download - self.reserve) / MB:.0f} MB, and [update] min_free_mb {self.reserve / MB:.0f}"
                " MB left for the node)"
            )

    def discard(self, version: str) -> None:
        """Remove what a failed attempt at ``version`` left (downloads, a half-installed folder), never a
        version that is installed completely or that a link points to."""
        shutil.rmtree(self.layout.downloads / version, ignore_errors=True)
        shutil.rmtree(self.layout.downloads / UNPACKING, ignore_errors=True)
        protected = {self.layout.current(), self.layout.committed()}
        folder = self.layout.version_dir(version)
        if version and version not in protected and not (folder / READY).is_file():
            shutil.rmtree(folder, ignore_errors=True)

    def check_manifest(self, raw: bytes, signature: bytes) -> Manifest:
        """The verified manifest, if it is for this node's role and platform."""
        manifest = verify_manifest(raw, signature, load_public_key(self.public_key))
        if manifest.role != self.role:
            raise ReleaseError(f"release {manifest.version} is for {manifest.role} nodes, this is a {self.role} node")
        if manifest.target != local_target():
            raise ReleaseError(
                f"release {manifest.version} is built for {manifest.target}, this node is {local_target()}"
            )
        return manifest

    def fetch(self, client: CentralClient, offer: dict[str, Any]) -> Manifest:
        """Verify the offered manifest, then download every file it lists (resuming) and check each hash."""
        raw, signature = offer["manifest"].encode("utf-8"), offer["signature"].encode("ascii")
        manifest = self.check_manifest(raw, signature)
        if manifest.version != offer["version"]:
            raise ReleaseError(f"the central offered {offer['version']} with the manifest of {manifest.version}")
        folder = self.layout.downloads / manifest.version
        total = sum(f.size for f in manifest.files)
        have = sum(_size(folder / f.name) or _size(folder / (f.name + ".part")) for f in manifest.files)
        self.ensure_room(manifest, max(0, total - have))
        folder.mkdir(parents=True, exist_ok=True)
        for index, entry in enumerate(manifest.files, 1):
            self.say(f"download {index}/{len(manifest.files)}: {entry.name} ({entry.size:,} of {total:,} bytes in all)")
            client.download(offer["files_url"], entry, folder / entry.name, self.say)
        (folder / MANIFEST).write_bytes(raw)
        (folder / SIGNATURE).write_bytes(signature)
        return manifest

    def unpack(self, bundle: Path) -> Manifest:
        """A bundle file (a technician's USB stick): verified and unpacked into downloads/VERSION."""
        manifest, folder = None, self.layout.downloads / UNPACKING
        shutil.rmtree(folder, ignore_errors=True)
        free = free_bytes(self.layout.root)
        if free < 6 * bundle.stat().st_size + self.reserve:  # unpacked + installed (INSTALL_FACTOR) + reserve
            raise NoRoom(f"not enough disk for {bundle.name}: {free / MB:.0f} MB free on {self.layout.root}")
        manifest = extract_bundle(bundle, load_public_key(self.public_key), folder, self.say)
        self.check_manifest((folder / MANIFEST).read_bytes(), (folder / SIGNATURE).read_bytes())
        final = self.layout.downloads / manifest.version
        shutil.rmtree(final, ignore_errors=True)
        folder.replace(final)
        return manifest

    def install(self, manifest: Manifest, python: str) -> None:
        """A fresh venv for the version, filled offline from its downloaded files by its own pip."""
        version, folder = manifest.version, self.layout.downloads / manifest.version
        target = self.layout.version_dir(version)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        self.say(f"install {version} into {target}")
        _run([python, "-m", "venv", "--without-pip", str(self.layout.venv(version))], "creating the venv")
        pip = folder / manifest.installer.name / "pip"  # a pip wheel runs as a zip: python pip.whl/pip
        cmd = [str(self.layout.venv(version) / "bin" / "python"), str(pip), "install", "--no-index", "--find-links"]
        cmd += [str(folder), "--no-cache-dir", "--disable-pip-version-check", "--quiet", manifest.requirement]
        _run(cmd, f"installing {manifest.requirement} offline")
        for name in (MANIFEST, SIGNATURE):
            shutil.copyfile(folder / name, target / name)
        shutil.rmtree(folder, ignore_errors=True)  # installed: the wheels are not needed any more

    def preflight(self, manifest: Manifest, config_path: Path, from_schema: int) -> Staged:
        """The new version's own checks on the node's config (migrated) and on itself; READY when they pass."""
        version = manifest.version
        out = self.layout.version_dir(version) / MIGRATED
        out.unlink(missing_ok=True)
        python = str(self.layout.venv(version) / "bin" / "python")
        # -I: only the new venv's own code (never a checkout in the working folder, nor PYTHON* variables)
        cmd = [python, "-I", "-m", "updates.selftest", "--config", str(config_path), "--from-schema", str(from_schema)]
        self.say(f"self-test of {version} on {config_path} (config schema {from_schema} -> {manifest.config_schema})")
        try:
            result = subprocess.run(
                [*cmd, "--out", str(out)],
                capture_output=True,
                text=True,
                timeout=PREFLIGHT_TIMEOUT_S,
                preexec_fn=_die_with_parent,
            )
        except subprocess.TimeoutExpired:
            raise PreflightFailed(f"self-test of {version} did not finish in {PREFLIGHT_TIMEOUT_S} s", []) from None
        try:
            report = json.loads(result.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise PreflightFailed(f"self-test of {version} crashed (exit {result.returncode})", tail) from None
        if result.returncode != 0 or not report.get("ok"):
            problems = [str(p) for p in report.get("problems", [])]
            what = "config check" if result.returncode == 2 else "self-test"
            raise PreflightFailed(f"{what} of {version} failed: " + "; ".join(problems[:5]), problems)
        self.layout.mark_ready(version, report)
        return Staged(manifest, out if out.exists() else None, report)


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends it SIGKILL when the updater dies (prctl PR_SET_PDEATHSIG),
    so a pip left behind by a kill -9 of the updater never writes into a folder the next run is replacing."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the next run's rmtree and mkdir then say what is in the way


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _run(cmd: list[str], what: str) -> None:
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, preexec_fn=_die_with_parent
        )
    except subprocess.TimeoutExpired:
        raise ReleaseError(f"{what}: no result within {INSTALL_TIMEOUT_S} s") from None
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise ReleaseError(f"{what} failed (exit {result.returncode}): {tail}")
