"""Build a release bundle: the suite's wheel and every dependency's wheel for one role and one target, a
manifest with every file's sha256, signed with the release key.

Dependencies come from the package index through pip itself: ``pip download --only-binary=:all:`` with the
target's platform tags (Raspberry Pi OS Bookworm: glibc 2.36, CPython 3.11). A dependency with no binary
wheel for the target is fetched as an sdist instead and named in the manifest's ``no_binary`` (the node then
needs a compiler), unless ``allow_sdist`` is False, when the build stops naming it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from updates.bundle import bundle_name, write_bundle
from updates.manifest import PACKAGE, FileEntry, Manifest, ReleaseError, local_target, sha256_file, sign_manifest

PI_TARGETS = ("linux_aarch64", "linux_armv7l")
GLIBC_MAX = 36  # Raspberry Pi OS / Debian 12 Bookworm
ROLE_EXTRAS = {"elevator": (), "meter": (), "kiosk": ("kiosk",)}
PI_EXTRAS = ("pi-gpio",)
# never the project, whatever .gitignore says (the fallback outside a git checkout also skips every venv)
ALWAYS_SKIP = (".git",)
Progress = Callable[[str], None]


def platform_tags(target: str) -> list[str]:
    """pip --platform values for a target; empty for the local one (pip's own)."""
    if target == local_target():
        return []
    arch = target.removeprefix("linux_")
    return [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MAX, 16, -1)] + [
        f"manylinux2014_{arch}",
        target,
    ]


@dataclass
class BuildResult:
    bundle: Path
    manifest: Manifest
    log: list[str] = field(default_factory=list)


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-6:]
        raise ReleaseError(f"{what} failed (exit {result.returncode}): " + " | ".join(tail))
    return result


def copy_source(source: Path, dest: Path, version: str | None) -> str:
    """Copy the project's files (``project_files``: never what .gitignore ignores) and set its version;
    returns the version."""
    source = Path(source)
    for relative in project_files(source):
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target, follow_symlinks=False)
    setup_cfg = dest / "setup.cfg"
    if not setup_cfg.is_file():
        raise ReleaseError(f"{source}/setup.cfg is missing (is {source} the project?)")
    text = setup_cfg.read_text(encoding="utf-8")
    found = re.search(r"^version\s*=\s*(\S+)\s*$", text, re.M)
    if found is None:
        raise ReleaseError(f"{source}/setup.cfg has no version line")
    if version:
        text = text[: found.start(1)] + version + text[found.end(1) :]
        setup_cfg.write_text(text, encoding="utf-8")
    return version or found.group(1)


def project_files(source: Path) -> list[Path]:
    """The project's files under ``source``, relative, sorted. In a git checkout: what ``git ls-files`` lists
    (tracked files and untracked ones that .gitignore does not ignore, which may be a release's new file not
    yet committed). Elsewhere (an unpacked tarball, or git missing): every file that ``source/.gitignore``'s
    patterns do not ignore, and never a folder holding a ``pyvenv.cfg`` (a virtualenv)."""
    listed = _git_files(source)
    if listed is None:
        return sorted(_walk_files(source))
    return sorted(p for p in listed if (source / p).is_file() and not _always_skipped(p))


def _git_files(source: Path) -> list[Path] | None:
    """``git ls-files`` in ``source`` (paths relative to it), or None when it is not a git checkout."""
    cmd = ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:  # not a checkout, or a checkout git refuses (another owner's, say)
        return None
    names = result.stdout.decode("utf-8", "surrogateescape").split("\0")
    return [Path(n) for n in dict.fromkeys(names) if n]


def _always_skipped(relative: Path) -> bool:
    return any(part in ALWAYS_SKIP for part in relative.parts)


def _gitignore_patterns(path: Path) -> list[str]:
    """The patterns of a .gitignore (comments and blank lines dropped; a negation ``!`` is kept as written)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def gitignored(relative: Path, is_dir: bool, patterns: list[str]) -> bool:
    """Whether ``relative`` (a path under the folder of the .gitignore) is ignored by ``patterns``, as git reads
    the common forms: ``name`` or ``*.glob`` at any depth, ``/anchored`` or ``a/b`` from the top, a trailing
    ``/`` for folders only, ``!pattern`` to take one back (the last match wins)."""
    ignored = False
    posix = relative.as_posix()
    for raw in patterns:
        negate, pattern = raw.startswith("!"), raw.removeprefix("!")
        dir_only, pattern = pattern.endswith("/"), pattern.rstrip("/")
        if not pattern or (dir_only and not is_dir):
            continue
        anchored = "/" in pattern
        pattern = pattern.lstrip("/")
        if _glob_matches(posix, pattern) if anchored else fnmatch.fnmatchcase(relative.name, pattern):
            ignored = not negate
    return ignored


def _glob_matches(path: str, pattern: str) -> bool:
    """A path against an anchored glob: ``*`` stays within one folder's name, ``**`` spans folders."""
    if "**" in pattern:
        return fnmatch.fnmatchcase(path, pattern)
    parts, globs = path.split("/"), pattern.split("/")
    return len(parts) == len(globs) and all(fnmatch.fnmatchcase(p, g) for p, g in zip(parts, globs, strict=True))


def _walk_files(source: Path) -> Iterator[Path]:
    """Every file under ``source`` that no .gitignore on its way (the top one and those in sub-folders, each
    read relative to its own folder) ignores."""
    rules: dict[Path, list[str]] = {}
    for folder, dirs, files in os.walk(source):
        here = Path(folder).relative_to(source)
        rules[here] = _gitignore_patterns(Path(folder) / ".gitignore")

        dirs[:] = sorted(d for d in dirs if not _ignored(source, here / d, True, rules))
        yield from (here / f for f in files if not _ignored(source, here / f, False, rules))


def _ignored(source: Path, relative: Path, is_dir: bool, rules: dict[Path, list[str]]) -> bool:
    if _always_skipped(relative) or (is_dir and (source / relative / "pyvenv.cfg").exists()):
        return True
    bases = relative.parents  # the folders above it, each with the patterns of its .gitignore
    return any(gitignored(relative.relative_to(b), is_dir, rules.get(b, [])) for b in bases)


def config_schema_of(tree: Path) -> int:
    """The config schema version the tree's code reads (common/config.py CONFIG_SCHEMA_VERSION, last one wins)."""
    text = (tree / "common" / "config.py").read_text(encoding="utf-8")
    found = re.findall(r"^CONFIG_SCHEMA_VERSION\s*=\s*(\d+)", text, re.M)
    if not found:
        raise ReleaseError(f"{tree}/common/config.py has no CONFIG_SCHEMA_VERSION")
    return int(found[-1])


def wheel_requirements(wheel: Path, extras: tuple[str, ...]) -> list[str]:
    """The wheel's Requires-Dist entries that apply with ``extras`` (extra markers resolved here; other markers
    are left for pip)."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode("utf-8").splitlines()
    out = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        spec, _, marker = line.removeprefix("Requires-Dist:").strip().partition(";")
        wanted = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if wanted and wanted.group(1) not in extras:
            continue
        rest = re.sub(r"""\s*(and\s+)?extra\s*==\s*["'][^"']+["']""", "", marker).strip()
        out.append(spec.strip() + (f"; {rest}" if rest else ""))
    return out


class Builder:
    """One build: ``run()`` makes the bundle in ``out_dir``."""

    def __init__(
        self,
        *,
        source: Path,
        role: str,
        target: str,
        key: Ed25519PrivateKey,
        out_dir: Path,
        version: str | None = None,
        index_args: tuple[str, ...] = (),
        allow_sdist: bool = True,
        notes: str = "",
        progress: Progress | None = None,
    ) -> None:
        if role not in ROLE_EXTRAS:
            raise ReleaseError(f"role {role!r} unknown; one of {', '.join(ROLE_EXTRAS)}")
        self.source, self.role, self.target, self.key = Path(source), role, target, key
        self.out_dir, self.version, self.index_args = Path(out_dir), version, index_args
        self.allow_sdist, self.notes = allow_sdist, notes
        self.log: list[str] = []
        self._progress = progress

    def say(self, text: str) -> None:
        self.log.append(text)
        if self._progress:
            self._progress(text)

    @property
    def extras(self) -> tuple[str, ...]:
        return ROLE_EXTRAS[self.role] + (PI_EXTRAS if self.target in PI_TARGETS else ())

    def _pip(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]

    def _download_args(self, binary_only: bool) -> list[str]:
        args = ["download", "--quiet", *self.index_args]
        tags = platform_tags(self.target)
        if tags or binary_only:
            args.append("--only-binary=:all:")
        for tag in tags:
            args += ["--platform", tag]
        if tags:
            args += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3"]
            args += ["--abi", "none"]
        return args

    def run(self) -> BuildResult:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="changbai-release-") as tmp_name:
            tmp = Path(tmp_name)
            version = copy_source(self.source, tmp / "src", self.version)
            schema = config_schema_of(tmp / "src")
            files = tmp / "files"
            files.mkdir()
            self.say(f"building the {PACKAGE} {version} wheel from {self.source}")
            _run(self._pip("wheel", "--quiet", "--no-deps", "-w", str(files), str(tmp / "src")), "pip wheel")
            wheel = next(files.glob("*.whl"))
            requirements = wheel_requirements(wheel, self.extras)
            no_binary = self._dependencies(requirements, files)
            installer = self._installer(files)
            entries = self._entries(files, wheel.name, installer, no_binary)
            extras = f"[{','.join(self.extras)}]" if self.extras else ""
            manifest = Manifest(
                version=version,
                role=self.role,
                target=self.target,
                python="3.11",
                config_schema=schema,
                requirement=f"{PACKAGE}{extras}=={version}",
                created_wall=time.time(),
                files=tuple(entries),
                no_binary=tuple(no_binary),
                notes=self.notes,
            )
            raw, signature = sign_manifest(manifest, self.key)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            out = write_bundle(self.out_dir / bundle_name(manifest), raw, signature, files, manifest)
        total = sum(e.size for e in manifest.files)
        self.say(
            f"wrote {out} ({len(manifest.files)} files, {total / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s"
        )
        return BuildResult(out, manifest, self.log)

    def _dependencies(self, requirements: list[str], files: Path) -> list[str]:
        """Download every dependency's wheel into ``files``; returns the names that had no binary wheel."""
        self.say(f"fetching dependencies for {self.target}: {', '.join(requirements)}")
        cmd = self._pip(*self._download_args(True), "-d", str(files), *requirements)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if result.returncode == 0:
            return []
        self.say(f"no complete set of binary wheels for {self.target}; checking each dependency")
        no_binary = []
        for name, version in self._closure(requirements, files.parent):
            pinned = f"{name}=={version}"
            cmd = self._pip(*self._download_args(True), "--no-deps", "-d", str(files), pinned)
            if subprocess.run(cmd, capture_output=True, text=True, timeout=1800).returncode == 0:
                continue
            no_binary.append(name)
            if self.allow_sdist:
                self.say(f"no binary wheel of {pinned} for {self.target}: taking its sdist (the node must compile it)")
                sdist = ["download", "--quiet", *self.index_args, "--no-deps", "--no-binary=:all:", "-d", str(files)]
                _run(self._pip(*sdist, pinned), f"sdist of {pinned}")
        if no_binary and not self.allow_sdist:
            raise ReleaseError(
                f"no binary wheel for {self.target}: {', '.join(no_binary)} (add an index with wheels for the Pi, "
                "e.g. --extra-index-url https://www.piwheels.org/simple, or drop --no-sdist)"
            )
        return no_binary

    def _closure(self, requirements: list[str], tmp: Path) -> list[tuple[str, str]]:
        """Every dependency, pinned, as pip resolves them here (markers are evaluated for this machine)."""
        report = tmp / "resolve.json"
        cmd = ["install", "--quiet", "--dry-run", "--ignore-installed", *self.index_args, "--report", str(report)]
        _run(self._pip(*cmd, *requirements), "resolving the dependencies")
        data = json.loads(report.read_text(encoding="utf-8"))
        return [(i["metadata"]["name"], i["metadata"]["version"]) for i in data.get("install", [])]

    def _installer(self, files: Path) -> str:
        """The pip wheel the node installs with (a pure wheel: the same for every target)."""
        before = {p.name for p in files.iterdir()}
        _run(
            self._pip(
                "download", "--quiet", *self.index_args, "--no-deps", "--only-binary=:all:", "-d", str(files), "pip"
            ),
            "pip download of pip",
        )
        new = [p.name for p in files.iterdir() if p.name not in before] or [p.name for p in files.glob("pip-*.whl")]
        return new[0]

    def _entries(self, files: Path, wheel: str, installer: str, no_binary: list[str]) -> list[FileEntry]:
        entries = []
        for path in sorted(files.iterdir()):
            size, digest = sha256_file(path)
            if path.name == installer:
                kind = "installer"
            elif path.name.endswith(".whl"):
                kind = "wheel"
            else:
                kind = "sdist"
            entries.append(FileEntry(path.name, size, digest, kind))
            shown = " (no binary wheel)" if kind == "sdist" else ""
            self.say(f"  {path.name}: {size:,} bytes{shown}" + (" [the suite]" if path.name == wheel else ""))
        return entries
