"""Central: operator page, OpenAPI document, error format, config validation and the `central` command line."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from central.__main__ import main
from central.config import load_central_config
from common.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "central.toml"

# every path of the v1 contract (DESIGN.md, docs/api.md) with its methods
CONTRACT = {
    "/api/v1/nodes/register": {"post"},
    "/api/v1/events": {"post", "get"},
    "/api/v1/heartbeat": {"post"},
    "/api/v1/acknowledgements": {"get"},  # EN 81-28's acknowledgement back to the node (docs/sync.md)
    "/api/v1/nodes": {"get"},
    "/api/v1/nodes/{node_id}": {"get"},
    "/api/v1/alerts": {"get"},
    "/api/v1/alerts/{alert}": {"get"},
    "/api/v1/alerts/{alert}/ack": {"post"},
    "/api/v1/alerts/{alert}/resolve": {"post"},
    "/api/v1/rides": {"post", "get"},
    "/api/v1/rides/{ride_id}": {"get"},
    "/api/v1/rides/{ride_id}/cancel": {"post"},
    "/api/v1/health": {"get"},
    # pages and the change feed for consoles (issue 15; /changes/stream is documented in docs/api.md only)
    "/api/v1/summary": {"get"},
    "/api/v1/changes": {"get"},
    # software updates (central/releases.py, docs/updates.md)
    "/api/v1/updates/check": {"get"},
    "/api/v1/updates/report": {"post"},
    "/api/v1/updates/nodes": {"get"},
    "/api/v1/releases": {"get"},
    "/api/v1/releases/{role}/{target}/{version}/files/{name}": {"get"},
    "/api/v1/rollouts": {"post", "get"},
    "/api/v1/rollouts/{rollout}": {"get"},
    "/api/v1/rollouts/{rollout}/{action}": {"post"},
    # the duty console's own calls (docs/api.md#the-consoles-own-calls) and the dispatcher's callbacks
    "/api/v1/session": {"post", "get", "delete"},
    "/api/v1/audit": {"get"},
    "/api/v1/users": {"get"},
    "/api/v1/catalogue": {"get"},
    "/api/v1/residents": {"get"},
    "/api/v1/residents/{site}/{flat}": {"get", "put"},
    "/api/v1/dispatch/callback": {"post"},
}


def test_openapi_lists_every_path_of_the_contract(central):
    doc = requests.get(f"{central.url}/openapi.json", timeout=10).json()
    assert {path: set(ops) for path, ops in doc["paths"].items()} == CONTRACT
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    same = requests.get(f"{central.url}/api/v1/openapi.json", timeout=10).json()
    assert same["paths"].keys() == doc["paths"].keys()


def test_the_console_is_served_self_contained_and_in_chinese(central):
    for path in ("/", "/operator"):
        page = requests.get(f"{central.url}{path}", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="zh-CN">' in html and "值班台" in html and "/operator/updates" in html
    # no external assets: nothing is fetched from another host, no build step
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    for name in re.findall(r'(?:src|href)="/console/([^"]+)"', html):
        asset = requests.get(f"{central.url}/console/{name}", timeout=10)
        assert asset.status_code == 200
        assert not re.search(rb"""(src=|href=|url\(|from |fetch\()\s*["']?(https?:)?//""", asset.content), name
    assert requests.get(f"{central.url}/console/../central.toml", timeout=10).status_code == 404


def test_unknown_paths_and_methods_answer_json_errors(central):
    missing = requests.get(f"{central.url}/api/v1/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = requests.delete(f"{central.url}/api/v1/events", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_health_needs_no_auth(central):
    answer = requests.get(f"{central.url}/api/v1/health", timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


CLAIM_KEY = "tested-claim-key-changbai-000001"


def usable_example(tmp_path: Path) -> Path:
    """The example config with its CHANGE-ME keys replaced, mode 0600: what an installer ends up with."""
    path = tmp_path / "central.toml"
    text = EXAMPLE.read_text(encoding="utf-8").replace("CHANGE-ME-changbai-claim-key-0001", CLAIM_KEY)
    path.write_text(text.replace("CHANGE-ME-operator-key-centre-0001", "tested-operator-key-centre-00001"))
    path.chmod(0o600)
    return path


def test_example_config_is_valid_once_its_keys_are_changed(tmp_path):
    config = load_central_config(usable_example(tmp_path))
    assert config.site("changbai-xincun").claim_key == CLAIM_KEY
    assert len(config.operators) == 2 and config.fleet.no_car_rate == 0.05


def test_config_problems_are_all_named(tmp_path):
    bad = tmp_path / "central.toml"
    bad.write_text(
        '[[sites]]\nid = "Bad Site"\nclaim_key = "short"\n'
        '[[operators]]\nname = "desk"\n'
        "[fleet]\nno_car_rate = 2.0\neta_min_s = 500\neta_max_s = 100\nsped = 3\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_central_config(bad)
    text = "\n".join(caught.value.problems)
    for key in ("sites[0].id", "sites[0].claim_key", "fleet.no_car_rate", "fleet.sped", "operators[0]"):
        assert key in text, key


def test_operator_key_may_be_given_as_its_sha256(tmp_path, capsys):
    assert main(["new-key"]) == 0
    lines = {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in capsys.readouterr().out.splitlines())}
    path = tmp_path / "central.toml"
    path.write_text(
        f'[[sites]]\nid = "s1"\nclaim_key = "claim-key-0123456789-0123456789"\n'
        f'[[operators]]\nname = "desk"\nkey_sha256 = "{lines["key_sha256"]}"\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    config = load_central_config(path)
    assert config.operator_for(lines["key"]).name == "desk"
    assert config.operator_for(lines["key"] + "x") is None


def test_admin_commands_add_and_show_a_site(tmp_path, capsys, fsynced):
    path = usable_example(tmp_path)
    assert main(["add-site", "--config", str(path), "--site", "siping-road", "--name", '四平路 "Siping"']) == 0
    assert fsynced.covers(path)  # the key printed is handed to a technician: a power cut must not take it back
    key = capsys.readouterr().out.split("technician): ")[1].split()[0]
    assert load_central_config(path).site("siping-road").claim_key == key
    assert path.stat().st_mode & 0o077 == 0
    assert main(["show-claim-key", "--config", str(path), "--site", "siping-road"]) == 0
    assert capsys.readouterr().out.strip() == key
    assert main(["add-site", "--config", str(path), "--site", "siping-road"]) == 1
    assert main(["show-claim-key", "--config", str(path), "--site", "nowhere"]) == 1


def test_nodes_command_lists_the_database(central, capsys):
    central.register("cbxc-b7-u2-lift1", "elevator", location="Building 7")
    assert main(["nodes", "--db", str(central.db_path)]) == 0
    out = capsys.readouterr().out
    assert "cbxc-b7-u2-lift1" in out and "Building 7" in out


def test_help_lists_the_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "central", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0
    for command in ("serve", "check-config", "new-key", "add-site", "show-claim-key", "nodes"):
        assert command in out.stdout


def test_a_bad_config_stops_serve_with_exit_2(tmp_path):
    bad = tmp_path / "central.toml"
    bad.write_text("[fleet]\nno_car_rate = -1\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "central", "serve", "--config", str(bad), "--db", str(tmp_path / "c.db")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 2
    assert "fleet.no_car_rate = -1.0: out of range" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_central_serve_runs_the_server_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    db = tmp_path / "data" / "central.sqlite3"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "central",
            "serve",
            "--config",
            str(usable_example(tmp_path)),
            "--db",
            str(db),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "central serve did not answer"
                time.sleep(0.1)
        assert answer.json()["status"] == "ok"
        body = {
            "claim_key": CLAIM_KEY,
            "node_id": "cbxc-b7-u2-lift1",
            "role": "elevator",
            "site": "changbai-xincun",
        }
        token = requests.post(f"http://127.0.0.1:{port}/api/v1/nodes/register", json=body, timeout=5).json()["token"]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after its clean shutdown
    assert "Finished server process" in stderr or "Shutting down" in stderr
    assert db.exists()
    assert token not in stderr  # never a token in a log line
    assert "cbxc-b7-u2-lift1" in stderr


def serve_refuses(config: Path, db: Path) -> str:
    """``central serve`` on a database it cannot open: exit code 1 and a line naming the file; returns stderr."""
    argv = [sys.executable, "-m", "central", "serve", "--config", str(config), "--db", str(db)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1 and f"cannot open the database {db}: " in out.stderr, out.stderr
    return out.stderr


def test_a_damaged_database_stops_serve_with_a_clear_line(tmp_path):
    db = tmp_path / "central.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    assert f"cannot open the database {db}: DatabaseError" in serve_refuses(usable_example(tmp_path), db)
    assert db.read_bytes().startswith(b"this is not a database")  # left as it was for the operator


def test_an_unexpected_error_still_answers_json_500(central, monkeypatch):
    token = central.register("cbxc-b7-u2-lift1")

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(central._server.app.state.store.nodes, "store_heartbeat", broken)
    answer = requests.post(f"{central.url}/api/v1/heartbeat", json={}, headers=central.node_headers(token), timeout=10)
    assert answer.status_code == 500 and answer.json()["error"] == "server_error"
