"""The example front (examples/nginx-central.conf) in Debian's own nginx before the real central: the file as
shipped, with only its certificate paths, its two listening ports and the central's port changed; ``nginx -t``
accepts it; a node registers and uploads through it over TLS with its CA bundle; nginx's own 413 page splits an
oversized batch; nginx's own 429 page keeps everything for later; the change stream is not held back."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from common.clock import ManualClock
from community.receivers import free_port
from tests.site_ca import make_site_ca
from tests.test_sync import NODE, drain, make_runtime

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _certificates(folder: Path) -> Path:
    """The site CA and the central's certificate, with the chain nginx serves; returns the CA's file."""
    ca, cert, _ = make_site_ca(folder)
    (folder / "central.fullchain.pem").write_text(cert.read_text() + ca.read_text())
    return ca


def _site(folder: Path, https: int, http: int, central: int) -> str:
    """The example with only what a deployment changes: each replaced exactly once, or the example changed shape."""
    text = (ROOT / "examples/nginx-central.conf").read_text()
    for old, new in [
        ("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;"),
        ("listen 80;", f"listen 127.0.0.1:{http};"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{central};"),
        ("/etc/ssl/changbai/central.fullchain.pem", str(folder / "central.fullchain.pem")),
        ("/etc/ssl/changbai/central.key", str(folder / "central.key")),
    ]:
        assert text.count(old) == 1, f"examples/nginx-central.conf: {old!r} not there once"
        text = text.replace(old, new)
    return text


@pytest.fixture
def front(central: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx with the example site before the test's central: (https URL, the CA bundle)."""
    if not Path(NGINX).exists() or shutil.which("openssl") is None:
        pytest.skip("needs nginx and openssl (scripts/bootstrap.sh installs nginx-light)")
    folder = tmp_path / "nginx"
    folder.mkdir()
    ca = _certificates(folder)
    https, http = free_port(), free_port()
    (folder / "site.conf").write_text(_site(folder, https, http, int(central.url.rsplit(":", 1)[1])))
    user = "user root root;\n" if os.geteuid() == 0 else ""  # the test's folders are root's 0700
    (folder / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log {folder}/access.log;\n    client_body_temp_path {folder}/body;\n"
        f"    proxy_temp_path {folder}/proxy;\n    include {folder}/site.conf;\n"
        # as a user, nginx cannot make its built-in temp folders under /var/lib/nginx: each one here instead
        + "".join(f"    {kind}_temp_path {folder}/{kind};\n" for kind in ("fastcgi", "uwsgi", "scgi"))
        + "}\n"
    )
    conf = ["-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")]
    checked = subprocess.run([NGINX, "-t", *conf], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen([NGINX, *conf, "-g", "daemon off;"], stderr=subprocess.PIPE, text=True)
    url = f"https://127.0.0.1:{https}"  # a fresh chroot's /etc/hosts may not name localhost
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(f"{url}/api/v1/health", verify=str(ca), timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        yield url, ca
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_node_uploads_through_the_front_and_nginx_pages_neither_lose_nor_dead_letter(
    central: Any, front: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca = front
    health = requests.get(f"{url}/api/v1/health", verify=str(ca), timeout=5)
    assert health.json()["status"] == "ok"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/api/v1/health", timeout=5)  # the site's CA is not in the system's trust store
    token = central.register(NODE, "elevator")
    clock = ManualClock()
    runtime = make_runtime(tmp_path / "node", url, token, clock, central={"ca_bundle": str(ca), "batch_size": 60})
    try:
        # 60 events of 40 KB: a 2.4 MB batch, over the front's client_max_body_size 2m: nginx's own 413 page
        big = [runtime.record_state("door_state", {"note": "x" * 40_000, "n": i}) for i in range(60)]
        drain(runtime, clock)
        assert {e.id for e in big} <= {e["id"] for e in central.events(NODE)}
        assert runtime.outbox.dead_letters() == []
        log = (tmp_path / "nginx/error.log").read_text() + (tmp_path / "nginx/access.log").read_text()
        assert '" 413 ' in log, "the front never refused the large batch: the test did not test the split"
        # nginx's own 429 page: another client on this address keeps the front's bucket (20 a second, a burst of
        # 100) empty while the node uploads
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    statuses.append(session.get(f"{url}/api/v1/health", verify=str(ca), timeout=5).status_code)

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            while statuses.count(429) < 20:
                time.sleep(0.05)
            held = []
            for _ in range(100):  # on a loaded machine the bucket may refill between two of the hammer's requests
                held.append(runtime.record_state("door_state", {"n": "during the burst"}))
                result = runtime.uploader.run_once()
                if result.acked == 0:
                    break
        finally:
            stop.set()
            thread.join()
        assert result.acked == 0 and result.retry_in_s, result
        assert runtime.outbox.dead_letters() == []  # kept for later, not dead-lettered
        time.sleep(6)  # the bucket refills at 20 a second
        clock.advance(result.retry_in_s)
        drain(runtime, clock)
        assert {e.id for e in held} <= {e["id"] for e in central.events(NODE)}
    finally:
        runtime.stop()


def test_the_change_stream_is_not_held_back_by_the_front(central: Any, front: tuple[str, Path]) -> None:
    url, ca = front
    headers = central.operator_headers
    with requests.get(
        f"{url}/api/v1/changes/stream", headers=headers, verify=str(ca), stream=True, timeout=(5, 10)
    ) as stream:
        assert stream.status_code == 200
        start = time.monotonic()
        central.register("cbxc-front-test", "meter")  # a change: the node's registration
        for line in stream.iter_lines(decode_unicode=True):
            if "cbxc-front-test" in (line or ""):
                break
        assert time.monotonic() - start < 5  # not buffered until the connection ends
