"""A release's manifest and its Ed25519 signature: what a bundle holds (every file's sha256) and who made it.

The manifest is canonical JSON (sorted keys, no spaces); the signature covers exactly those bytes. The private
key stays on the release engineer's offline machine; nodes and the central hold only the public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sysconfig
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = 1
PACKAGE = "changbai-nodes"
ROLES = ("elevator", "meter", "kiosk")
# a target is a platform tag: linux_aarch64, linux_armv7l (the Pis), or the local one (tests)
TARGET_PATTERN = r"^[a-z0-9_]{3,40}$"
VERSION_PATTERN = r"^[0-9][0-9A-Za-z.+_-]{0,63}$"
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$"
FILE_KINDS = ("wheel", "sdist", "installer")
CHUNK = 1 << 20


class ReleaseError(Exception):
    """A release that must not be used; the message says what was wrong, in one line."""


class SignatureError(ReleaseError):
    """The manifest's signature does not verify with the public key (tampered, or another key)."""


class HashMismatch(ReleaseError):
    """A file's size or sha256 differs from the manifest (corrupt, truncated or replaced)."""


class ManifestError(ReleaseError):
    """The manifest is not a valid one (bad JSON, missing or malformed fields)."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a bundle: its name (no folders), size, sha256 hex and kind."""

    name: str
    size: int
    sha256: str
    kind: str


@dataclass(frozen=True)
class Manifest:
    """What a release is. ``requirement`` is what pip installs from the bundle's files, offline."""

    version: str
    role: str
    target: str
    python: str
    config_schema: int
    requirement: str
    created_wall: float
    files: tuple[FileEntry, ...]
    no_binary: tuple[str, ...] = ()
    package: str = PACKAGE
    format: int = FORMAT
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Canonical JSON: the exact bytes that are signed."""
        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files]
        data["no_binary"] = list(self.no_binary)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def file(self, name: str) -> FileEntry:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise ManifestError(f"release {self.version} has no file {name!r}")

    @property
    def installer(self) -> FileEntry:
        """The pip wheel shipped in the bundle: the node installs with it, never with its own pip."""
        found = [f for f in self.files if f.kind == "installer"]
        if len(found) != 1:
            raise ManifestError(f"release {self.version} must carry exactly one installer (pip) wheel")
        return found[0]

    @property
    def label(self) -> str:
        return f"{self.package} {self.version} ({self.role}, {self.target})"


def local_target() -> str:
    """This machine's target name, e.g. linux_aarch64 on a Pi 4, linux_x86_64 here (what a node asks for)."""
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def _need(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], pattern: str | None = None) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"manifest field {key!r} missing or of the wrong type ({value!r})")
    if pattern and not (isinstance(value, str) and re.fullmatch(pattern, value)):
        raise ManifestError(f"manifest field {key!r} = {value!r} does not match {pattern}")
    return value


def parse_manifest(raw: bytes) -> Manifest:
    """Read and check a manifest's fields (not its signature: see ``verify_manifest``)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError("manifest is not a JSON object")
    if data.get("format") != FORMAT:
        raise ManifestError(f"manifest format {data.get('format')!r} not understood (this updater reads {FORMAT})")
    files = []
    for item in _need(data, "files", list):
        if not isinstance(item, dict):
            raise ManifestError("manifest files entry is not an object")
        files.append(
            FileEntry(
                name=_need(item, "name", str, FILE_NAME_PATTERN),
                size=_need(item, "size", int),
                sha256=_need(item, "sha256", str, r"^[0-9a-f]{64}$"),
                kind=_need(item, "kind", str, "^(" + "|".join(FILE_KINDS) + ")$"),
            )
        )
    if len({f.name for f in files}) != len(files):
        raise ManifestError("manifest lists a file name twice")
    return Manifest(
        version=_need(data, "version", str, VERSION_PATTERN),
        role=_need(data, "role", str, "^(" + "|".join(ROLES) + ")$"),
        target=_need(data, "target", str, TARGET_PATTERN),
        python=_need(data, "python", str, r"^3\.[0-9]{1,2}$"),
        config_schema=_need(data, "config_schema", int),
        requirement=_need(data, "requirement", str),
        created_wall=float(_need(data, "created_wall", (int, float))),
        files=tuple(files),
        no_binary=tuple(_need(data, "no_binary", list)),
        package=_need(data, "package", str),
        notes=str(data.get("notes", "")),
        extra=dict(data.get("extra") or {}),
    )


# ------------------------------------------------------------------------------------------------ keys
def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM, encrypted with the passphrase when one is given."""
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint to compare keys by eye: the first 16 hex digits of sha256(raw public key)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=passphrase)
    except (TypeError, ValueError) as exc:
        raise ReleaseError(f"{path}: cannot load the release key ({exc}); wrong passphrase?") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise ReleaseError(f"{path}: release public key not found (provision init --release-key FILE)") from None
    except ValueError as exc:
        raise ReleaseError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError(f"{path}: not an Ed25519 public key")
    return key


# ------------------------------------------------------------------------------------------ sign/verify
def sign_manifest(manifest: Manifest, key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """(manifest bytes, signature as base64 text bytes)."""
    raw = manifest.to_bytes()
    return raw, base64.b64encode(key.sign(raw)) + b"\n"


def verify_manifest(raw: bytes, signature: bytes, key: Ed25519PublicKey) -> Manifest:
    """The manifest, once its signature verifies with ``key``; raises SignatureError or ManifestError."""
    try:
        sig = base64.b64decode(signature.strip(), validate=True)
    except ValueError:
        raise SignatureError("signature is not base64") from None
    try:
        key.verify(sig, raw)
    except InvalidSignature:
        raise SignatureError(f"manifest signature does not verify with release key {key_id(key)}") from None
    return parse_manifest(raw)


def sha256_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def check_file(path: Path, entry: FileEntry) -> None:
    """Raise HashMismatch unless ``path`` is exactly the file the manifest describes."""
    try:
        size, digest = sha256_file(path)
    except FileNotFoundError:
        raise HashMismatch(f"{entry.name}: missing") from None
    if size != entry.size:
        raise HashMismatch(f"{entry.name}: {size} bytes, the manifest says {entry.size} (truncated or padded)")
    if digest != entry.sha256:
        raise HashMismatch(f"{entry.name}: sha256 {digest[:16]}..., the manifest says {entry.sha256[:16]}...")
