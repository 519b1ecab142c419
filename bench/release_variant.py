"""Another release of this project made from a bundle already built: the suite's wheel rewritten (text added to
some of its modules, its version changed in the wheel's name, METADATA and RECORD) and the manifest re-signed;
the dependency wheels and pip stay the same files. The update tests and benchmarks need several releases
(a second config schema, faults) and one full ``changbai-release build`` (pip wheel, pip download) takes
10-40 s on the 2-core test machine, against well under a second for this.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from updates.build import config_schema_of
from updates.bundle import bundle_name, extract_bundle, write_bundle
from updates.manifest import FileEntry, ReleaseError, sha256_file, sign_manifest


def derive_bundle(
    base: Path, key: Ed25519PrivateKey, out_dir: Path, version: str, append: dict[str, str] | None = None
) -> Path:
    """A bundle of ``base``'s release at ``version`` with ``append`` (a module path in the suite's wheel, e.g.
    ``common/config.py`` -> Python text) added to its modules, signed with ``key``; written to ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="release-variant-") as tmp_name:
        tmp = Path(tmp_name)
        files = tmp / "files"
        manifest = extract_bundle(base, key.public_key(), files)
        suite = next(f for f in manifest.files if f.kind == "wheel" and f.name.startswith("changbai_nodes-"))
        wheel = rewrite_wheel(files / suite.name, files, manifest.version, version, append or {})
        (files / suite.name).unlink()
        size, digest = sha256_file(wheel)
        entries = [f for f in manifest.files if f.name != suite.name] + [FileEntry(wheel.name, size, digest, "wheel")]
        with zipfile.ZipFile(wheel) as archive:
            (tmp / "tree" / "common").mkdir(parents=True)
            (tmp / "tree" / "common" / "config.py").write_bytes(archive.read("common/config.py"))
        derived = dataclasses.replace(
            manifest,
            version=version,
            config_schema=config_schema_of(tmp / "tree"),
            requirement=manifest.requirement.replace(f"=={manifest.version}", f"=={version}"),
            created_wall=time.time(),
            files=tuple(sorted(entries, key=lambda f: f.name)),
        )
        raw, signature = sign_manifest(derived, key)
        out_dir.mkdir(parents=True, exist_ok=True)
        return write_bundle(out_dir / bundle_name(derived), raw, signature, files, derived)


def rewrite_wheel(wheel: Path, out_dir: Path, old: str, new: str, append: dict[str, str]) -> Path:
    """``wheel`` (a pure wheel at version ``old``) as the same project at version ``new``, ``append`` added."""
    if f"-{old}-" not in wheel.name:
        raise ReleaseError(f"{wheel.name} is not version {old}")
    out = out_dir / wheel.name.replace(f"-{old}-", f"-{new}-")
    record: list[str] = []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out.with_suffix(".part"), "w", zipfile.ZIP_DEFLATED) as dst:
        names = src.namelist()
        info_dir = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        new_info_dir = info_dir.replace(f"-{old}.", f"-{new}.")
        missing = sorted(set(append) - set(names))
        if missing:
            raise ReleaseError(f"{wheel.name} has no {', '.join(missing)}")
        for info in src.infolist():
            if info.filename == f"{info_dir}/RECORD":
                continue
            data = src.read(info.filename)
            if info.filename in append:
                data += ("\n" + append[info.filename] + "\n").encode("utf-8")
            if info.filename == f"{info_dir}/METADATA":
                data = re.sub(rb"^Version: .*$", f"Version: {new}".encode(), data, count=1, flags=re.M)
            name = info.filename
            if name.startswith(info_dir + "/"):
                name = new_info_dir + name[len(info_dir) :]
            _write(dst, info, name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{new_info_dir}/RECORD,,")
        _write(dst, zipfile.ZipInfo(f"{info_dir}/RECORD"), f"{new_info_dir}/RECORD", "\n".join(record).encode() + b"\n")
    shutil.move(out.with_suffix(".part"), out)
    return out


def _write(archive: zipfile.ZipFile, like: zipfile.ZipInfo, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=like.date_time)
    info.external_attr = like.external_attr
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)
