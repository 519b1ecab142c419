"""The bundle file: one uncompressed tar (wheels are compressed already) of manifest.json, manifest.sig and
files/NAME for every file the manifest lists. Read back only after the signature verifies, and only the names
the manifest lists, each checked against its size and sha256 (no path from the tar is ever trusted).
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from updates.manifest import Manifest, ReleaseError, check_file, verify_manifest

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FILES = "files"
SUFFIX = ".bundle"
MAX_MANIFEST_BYTES = 1 << 20


def bundle_name(manifest: Manifest) -> str:
    return f"{manifest.package}-{manifest.version}-{manifest.role}-{manifest.target}{SUFFIX}"


def write_bundle(out: Path, raw_manifest: bytes, signature: bytes, files_dir: Path, manifest: Manifest) -> Path:
    """Write the bundle tar to ``out`` (a temp name first, renamed when complete)."""
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST, raw_manifest), (SIGNATURE, signature)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for entry in manifest.files:
            tar.add(files_dir / entry.name, arcname=f"{FILES}/{entry.name}", recursive=False)
    tmp.replace(out)
    return out


def _member_bytes(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise ReleaseError(f"bundle has no {name}") from None
    if not member.isfile() or member.size > limit:
        raise ReleaseError(f"bundle member {name} is not a regular file under {limit} bytes")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file always has a handle
    return handle.read()


def read_verified_manifest(bundle: Path, key: Ed25519PublicKey) -> tuple[Manifest, bytes, bytes]:
    """(manifest, its raw bytes, the signature) of a bundle file, once the signature verifies."""
    try:
        with tarfile.open(bundle, "r:") as tar:
            raw = _member_bytes(tar, MANIFEST, MAX_MANIFEST_BYTES)
            signature = _member_bytes(tar, SIGNATURE, 4096)
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseError(f"{bundle}: not a readable bundle ({type(exc).__name__}: {exc})") from None
    return verify_manifest(raw, signature, key), raw, signature


def extract_bundle(
    bundle: Path, key: Ed25519PublicKey, dest: Path, progress: Callable[[str], None] | None = None
) -> Manifest:
    """Verify the signature, then copy each listed file to ``dest/NAME`` and check its hash. Returns the
    manifest; ``dest`` also gets manifest.json and manifest.sig. Raises ReleaseError (nothing is trusted)."""
    manifest, raw, signature = read_verified_manifest(bundle, key)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(bundle, "r:") as tar:
            for entry in manifest.files:
                try:
                    member = tar.getmember(f"{FILES}/{entry.name}")
                except KeyError:
                    raise ReleaseError(f"bundle lacks {entry.name}, which its manifest lists") from None
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    raise ReleaseError(f"bundle member {entry.name} is not a regular file")
                with open(dest / entry.name, "wb") as out:
                    shutil.copyfileobj(handle, out, 1 << 20)
                check_file(dest / entry.name, entry)
                if progress:
                    progress(f"checked {entry.name} ({entry.size:,} bytes)")
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseError(f"{bundle}: cannot be read ({type(exc).__name__}: {exc})") from None
    (dest / MANIFEST).write_bytes(raw)
    (dest / SIGNATURE).write_bytes(signature)
    return manifest
