"""provision register against the real central on loopback: token file 0600, the token never shown, rotation,
and the clear errors: wrong claim key, central unreachable, TLS failure."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import requests

from bench.hostile import Fault, hostile_proxy
from common.config import load_config
from provisioning.cli import main


def make_config(tmp_path: Path, url: str, node_id: str = "cbxc-b7-u2-lift1") -> Path:
    path = tmp_path / "etc" / "node.toml"
    argv = ["init", "--role", "elevator", "--non-interactive", "--config", str(path), "--force"]
    argv += ["--node-id", node_id, "--site", "changbai-xincun", "--central-url", url, "--location", "B7 U2"]
    argv += ["--building", "7", "--door-pin", "17", "--occupancy-pin", "27"]
    assert main(argv) == 0
    return path


def claim_file(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "claim.key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def heartbeat_status(url: str, token: str) -> int:
    answer = requests.post(
        f"{url}/api/v1/heartbeat", json={"uptime_s": 1.0}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return answer.status_code


@pytest.fixture
def everything(capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture):  # noqa: ANN201
    """stdout, stderr (at the file-descriptor level) and every log record, as one text."""
    caplog.set_level(logging.DEBUG)

    def read() -> str:
        out, err = capfd.readouterr()
        return out + err + "\n".join(r.getMessage() for r in caplog.records) + caplog.text

    return read


def test_register_writes_a_0600_token_that_works_and_is_never_shown(central, tmp_path: Path, everything) -> None:
    config_path = make_config(tmp_path, central.url)
    assert (
        main(
            ["register", "--config", str(config_path), "--claim-key-file", str(claim_file(tmp_path, central.claim_key))]
        )
        == 0
    )
    token_file = load_config(config_path).central.token_file
    token = token_file.read_text()
    assert token and token.strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert heartbeat_status(central.url, token) == 200
    shown = everything()
    assert token not in shown
    assert central.claim_key not in shown
    assert "registered cbxc-b7-u2-lift1" in shown
    node = central.node("cbxc-b7-u2-lift1")
    assert node["location"] == "B7 U2" and node["role"] == "elevator"
    assert not [p for p in token_file.parent.iterdir() if p.name.startswith(".")], "no temp file left"


def test_register_again_rotates_the_token(central, tmp_path: Path, everything, monkeypatch) -> None:
    config_path = make_config(tmp_path, central.url)
    monkeypatch.setenv("SITE_CLAIM", central.claim_key)
    argv = ["register", "--config", str(config_path), "--claim-key-env", "SITE_CLAIM"]
    assert main(argv) == 0
    token_file = load_config(config_path).central.token_file
    first = token_file.read_text()
    assert main([*argv, "--contact", "maintenance=Li Wei,13800000000"]) == 0
    second = token_file.read_text()
    assert first != second
    assert heartbeat_status(central.url, first) == 401
    assert heartbeat_status(central.url, second) == 200
    shown = everything()
    assert first not in shown and second not in shown
    assert "token rotated" in shown
    assert central.node("cbxc-b7-u2-lift1")["contacts"]["maintenance"][0]["name"] == "Li Wei"


def test_wrong_claim_key_is_refused_and_nothing_written(central, tmp_path: Path, everything) -> None:
    config_path = make_config(tmp_path, central.url)
    key = claim_file(tmp_path, "not-the-right-key-000000")
    assert main(["register", "--config", str(config_path), "--claim-key-file", str(key)]) == 5
    shown = everything()
    assert "claim key refused" in shown
    assert "not-the-right-key-000000" not in shown
    assert not load_config(config_path).central.token_file.exists()


def test_central_unreachable_is_exit_3(central, tmp_path: Path, everything) -> None:
    config_path = make_config(tmp_path, central.url)
    central.stop()
    key = claim_file(tmp_path, central.claim_key)
    assert main(["register", "--config", str(config_path), "--claim-key-file", str(key), "--timeout", "3"]) == 3
    assert "central unreachable" in everything()
    assert not load_config(config_path).central.token_file.exists()


def test_tls_failure_is_exit_3_and_says_tls(central, tmp_path: Path, everything) -> None:
    # the test central speaks plain HTTP: a TLS handshake with it fails like a broken certificate chain would
    config_path = make_config(tmp_path, central.url.replace("http://", "https://"))
    key = claim_file(tmp_path, central.claim_key)
    assert main(["register", "--config", str(config_path), "--claim-key-file", str(key), "--timeout", "3"]) == 3
    assert "TLS failure" in everything()


@pytest.mark.parametrize("status", [307, 308, 302])
def test_a_redirect_is_not_followed_with_the_claim_key(central, tmp_path: Path, everything, status: int) -> None:
    with hostile_proxy(central.url) as front, hostile_proxy() as elsewhere:
        front.always(Fault("reply", status, b"", {"Location": f"{elsewhere.url}/api/v1/nodes/register"}))
        config_path = make_config(tmp_path, front.url)
        key = claim_file(tmp_path, central.claim_key)
        assert main(["register", "--config", str(config_path), "--claim-key-file", str(key), "--timeout", "5"]) == 3
        assert [r[1] for r in front.requests] == ["/api/v1/nodes/register"]
        assert elsewhere.requests == []  # the claim key never went to the redirect's target
    shown = everything()
    assert f"HTTP {status}" in shown and "not followed" in shown
    assert central.claim_key not in shown
    assert not load_config(config_path).central.token_file.exists()


def test_claim_key_sources(central, tmp_path: Path, everything, monkeypatch) -> None:
    config_path = make_config(tmp_path, central.url)
    monkeypatch.delenv("NO_SUCH_CLAIM", raising=False)
    assert main(["register", "--config", str(config_path), "--claim-key-env", "NO_SUCH_CLAIM"]) == 2
    assert main(["register", "--config", str(config_path), "--claim-key-file", str(tmp_path / "missing")]) == 2
    assert main(["register", "--config", str(config_path), "--non-interactive"]) == 2
    with pytest.raises(SystemExit) as exit_info:  # a key on the command line is not even accepted
        main(["register", "--config", str(config_path), "--claim-key", central.claim_key])
    assert exit_info.value.code == 2
    assert "--claim-key-file" in everything()
    assert not load_config(config_path).central.token_file.exists()


def test_claim_key_from_a_prompt(central, tmp_path: Path, everything, monkeypatch) -> None:
    import io

    config_path = make_config(tmp_path, central.url)
    monkeypatch.setattr("sys.stdin", io.StringIO(central.claim_key + "\n"))
    assert main(["register", "--config", str(config_path)]) == 0
    assert central.claim_key not in everything()


def test_missing_config_is_exit_2(tmp_path: Path, everything) -> None:
    assert main(["register", "--config", str(tmp_path / "none.toml"), "--claim-key-env", "X"]) == 2
    assert "provision init" in everything()


def test_token_belongs_to_the_service_user_when_it_exists(central, tmp_path: Path, everything, monkeypatch) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    config_path = make_config(tmp_path, central.url)
    nobody = (65534, 65534)
    monkeypatch.setattr(
        "provisioning.cmd_register.service_user_ids", lambda user: nobody if user == "changbai" else None
    )
    key = claim_file(tmp_path, central.claim_key)
    assert main(["register", "--config", str(config_path), "--claim-key-file", str(key)]) == 0
    info = load_config(config_path).central.token_file.stat()
    assert (info.st_uid, info.st_gid) == nobody
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert "owner changbai" in everything()
