"""Central: claim-key guessing limited per address, a config that cannot leak or be guessed, a private database,
no public API explorer, browser protections on the operator page, and every status in the OpenAPI."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from central.__main__ import main
from central.config import load_central_config
from common.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "central.toml"


def test_claim_key_guessing_is_rate_limited_per_address(make_central):
    central = make_central(server={"register_failures_per_min": 5})
    url = f"{central.url}/api/v1/nodes/register"
    body = {"claim_key": "guess-000000000000000000000", "node_id": "cbxc-x-lift", "role": "elevator"}
    body["site"] = central.site
    statuses = [requests.post(url, json=body, timeout=10).status_code for _ in range(8)]
    assert statuses == [403] * 5 + [429] * 3
    limited = requests.post(url, json=body, timeout=10)
    assert limited.json()["error"] == "rate_limited" and 1 <= int(limited.headers["Retry-After"]) <= 12
    # even the right key waits: otherwise guessing would go on with the answer as the oracle
    right = requests.post(url, json={**body, "claim_key": central.claim_key}, timeout=10)
    assert right.status_code == 429
    # another address is not affected (uvicorn takes X-Forwarded-For from a proxy on loopback, as behind nginx)
    other = requests.post(
        url, json={**body, "claim_key": central.claim_key}, headers={"X-Forwarded-For": "10.1.2.3"}, timeout=10
    )
    assert other.status_code == 201


def test_check_config_refuses_example_keys_short_keys_and_a_readable_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["check-config", "--config", str(EXAMPLE)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "sites[0].claim_key" in err and "operators[0].key" in err and "CHANGE-ME" in err
    short = tmp_path / "central.toml"
    short.write_text(
        '[[sites]]\nid = "s1"\nclaim_key = "sixteen-chars-00"\n[[operators]]\nname = "desk"\n'
        'key = "a-key-of-twenty-three-c"\n',
        encoding="utf-8",
    )
    short.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        load_central_config(short)
    text = "\n".join(caught.value.problems)
    assert "mode 0644" in text and "chmod 600" in text
    assert "sites[0].claim_key" in text and "operators[0].key" in text and "at least 24 characters" in text
    short.write_text(
        '[[sites]]\nid = "s1"\nclaim_key = "twenty-four-chars-000000"\n[[operators]]\nname = "desk"\n'
        'key = "twenty-four-chars-111111"\n',
        encoding="utf-8",
    )
    short.chmod(0o640)  # group-readable is fine (a changbai group), others not
    assert load_central_config(short).site("s1") is not None


def test_the_database_is_created_private(central):
    central.register("cbxc-b7-u2-lift1")
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{central.db_path}{suffix}")
        assert path.exists() and path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))


def test_an_existing_database_readable_by_others_is_warned(tmp_path, caplog):
    from central.storage import open_store

    path = tmp_path / "central.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="central"):
        open_store(path).close()
    assert "mode 0644" in caplog.text and "chmod 600" in caplog.text


def test_plain_http_off_loopback_is_warned(tmp_path):
    from tests.test_central_service import usable_example

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "central", "serve", "--config", str(usable_example(tmp_path)), "--db",
         str(tmp_path / "c.db"), "--host", "0.0.0.0", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "Uvicorn running" in line or "Application startup" in line or len(lines) > 50:
                break
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    text = "".join(lines)
    assert "plain HTTP on 0.0.0.0" in text, text


def test_the_api_explorer_is_not_public(central):
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        answer = requests.get(f"{central.url}{path}", timeout=10)
        assert answer.status_code == 404 and answer.json()["error"] == "not_found"
    assert requests.get(f"{central.url}/openapi.json", timeout=10).status_code == 200


def test_the_operator_page_sends_browser_protections(central):
    page = requests.get(f"{central.url}/", timeout=10)
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    api = requests.get(f"{central.url}/api/v1/health", timeout=10)
    assert api.headers["X-Content-Type-Options"] == "nosniff"


def test_the_openapi_documents_every_refusal_with_the_error_body(central):
    doc = requests.get(f"{central.url}/openapi.json", timeout=10).json()
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["properties"]["schema"]["const"] == "changbai-error/1"
    assert set(error["required"]) == {"schema", "error", "message", "fields"}
    authenticated = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "503" in statuses, (method, path)
            if operation.get("security"):
                authenticated += 1
                assert {"401", "403"} <= statuses, (method, path)
            if method == "post":
                assert {"413", "422"} <= statuses, (method, path)
            if "{" in path:
                assert {"404", "422"} <= statuses, (method, path)
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    assert authenticated >= 12
    assert "429" in doc["paths"]["/api/v1/nodes/register"]["post"]["responses"]
