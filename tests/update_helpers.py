"""What the update tests share: a central with two releases published and a lift node on the first one
(``update_rig``, once per session: installing a node takes a while), and the steps every test repeats."""

from __future__ import annotations

import dataclasses
import io
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.update_rig import RELEASES, ManagedNode, ReleaseKit
from central.__main__ import main as central_main
from common.files import write_atomic
from tests.fixtures.central import CentralHandle, config_document
from updates.bundle import MANIFEST, SIGNATURE
from updates.layout import READY, Layout
from updates.manifest import Manifest, parse_manifest, sign_manifest

V1, V2 = "0.1.0+n1", "0.1.0+n2"
NODE = "cbxc-b9-u1-lift1"


@pytest.fixture(scope="session")
def update_rig(tmp_path_factory, release_kit: ReleaseKit) -> Iterator[tuple[CentralHandle, ManagedNode, dict]]:
    """A central with v1 and v2 published and a node on v1; each test starts from that state (``reset``)."""
    central = CentralHandle(tmp_path_factory.mktemp("central"), config_document())
    central.start()
    token = central.register(NODE, "elevator")
    node = ManagedNode(tmp_path_factory.mktemp("node"), central.url, token, release_kit.public_key, NODE, 20)
    bundles = {V1: release_kit.bundle(V1), V2: release_kit.bundle(V2, append=RELEASES["schema2"])}
    for bundle in bundles.values():
        publish(central, release_kit, bundle)
    installed = node.first_install(bundles[V1])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield central, node, bundles
    central.close()


def publish(central: CentralHandle, release_kit: ReleaseKit, bundle: Path, key: Path | None = None) -> None:
    args = ["release", "add", str(bundle), "--db", str(central.db_path)]
    assert central_main([*args, "--public-key", str(key or release_kit.public_key)]) == 0


def rollout(central: CentralHandle, version: str) -> int:
    """A rollout of ``version`` to every lift node at once (any other one aborted first); its id."""
    for item in central.get("/rollouts")["rollouts"]:
        if item["state"] in ("running", "paused", "halted"):
            requests.post(
                f"{central.url}/api/v1/rollouts/{item['id']}/abort", headers=central.operator_headers, timeout=10
            )
    body = {"role": "elevator", "version": version, "shares": [100], "soak_s": 0}
    answer = requests.post(f"{central.url}/api/v1/rollouts", json=body, headers=central.operator_headers, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def reset(node: ManagedNode) -> Layout:
    """Back to v1 current and committed, the original config, an empty journal."""
    layout = Layout(node.root)
    layout.point("current", V1)
    layout.point("committed", V1)
    write_atomic(node.config, node.original_config, mode=0o640)
    layout.journal.unlink(missing_ok=True)
    return layout


def set_config(node: ManagedNode, old: str, new: str) -> None:
    """Change the node's config text (``old`` must be in it); ``reset`` puts the original back."""
    text = node.config.read_text()
    assert old in text, old
    write_atomic(node.config, text.replace(old, new), mode=0o640)


def outcome(result) -> str:
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr


def variant_bundle(base: Path, out: Path, key: Ed25519PrivateKey, **changes: Any) -> Path:
    """``base``'s bundle with its manifest changed (``version=...``, ``config_schema=...``) and signed with
    ``key``: a release of the same files under another version, or signed by someone else."""
    with tarfile.open(base) as src, tarfile.open(out, "w") as dst:

        def data(member: tarfile.TarInfo) -> bytes:
            handle = src.extractfile(member)
            assert handle is not None, member.name
            return handle.read()

        manifest = parse_manifest(data(src.getmember(MANIFEST)))
        raw, signature = sign_manifest(dataclasses.replace(manifest, **changes), key)
        for member in src.getmembers():
            content = {MANIFEST: raw, SIGNATURE: signature}.get(member.name) or data(member)
            member.size = len(content)
            dst.addfile(member, io.BytesIO(content))
    return out


def clone_install(layout: Layout, source: str, append: dict[str, str]) -> Callable[[Manifest, str], None]:
    """An ``install`` for ``Stager`` that copies the installed venv of ``source`` instead of running pip, with
    ``append`` (a file of the tree -> Python text, as ``RELEASES``) added to the copy's modules: a release with
    a fault staged in a second, so the tests of the switch run the release's own (faulty) code. The full pip
    install of such releases runs in bench/bench_updates_e2e.py."""

    def install(manifest: Manifest, python: str) -> None:
        version = manifest.version
        shutil.rmtree(layout.version_dir(version), ignore_errors=True)
        copy_venv(layout.venv(source), layout.venv(version), append)
        for name in (MANIFEST, SIGNATURE):
            shutil.copyfile(layout.downloads / version / name, layout.version_dir(version) / name)
        shutil.rmtree(layout.downloads / version, ignore_errors=True)

    return install


def copy_venv(src: Path, dst: Path, append: dict[str, str] | None = None) -> None:
    """A copy of an installed venv that runs from its new place (its scripts name their new python), with
    ``append`` (a module path -> Python text) added to its modules."""
    shutil.copytree(src, dst, symlinks=True)
    for script in (dst / "bin").iterdir():
        if script.is_file() and not script.is_symlink() and script.read_bytes().startswith(b"#!"):
            script.write_bytes(script.read_bytes().replace(str(src).encode(), str(dst).encode()))
    site = next((dst / "lib").glob("python3*/site-packages"))
    for relative, text in (append or {}).items():
        with open(site / relative, "a", encoding="utf-8") as handle:
            handle.write("\n" + text + "\n")


def copy_install(source: Layout, version: str, dest: Layout) -> None:
    """Install ``version`` under ``dest`` as a copy of its complete install under ``source`` (current and
    committed pointed at it): a second node on the version without running pip again."""
    copy_venv(source.venv(version), dest.venv(version))
    for name in (MANIFEST, SIGNATURE, READY):
        shutil.copyfile(source.version_dir(version) / name, dest.version_dir(version) / name)
    dest.point("current", version)
    dest.point("committed", version)
