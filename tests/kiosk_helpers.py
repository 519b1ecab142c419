"""The kiosk tests' node config: one builder, with the screen tests and the arcade-button tests adding their keys."""

from __future__ import annotations

from pathlib import Path

NODE = "cbxc-north-gate-kiosk"


def write_kiosk_config(
    tmp_path: Path, url: str, token: str | None, *, central_extra: str = "", sections: str = "", kiosk_extra: str = ""
) -> Path:
    """kiosk.toml in ``tmp_path`` for a central at ``url``; the token file is written when ``token`` is given."""
    token_file = tmp_path / "token"
    if token is not None:
        token_file.write_text(token)
        token_file.chmod(0o600)
    path = tmp_path / "kiosk.toml"
    path.write_text(
        f"""
[node]
id = "{NODE}"
role = "kiosk"
site = "changbai-xincun"
data_dir = "{tmp_path / "data"}"

[central]
url = "{url}"
token_file = "{token_file}"
connect_timeout_s = 1
read_timeout_s = 3
{central_extra}
{sections}
[audio]
backend = "none"

[kiosk]
pickup_point = "长白新村北门"
hotline = "021-6543 2100"
timing = {{ poll_interval_s = 0.2, retry_interval_s = 0.5 }}
{kiosk_extra}
""",
        encoding="utf-8",
    )
    return path
