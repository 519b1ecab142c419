"""What the update tests share: a central with two releases published and a lift node on the first one
(``update_rig``, once per session: installing a node takes a while), and the steps every test repeats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.update_rig import RELEASES, ManagedNode, ReleaseKit
from central.__main__ import main as central_main
from common.files import write_atomic
from tests.fixtures.central import CentralHandle, config_document
from updates.layout import Layout

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
