"""Central: schemathesis (a tool nobody here wrote) against the live central's own /openapi.json, with a node
token and with the operator key, every check on: no server error, no status the contract does not document, no
body outside its documented schema, no schema-valid request refused, no invalid one accepted.

A modest case count keeps the suite fast (about 800 cases per credential); `st run` with a larger
``--max-examples`` against a central started the same way is the bigger run (docs/api.md#checking-a-central).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ST = Path(sys.executable).with_name("st")
pytestmark = pytest.mark.skipif(not ST.exists() and not shutil.which("st"), reason="schemathesis not installed")


def schemathesis(central, credential: str, workdir: Path) -> subprocess.CompletedProcess:
    command = [
        str(ST if ST.exists() else shutil.which("st")),
        "run",
        f"{central.url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {credential}",
        "--max-examples",
        "5",
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=workdir)


@pytest.mark.slow
@pytest.mark.parametrize("who", ["node", "operator"])
def test_schemathesis_finds_no_server_error_and_no_undocumented_status(make_central, tmp_path, who):
    central = make_central()
    token = central.register("cbxc-b7-u2-lift1", "elevator")
    central.register("cbxc-north-gate-kiosk", "kiosk")
    credential = token if who == "node" else central.operator_key
    run = schemathesis(central, credential, tmp_path)
    summary = [line for line in run.stdout.splitlines() if " generated" in line]
    assert run.returncode == 0 and summary and " passed" in summary[-1], run.stdout[-6000:] + run.stderr[-2000:]
    # the central still answers and its own data is intact after the fuzzing
    assert central.get("/health")["status"] == "ok"
    assert {n["node_id"] for n in central.nodes()} >= {"cbxc-b7-u2-lift1", "cbxc-north-gate-kiosk"}
