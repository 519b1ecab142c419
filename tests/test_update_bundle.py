"""Release bundles: a real one built from this project, its signature checked by us and by openssl, and
bundles with a bad signature, a changed file or a cut-off end refused."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from common.config import CONFIG_SCHEMA_VERSION
from updates.build import copy_source, local_target, platform_tags, project_files, wheel_requirements
from updates.bundle import extract_bundle, read_verified_manifest
from updates.manifest import (
    HashMismatch,
    ReleaseError,
    SignatureError,
    generate_key,
    load_public_key,
    public_key_pem,
    sha256_file,
    verify_manifest,
)
from updates.release_cli import main as release_main

VERSION = "0.1.0+t1"


def _rewrite(bundle: Path, out: Path, change) -> Path:
    """Copy a bundle tar member by member, letting ``change(name, data)`` return new bytes."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            reader = src.extractfile(member)
            data = reader.read() if reader is not None else b""  # a directory has no data
            data = change(member.name, data)
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def test_a_bundle_holds_the_suite_and_every_dependency_each_hashed(release_kit, tmp_path):
    bundle = release_kit.bundle(VERSION)
    manifest = extract_bundle(bundle, load_public_key(release_kit.public_key), tmp_path)
    assert (manifest.version, manifest.role, manifest.target) == (VERSION, "elevator", local_target())
    assert manifest.config_schema == CONFIG_SCHEMA_VERSION
    assert manifest.requirement == f"changbai-nodes=={VERSION}"
    names = {f.name.split("-")[0].lower() for f in manifest.files}
    for needed in ("changbai_nodes", "cryptography", "requests", "gpiozero", "pyserial", "minimalmodbus", "pip"):
        assert needed in names, f"{needed} missing from {sorted(names)}"
    assert manifest.installer.name.startswith("pip-")
    assert not manifest.no_binary  # the local machine has a binary wheel of everything
    for entry in manifest.files:
        assert sha256_file(tmp_path / entry.name) == (entry.size, entry.sha256)


def test_the_suites_wheel_carries_every_file_its_packages_track(release_kit, tmp_path):
    """What a node runs is the wheel, not this checkout. Under real systemd (nspawn) ``provision install`` on a node
    the updater manages crashed: the wheel had no ``changbai-update.timer`` (setup.cfg's package data listed
    ``*.service`` only), and the tests, run from the checkout, had it. The same wheel had no operator console
    (central/console was a folder, not a package). Every tracked file of every package must be in the wheel."""
    bundle = release_kit.bundle(VERSION)
    manifest = extract_bundle(bundle, load_public_key(release_kit.public_key), tmp_path)
    [wheel] = [tmp_path / f.name for f in manifest.files if f.name.startswith("changbai_nodes-")]
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    root = Path(__file__).resolve().parent.parent
    packages = {p.parent.name for p in root.glob("*/__init__.py")} - {"tests"}
    tracked = subprocess.run(["git", "ls-files", *sorted(packages)], cwd=root, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip(f"not a git checkout: {tracked.stderr.strip()}")
    wanted = {name for name in tracked.stdout.split() if "/__pycache__/" not in name}
    missing = sorted(wanted - in_wheel)
    assert wanted and not missing, missing


def test_openssl_verifies_the_signature_and_refuses_a_changed_manifest(release_kit, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    with tarfile.open(release_kit.bundle(VERSION)) as tar:
        raw = tar.extractfile("manifest.json").read()
        signature = base64.b64decode(tar.extractfile("manifest.sig").read())
    (tmp_path / "m.json").write_bytes(raw)
    (tmp_path / "sig").write_bytes(signature)
    cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(release_kit.public_key), "-rawin"]
    cmd += ["-in", str(tmp_path / "m.json"), "-sigfile", str(tmp_path / "sig")]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    (tmp_path / "m.json").write_bytes(raw.replace(VERSION.encode(), b"9.9.9"))
    assert subprocess.run(cmd, capture_output=True).returncode != 0


def test_a_manifest_signed_by_openssl_is_accepted_and_sha256sum_agrees_with_it(release_kit, tmp_path):
    """The other way round: a key and a signature made by openssl, and the files' hashes by coreutils."""
    if shutil.which("openssl") is None or shutil.which("sha256sum") is None:
        pytest.skip("openssl or sha256sum not installed")
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    raw = read_verified_manifest(release_kit.bundle(VERSION), load_public_key(release_kit.public_key))[1]
    (tmp_path / "m.json").write_bytes(raw)
    sign = ["openssl", "pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in", str(tmp_path / "m.json")]
    signature = base64.b64encode(subprocess.run(sign, capture_output=True, check=True).stdout)
    manifest = verify_manifest(raw, signature, load_public_key(pub))
    with pytest.raises(SignatureError):
        verify_manifest(raw.replace(VERSION.encode(), b"9.9.9"), signature, load_public_key(pub))
    extract_bundle(release_kit.bundle(VERSION), load_public_key(release_kit.public_key), tmp_path / "files")
    names = [entry.name for entry in manifest.files]
    sums = subprocess.run(["sha256sum", *names], cwd=tmp_path / "files", capture_output=True, text=True, check=True)
    assert {line.split()[1]: line.split()[0] for line in sums.stdout.splitlines()} == {
        entry.name: entry.sha256 for entry in manifest.files
    }


def test_another_key_or_a_changed_manifest_is_refused(release_kit, tmp_path):
    bundle = release_kit.bundle(VERSION)
    other = tmp_path / "other.pub"
    other.write_bytes(public_key_pem(generate_key().public_key()))
    with pytest.raises(SignatureError, match="does not verify"):
        read_verified_manifest(bundle, load_public_key(other))

    def older(name: str, data: bytes) -> bytes:
        return data.replace(VERSION.encode(), b"0.0.1") if name == "manifest.json" else data

    forged = _rewrite(bundle, tmp_path / "forged.bundle", older)
    with pytest.raises(SignatureError):
        extract_bundle(forged, load_public_key(release_kit.public_key), tmp_path / "x")


def test_a_changed_file_is_refused_by_its_hash(release_kit, tmp_path):
    def swap(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if name.startswith("files/requests-") else data

    bad = _rewrite(release_kit.bundle(VERSION), tmp_path / "bad.bundle", swap)
    with pytest.raises(HashMismatch, match="requests-.*sha256"):
        extract_bundle(bad, load_public_key(release_kit.public_key), tmp_path / "x")


def test_a_cut_off_bundle_is_refused(release_kit, tmp_path):
    data = release_kit.bundle(VERSION).read_bytes()
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReleaseError):
        extract_bundle(cut, load_public_key(release_kit.public_key), tmp_path / "x")


def test_the_command_line_verifies_and_shows_a_bundle(release_kit, capsys):
    bundle = str(release_kit.bundle(VERSION))
    assert release_main(["verify", bundle, "--public-key", str(release_kit.public_key)]) == 0
    assert "OK: changbai-nodes 0.1.0+t1 (elevator" in capsys.readouterr().out
    assert release_main(["show", bundle, "--public-key", str(release_kit.public_key)]) == 0
    assert "installer" in capsys.readouterr().out


def test_keygen_protects_the_private_key_and_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHANGBAI_RELEASE_PASSPHRASE", "correct horse battery staple")
    assert release_main(["keygen", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "release.key").stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "release.key").read_bytes()
    assert release_main(["keygen", "--out", str(tmp_path)]) == 1
    assert "orphan every node" in capsys.readouterr().err


def test_pi_targets_ask_pip_for_the_pi_platforms_and_extras():
    tags = platform_tags("linux_aarch64")
    assert "manylinux_2_36_aarch64" in tags and "manylinux2014_aarch64" in tags and "linux_aarch64" in tags
    assert platform_tags(local_target()) == []


def test_extras_pick_their_requirements(release_kit, tmp_path):
    with tarfile.open(release_kit.bundle(VERSION)) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("files/changbai_nodes-"))
        (tmp_path / "w.whl").write_bytes(tar.extractfile(member).read())
    plain = wheel_requirements(tmp_path / "w.whl", ())
    assert not any(r.lower().startswith("kivy") for r in plain)
    assert any(r.lower().startswith("kivy") for r in wheel_requirements(tmp_path / "w.whl", ("kiosk",)))
    assert any(r.lower().startswith("lgpio") for r in wheel_requirements(tmp_path / "w.whl", ("pi-gpio",)))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_a_build_copies_what_git_tracks_and_the_fallback_reads_gitignore_as_git_does(tmp_path, monkeypatch):
    """``copy_source`` takes the project's files from ``git ls-files`` (so whatever .gitignore ignores stays
    out); without git, its own reading of the .gitignore files must agree with git's answer on the same tree."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    ignore = "build/\n*.pyc\n!keep.pyc\n/var/\n*.log\ndocs/*.tmp\n# a comment\n"
    files = {
        ".gitignore": ignore,
        "setup.cfg": "[metadata]\nversion = 0.1.0\n",
        "common/config.py": "x = 1\n",
        "common/__pycache__/config.cpython-311.pyc": "",
        "keep.pyc": "",
        "build/lib/x.py": "",
        "var/node/outbox.sqlite": "",
        "sub/var/kept.txt": "",
        "run.log": "",
        "docs/a.tmp": "",
        "docs/deep/b.tmp": "",
        "cache/.gitignore": "*\n",
        "cache/blob": "",
        "untracked_new.py": "",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", ".gitignore", "setup.cfg", "common/config.py", "keep.pyc", "sub", "docs")
    by_git = project_files(repo)
    expected = [".gitignore", "common/config.py", "docs/deep/b.tmp", "keep.pyc", "setup.cfg", "sub/var/kept.txt"]
    assert [p.as_posix() for p in by_git] == sorted([*expected, "untracked_new.py"])
    # git's own verdict on every file, against the fallback's reading of the same .gitignore files
    everything = sorted(p.relative_to(repo) for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts)
    checked = subprocess.run(
        ["git", "-C", str(repo), "check-ignore", "--no-index", *map(str, everything)], capture_output=True, text=True
    )
    ignored_by_git = {Path(line) for line in checked.stdout.splitlines()}
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # as on a machine without git
    by_fallback = project_files(repo)
    assert set(by_fallback) == set(everything) - ignored_by_git
    assert sorted(by_fallback) == sorted(by_git)
    assert copy_source(repo, tmp_path / "copy", "0.2.0") == "0.2.0"
    copied = sorted(p.relative_to(tmp_path / "copy") for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert copied == by_fallback


def test_the_fallback_never_copies_a_virtualenv_or_git(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    for name in ("setup.cfg", "a.py", ".venv-bench/pyvenv.cfg", ".venv-bench/lib/x.py", ".git/HEAD"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("[metadata]\nversion = 1\n" if name == "setup.cfg" else "")
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert [p.as_posix() for p in project_files(tree)] == ["a.py", "setup.cfg"]
